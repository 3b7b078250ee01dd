#!/usr/bin/env bash
# Only with SHARDBANK_K8S_E2E=1 (the test/k8s suite, see docs/TESTING.md): installs the node's
# host packages (containerd 1.6, runc, CNI plugins, iptables, conntrack, buildah, debootstrap),
# builds the node binaries and the images (all cached in ${SHARDBANK_CACHE:-~/.cache/shardbank}).
# Cold: ~5 min of binaries + ~4 min of images; warm: ~20 s.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
if [ "${SHARDBANK_K8S_E2E:-}" != "1" ]; then
  echo "k8s: SHARDBANK_K8S_E2E is not 1, skipping the single-node Kubernetes set-up"
  exit 0
fi
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
bash scripts/controlplane/build-binaries.sh etcd kubernetes helm coredns local-path-provisioner pause
node scripts/controlplane/images.mjs
