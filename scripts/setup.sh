#!/usr/bin/env bash
# Installs what the project needs beyond Go itself. Idempotent; safe to run on a fresh machine.
set -euo pipefail
export PATH="$(go env GOPATH)/bin:$PATH"
if ! command -v staticcheck >/dev/null 2>&1; then
  go install honnef.co/go/tools/cmd/staticcheck@v0.8.2
fi
# The report's browser test renders report.html in headless Chromium (Debian's package), with
# DejaVu Sans, the font the charts measure their text with.
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    log=$(mktemp)
    if ! { DEBIAN_FRONTEND=noninteractive apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core; } >"$log" 2>&1; then
      cat "$log" >&2; rm -f "$log"
      echo "setup.sh: installing chromium failed" >&2
      exit 1
    fi
    rm -f "$log"
  else
    echo "setup.sh: chromium is missing and cannot be installed here (needs root and apt-get); the report's browser test skips outside CI" >&2
  fi
fi
