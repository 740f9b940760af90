#!/usr/bin/env bash
# Runs both sides on this machine at the same thread count (THREADS, default 2): neurosurg's
# bench gemm and bench forward, then PyTorch's (bench/run_pytorch.sh installs python3-torch),
# and prints a Markdown table of the ratios neurosurg / PyTorch. ROUNDS=n (default 1) repeats
# the pair n times, alternating, and reports each row's median ratio: on a shared machine one
# round can be off by ±20% either way.
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
threads=${THREADS:-2}
go build -o "$out/neurosurg" ./cmd/neurosurg
args=()
for r in $(seq "${ROUNDS:-1}"); do
  GOMAXPROCS=$threads "$out/neurosurg" bench gemm --json > "$out/gemm$r.json"
  GOMAXPROCS=$threads "$out/neurosurg" bench forward --json > "$out/forward$r.json"
  THREADS=$threads bench/run_pytorch.sh > "$out/pytorch$r.json"
  args+=("$out/gemm$r.json" "$out/forward$r.json" "$out/pytorch$r.json")
done
/usr/bin/python3 bench/compare.py "${args[@]}"
