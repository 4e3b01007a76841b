// Package deploy holds pushflow's deployment artifacts — the Beam Go SDK
// harness image (container/), the Flink Kubernetes Operator manifests
// (flink/) and the Dataflow launch script (dataflow/) — and their static
// checks. deploy/portable proves the portable submission path end to end
// against a Prism job server. See README.md in this directory.
package deploy
