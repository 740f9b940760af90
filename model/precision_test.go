package model_test

import (
	"context"
	"math"
	"testing"

	"github.com/neurosurg/neurosurg/model"
	"github.com/neurosurg/neurosurg/model/kernels"
)

// The default kernel variant against the pure-Go f32 path on a BF16 Qwen2-shaped model: where
// the default rounds activations to bf16 (AVX512_BF16 CPUs) the logits move, but by a small
// fraction of their spread, and the greedy choice stays put at nearly every position.
func TestDefaultVariantPrecisionOnBF16(t *testing.T) {
	m := shrunkQwen2(t, 11, map[string]any{"num_hidden_layers": 4, "hidden_size": 256, "intermediate_size": 768,
		"num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 2048})
	prompt := make([]int32, 96)
	for i := range prompt {
		prompt[i] = int32((i*131 + 7) % 2048)
	}
	run := func() [][]float32 {
		r, err := m.Forward(context.Background(), [][]int32{prompt}, model.ForwardOptions{AllLogits: true})
		if err != nil {
			t.Fatal(err)
		}
		return r.Logits
	}
	def := kernels.Active()
	fast := run()
	prev := kernels.Use("generic")
	exact := run()
	kernels.Use(prev)
	V := 2048
	var maxDiff, sum, sumSq float64
	same := 0
	for p := 0; p < len(prompt); p++ {
		f, e := fast[0][p*V:(p+1)*V], exact[0][p*V:(p+1)*V]
		if model.Argmax(f) == model.Argmax(e) {
			same++
		}
		for j := range e {
			maxDiff = max(maxDiff, math.Abs(float64(f[j]-e[j])))
			sum += float64(e[j])
			sumSq += float64(e[j]) * float64(e[j])
		}
	}
	n := float64(len(prompt) * V)
	spread := math.Sqrt(sumSq/n - (sum/n)*(sum/n))
	t.Logf("%s vs generic: max |Δlogit| %.4g (logit std %.3g), same argmax at %d/%d positions", def, maxDiff, spread, same, len(prompt))
	if maxDiff > 0.05*spread || same < len(prompt)*9/10 {
		t.Errorf("%s drifts from the f32 path: max |Δlogit| %.4g vs std %.3g, argmax kept at %d/%d", def, maxDiff, spread, same, len(prompt))
	}
}
