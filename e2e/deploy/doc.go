// Package deploy holds no code: its tests check the deployment files at
// the top of the repository (compose.yaml and the Dockerfiles) against the
// binaries, as far as that is possible without a Docker engine: services,
// ports, the environment the binaries really read, health checks, build
// contexts, base image tags and the multi-instance profile; the Kubernetes
// manifests of docs/deploy/kubernetes, likewise without a cluster, their
// probes and ports asked of the binaries run with their environment; and
// the script of `make run`, run on other addresses than its defaults.
package deploy
