#!/usr/bin/env bash
# Submits the dispatch pipeline to Google Cloud Dataflow (Runner v2,
# Streaming Engine) with the pushflow Beam Go SDK harness image.
#
# Usage:
#   deploy/dataflow/run-dispatch.sh [extra dispatch or Dataflow flags...]
#
# Environment (required unless a default is shown):
#   PROJECT            GCP project id
#   REGION             Dataflow region, e.g. europe-west1
#   BUCKET             gs://bucket/prefix for staging and temp files
#   IMAGE              the image built from deploy/container/Dockerfile, e.g.
#                      europe-docker.pkg.dev/PROJECT/pushflow/pushflow-beam:TAG
#   KAFKA_BROKERS      comma-separated bootstrap brokers reachable from the
#                      Dataflow workers' network
#   REDIS_ADDR         host:port reachable from the workers
#   APNS_KEY_FILE      path of the APNs .p8 key ON THE WORKERS (see README:
#                      Dataflow has no secret mounts; this build reads local
#                      files only)
#   APNS_KEY_ID        APNs key id
#   APNS_TEAM_ID       Apple team id
#   APNS_ENDPOINT      default https://api.push.apple.com
#   JOB_NAME           default pushflow-dispatch
#   WORKER_BIN         the dispatch binary the workers run; default: built
#                      here for linux/amd64, static (CGO_ENABLED=0)
#   SUBMIT_BIN         the dispatch binary that submits, for this machine;
#                      default: WORKER_BIN on linux/amd64, else built here
#   ASYNC              default 1: return once the job is submitted. 0: wait
#                      for the (streaming) job to end. ASYNC=1 needs the
#                      --async fix (deploy/README.md, "Gaps")
#   DELIVERY_TABLE     optional; file:// tables are local to each worker on
#                      Dataflow (lost with it), so leave it empty there
#   SUBNETWORK         optional, regions/REGION/subnetworks/NAME
#   SERVICE_ACCOUNT    optional worker service account email
#   MAX_WORKERS        default 10
#   DRY_RUN=1          print the Dataflow job instead of submitting it
#
# Secrets are never flags: Dataflow shows every pipeline flag in its UI and
# the Beam boot program logs them at every worker start.
set -euo pipefail

die() { echo "run-dispatch.sh: $*" >&2; exit 2; }
need() { [[ -n "${!1:-}" ]] || die "set $1 (see the header of this script)"; }

for v in PROJECT REGION BUCKET IMAGE KAFKA_BROKERS REDIS_ADDR APNS_KEY_FILE APNS_KEY_ID APNS_TEAM_ID; do
  need "$v"
done
[[ "$BUCKET" == gs://* ]] || die "BUCKET must be a gs:// URL, got $BUCKET"
[[ "$APNS_KEY_FILE" != gs://* ]] || die "APNS_KEY_FILE must be a local path on the workers: this build cannot read keys from GCS"

APNS_ENDPOINT="${APNS_ENDPOINT:-https://api.push.apple.com}"
JOB_NAME="${JOB_NAME:-pushflow-dispatch}"
MAX_WORKERS="${MAX_WORKERS:-10}"

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
if [[ -z "${WORKER_BIN:-}" ]]; then
  WORKER_BIN="$tmp/dispatch-linux-amd64"
  echo "building dispatch for linux/amd64 (the Dataflow workers) ..." >&2
  (cd "$repo_root" && CGO_ENABLED=0 GOOS=linux GOARCH=amd64 go build -trimpath -o "$WORKER_BIN" ./pipelines/dispatch)
fi
if [[ -z "${SUBMIT_BIN:-}" ]]; then
  if [[ "$(uname -s)/$(uname -m)" == Linux/x86_64 ]]; then
    SUBMIT_BIN="$WORKER_BIN"
  else
    SUBMIT_BIN="$tmp/dispatch-host"
    echo "building dispatch for this machine (the submitter) ..." >&2
    (cd "$repo_root" && go build -trimpath -o "$SUBMIT_BIN" ./pipelines/dispatch)
  fi
fi

args=(
  --runner=dataflow
  --project="$PROJECT"
  --region="$REGION"
  --staging_location="${BUCKET%/}/staging"
  --temp_location="${BUCKET%/}/temp"
  --sdk_container_image="$IMAGE"
  # Both are what the Go SDK sets on its own for a streaming pipeline; they
  # are spelled out so the intent survives SDK changes.
  --experiments=use_runner_v2,enable_streaming_engine
  --worker_binary="$WORKER_BIN"
  --job_name="$JOB_NAME"
  --max_num_workers="$MAX_WORKERS"
  --autoscaling_algorithm=THROUGHPUT_BASED
  --kafka_brokers="$KAFKA_BROKERS"
  --redis_addr="$REDIS_ADDR"
  --apns_endpoint="$APNS_ENDPOINT"
  --apns_key_file="$APNS_KEY_FILE"
  --apns_key_id="$APNS_KEY_ID"
  --apns_team_id="$APNS_TEAM_ID"
)
[[ -z "${DELIVERY_TABLE:-}" ]] || args+=(--delivery_table="$DELIVERY_TABLE")
[[ -z "${SUBNETWORK:-}" ]] || args+=(--subnetwork="$SUBNETWORK" --no_use_public_ips)
[[ -z "${SERVICE_ACCOUNT:-}" ]] || args+=(--service_account_email="$SERVICE_ACCOUNT")
[[ "${ASYNC:-1}" != 1 ]] || args+=(--async)
[[ "${DRY_RUN:-0}" != 1 ]] || args+=(--dry_run)

echo "submitting $JOB_NAME to Dataflow ($PROJECT, $REGION) with image $IMAGE" >&2
# Not exec: the EXIT trap removes the binaries built here.
"$SUBMIT_BIN" "${args[@]}" "$@"
