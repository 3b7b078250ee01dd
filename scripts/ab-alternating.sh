#!/usr/bin/env bash
# A/B of two builds on real local clusters, one cluster benched at a time, alternating
# A B B A A B ... so that a slow drift of the host hits both alike. Use it on a quiet machine
# (load average well under 1 on 2 cores); on a loaded one use scripts/ab-concurrent.sh.
# Prints per run: transfers/s, p50/p99/max latency and server CPU per transfer (µs), then the
# median of each and the ratio B/A of the medians.
# Usage: scripts/ab-alternating.sh DIR_A DIR_B   (each a built checkout: npm ci && npm run build)
# Environment: ROUNDS (4, each round benches both), SECS (15s), CLIENTS (64).
set -u
a=$(cd "$1" && pwd); b=$(cd "$2" && pwd); secs=${SECS:-15s}; clients=${CLIENTS:-64}
state=$(mktemp -d /tmp/shardbank-ab.XXXXXX)
dir() { [ "$1" = a ] && echo "$a" || echo "$b"; }
cleanup() { for s in a b; do (cd "$(dir $s)" && node dist/node/cli/main.js down --state-dir "$state/$s" >/dev/null 2>&1); done; rm -rf "$state"; }
trap cleanup EXIT
for s in a b; do (cd "$(dir $s)" && node dist/node/cli/main.js up --detach --state-dir "$state/$s" >/dev/null) || exit 1; done
cpu() { local t=0; for p in $(pgrep -f "$state/$1"); do [ -r /proc/$p/stat ] && t=$((t + $(awk '{print $14+$15}' /proc/$p/stat))); done; echo $t; }
run() { # $1 = a|b, $2 = duration, $3 = output index (empty: warm-up, not kept)
  local c0; c0=$(cpu "$1")
  (cd "$(dir "$1")" && node dist/node/cli/main.js bench --clients "$clients" --duration "$2" --warmup 2s --json --state-dir "$state/$1" 2>/dev/null | tail -1 > "$state/$1.out")
  local c1; c1=$(cpu "$1")
  [ -n "${3:-}" ] && { cp "$state/$1.out" "$state/$1.$3.json"; echo $((c1 - c0)) > "$state/$1.$3.cpu"; }
  return 0
}
run a 8s; run b 8s   # warm both up (JIT), unmeasured
n=0
for r in $(seq 1 "${ROUNDS:-4}"); do
  if [ $((r % 2)) = 1 ]; then order="a b"; else order="b a"; fi
  for s in $order; do n=$((n + 1)); run "$s" "$secs" "$n"; echo "run $n: $s $(head -c 300 "$state/$s.$n.json" | node -e 'const j=JSON.parse(require("fs").readFileSync(0,"utf8"));console.log(Math.round(j.transfersPerS)+"/s p50 "+j.latencyMs.p50.toFixed(2)+" p99 "+j.latencyMs.p99.toFixed(1)+" max "+(j.latencyMs.max??NaN).toFixed(0)+" ms")' 2>/dev/null)"; done
done
STATE="$state" SECS_RUN="$secs" node -e '
  const fs = require("fs"); const st = process.env.STATE; const secs = parseFloat(process.env.SECS_RUN) + 2;
  const med = (xs) => { const s = [...xs].sort((x, y) => x - y); const m = s.length >> 1; return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2; };
  const rows = { a: [], b: [] };
  for (const f of fs.readdirSync(st)) { const m = /^([ab])\.(\d+)\.json$/.exec(f); if (!m) continue;
    const j = JSON.parse(fs.readFileSync(`${st}/${f}`)); const cpu = Number(fs.readFileSync(`${st}/${m[1]}.${m[2]}.cpu`, "utf8"));
    rows[m[1]].push({ tps: j.transfersPerS, p50: j.latencyMs.p50, p99: j.latencyMs.p99, max: j.latencyMs.max ?? NaN, cpu: (cpu * 1e4) / (j.transfersPerS * secs) }); }
  const s = (k, x) => med(rows[k].map((r) => r[x]));
  for (const k of ["a", "b"]) console.log(`median ${k.toUpperCase()}: ${Math.round(s(k, "tps"))}/s p50 ${s(k, "p50").toFixed(2)} p99 ${s(k, "p99").toFixed(1)} max ${s(k, "max").toFixed(0)} ms server CPU ${Math.round(s(k, "cpu"))} µs/transfer (n=${rows[k].length})`);
  console.log(`ratio B/A: throughput ${(s("b", "tps") / s("a", "tps")).toFixed(3)} p50 ${(s("b", "p50") / s("a", "p50")).toFixed(3)} p99 ${(s("b", "p99") / s("a", "p99")).toFixed(3)} CPU ${(s("b", "cpu") / s("a", "cpu")).toFixed(3)}`);'
