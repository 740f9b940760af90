"""Prints neurosurg / PyTorch ratios from the JSON of one or more rounds (bench/compare.sh):
arguments are (gemm, forward, pytorch) triples; with several rounds each cell is the median."""
import json, statistics, sys

files = sys.argv[1:]
rounds = [tuple(json.load(open(p)) for p in files[i:i + 3]) for i in range(0, len(files), 3)]
norm = lambda s: s.replace("×", "x")
med = statistics.median

def gemm_rows(ns_gemm, pt):
    torch = {(g["shape"], g["dtype"].replace("bfloat16", "bf16").replace("float32", "f32")): g for g in pt["gemm"]}
    best = {}
    for r in ns_gemm["results"]:
        if r["variant"] == "generic":
            continue
        key = (norm(r["shape"]), r["dtype"])
        if key not in best or r["gflops"] > best[key]["gflops"]:
            best[key] = r
    rows = {}
    for key, r in best.items():
        t = torch.get(key)
        m1 = key[0].startswith("1x")
        ours = r["weight_gb_per_s"] if m1 else r["gflops"]
        theirs = (t["weight_gb_per_s"] if m1 else t["gflops"]) if t else float("nan")
        # GEMV: the share of the read bandwidth measured beside it (paired rounds; the bandwidth
        # of a shared VM drifts), or of the start's triad from an older neurosurg.
        ceiling = r.get("of_read_bandwidth") or r["of_peak"] if m1 else r["of_peak"]
        rows[key] = (r["shape"], "GB/s" if m1 else "GFLOP/s", ours, theirs, r["variant"], ceiling)
    return rows

def fwd_rows(ns_fwd, pt):
    torch = {norm(f["name"]): f["tokens_per_s"] for f in pt["forward"]}
    return {r["name"]: (r["tokens_per_s"], torch.get(norm(r["name"]), float("nan")), r["peak_rss_mib"]) for r in ns_fwd["results"]}

c = rounds[0][0]["ceilings"]
print(f"{len(rounds)} round(s); first round's ceilings: FMA {c['fma_peak_gflops']:.0f} GFLOP/s f32, VDPBF16PS "
      f"{c['bf16_dot_peak_gflops']:.0f} GFLOP/s, triad {c['triad_gb_per_s']:.1f} GB/s, read {c['read_gb_per_s']:.1f} GB/s; "
      f"torch {rounds[0][2]['torch']}, {rounds[0][2]['threads']} threads")
print("\nof ceiling: GEMM over the FMA (f32) or VDPBF16PS (bf16 variant) peak; GEMV (m = 1) over the read bandwidth measured beside it")
print("\n| shape m×k×n | dtype | neurosurg | PyTorch | ratio | of ceiling |\n|---|---|---|---|---|---|")
per = [gemm_rows(g, p) for g, _, p in rounds]
for key in per[0]:
    shape, unit, _, _, variant, _ = per[0][key]
    ours, theirs = med(r[key][2] for r in per), med(r[key][3] for r in per)
    ratio, peak = med(r[key][2] / r[key][3] for r in per), med(r[key][5] for r in per)
    print(f"| {shape} | {key[1]} | {ours:.1f} {unit} ({variant}) | {theirs:.1f} | {ratio:.2f}× | {100 * peak:.0f}% |")
print("\n| Qwen2-0.5B shapes, bf16 | neurosurg tok/s | PyTorch tok/s | ratio | neurosurg peak RSS |\n|---|---|---|---|---|")
per = [fwd_rows(f, p) for _, f, p in rounds]
for name in per[0]:
    ours, theirs = med(r[name][0] for r in per), med(r[name][1] for r in per)
    ratio = med(r[name][0] / r[name][1] for r in per)
    each = ", ".join(f"{r[name][0] / r[name][1]:.2f}" for r in per)
    print(f"| {name} | {ours:.1f} | {theirs:.1f} | {ratio:.2f}× ({each}) | {max(r[name][2] for r in per):.0f} MiB |")
print(f"\ncheckpoint {rounds[0][1]['checkpoint_bytes'] / 2**20:.0f} MiB")
