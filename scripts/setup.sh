#!/usr/bin/env bash
# Installs what the project needs beyond Go itself. Idempotent; safe to run on a fresh machine.
set -euo pipefail
export PATH="$(go env GOPATH)/bin:$PATH"
if ! command -v staticcheck >/dev/null 2>&1; then
  go install honnef.co/go/tools/cmd/staticcheck@v0.8.2
fi
