#!/usr/bin/env bash
# Encoder attention (one span, no mask) at 1024×1280/16 heads and 1500×1280/20 heads, both sides
# in one run at the same thread count (THREADS, default 2): neurosurg's BenchmarkBidirectional
# (the per-row loop, the GEMM form with f32 and with bf16 keys/values) and PyTorch's
# (bench/encoder_attention.py, bf16 and f32). Prints rows/s and the ratio to PyTorch per dtype.
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${THREADS:-2}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
GOMAXPROCS=$threads go test ./model/ -run '^$' -bench 'Bidirectional' -benchtime "${BENCHTIME:-3x}" -count=1 > "$out/go.txt"
if ! /usr/bin/python3 -c 'import torch' 2>/dev/null; then
  apt-get update -qq && apt-get install -y -qq python3-torch libopenblas0 >/dev/null
fi
blas=$(ls /usr/lib/x86_64-linux-gnu/libopenblas.so.0 2>/dev/null || true)
LD_PRELOAD="$blas" /usr/bin/python3 bench/encoder_attention.py --threads "$threads" > "$out/torch.json"
/usr/bin/python3 - "$out/go.txt" "$out/torch.json" <<'PY'
import json, re, sys
ns = {}
for line in open(sys.argv[1]):
    m = re.match(r"BenchmarkBidirectional/(\S+?)/(\S+?)-\d+\s.*?([\d.]+) rows/s", line)
    if m:
        ns[(m.group(1), m.group(2))] = float(m.group(3))
pt = {(r["shape"], r["dtype"]): r["rows_per_s"] for r in json.load(open(sys.argv[2]))["attention"]}
print("| shape | neurosurg path | rows/s | PyTorch dtype | rows/s | neurosurg / PyTorch |")
print("|---|---|---:|---|---:|---:|")
for (shape, path), v in sorted(ns.items()):
    dt = "bfloat16" if path.endswith("BF16") else "float32"
    if path == "layer":
        print(f"| {shape} | {path} (projections too) | {v:.0f} | | | |")
        continue
    t = pt.get((shape, dt))
    print(f"| {shape} | {path} | {v:.0f} | {dt} | {t:.0f} | {v / t:.2f} |")
PY
