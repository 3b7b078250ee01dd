#!/usr/bin/env bash
# Installs Chromium for the headless check of the bench and chaos HTML reports
# (test/cli/reports.test.ts, test/cli/report-check.ts); idempotent: a no-op once installed.
# Not in install-deps.sh: `scripts/up.sh` users do not need a browser. Without Chromium
# the report checks are skipped with a reason, so CI installs it to run them.
set -euo pipefail
if command -v chromium >/dev/null 2>&1 || [ -x /usr/lib/chromium/chromium ] || [ -n "${SHARDBANK_CHROMIUM:-}" ]; then
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "installing: chromium"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
chromium --version
