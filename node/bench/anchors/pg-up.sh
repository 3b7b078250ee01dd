#!/usr/bin/env bash
# Starts PostgreSQL 15 for the comparison workload (README.md here): the Debian cluster
# 15/main, installed with apt-get if missing, listening on loopback only, fsync and
# synchronous_commit on, with a role and database shardbank_bench. Prints PGPORT=N last.
# Stop it with pg-down.sh (it stops the cluster only if this script started it).
set -euo pipefail
version=15
state_dir="${SHARDBANK_CACHE:-$HOME/.cache/shardbank}/anchors-state"
mkdir -p "$state_dir"

if [ ! -x "/usr/lib/postgresql/$version/bin/postgres" ]; then
  echo "pg-up: installing postgresql-$version (apt-get)" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "postgresql-$version" >/dev/null
fi
if ! pg_lsclusters -h | awk -v v="$version" '$1 == v && $2 == "main" { found = 1 } END { exit !found }'; then
  pg_createcluster "$version" main >/dev/null
fi

conf_dir="/etc/postgresql/$version/main/conf.d"
mkdir -p "$conf_dir"
cat >"$conf_dir/shardbank-bench.conf" <<CONF
# Written by shardbank's node/bench/anchors/pg-up.sh; pg-down.sh removes it.
listen_addresses = '127.0.0.1'
fsync = on
synchronous_commit = on
full_page_writes = on
max_connections = 300
CONF

status=$(pg_lsclusters -h | awk -v v="$version" '$1 == v && $2 == "main" { print $4 }')
if [ "$status" = online ]; then
  [ -e "$state_dir/pg-started" ] || echo "pg-up: the cluster was already running; restarting it with the settings above" >&2
  pg_ctlcluster --skip-systemctl-redirect "$version" main restart
else
  pg_ctlcluster --skip-systemctl-redirect "$version" main start
  touch "$state_dir/pg-started"
fi
port=$(pg_lsclusters -h | awk -v v="$version" '$1 == v && $2 == "main" { print $3 }')

for _ in $(seq 1 120); do
  pg_isready -q -h 127.0.0.1 -p "$port" && break
  sleep 0.5
done
pg_isready -q -h 127.0.0.1 -p "$port" || { echo "pg-up: PostgreSQL did not accept connections on 127.0.0.1:$port" >&2; exit 1; }

psql_admin() { runuser -u postgres -- psql -p "$port" -v ON_ERROR_STOP=1 -qAt "$@"; }
if [ "$(psql_admin -c "SELECT 1 FROM pg_roles WHERE rolname = 'shardbank_bench'")" != 1 ]; then
  psql_admin -c "CREATE ROLE shardbank_bench LOGIN PASSWORD 'shardbank_bench'"
fi
if [ "$(psql_admin -c "SELECT 1 FROM pg_database WHERE datname = 'shardbank_bench'")" != 1 ]; then
  psql_admin -c "CREATE DATABASE shardbank_bench OWNER shardbank_bench"
fi
echo "PGPORT=$port"
