# pushflow — make help lists the targets.
SHELL := /bin/bash
GO ?= go
# Packages that do not start Beam pipelines: tested with -race (fast).
RACE_PKGS := . ./connectors/apnsio/... ./connectors/fcmio/... ./connectors/breaker/... ./connectors/internal/... ./connectors/redisio/... ./internal/options/... ./internal/retry/... ./internal/fanout/... ./internal/prismsplit/...
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
TEST_TIMEOUT ?= 20m

.DEFAULT_GOAL := help

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*?## "}{printf "  make %-10s %s\n", $$1, $$2}'

.PHONY: deps
deps: ## install what the tests need: redis-server (apt-get) and the Go modules
	@command -v redis-server >/dev/null 2>&1 || { \
	  echo "installing redis-server (apt-get)"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq redis-server >/dev/null; }
	@redis-server --version
	$(GO) mod download

.PHONY: build
build: ## build the pipelines and the dev runner into bin/
	$(GO) build -o bin/ ./pipelines/registry ./pipelines/dispatch ./pipelines/feedback ./internal/devrun

.PHONY: run
run: build ## run registry then dispatch end to end on the embedded dev stack and print a summary
	bin/devrun --registry_bin=bin/registry --dispatch_bin=bin/dispatch --testdata=testdata --out=.pushflow-run

.PHONY: test
test: deps ## unit, pipeline (Prism) and integration (redis-server, Kafka-protocol broker) tests + a short fuzz run
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) $(RACE_PKGS)
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) $$($(GO) list ./... | grep -v -x -F -f <($(GO) list $(RACE_PKGS)))
	$(GO) test -run '^$$' -fuzz '^FuzzDecodePushRequest$$' -fuzztime 15s .
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeDeviceEvent$$' -fuzztime 10s .

# Each benchmark measures its yardstick and the thing measured side by side
# in the same run and prints the ratio (BENCHMARKS.md records the results).
BENCH_FILTER := grep -E '^(Benchmark|goos|cpu|ok|FAIL|PASS)|_test.go:[0-9]+:'
.PHONY: bench
bench: deps ## benchmarks, printed as ratios measured side by side in one run (see BENCHMARKS.md)
	@set -o pipefail; \
	$(GO) test -run '^$$' -bench 'BenchmarkDispatchVsAPNsCeiling|BenchmarkRealtimeLatencyUnderBulkBacklog' -benchtime 1x -timeout 30m ./pipelines/dispatch/ 2>&1 | $(BENCH_FILTER); \
	PUSHFLOW_BENCH_REALTIME_TOPIC=1 $(GO) test -run '^$$' -bench 'BenchmarkRealtimeLatencyUnderBulkBacklog' -benchtime 1x -timeout 30m ./pipelines/dispatch/ 2>&1 | $(BENCH_FILTER); \
	PUSHFLOW_BENCH_REALTIME_TOPIC=1 PUSHFLOW_BENCH_BACKLOG_KIND=requests PUSHFLOW_BENCH_BACKLOG=200000 $(GO) test -run '^$$' -bench 'BenchmarkRealtimeLatencyUnderBulkBacklog' -benchtime 1x -timeout 30m ./pipelines/dispatch/ 2>&1 | $(BENCH_FILTER); \
	$(GO) test -run '^$$' -bench 'BenchmarkSmallBatches|BenchmarkTokens|BenchmarkSendFnBatchedVsPerBatch' -benchtime 1x -timeout 10m ./transforms/filter/ ./transforms/enrich/ ./transforms/send/ 2>&1 | $(BENCH_FILTER); \
	$(GO) test -run '^$$' -bench . -benchtime 1x -timeout 30m ./connectors/kafkaio/ 2>&1 | $(BENCH_FILTER); \
	$(GO) test -run '^$$' -bench 'PacedAccuracy|TinyRequestsFiring' -benchtime 1x -timeout 10m ./transforms/pace/ 2>&1 | $(BENCH_FILTER); \
	$(GO) test -run '^$$' -bench 'BenchmarkSend' -benchtime 20000x -timeout 10m ./connectors/apnsio/ ./connectors/fcmio/ 2>&1 | $(BENCH_FILTER); \
	$(GO) test -run '^$$' -bench 'BenchmarkUserDevices' -timeout 10m ./connectors/redisio/ 2>&1 | $(BENCH_FILTER); \
	PUSHFLOW_SOAK_MINUTES=$${PUSHFLOW_SOAK_MINUTES:-30} $(GO) test -run '^$$' -bench 'BenchmarkSoakMixedTraffic' -benchtime 1x -timeout 60m ./pipelines/dispatch/ 2>&1 | $(BENCH_FILTER)

.PHONY: fmt
fmt: ## gofmt the tree
	gofmt -s -w $$(git ls-files '*.go')

.PHONY: lint
lint: ## go vet + staticcheck
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...

.PHONY: clean
clean: ## remove build and run outputs
	rm -rf bin .pushflow-run
