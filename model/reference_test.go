package model_test

import (
	"context"
	"fmt"
	"math"
	"path/filepath"
	"testing"

	"github.com/neurosurg/neurosurg/dtype"
	"github.com/neurosurg/neurosurg/formats/hfdir"
	"github.com/neurosurg/neurosurg/formats/safetensors"
	"github.com/neurosurg/neurosurg/model"
	"github.com/neurosurg/neurosurg/model/synth"
)

// refForward is a plain float64 transformer written from the HF modeling code, independent of
// the runtime: full causal attention without cache, biases, GQA, rotate_half RoPE, SwiGLU.
func refForward(t *testing.T, c *hfdir.Checkpoint, cfg model.Config, ids []int32) [][]float64 {
	return refForwardEmbeds(t, c, cfg, "", func(emb []float64) [][]float64 {
		d := cfg.Hidden
		x := make([][]float64, len(ids))
		for t := range x {
			x[t] = append([]float64(nil), emb[int(ids[t])*d:(int(ids[t])+1)*d]...)
		}
		return x
	})
}

// refForwardEmbeds is refForward from input embeddings (inputs(embedding table) gives one row
// per position) for a language model whose tensors are named under prefix.
func refForwardEmbeds(t *testing.T, c *hfdir.Checkpoint, cfg model.Config, prefix string, inputs func(emb []float64) [][]float64) [][]float64 {
	get := func(name string) []float64 {
		name = prefix + name
		info, b, err := c.Tensor(name)
		if err != nil {
			t.Fatal(err)
		}
		v := make([]float32, info.NumElements())
		dtype.ToFloat32(v, b, info.DType)
		out := make([]float64, len(v))
		for i := range v {
			out[i] = float64(v[i])
		}
		return out
	}
	has := func(n string) bool { return c.Has(prefix + n) }
	d, hd, H, KV := cfg.Hidden, cfg.HeadDim, cfg.Heads, cfg.KVHeads
	linear := func(x []float64, w []float64, b []float64, out int) []float64 {
		in := len(x)
		y := make([]float64, out)
		for o := 0; o < out; o++ {
			for i := 0; i < in; i++ {
				y[o] += w[o*in+i] * x[i]
			}
			if b != nil {
				y[o] += b[o]
			}
		}
		return y
	}
	rms := func(x, w []float64) []float64 {
		var s float64
		for _, v := range x {
			s += v * v
		}
		inv := 1 / math.Sqrt(s/float64(len(x))+float64(cfg.Eps))
		y := make([]float64, len(x))
		for i := range x {
			y[i] = x[i] * inv * w[i]
		}
		return y
	}
	ropeV := func(v []float64, heads, pos int) {
		for h := 0; h < heads; h++ {
			for i := 0; i < hd/2; i++ {
				f := float64(pos) / math.Pow(cfg.RopeTheta, float64(2*i)/float64(hd))
				a, b := v[h*hd+i], v[h*hd+i+hd/2]
				v[h*hd+i] = a*math.Cos(f) - b*math.Sin(f)
				v[h*hd+i+hd/2] = b*math.Cos(f) + a*math.Sin(f)
			}
		}
	}
	x := inputs(get("model.embed_tokens.weight"))
	T := len(x)
	for l := 0; l < cfg.Layers; l++ {
		p := fmt.Sprintf("model.layers.%d.", l)
		bias := func(n string) []float64 {
			if has(p + n) {
				return get(p + n)
			}
			return nil
		}
		qs, ks, vs := make([][]float64, T), make([][]float64, T), make([][]float64, T)
		for t := 0; t < T; t++ {
			xn := rms(x[t], get(p+"input_layernorm.weight"))
			qs[t] = linear(xn, get(p+"self_attn.q_proj.weight"), bias("self_attn.q_proj.bias"), H*hd)
			ks[t] = linear(xn, get(p+"self_attn.k_proj.weight"), bias("self_attn.k_proj.bias"), KV*hd)
			vs[t] = linear(xn, get(p+"self_attn.v_proj.weight"), bias("self_attn.v_proj.bias"), KV*hd)
			ropeV(qs[t], H, t)
			ropeV(ks[t], KV, t)
		}
		for t := 0; t < T; t++ {
			att := make([]float64, H*hd)
			for h := 0; h < H; h++ {
				g := h / (H / KV)
				sc := make([]float64, t+1)
				mx := math.Inf(-1)
				for s := 0; s <= t; s++ {
					for i := 0; i < hd; i++ {
						sc[s] += qs[t][h*hd+i] * ks[s][g*hd+i]
					}
					sc[s] /= math.Sqrt(float64(hd))
					mx = math.Max(mx, sc[s])
				}
				var z float64
				for s := range sc {
					sc[s] = math.Exp(sc[s] - mx)
					z += sc[s]
				}
				for s := range sc {
					for i := 0; i < hd; i++ {
						att[h*hd+i] += sc[s] / z * vs[s][g*hd+i]
					}
				}
			}
			o := linear(att, get(p+"self_attn.o_proj.weight"), bias("self_attn.o_proj.bias"), d)
			for i := range o {
				x[t][i] += o[i]
			}
			xn := rms(x[t], get(p+"post_attention_layernorm.weight"))
			gt := linear(xn, get(p+"mlp.gate_proj.weight"), nil, cfg.Intermediate)
			up := linear(xn, get(p+"mlp.up_proj.weight"), nil, cfg.Intermediate)
			for j := range gt {
				gt[j] = gt[j] / (1 + math.Exp(-gt[j])) * up[j]
			}
			dn := linear(gt, get(p+"mlp.down_proj.weight"), nil, d)
			for i := range dn {
				x[t][i] += dn[i]
			}
		}
	}
	head := "lm_head.weight"
	if cfg.Tied {
		head = "model.embed_tokens.weight"
	}
	out := make([][]float64, T)
	for t := range x {
		out[t] = linear(rms(x[t], get("model.norm.weight")), get(head), nil, cfg.Vocab)
	}
	return out
}

