#!/usr/bin/env bash
# One run of both sides on this machine at the same thread count (2 by default): neurosurg's
# bench gemm and bench forward, then PyTorch's (bench/run_pytorch.sh installs python3-torch),
# and a Markdown table of the ratios neurosurg / PyTorch.
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
threads=${THREADS:-2}
go build -o "$out/neurosurg" ./cmd/neurosurg
GOMAXPROCS=$threads "$out/neurosurg" bench gemm --json > "$out/gemm.json"
GOMAXPROCS=$threads "$out/neurosurg" bench forward --json > "$out/forward.json"
THREADS=$threads bench/run_pytorch.sh > "$out/pytorch.json"
/usr/bin/python3 bench/compare.py "$out/gemm.json" "$out/forward.json" "$out/pytorch.json"
