package model_test

import (
	"context"
	"math"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/neurosurg/neurosurg/formats/hfdir"
	"github.com/neurosurg/neurosurg/formats/safetensors"
	"github.com/neurosurg/neurosurg/model"
	"github.com/neurosurg/neurosurg/model/kernels"
	"github.com/neurosurg/neurosurg/model/synth"
)

// Decode reuses its activation, attention and logits buffers, and its parallel loops run on
// pooled argument structs: past warm-up, a generated token costs no heap allocation. What a
// longer generation does allocate is its KV cache (sized up front: layers × 2 × kv width × 4 B
// per token) and the growth of its output slices (a few appends in all, not one per token).
func TestDecodeAllocatesNothingPerToken(t *testing.T) {
	if raceBuild {
		t.Skip("-race: the detector's instrumentation allocates per call")
	}
	m := shrunkQwen2(t, 3, map[string]any{"num_hidden_layers": 2, "hidden_size": 256, "intermediate_size": 1024,
		"num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 8192})
	prompt := [][]int32{{1, 2, 3, 4, 5, 6, 7, 8}}
	cost := func(tokens int) (bytes, allocs float64) {
		var a, b runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&a)
		if _, err := m.Generate(context.Background(), prompt, model.GenerateOptions{MaxTokens: tokens}); err != nil {
			t.Fatal(err)
		}
		runtime.ReadMemStats(&b)
		return float64(b.TotalAlloc - a.TotalAlloc), float64(b.Mallocs - a.Mallocs)
	}
	cost(40) // warm the pools
	// The runtime allocates now and then on its own (a few KiB in ~10 objects, seen in one run
	// of three): the best of three trials is the generation's own cost.
	moreN, moreB := math.Inf(1), math.Inf(1)
	for range 3 {
		shortB, shortN := cost(8)
		longB, longN := cost(40)
		moreN, moreB = min(moreN, longN-shortN), min(moreB, longB-shortB)
	}
	kvPerToken := float64(2 * 2 * (2 * 64) * 4)
	t.Logf("32 more tokens: %.0f more allocations, %.0f B more per token (KV cache %.0f B per token)", moreN, moreB/32, kvPerToken)
	if moreN > 8 {
		t.Errorf("32 more decoded tokens cost %.0f more allocations; the output slices' growth accounts for ≤ 8", moreN)
	}
	if perToken := moreB / 32; perToken > kvPerToken+64 {
		t.Errorf("decode allocates %.0f B per token, beyond its KV cache's %.0f B", perToken, kvPerToken)
	}
}

// shrunkQwen2 loads a synthetic BF16 checkpoint with Qwen2-0.5B's config but the sizes in set.
func shrunkQwen2(t *testing.T, seed uint64, set map[string]any) *model.Model {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "q")
	if err := synth.Generate("../testdata/configs/Qwen2-0.5B", dir, synth.Options{DType: safetensors.BF16, Seed: seed, Set: set}); err != nil {
		t.Fatal(err)
	}
	c, err := hfdir.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	m, err := model.Load(c.ConfigJSON, c)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// A forward reuses the previous one's buffers: what it returned must not change when the next
// forward (or a generation) runs, and the same input must give the same logits again.
func TestForwardResultsSurviveTheNextForward(t *testing.T) {
	m := shrunkQwen2(t, 5, map[string]any{"num_hidden_layers": 2, "hidden_size": 128, "intermediate_size": 256,
		"num_attention_heads": 2, "num_key_value_heads": 1, "vocab_size": 512})
	ctx := context.Background()
	a, err := m.Forward(ctx, [][]int32{{1, 2, 3}, {4, 5}}, model.ForwardOptions{AllLogits: true})
	if err != nil {
		t.Fatal(err)
	}
	keep := [][]float32{append([]float32(nil), a.Logits[0]...), append([]float32(nil), a.Logits[1]...)}
	rows := append([]int(nil), a.Rows...)
	if _, err := m.Forward(ctx, [][]int32{{9, 8, 7, 6, 5, 4}}, model.ForwardOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Generate(ctx, [][]int32{{3, 3}}, model.GenerateOptions{MaxTokens: 4}); err != nil {
		t.Fatal(err)
	}
	for i := range keep {
		if a.Rows[i] != rows[i] {
			t.Fatalf("Rows[%d] changed from %d to %d", i, rows[i], a.Rows[i])
		}
		for j, v := range keep[i] {
			if a.Logits[i][j] != v {
				t.Fatalf("Logits[%d][%d] changed from %g to %g by later forwards", i, j, v, a.Logits[i][j])
			}
		}
	}
	again, err := m.Forward(ctx, [][]int32{{1, 2, 3}, {4, 5}}, model.ForwardOptions{AllLogits: true})
	if err != nil {
		t.Fatal(err)
	}
	for i := range keep {
		for j, v := range keep[i] {
			if again.Logits[i][j] != v {
				t.Fatalf("the same input gave Logits[%d][%d] = %g, then %g", i, j, v, again.Logits[i][j])
			}
		}
	}
}

// Weights copied into memory at load (the default) and weights left in the file mapping give
// the same logits: bit for bit with our kernels; gonum's (the generic variant) peel unaligned
// heads differently, so there the summation order, and the last bits, may differ.
func TestResidentWeightsMatchMapped(t *testing.T) {
	ids := [][]int32{{1, 403, 407, 261, 378}}
	logits := func(mapped bool) []float32 {
		model.KeepMapped(mapped)
		defer model.KeepMapped(false)
		m := openModel(t, stories)
		defer m.Close()
		r, err := m.Forward(context.Background(), ids, model.ForwardOptions{AllLogits: true})
		if err != nil {
			t.Fatal(err)
		}
		return r.Logits[0]
	}
	a, b := logits(false), logits(true)
	tol := 0.0
	if kernels.Active() == "generic" {
		tol = 1e-5
	}
	for i := range a {
		if d := math.Abs(float64(a[i] - b[i])); d > tol*(1+math.Abs(float64(a[i]))) {
			t.Fatalf("logit %d: %g resident, %g mapped (%s kernels)", i, a[i], b[i], kernels.Active())
		}
	}
}
