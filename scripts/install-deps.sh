#!/usr/bin/env bash
# Installs the system packages shardbank needs (idempotent): nats-server for leader
# discovery, protoc for regenerating protos, openssl for the X.509 issuer's
# tests (test/security/x509.test.ts; the certificates themselves are made without it).
# Run as root, or with sudo available.
set -euo pipefail
need=()
command -v nats-server >/dev/null 2>&1 || [ -x /usr/sbin/nats-server ] || need+=(nats-server)
command -v protoc >/dev/null 2>&1 || need+=(protobuf-compiler)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "installing: ${need[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
node -e 'const [a]=process.versions.node.split(".").map(Number); if (a<24) { console.error("Node >= 24 is required, found "+process.version+" (source scripts/node-runtime.sh installs Node 24 LTS)"); process.exit(1) }'
