#!/usr/bin/env bash
# A/B of two builds on real local clusters, measured at the same instant: both clusters run
# their 64-client bench concurrently, so they share whatever else loads the machine (on a
# shared 2-core host, rows measured minutes apart compare the host as much as the code).
# Prints per round: transfers/s of each, the ratio B/A, latency, and CPU per transfer (µs,
# /proc utime+stime) of each cluster's servers (replicas + nats-server) and bench client.
# Usage: scripts/ab-concurrent.sh DIR_A DIR_B   (each a built checkout: npm ci && npm run build)
# Environment: ROUNDS (3), SECS (15s), CLIENTS (64).
set -u
a=$(cd "$1" && pwd); b=$(cd "$2" && pwd); secs=${SECS:-15s}; clients=${CLIENTS:-64}
state=$(mktemp -d /tmp/shardbank-ab.XXXXXX)
cleanup() { for s in a b; do dir=$([ $s = a ] && echo "$a" || echo "$b"); (cd "$dir" && node dist/node/cli/main.js down --state-dir "$state/$s" >/dev/null 2>&1); done; rm -rf "$state"; }
trap cleanup EXIT
for s in a b; do dir=$([ $s = a ] && echo "$a" || echo "$b"); (cd "$dir" && node dist/node/cli/main.js up --detach --state-dir "$state/$s" >/dev/null) || exit 1; done
cpu() { local t=0; for p in $(pgrep -f "$state/$1"); do [ -r /proc/$p/stat ] && t=$((t + $(awk '{print $14+$15}' /proc/$p/stat))); done; echo $t; }
bench() { (cd "$2" && /usr/bin/time -f "%U %S" -o "$state/$1.time" node dist/node/cli/main.js bench --clients $clients --duration $3 --warmup 2s --json --state-dir "$state/$1" 2>/dev/null | tail -1 > "$state/$1.json"); }
bench a "$a" 8s & bench b "$b" 8s & wait   # warm both up (JIT), unmeasured
for r in $(seq 1 "${ROUNDS:-3}"); do
  a0=$(cpu a); b0=$(cpu b)
  bench a "$a" $secs & bench b "$b" $secs & wait
  a1=$(cpu a); b1=$(cpu b)
  STATE="$state" R=$r SECS_RUN="$secs" A_CPU=$((a1 - a0)) B_CPU=$((b1 - b0)) node -e '
    const fs = require("fs"); const st = process.env.STATE; const secs = parseFloat(process.env.SECS_RUN) + 2;
    const f = (s) => JSON.parse(fs.readFileSync(`${st}/${s}.json`));
    const c = (s) => fs.readFileSync(`${st}/${s}.time`, "utf8").trim().split("\n").pop().split(" ").map(Number).reduce((x, y) => x + y, 0);
    const A = f("a"), B = f("b"); const ta = A.transfersPerS * secs, tb = B.transfersPerS * secs;
    console.log(`round ${process.env.R}: A ${Math.round(A.transfersPerS)}/s B ${Math.round(B.transfersPerS)}/s ratio ${(B.transfersPerS / A.transfersPerS).toFixed(3)}` +
      ` p50 ${A.latencyMs.p50.toFixed(1)}/${B.latencyMs.p50.toFixed(1)} p99 ${A.latencyMs.p99.toFixed(0)}/${B.latencyMs.p99.toFixed(0)} ms` +
      ` server CPU µs/transfer ${Math.round(process.env.A_CPU * 1e4 / ta)}/${Math.round(process.env.B_CPU * 1e4 / tb)}` +
      ` client ${Math.round(c("a") * 1e6 / ta)}/${Math.round(c("b") * 1e6 / tb)}`);'
done
