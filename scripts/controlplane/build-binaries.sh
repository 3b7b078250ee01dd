#!/usr/bin/env bash
# Builds (once) and caches the control-plane binaries used by operator tests:
#   kube-apiserver  from the k8s.io/kubernetes Go module (Go module proxy)
#   helm            via `go install helm.sh/helm/v3/cmd/helm@<version>`
#   etcd            from the Debian package etcd-server (apt-get)
# Output: ${SHARDBANK_CACHE:-$HOME/.cache/shardbank}/bin/<name>-<version>.
# Idempotent: a binary that already exists is not rebuilt.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.sh
source "$here/versions.sh"
cache="${SHARDBANK_CACHE:-$HOME/.cache/shardbank}"
bin="$cache/bin"
mkdir -p "$bin" "$cache/src"
log() { echo "[controlplane-build] $*" >&2; }
gobuild_flags=(-p "${SHARDBANK_GO_PARALLEL:-2}" -trimpath -ldflags "-s -w")

ensure_etcd() {
  if ! command -v etcd >/dev/null 2>&1 && [ ! -x /usr/bin/etcd ]; then
    log "installing etcd-server (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends etcd-server >/dev/null
    # The Debian package starts a system etcd on :2379; tests use their own.
    systemctl disable --now etcd >/dev/null 2>&1 || service etcd stop >/dev/null 2>&1 || true
  fi
  local etcd_path ver
  etcd_path="$(command -v etcd || echo /usr/bin/etcd)"
  ver="$("$etcd_path" --version | awk '/etcd Version/ {print $3}')"
  ln -sf "$etcd_path" "$bin/etcd-v$ver"
  ln -sf "etcd-v$ver" "$bin/etcd"
  log "etcd v$ver ready"
}

ensure_kube_apiserver() {
  local out="$bin/kube-apiserver-$KUBERNETES_VERSION"
  if [ -x "$out" ]; then log "kube-apiserver $KUBERNETES_VERSION cached"; return; fi
  local mod="$cache/src/kube-apiserver-$KUBERNETES_VERSION"
  mkdir -p "$mod"
  log "building kube-apiserver $KUBERNETES_VERSION (takes a while on 2 cores)"
  # The kubernetes go.mod replaces every k8s.io/* staging module with ./staging/...;
  # a wrapper module replaces each with its published $KUBE_STAGING_VERSION instead.
  local kmod
  kmod="$(cd "$mod" && GOFLAGS=-mod=mod go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')"
  {
    echo "module shardbank.local/kube-apiserver-build"
    echo
    grep -E '^go [0-9]' "$kmod"
    echo
    echo "require k8s.io/kubernetes $KUBERNETES_VERSION"
    echo
    echo "replace ("
    grep -Eo '^\s*k8s\.io/[A-Za-z0-9._/-]+ => \./staging/src/k8s\.io/[A-Za-z0-9._/-]+' "$kmod" \
      | awk -v v="$KUBE_STAGING_VERSION" '{print "\t" $1 " => " $1 " " v}'
    echo ")"
  } > "$mod/go.mod"
  (cd "$mod" && GOFLAGS=-mod=mod go get "k8s.io/kubernetes/cmd/kube-apiserver@$KUBERNETES_VERSION" \
     && nice -n 10 go build "${gobuild_flags[@]}" -o "$out.tmp" k8s.io/kubernetes/cmd/kube-apiserver)
  mv "$out.tmp" "$out"
  log "kube-apiserver built: $out"
}

ensure_helm() {
  local out="$bin/helm-$HELM_VERSION"
  if [ -x "$out" ]; then log "helm $HELM_VERSION cached"; return; fi
  log "building helm $HELM_VERSION"
  local gobin="$cache/src/helm-$HELM_VERSION-bin"
  mkdir -p "$gobin"
  GOBIN="$gobin" nice -n 10 go install "${gobuild_flags[@]}" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
  mv "$gobin/helm" "$out"
  log "helm built: $out"
}

for what in "${@:-etcd kube-apiserver helm}"; do
  for w in $what; do
    case "$w" in
      etcd) ensure_etcd ;;
      kube-apiserver) ensure_kube_apiserver ;;
      helm) ensure_helm ;;
      *) echo "unknown binary: $w" >&2; exit 2 ;;
    esac
  done
done
