"""PyTorch side of neurosurg's encoder benchmarks: the vision and audio towers of the target
families at the shapes of their real configs, random weights, bfloat16 (or float32), at a fixed
thread count, hand-written from transformers' modeling code (transformers is not installed here;
torch 1.13 has no scaled_dot_product_attention, so attention is matmul + softmax as transformers'
"eager" path does it). Prints JSON: per encoder the input rows and seconds per forward.

  qwen2vl  : Qwen2-VL vision tower + PatchMerger on a 448x448 image (1024 patches), 2-D rotary
  audio    : Qwen2-Audio (Whisper) encoder on 30 s (3000 mel frames -> 1500), avg pool, norm
  clip     : CLIP ViT-L/14-336 (577 positions, every layer, as CLIPVisionModel runs them)
  eva      : InstructBLIP's EVA ViT-g (257 positions, 39 layers)
"""
import argparse, json, math, time
import torch

F = torch.nn.functional
p = argparse.ArgumentParser()
p.add_argument("--threads", type=int, default=2)
p.add_argument("--dtype", default="bf16", choices=["bf16", "f32"])
p.add_argument("--only", default="qwen2vl,audio,clip,eva")
p.add_argument("--configs", default="../testdata/configs/encoders")
p.add_argument("--min-seconds", type=float, default=2.0)
a = p.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(0)
dt = torch.bfloat16 if a.dtype == "bf16" else torch.float32


def r(*s):
    return (torch.randn(*s) * 0.02).to(dt)


def timeit(f, min_s):
    f()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < min_s or n < 2:
        f()
        n += 1
    return (time.perf_counter() - t0) / n


def ln(x, w, b, eps):
    return F.layer_norm(x.float(), (x.shape[-1],), w.float(), b.float(), eps).to(dt)


def block_params(d, inter, fused_qkv):
    p = dict(n1w=torch.ones(d, dtype=dt), n1b=r(d), n2w=torch.ones(d, dtype=dt), n2b=r(d),
             o=r(d, d), ob=r(d), f1=r(inter, d), f1b=r(inter), f2=r(d, inter), f2b=r(d))
    if fused_qkv:
        p.update(qkv=r(3 * d, d), qkvb=r(3 * d))
    else:
        p.update(q=r(d, d), qb=r(d), k=r(d, d), v=r(d, d), vb=r(d))
    return p


def attention(q, k, v, heads):
    T, d = q.shape
    hd = d // heads
    q, k, v = (t.view(T, heads, hd).transpose(0, 1) for t in (q, k, v))
    s = (q @ k.transpose(-1, -2)) / math.sqrt(hd)
    att = s.float().softmax(-1).to(dt) @ v
    return att.transpose(0, 1).reshape(T, d)


def pre_ln_block(x, p, heads, act, eps, rot=None):
    h = ln(x, p["n1w"], p["n1b"], eps)
    if "qkv" in p:
        q, k, v = F.linear(h, p["qkv"], p["qkvb"]).chunk(3, -1)
    else:
        q, k, v = F.linear(h, p["q"], p["qb"]), F.linear(h, p["k"]), F.linear(h, p["v"], p["vb"])
    if rot is not None:
        q, k = rot(q, heads), rot(k, heads)
    x = x + F.linear(attention(q, k, v, heads), p["o"], p["ob"])
    h = ln(x, p["n2w"], p["n2b"], eps)
    return x + F.linear(act(F.linear(h, p["f1"], p["f1b"])), p["f2"], p["f2b"])


def quick_gelu(x):
    return x * torch.sigmoid(1.702 * x)


def cfg(name):
    return json.load(open(f"{a.configs}/{name}.json"))


out = {"torch": torch.__version__, "threads": a.threads, "dtype": a.dtype, "encoders": []}
only = a.only.split(",")

