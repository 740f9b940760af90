"""PyTorch side of neurosurg's benchmarks: GEMM GFLOP/s at the shapes `neurosurg bench gemm`
uses, and prefill/decode tokens/s of a random-weight model with Qwen2-0.5B's exact shapes in
bfloat16 (a hand-written Qwen2 block: RMSNorm, RoPE, GQA attention with q/k/v bias, SwiGLU, tied
head), at a fixed thread count. Prints JSON."""
import argparse, json, time, math
import torch

p = argparse.ArgumentParser()
p.add_argument("--threads", type=int, default=2)
p.add_argument("--config", required=True)
p.add_argument("--skip-forward", action="store_true")
a = p.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(0)
out = {"torch": torch.__version__, "threads": a.threads, "gemm": [], "forward": []}

def timeit(f, min_s=0.5):
    f()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < min_s or n < 2:
        f(); n += 1
    return (time.perf_counter() - t0) / n

for m, k, n in [(512, 896, 4864), (512, 4864, 896), (1, 896, 4864), (1, 896, 151936), (1, 3584, 18944)]:
    for dt in (torch.float32, torch.bfloat16):
        x = torch.randn(m, k, dtype=dt)
        w = torch.randn(n, k, dtype=dt)
        s = timeit(lambda: torch.nn.functional.linear(x, w))
        out["gemm"].append({"shape": f"{m}x{k}x{n}", "dtype": str(dt).split(".")[1], "gflops": 2*m*n*k/s/1e9, "weight_gb_per_s": w.numel()*w.element_size()/s/1e9})

if not a.skip_forward:
    c = json.load(open(a.config))
    d, L, H, KV, I, V = c["hidden_size"], c["num_hidden_layers"], c["num_attention_heads"], c["num_key_value_heads"], c["intermediate_size"], c["vocab_size"]
    hd, theta, eps = d // H, c.get("rope_theta", 10000.0), c.get("rms_norm_eps", 1e-6)
    bf = torch.bfloat16
    def r(*s): return (torch.randn(*s) * 0.02).to(bf)
    layers = [dict(q=r(H*hd, d), qb=r(H*hd), k=r(KV*hd, d), kb=r(KV*hd), v=r(KV*hd, d), vb=r(KV*hd), o=r(d, H*hd),
                   g=r(I, d), u=r(I, d), dn=r(d, I), n1=torch.ones(d, dtype=bf), n2=torch.ones(d, dtype=bf)) for _ in range(L)]
    emb, nf = r(V, d), torch.ones(d, dtype=bf)
    inv = 1.0 / (theta ** (torch.arange(0, hd, 2).float() / hd))
    def rms(x, w): return (x.float() * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + eps)).to(bf) * w
    def rope(x, pos):
        f = pos[:, None].float() * inv[None]
        cos, sin = torch.cat([f.cos(), f.cos()], -1).to(bf), torch.cat([f.sin(), f.sin()], -1).to(bf)
        x1, x2 = x[..., :hd//2], x[..., hd//2:]
        return x * cos + torch.cat([-x2, x1], -1) * sin
    F = torch.nn.functional
    @torch.inference_mode()
    def forward(ids, cache, pos0):
        B, T = ids.shape
        x = emb[ids]
        pos = torch.arange(pos0, pos0 + T)
        for i, ly in enumerate(layers):
            h = rms(x, ly["n1"])
            q = F.linear(h, ly["q"], ly["qb"]).view(B, T, H, hd).transpose(1, 2)
            k = F.linear(h, ly["k"], ly["kb"]).view(B, T, KV, hd).transpose(1, 2)
            v = F.linear(h, ly["v"], ly["vb"]).view(B, T, KV, hd).transpose(1, 2)
            q, k = rope(q, pos), rope(k, pos)
            if cache is not None:
                if i in cache:
                    k = torch.cat([cache[i][0], k], 2); v = torch.cat([cache[i][1], v], 2)
                cache[i] = (k, v)
            k = k.repeat_interleave(H // KV, 1); v = v.repeat_interleave(H // KV, 1)
            sc = (q @ k.transpose(-1, -2)) / math.sqrt(hd)
            if T > 1:
                sc = sc + torch.full((T, k.shape[2]), float("-inf")).triu(k.shape[2] - T + 1).to(sc.dtype)
            att = sc.float().softmax(-1).to(bf) @ v
            x = x + F.linear(att.transpose(1, 2).reshape(B, T, H * hd), ly["o"])
            h = rms(x, ly["n2"])
            x = x + F.linear(F.silu(F.linear(h, ly["g"])) * F.linear(h, ly["u"]), ly["dn"])
        return F.linear(rms(x[:, -1], nf), emb)
    for name, B, T in [("prefill 1x512", 1, 512), ("prefill 8x128", 8, 128)]:
        ids = torch.randint(0, V, (B, T))
        s = timeit(lambda: forward(ids, None, 0), 1.0)
        out["forward"].append({"name": name, "tokens_per_s": B*T/s})
    ids = torch.randint(0, V, (1, 128))
    def decode():
        cache = {}
        lg = forward(ids, cache, 0)
        t0 = time.perf_counter()
        for step in range(64):
            nxt = lg.argmax(-1, keepdim=True)
            lg = forward(nxt, cache, 128 + step)
        return time.perf_counter() - t0
    decode()
    out["forward"].append({"name": "decode 64 after 128", "tokens_per_s": 64 / min(decode(), decode())})
print(json.dumps(out, indent=1))
