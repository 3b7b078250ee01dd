#!/usr/bin/env bash
# A/B of two builds on real local clusters (3x3, NATS, fsync on), the 64-client bench.
#
#   scripts/ab.sh [--concurrent] DIR_A DIR_B   (each a built checkout: npm ci && npm run build)
#
# Two ways to keep the host's drift out of the comparison (on a shared 2-core machine, rows
# measured minutes apart compare the host as much as the code):
# - alternating (default; for a quiet machine, load average well under 1): one cluster benched
#   at a time, A B B A A B ..., so that a slow drift hits both alike. Prints each run, then the
#   median of each and the ratio B/A of the medians.
# - --concurrent (for a loaded machine): both clusters benched at the same instant, so they
#   share whatever else loads the host. Prints each round with its ratio B/A.
# Both print transfers/s, latency and the server CPU per transfer (µs, /proc utime+stime of the
# cluster's replicas and nats-server); concurrent also the bench client's CPU per transfer.
# Environment: ROUNDS (alternating 4, each benches both; concurrent 3), SECS (15s), CLIENTS (64),
# BENCH_ARGS (more `shardbank bench` flags, e.g. "--cross-shard-ratio 0" for intra-shard only),
# UP_ARGS (more `shardbank up` flags, e.g. --insecure).
set -u
mode=alternating
if [ "${1:-}" = --concurrent ]; then mode=concurrent; shift; fi
[ $# = 2 ] || { echo "usage: scripts/ab.sh [--concurrent] DIR_A DIR_B" >&2; exit 2; }
a=$(cd "$1" && pwd); b=$(cd "$2" && pwd); secs=${SECS:-15s}; clients=${CLIENTS:-64}
state=$(mktemp -d /tmp/shardbank-ab.XXXXXX)
dir() { [ "$1" = a ] && echo "$a" || echo "$b"; }
cleanup() { for s in a b; do (cd "$(dir $s)" && node dist/node/cli/main.js down --state-dir "$state/$s" >/dev/null 2>&1); done; rm -rf "$state"; }
trap cleanup EXIT
for s in a b; do (cd "$(dir $s)" && node dist/node/cli/main.js up --detach ${UP_ARGS:-} --state-dir "$state/$s" >/dev/null) || exit 1; done
cpu() { local t=0; for p in $(pgrep -f "$state/$1"); do [ -r /proc/$p/stat ] && t=$((t + $(awk '{print $14+$15}' /proc/$p/stat))); done; echo $t; }
# bench S DURATION: one bench of cluster S into $state/S.json, its client CPU into $state/S.time.
bench() {
  (cd "$(dir "$1")" && /usr/bin/time -f "%U %S" -o "$state/$1.time" node dist/node/cli/main.js bench --clients "$clients" \
    --duration "$2" --warmup 2s ${BENCH_ARGS:-} --json --state-dir "$state/$1" 2>/dev/null | tail -1 > "$state/$1.json")
}

if [ $mode = concurrent ]; then
  bench a 8s & bench b 8s & wait   # warm both up (JIT), unmeasured
  for r in $(seq 1 "${ROUNDS:-3}"); do
    a0=$(cpu a); b0=$(cpu b)
    bench a "$secs" & bench b "$secs" & wait
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
  exit 0
fi

bench a 8s; bench b 8s   # warm both up (JIT), unmeasured
n=0
for r in $(seq 1 "${ROUNDS:-4}"); do
  if [ $((r % 2)) = 1 ]; then order="a b"; else order="b a"; fi
  for s in $order; do
    n=$((n + 1)); c0=$(cpu "$s"); bench "$s" "$secs"; c1=$(cpu "$s")
    cp "$state/$s.json" "$state/$s.$n.json"; echo $((c1 - c0)) > "$state/$s.$n.cpu"
    echo "run $n: $s $(node -e 'const j=JSON.parse(require("fs").readFileSync(0,"utf8"));console.log(Math.round(j.transfersPerS)+"/s p50 "+j.latencyMs.p50.toFixed(2)+" p99 "+j.latencyMs.p99.toFixed(1)+" max "+(j.latencyMs.max??NaN).toFixed(0)+" ms")' < "$state/$s.json" 2>/dev/null)"
  done
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