with torch.inference_mode():
    if "qwen2vl" in only:
        c = cfg("qwen2vl")  # vision_config of Qwen2-VL-2B-Instruct
        d, L, H, m = c["embed_dim"], c["depth"], c["num_heads"], c["spatial_merge_size"]
        ps, tp, hid = c["patch_size"], c["temporal_patch_size"], c["hidden_size"]
        gh = gw = 448 // ps
        n = gh * gw
        pe = r(d, 3 * tp * ps * ps)
        blocks = [block_params(d, d * c["mlp_ratio"], True) for _ in range(L)]
        mq = dict(w=torch.ones(d, dtype=dt), b=r(d), m0=r(d * m * m, d * m * m), m0b=r(d * m * m), m2=r(hid, d * m * m), m2b=r(hid))
        hd = d // H
        inv = 1.0 / (10000 ** (torch.arange(0, hd // 2, 2).float() / (hd // 2)))
        hpos = torch.arange(gh)[:, None].expand(gh, gw).reshape(gh // m, m, gw // m, m).permute(0, 2, 1, 3).flatten()
        wpos = torch.arange(gw)[None, :].expand(gh, gw).reshape(gh // m, m, gw // m, m).permute(0, 2, 1, 3).flatten()
        f = torch.cat([hpos[:, None] * inv[None], wpos[:, None] * inv[None]], -1)
        cos, sin = torch.cat([f.cos(), f.cos()], -1), torch.cat([f.sin(), f.sin()], -1)

        def rot(x, heads):
            T = x.shape[0]
            x = x.view(T, heads, hd).float()
            x1, x2 = x[..., : hd // 2], x[..., hd // 2:]
            y = x * cos[:, None] + torch.cat([-x2, x1], -1) * sin[:, None]
            return y.to(dt).reshape(T, heads * hd)

        pix = torch.randn(n, 3 * tp * ps * ps).to(dt)

        def qwen2vl():
            x = F.linear(pix, pe)
            for p in blocks:
                x = pre_ln_block(x, p, H, quick_gelu, 1e-6, rot)
            x = ln(x, mq["w"], mq["b"], 1e-6).view(-1, d * m * m)
            return F.linear(F.gelu(F.linear(x, mq["m0"], mq["m0b"])), mq["m2"], mq["m2b"])

        out["encoders"].append({"name": "qwen2vl-2b vision 448x448", "rows": n, "seconds": timeit(qwen2vl, a.min_seconds)})

    if "audio" in only:
        c = cfg("qwen2audio")  # audio_config of Qwen2-Audio-7B-Instruct
        d, L, H, I, mel = c["d_model"], c["encoder_layers"], c["encoder_attention_heads"], c["encoder_ffn_dim"], c["num_mel_bins"]
        c1, c1b, c2, c2b = r(d, mel, 3), r(d), r(d, d, 3), r(d)
        pos = r(c["max_source_positions"], d)
        blocks = [block_params(d, I, False) for _ in range(L)]
        lnw, lnb = torch.ones(d, dtype=dt), r(d)
        feats = torch.randn(1, mel, 3000).to(dt)

        def audio():
            x = F.gelu(F.conv1d(feats, c1, c1b, padding=1))
            x = F.gelu(F.conv1d(x, c2, c2b, stride=2, padding=1))
            x = x[0].transpose(0, 1) + pos
            for p in blocks:
                x = pre_ln_block(x, p, H, F.gelu, 1e-5)
            x = F.avg_pool1d(x.transpose(0, 1)[None], 2, 2)[0].transpose(0, 1)
            return ln(x, lnw, lnb, 1e-5)

        out["encoders"].append({"name": "qwen2-audio encoder 30 s", "rows": 1500, "seconds": timeit(audio, a.min_seconds)})

    for key, name, act, eps in (("clip", "clip vit-l/14-336", quick_gelu, 1e-5), ("eva", "eva vit-g/14-224", F.gelu, 1e-6)):
        if key not in only:
            continue
        c = cfg(key)
        d, L, H, I, ps, size = c["hidden_size"], c["num_hidden_layers"], c["num_attention_heads"], c["intermediate_size"], c["patch_size"], c["image_size"]
        g = size // ps
        n = g * g + 1
        pw, cls, pos = r(d, 3 * ps * ps), r(d), r(n, d)
        pre = (torch.ones(d, dtype=dt), r(d)) if key == "clip" else None
        blocks = [block_params(d, I, key == "eva") for _ in range(L)]
        pix = torch.randn(g * g, 3 * ps * ps).to(dt)

        def vit():
            x = torch.cat([cls[None], F.linear(pix, pw)], 0) + pos
            if pre is not None:
                x = ln(x, pre[0], pre[1], eps)
            for p in blocks:
                x = pre_ln_block(x, p, H, act, eps)
            return x

        out["encoders"].append({"name": name, "rows": n, "seconds": timeit(vit, a.min_seconds)})

print(json.dumps(out, indent=1))
