#!/usr/bin/env bash
# Runs the PyTorch side of the comparison on this machine, at the same thread count as
# neurosurg (2 by default): installs Debian's python3-torch (and OpenBLAS for f32 matmul).
set -euo pipefail
cd "$(dirname "$0")"
if ! /usr/bin/python3 -c 'import torch' 2>/dev/null; then
  apt-get update -qq && apt-get install -y -qq python3-torch libopenblas0 >/dev/null
fi
blas=$(ls /usr/lib/x86_64-linux-gnu/libopenblas.so.0 2>/dev/null || true)
LD_PRELOAD="$blas" /usr/bin/python3 pytorch_bench.py --threads "${THREADS:-2}" --config ../testdata/configs/Qwen2-0.5B/config.json "$@"
