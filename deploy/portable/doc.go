// Package portable proves pushflow's portable submission path: the registry
// and dispatch pipeline binaries submitted with --runner=universal to a
// standalone Beam job server (Prism's, on loopback), exactly as they are
// submitted to Flink's job server or, through the same JobService API, run
// on Dataflow. The package has only a test; see deploy/README.md.
package portable
