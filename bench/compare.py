"""Prints neurosurg / PyTorch ratios from the JSON of one run of each (bench/compare.sh)."""
import json, sys

ns_gemm, ns_fwd, pt = (json.load(open(p)) for p in sys.argv[1:4])
norm = lambda s: s.replace("×", "x")
c = ns_gemm["ceilings"]
print(f"ceilings: FMA {c['fma_peak_gflops']:.0f} GFLOP/s f32, VDPBF16PS {c['bf16_dot_peak_gflops']:.0f} GFLOP/s, "
      f"triad {c['triad_gb_per_s']:.1f} GB/s, read {c['read_gb_per_s']:.1f} GB/s; torch {pt['torch']}, {pt['threads']} threads")
print()
print("| shape m×k×n | dtype | neurosurg (variant) | PyTorch | ratio | of ceiling |")
print("|---|---|---|---|---|---|")
torch = {(g["shape"], g["dtype"].replace("bfloat16", "bf16").replace("float32", "f32")): g for g in pt["gemm"]}
best = {}
for r in ns_gemm["results"]:
    if r["variant"] == "generic":
        continue
    key = (norm(r["shape"]), r["dtype"])
    if key not in best or r["gflops"] > best[key]["gflops"]:
        best[key] = r
for key, r in best.items():
    t = torch.get(key)
    m = int(key[0].split("x")[0])
    unit, ours, theirs = ("GB/s", r["weight_gb_per_s"], t and t["weight_gb_per_s"]) if m == 1 else ("GFLOP/s", r["gflops"], t and t["gflops"])
    ratio = f"{ours / theirs:.2f}×" if theirs else "–"
    print(f"| {r['shape']} | {r['dtype']} | {ours:.1f} {unit} ({r['variant']}) | {theirs or 0:.1f} | {ratio} | {100 * r['of_peak']:.0f}% |")
print()
print("| Qwen2-0.5B shapes, bf16 | neurosurg tok/s | PyTorch tok/s | ratio | neurosurg peak RSS |")
print("|---|---|---|---|---|")
torch = {norm(f["name"]): f for f in pt["forward"]}
for r in ns_fwd["results"]:
    t = torch.get(norm(r["name"]))
    ratio = f"{r['tokens_per_s'] / t['tokens_per_s']:.2f}×" if t else "–"
    print(f"| {r['name']} | {r['tokens_per_s']:.1f} | {t['tokens_per_s'] if t else 0:.1f} | {ratio} | {r['peak_rss_mib']:.0f} MiB |")
print(f"\ncheckpoint {ns_fwd['checkpoint_bytes'] / 2**20:.0f} MiB")
