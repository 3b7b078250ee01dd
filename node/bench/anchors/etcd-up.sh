#!/usr/bin/env bash
# Starts a 3-member etcd cluster for the comparison workload (README.md here) in DIR, on
# loopback only (client ports 32379, 32381, 32383; peer ports 32380, 32382, 32384, away from
# the 2379/2380 of a Kubernetes control plane), installing etcd-server and etcd-client with
# apt-get if missing. Writes the member pids to DIR/pids; prints ETCD_ENDPOINTS=... last.
# Stop it with etcd-down.sh DIR.
set -euo pipefail
dir=${1:?usage: etcd-up.sh DIR}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)

missing=()
command -v etcd >/dev/null || missing+=(etcd-server)
command -v etcdctl >/dev/null || missing+=(etcd-client)
if [ ${#missing[@]} -gt 0 ]; then
  echo "etcd-up: installing ${missing[*]} (apt-get)" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  # Debian's etcd-server package starts a default member as a service: not ours.
  if command -v systemctl >/dev/null && systemctl is-active --quiet etcd 2>/dev/null; then systemctl stop etcd || true; fi
fi

cluster=""
endpoints=""
for i in 0 1 2; do
  client=$((32379 + 2 * i))
  peer=$((32380 + 2 * i))
  cluster+="${cluster:+,}m$i=http://127.0.0.1:$peer"
  endpoints+="${endpoints:+,}http://127.0.0.1:$client"
done
: >"$dir/pids"
for i in 0 1 2; do
  client=$((32379 + 2 * i))
  peer=$((32380 + 2 * i))
  etcd --name "m$i" --data-dir "$dir/m$i" \
    --listen-client-urls "http://127.0.0.1:$client" --advertise-client-urls "http://127.0.0.1:$client" \
    --listen-peer-urls "http://127.0.0.1:$peer" --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
    --initial-cluster "$cluster" --initial-cluster-state new --initial-cluster-token shardbank-bench \
    >"$dir/m$i.log" 2>&1 &
  echo $! >>"$dir/pids"
done

for _ in $(seq 1 120); do
  for pid in $(cat "$dir/pids"); do
    kill -0 "$pid" 2>/dev/null || { echo "etcd-up: a member exited at start:" >&2; tail -n 5 "$dir"/m*.log >&2; exit 1; }
  done
  ETCDCTL_API=3 etcdctl --endpoints "$endpoints" endpoint health >/dev/null 2>&1 && break
  sleep 0.5
done
if ! ETCDCTL_API=3 etcdctl --endpoints "$endpoints" endpoint health >&2; then
  echo "etcd-up: the members did not become healthy; logs in $dir" >&2
  exit 1
fi
echo "ETCD_ENDPOINTS=$endpoints"
