#!/usr/bin/env bash
# The reference workload on `shardbank up` (3x3 host processes, NATS), with the same bench flags
# the Kubernetes end-to-end suite uses from its client pod (test/k8s/e2e.test.ts prints those
# numbers): 16 and 64 clients, 10 s each after a 3 s warm-up. Compare them side by side in
# docs/KUBERNETES.md. Measured, never asserted. Usage: bash scripts/bench-local.sh [clients...]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
state="$(mktemp -d)"
trap 'node bin/shardbank.js down --state-dir "$state" >/dev/null 2>&1 || true; rm -rf "$state"' EXIT
[ -f dist/node/cli/main.js ] || npx tsc -p tsconfig.json
node bin/shardbank.js up --detach --state-dir "$state" >/dev/null
for clients in "${@:-16 64}"; do
  for n in $clients; do
    node bin/shardbank.js bench --state-dir "$state" --clients "$n" --duration 10s --warmup 3s --json \
      | node -e 'const r=JSON.parse(require("fs").readFileSync(0,"utf8")); console.log(`reference workload on shardbank up, ${process.argv[1]} clients: ${r.transfersPerS} transfers/s, p50 ${r.latencyMs.p50} ms, p99 ${r.latencyMs.p99} ms`)' "$n"
  done
done
