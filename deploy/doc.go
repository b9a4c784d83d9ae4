// Package deploy holds no code: its tests check the deployment files beside
// it. The systemd units pass `systemd-analyze verify` and keep their
// hardening; the example configurations (deploy/config, and those inside the
// Kubernetes ConfigMaps) load with internal/config; the Debian package builds
// with nfpm (a Go tool in the separate module deploy/tools), installs with
// dpkg, runs, and purges cleanly. The Kubernetes manifests are decoded
// against the API types by the separate module deploy/kubernetes, which
// keeps k8s.io out of avfleet's go.mod.
package deploy
