//! Load-test harness and simulated Kubernetes API server.
