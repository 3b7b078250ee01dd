#!/usr/bin/env bash
# Undoes pg-up.sh: stops the PostgreSQL cluster if pg-up.sh started it and removes its settings.
set -euo pipefail
version=15
state_dir="${SHARDBANK_CACHE:-$HOME/.cache/shardbank}/anchors-state"
rm -f "/etc/postgresql/$version/main/conf.d/shardbank-bench.conf"
if [ -e "$state_dir/pg-started" ]; then
  pg_ctlcluster --skip-systemctl-redirect "$version" main stop || true
  rm -f "$state_dir/pg-started"
elif command -v pg_lsclusters >/dev/null && pg_lsclusters -h | awk -v v="$version" '$1 == v && $2 == "main" && $4 == "online" { found = 1 } END { exit !found }'; then
  # It was running before pg-up.sh: back to its own settings.
  pg_ctlcluster --skip-systemctl-redirect "$version" main restart || true
fi
