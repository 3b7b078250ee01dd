#!/usr/bin/env bash
# Builds (once) and caches the binaries of the operator tests (default: etcd kube-apiserver helm)
# and of the single-node Kubernetes of `npm run k8s:up` (kubernetes coredns local-path-provisioner pause):
#   kube-apiserver  alone, or with kube-controller-manager, kube-scheduler, kubelet, kube-proxy and
#                   kubectl (`kubernetes`), from the k8s.io/kubernetes Go module, one stamped go build
#   helm            via `go install helm.sh/helm/v3/cmd/helm@<version>`
#   promtool        via `go install github.com/prometheus/prometheus/cmd/promtool@<version>` (checks
#                   and unit-tests the chart's PrometheusRule; ~3-6 min of 2 cores when cold)
#   etcd            from the Debian package etcd-server (apt-get)
#   coredns         a small main with the kubernetes plugin (no forward), from the Go module proxy
#   local-path-provisioner  via `go install` (CGO_ENABLED=0)
#   pause           a static pod-sandbox binary built from a few lines here
# Output: ${SHARDBANK_CACHE:-$HOME/.cache/shardbank}/bin/<name>-<version>[/].
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

# The kubernetes go.mod replaces every k8s.io/* staging module with ./staging/...;
# a wrapper module replaces each with its published $KUBE_STAGING_VERSION instead.
write_kube_wrapper_module() {
  local mod="$1" kmod
  mkdir -p "$mod"
  kmod="$(cd "$mod" && GOFLAGS=-mod=mod go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')"
  {
    echo "module shardbank.local/kubernetes-build"
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
}

# Every Kubernetes binary in ONE go build (they share most packages), stamped with the
# release version (unstamped binaries report v0.0.0-master, which kubectl cannot parse).
# `kube-apiserver` alone is what the operator tests need; `kubernetes` is every binary of a node.
kube_commands=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl)
ensure_kubernetes() {
  local out="$bin/kubernetes-$KUBERNETES_VERSION"
  local missing=() c
  for c in "$@"; do [ -x "$out/$c" ] || missing+=("$c"); done
  if [ "${#missing[@]}" = 0 ]; then log "$* $KUBERNETES_VERSION cached"; return; fi
  local mod="$cache/src/kubernetes-$KUBERNETES_VERSION"
  write_kube_wrapper_module "$mod"
  log "building ${missing[*]} $KUBERNETES_VERSION (one go build; all six: ~5 min of 2 cores when cold)"
  local v="${KUBERNETES_VERSION#v}" pkgs=() x=""
  for c in "${missing[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$c"); done
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    x+=" -X $p.gitVersion=$KUBERNETES_VERSION -X $p.gitMajor=${v%%.*} -X $p.gitMinor=$(echo "$v" | cut -d. -f2)"
    x+=" -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
  done
  rm -rf "$out.tmp" && mkdir -p "$out.tmp" "$out"
  (cd "$mod" && for p in "${pkgs[@]}"; do GOFLAGS=-mod=mod go get "$p@$KUBERNETES_VERSION"; done \
     && nice -n 10 go build -p "${SHARDBANK_GO_PARALLEL:-2}" -trimpath -ldflags "-s -w$x" -o "$out.tmp/" "${pkgs[@]}")
  for c in "${missing[@]}"; do mv "$out.tmp/$c" "$out/$c"; done
  rm -rf "$out.tmp"
  log "kubernetes binaries built: $out"
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

# promtool: `promtool check rules` and `promtool test rules` on the chart's alerting rules.
ensure_promtool() {
  local out="$bin/promtool-$PROMTOOL_VERSION"
  if [ -x "$out" ]; then log "promtool $PROMTOOL_VERSION cached"; return; fi
  log "building promtool $PROMTOOL_VERSION"
  local gobin="$cache/src/promtool-$PROMTOOL_VERSION-bin"
  mkdir -p "$gobin"
  GOBIN="$gobin" CGO_ENABLED=0 nice -n 10 go install "${gobuild_flags[@]}" \
    "github.com/prometheus/prometheus/cmd/promtool@$PROMTOOL_VERSION"
  mv "$gobin/promtool" "$out"
  log "promtool built: $out"
}

# CoreDNS: a small main with only the plugins the node needs (kubernetes, no forward).
ensure_coredns() {
  local out="$bin/coredns-$COREDNS_VERSION"
  if [ -x "$out" ]; then log "coredns $COREDNS_VERSION cached"; return; fi
  local mod="$cache/src/coredns-$COREDNS_VERSION"
  mkdir -p "$mod"
  cat > "$mod/go.mod" <<EOM
module shardbank.local/coredns-build

go 1.24
EOM
  cat > "$mod/main.go" <<'EOM'
// CoreDNS with the plugins a single local node needs; no forward plugin, so no upstream.
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/ready"
	"github.com/coredns/coredns/coremain"
)

func init() {
	dnsserver.Directives = []string{"bind", "errors", "log", "health", "ready", "cache", "kubernetes"}
}

func main() { coremain.Run() }
EOM
  log "building coredns $COREDNS_VERSION"
  (cd "$mod" && GOFLAGS=-mod=mod go get "github.com/coredns/coredns@$COREDNS_VERSION" && GOFLAGS=-mod=mod go mod tidy \
     && CGO_ENABLED=0 nice -n 10 go build "${gobuild_flags[@]}" -o "$out.tmp" .)
  mv "$out.tmp" "$out"
}

ensure_local_path_provisioner() {
  local out="$bin/local-path-provisioner-$LOCAL_PATH_PROVISIONER_VERSION"
  if [ -x "$out" ]; then log "local-path-provisioner $LOCAL_PATH_PROVISIONER_VERSION cached"; return; fi
  local gobin="$cache/src/local-path-provisioner-$LOCAL_PATH_PROVISIONER_VERSION-bin"
  mkdir -p "$gobin"
  log "building local-path-provisioner $LOCAL_PATH_PROVISIONER_VERSION"
  GOBIN="$gobin" CGO_ENABLED=0 nice -n 10 go install "${gobuild_flags[@]}" "github.com/rancher/local-path-provisioner@$LOCAL_PATH_PROVISIONER_VERSION"
  mv "$gobin/local-path-provisioner" "$out"
}

# The pod sandbox ("pause") binary: a static program that waits for a signal.
ensure_pause() {
  local out="$bin/pause-1"
  if [ -x "$out" ]; then log "pause cached"; return; fi
  local mod="$cache/src/pause"
  mkdir -p "$mod"
  printf 'module shardbank.local/pause\n\ngo 1.22\n' > "$mod/go.mod"
  cat > "$mod/main.go" <<'EOM'
// The pod sandbox process: holds the pod's namespaces until told to stop.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGINT, syscall.SIGTERM)
	<-c
}
EOM
  (cd "$mod" && CGO_ENABLED=0 go build "${gobuild_flags[@]}" -o "$out.tmp" .)
  mv "$out.tmp" "$out"
}

for what in "${@:-etcd kube-apiserver helm}"; do
  for w in $what; do
    case "$w" in
      etcd) ensure_etcd ;;
      kube-apiserver) ensure_kubernetes kube-apiserver ;;
      kubernetes) ensure_kubernetes "${kube_commands[@]}" ;;
      helm) ensure_helm ;;
      promtool) ensure_promtool ;;
      coredns) ensure_coredns ;;
      local-path-provisioner) ensure_local_path_provisioner ;;
      pause) ensure_pause ;;
      *) echo "unknown binary: $w" >&2; exit 2 ;;
    esac
  done
done
