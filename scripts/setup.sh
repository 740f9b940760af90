#!/usr/bin/env bash
# Installs what the project needs beyond Go itself. Idempotent; safe to run on a fresh machine.
set -euo pipefail
export PATH="$(go env GOPATH)/bin:$PATH"
if ! command -v staticcheck >/dev/null 2>&1; then
  go install honnef.co/go/tools/cmd/staticcheck@v0.8.2
fi
# The report's browser test renders report.html in headless Chromium (Debian's package).
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends chromium >/dev/null
  else
    echo "setup.sh: chromium is missing and cannot be installed here (needs root and apt-get); the report's browser test will skip outside CI" >&2
  fi
fi
