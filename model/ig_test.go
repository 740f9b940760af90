package model_test

import (
	"context"
	"math"
	"testing"

	"github.com/neurosurg/neurosurg/model"
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
