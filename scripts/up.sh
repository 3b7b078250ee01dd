#!/usr/bin/env bash
# The first of the two set-up commands: installs what the local cluster needs (nats-server,
# npm packages), builds, and runs `shardbank up` with the given options.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/node-runtime.sh
bash scripts/install-deps.sh
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
npx tsc -p tsconfig.json
exec node bin/shardbank.js up "$@"
