# Versions of the control-plane binaries used by tests and `npm run controlplane:up`.
# Sourced by build-binaries.sh; read by test/operator/support (keep KEY=value lines).
KUBERNETES_VERSION=v1.36.3
KUBE_STAGING_VERSION=v0.36.3
HELM_VERSION=v3.22.0
# The Go module version of Prometheus v3.x (github.com/prometheus/prometheus tags v0.3xx.y).
PROMTOOL_VERSION=v0.316.0
COREDNS_VERSION=v1.14.7
LOCAL_PATH_PROVISIONER_VERSION=v0.0.30
