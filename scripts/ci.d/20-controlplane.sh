#!/usr/bin/env bash
# Builds (once, cached in ${SHARDBANK_CACHE:-$HOME/.cache/shardbank}/bin) the etcd,
# kube-apiserver and helm binaries the operator tests run against, and promtool (the chart's
# alerting rules: test/operator/prometheus-rules.test.ts, and `promtool check metrics`). Idempotent: a warm
# cache makes this a no-op; a cold one costs a kube-apiserver build (see docs/operator.md).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
exec bash scripts/controlplane/build-binaries.sh etcd kube-apiserver helm promtool
