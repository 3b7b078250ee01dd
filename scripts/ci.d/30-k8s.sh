#!/usr/bin/env bash
# The single-node Kubernetes of the test/k8s suite (docs/TESTING.md, docs/KUBERNETES.md): installs
# the node's host packages (containerd 1.6, runc, CNI plugins, iptables, conntrack, buildah,
# debootstrap), builds the node binaries and the images (all cached in
# ${SHARDBANK_CACHE:-~/.cache/shardbank}) and stops any node a killed earlier run left behind.
# On by default in CI (CI=true, as .ci/run sets it) and with SHARDBANK_K8S_E2E=1; off with
# SHARDBANK_K8S_E2E=0 (the suite then skips too). Needs root.
# Cold: ~5 min of binaries + ~4-6 min of images; warm: ~20 s.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
case "${SHARDBANK_K8S_E2E:-}" in
  1) ;;
  0) echo "k8s: SHARDBANK_K8S_E2E=0, skipping the single-node Kubernetes set-up"; exit 0 ;;
  "") if [ "${CI:-}" != "true" ]; then
        echo "k8s: not in CI and SHARDBANK_K8S_E2E is unset, skipping the single-node Kubernetes set-up"
        exit 0
      fi ;;
  *) echo "k8s: SHARDBANK_K8S_E2E must be 0 or 1, got '${SHARDBANK_K8S_E2E}'" >&2; exit 2 ;;
esac
if [ "$(id -u)" -ne 0 ]; then
  echo "k8s: the single-node Kubernetes needs root (it changes the host's network, mounts and sysctls); run as root or set SHARDBANK_K8S_E2E=0" >&2
  exit 1
fi
t0=$SECONDS
need=()
for pair in /usr/bin/containerd:containerd /usr/sbin/runc:runc /usr/lib/cni/bridge:containernetworking-plugins \
            /usr/sbin/iptables:iptables /usr/sbin/conntrack:conntrack /usr/bin/buildah:buildah /usr/sbin/debootstrap:debootstrap; do
  [ -e "${pair%%:*}" ] || need+=("${pair##*:}")
done
if [ "${#need[@]}" -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# The Debian containerd package may start a system containerd; the node runs its own.
if command -v systemctl >/dev/null 2>&1; then systemctl disable --now containerd >/dev/null 2>&1 || true; fi
echo "k8s: host packages ready ($((SECONDS - t0)) s)"
bash scripts/controlplane/build-binaries.sh etcd kubernetes helm coredns local-path-provisioner pause
echo "k8s: binaries ready ($((SECONDS - t0)) s)"
# A node left by a killed run holds the bridge, mounts and chains: put the host back first.
node scripts/controlplane/k8s.mjs down
node scripts/controlplane/images.mjs
echo "k8s: images ready ($((SECONDS - t0)) s)"