func TestQwen2AgainstReference(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "q")
	err := synth.Generate("../testdata/configs/Qwen2-0.5B", dir, synth.Options{DType: safetensors.F32, Seed: 11, Std: 0.3,
		Set: map[string]any{"num_hidden_layers": 2, "hidden_size": 48, "intermediate_size": 80, "num_attention_heads": 6, "num_key_value_heads": 2, "vocab_size": 200}})
	if err != nil {
		t.Fatal(err)
	}
	c, err := hfdir.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	m, err := model.Load(c.ConfigJSON, c)
	if err != nil {
		t.Fatal(err)
	}
	cfg := m.Config()
	if !cfg.Tied || !cfg.AttnBias || cfg.KVHeads != 2 || cfg.RopeTheta != 1e6 {
		t.Fatalf("config %+v: want tied, biased, GQA, theta 1e6", cfg)
	}
	ids := []int32{3, 17, 99, 4, 150, 42, 7}
	res, err := m.Forward(context.Background(), [][]int32{ids}, model.ForwardOptions{AllLogits: true})
	if err != nil {
		t.Fatal(err)
	}
	want := refForward(t, c, cfg, ids)
	worst, scale := 0.0, 0.0
	for p := range want {
		for j, w := range want[p] {
			worst = math.Max(worst, math.Abs(float64(res.Logits[0][p*cfg.Vocab+j])-w))
			scale = math.Max(scale, math.Abs(w))
		}
	}
	t.Logf("max abs diff %.3g (logit scale %.3g)", worst, scale)
	if worst > 1e-4*math.Max(1, scale) {
		t.Errorf("runtime vs float64 reference: %g", worst)
	}
	// The tied head is the embedding: no lm_head tensor exists and logits still come out.
	if c.Has("lm_head.weight") {
		t.Error("synthetic tied checkpoint has lm_head")
	}
}
