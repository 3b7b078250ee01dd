#!/usr/bin/env bash
# Stops the etcd members etcd-up.sh DIR started (SIGTERM, then SIGKILL after 10 s).
set -euo pipefail
dir=${1:?usage: etcd-down.sh DIR}
[ -f "$dir/pids" ] || exit 0
pids=$(cat "$dir/pids")
for pid in $pids; do kill "$pid" 2>/dev/null || true; done
for _ in $(seq 1 20); do
  alive=0
  for pid in $pids; do kill -0 "$pid" 2>/dev/null && alive=1; done
  [ "$alive" = 0 ] && break
  sleep 0.5
done
for pid in $pids; do kill -9 "$pid" 2>/dev/null || true; done
rm -f "$dir/pids"
