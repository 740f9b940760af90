package model_test

import (
	"context"
	"math"
	"path/filepath"
	"testing"

	"github.com/neurosurg/neurosurg/formats/hfdir"
	"github.com/neurosurg/neurosurg/formats/safetensors"
	"github.com/neurosurg/neurosurg/model"
	"github.com/neurosurg/neurosurg/model/synth"
)

// Integrated gradients on the real stories260K: the spago graph reproduces the runtime's logit
// (an independent float32 forward), and the attributions satisfy IG's completeness axiom
// (Σ_j IG_j = f(a) − f(0) up to the Riemann error).
func TestIntegratedGradients(t *testing.T) {
	m := openModel(t, stories)
	ids, _ := m.Tokenizer.Encode("Once upon a time, there was a little girl named", true)
	lily, _ := m.Tokenizer.WordIDs("Lily")
	res, err := m.Forward(context.Background(), [][]int32{ids}, model.ForwardOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := float64(res.Logits[0][lily[0]])
	for _, layer := range []int{1, 3, 4} {
		ig, full, zero, err := m.IntegratedGradients(context.Background(), ids, model.Site{Module: "llm", Layer: layer}, lily[0], 64)
		if err != nil {
			t.Fatal(err)
		}
		if math.Abs(full-want) > 1e-3 {
			t.Errorf("layer %d: graph logit %.5f, runtime %.5f", layer, full, want)
		}
		var sum float64
		for _, v := range ig {
			sum += v
		}
		if diff := full - zero; math.Abs(sum-diff) > 0.05*math.Abs(diff)+1e-3 {
			t.Errorf("layer %d: Σ IG = %.4f, f(a) − f(0) = %.4f", layer, sum, diff)
		}
		t.Logf("layer %d: logit %.4f, f(0) %.4f, Σ IG %.4f", layer, full, zero, sum)
	}
}

// The IG graph is built by the layer types themselves, so on a Qwen2-shaped model (q/k/v
// biases, GQA, tied head) under every activation the runtime supports, and with a sliding
// window, its logit is Model.Forward's and its attributions are complete.
func TestIntegratedGradientsSyntheticQwen2(t *testing.T) {
	for _, c := range []struct {
		name string
		set  map[string]any
	}{
		{"silu", nil},
		{"gelu", map[string]any{"hidden_act": "gelu"}},
		{"gelu_tanh", map[string]any{"hidden_act": "gelu_pytorch_tanh"}},
		{"quick_gelu", map[string]any{"hidden_act": "quick_gelu"}},
		{"relu", map[string]any{"hidden_act": "relu"}},
		{"sliding window", map[string]any{"use_sliding_window": true, "sliding_window": 3}},
	} {
		t.Run(c.name, func(t *testing.T) {
			set := map[string]any{"num_hidden_layers": 3, "hidden_size": 48, "intermediate_size": 80,
				"num_attention_heads": 6, "num_key_value_heads": 2, "vocab_size": 200}
			for k, v := range c.set {
				set[k] = v
			}
			dir := filepath.Join(t.TempDir(), "q")
			if err := synth.Generate("../testdata/configs/Qwen2-0.5B", dir, synth.Options{DType: safetensors.F32, Seed: 5, Std: 0.3, Set: set}); err != nil {
				t.Fatal(err)
			}
			ck, err := hfdir.Open(dir)
			if err != nil {
				t.Fatal(err)
			}
			defer ck.Close()
			m, err := model.Load(ck.ConfigJSON, ck)
			if err != nil {
				t.Fatal(err)
			}
			if cfg := m.Config(); !cfg.AttnBias || !cfg.Tied || cfg.KVHeads != 2 || (c.set["sliding_window"] != nil) != (cfg.SlidingWindow == 3) {
				t.Fatalf("config %+v: want biased, tied, GQA, the case's window", cfg)
			}
			ids := []int32{3, 17, 99, 4, 150, 42, 7}
			const target = 61
			res, err := m.Forward(context.Background(), [][]int32{ids}, model.ForwardOptions{})
			if err != nil {
				t.Fatal(err)
			}
			want := float64(res.Logits[0][target])
			for layer := 0; layer < 3; layer++ {
				ig, full, zero, err := m.IntegratedGradients(context.Background(), ids, model.Site{Module: "llm", Layer: layer}, target, 64)
				if err != nil {
					t.Fatal(err)
				}
				if math.Abs(full-want) > 1e-4*math.Max(1, math.Abs(want)) {
					t.Errorf("layer %d: graph logit %.6f, runtime %.6f", layer, full, want)
				}
				var sum float64
				for _, v := range ig {
					sum += v
				}
				if diff := full - zero; math.Abs(sum-diff) > 0.05*math.Abs(diff)+1e-3 {
					t.Errorf("layer %d: Σ IG = %.4f, f(a) − f(0) = %.4f", layer, sum, diff)
				}
				t.Logf("layer %d: logit %.4f (runtime %.4f), f(0) %.4f, Σ IG %.4f", layer, full, want, zero, sum)
			}
		})
	}
}
