"""PyTorch side of BenchmarkBidirectional: an encoder's attention over one span (no mask) at the
vision towers' and Whisper's shapes, in bfloat16 and float32, at a fixed thread count. Uses
torch.nn.functional.scaled_dot_product_attention where this torch has it (2.0+), otherwise
softmax(q·kᵀ/√d)·v written out (Debian bookworm ships 1.13). Prints JSON: rows/s per shape and
dtype, the metric `go test -bench Bidirectional` reports."""
import argparse, json, math, time
import torch

p = argparse.ArgumentParser()
p.add_argument("--threads", type=int, default=2)
a = p.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(0)
F = torch.nn.functional
sdpa = getattr(F, "scaled_dot_product_attention", None)


def attend(q, k, v):
    if sdpa is not None:
        return sdpa(q, k, v)
    s = torch.matmul(q, k.transpose(-1, -2)) * (1 / math.sqrt(q.shape[-1]))
    return torch.matmul(torch.softmax(s, dim=-1), v)


def timeit(f, min_s=1.0):
    f()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < min_s or n < 2:
        f()
        n += 1
    return (time.perf_counter() - t0) / n


out = {"torch": torch.__version__, "threads": a.threads, "sdpa": sdpa is not None, "attention": []}
with torch.inference_mode():
    for rows, width, heads in [(1024, 1280, 16), (1500, 1280, 20)]:
        hd = width // heads
        for dt in (torch.float32, torch.bfloat16):
            q = (torch.randn(1, heads, rows, hd) * 0.3).to(dt)
            k, v = torch.randn(1, heads, rows, hd).to(dt), torch.randn(1, heads, rows, hd).to(dt)
            s = timeit(lambda: attend(q, k, v))
            out["attention"].append({"shape": f"{rows}x{width}h{heads}", "dtype": str(dt).split(".")[1], "rows_per_s": rows / s})
print(json.dumps(out))
