#!/usr/bin/env bash
# Encoder benchmarks beside PyTorch, in one run on this machine at the same thread count
# (THREADS, default 2): synthesises BF16 checkpoints with the real encoder configs (the language
# model cut to one layer: it is not timed), writes a 448² and a 336² and a 224² PNG and 30 s of
# 16 kHz audio, then alternates `neurosurg bench encoder` and bench/pytorch_encoders.py ROUNDS
# times (default 3) and prints each encoder's seconds and the median ratio PyTorch / neurosurg
# (> 1: neurosurg is faster). Needs ~11 GB of disk under WORK (default a temp directory).
# ONLY=qwen2vl,audio,clip,eva picks encoders.
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${THREADS:-2}
rounds=${ROUNDS:-3}
only=${ONLY:-qwen2vl,audio,clip,eva}
work=${WORK:-$(mktemp -d)}
[ -n "${WORK:-}" ] || trap 'rm -rf "$work"' EXIT
go build -o "$work/neurosurg" ./cmd/neurosurg
if ! /usr/bin/python3 -c 'import torch, numpy' 2>/dev/null; then
  apt-get update -qq && apt-get install -y -qq python3-torch python3-numpy libopenblas0 >/dev/null
fi
cfg=testdata/configs
declare -A src=([qwen2vl]=$cfg/qwen2-vl-bench [audio]=$cfg/qwen2-audio-bench [clip]=$cfg/llava-bench [eva]=$cfg/instructblip-bench)
declare -A set=([qwen2vl]=num_hidden_layers=1 [audio]=text_config.num_hidden_layers=1 [clip]=text_config.num_hidden_layers=1 [eva]=text_config.num_hidden_layers=1)
declare -A media=([qwen2vl]="--image $work/img448.png" [audio]="--audio $work/clip30.wav" [clip]="--image $work/img336.png" [eva]="--image $work/img224.png")
/usr/bin/python3 bench/media_fixtures.py "$work"
for e in ${only//,/ }; do
  [ -d "$work/$e" ] || "$work/neurosurg" synth "${src[$e]}" --dtype bf16 --set "${set[$e]}" --out "$work/$e" >/dev/null
done
blas=$(ls /usr/lib/x86_64-linux-gnu/libopenblas.so.0 2>/dev/null || true)
for r in $(seq "$rounds"); do
  for e in ${only//,/ }; do
    GOMAXPROCS=$threads "$work/neurosurg" bench encoder --checkpoint "$work/$e" ${media[$e]} --min-seconds 1 --json > "$work/ns-$e-$r.json"
  done
  (cd bench && LD_PRELOAD="$blas" /usr/bin/python3 pytorch_encoders.py --threads "$threads" --only "$only" --min-seconds 1 > "$work/pt-$r.json")
done
/usr/bin/python3 - "$work" "$rounds" "$only" <<'PY'
import json, statistics, sys, os
work, rounds, only = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(",")
names = {"qwen2vl": "qwen2vl-2b vision 448x448", "audio": "qwen2-audio encoder 30 s", "clip": "clip vit-l/14-336", "eva": "eva vit-g/14-224"}
print("| encoder (BF16, %s threads) | neurosurg s | PyTorch s | PyTorch / neurosurg (median of %d) |" % (os.environ.get("THREADS", "2"), rounds))
print("| --- | --- | --- | --- |")
for e in only:
    ns, pt, ratio = [], [], []
    for r in range(1, rounds + 1):
        a = json.load(open(f"{work}/ns-{e}-{r}.json"))["results"][0]["seconds"]
        b = [x for x in json.load(open(f"{work}/pt-{r}.json"))["encoders"] if x["name"] == names[e]][0]["seconds"]
        ns.append(a); pt.append(b); ratio.append(b / a)
    print(f"| {names[e]} | {statistics.median(ns):.2f} | {statistics.median(pt):.2f} | {statistics.median(ratio):.2f}× |")
PY
