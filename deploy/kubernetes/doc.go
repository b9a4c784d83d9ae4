// Package kubernetes holds no code: it is the Go module of the tests that
// decode avfleet's Kubernetes manifests (the *.yaml files beside this one and
// in examples/) strictly against the Kubernetes API types and check that
// their parts fit together. It is a module of its own so that k8s.io/api and
// cert-manager never become dependencies of the avfleet binary.
package kubernetes
