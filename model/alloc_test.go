package model_test

import (
	"context"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/neurosurg/neurosurg/formats/hfdir"
	"github.com/neurosurg/neurosurg/formats/safetensors"
	"github.com/neurosurg/neurosurg/model"
	"github.com/neurosurg/neurosurg/model/synth"
)

// Decode reuses its activation, attention and logits buffers: the heap bytes a generated
// token costs must stay far below what one step's buffers weigh (46 KiB here). What remains
// is small and model-size independent: the closures the parallel loops are handed (the loops'
// goroutines and bookkeeping come from a pool).
func TestDecodeAllocatesLittlePerToken(t *testing.T) {
	m := shrunkQwen2(t, 3, map[string]any{"num_hidden_layers": 2, "hidden_size": 256, "intermediate_size": 1024,
		"num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 8192})
	prompt := [][]int32{{1, 2, 3, 4, 5, 6, 7, 8}}
	bytesFor := func(tokens int) (uint64, uint64) {
		var a, b runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&a)
		if _, err := m.Generate(context.Background(), prompt, model.GenerateOptions{MaxTokens: tokens}); err != nil {
			t.Fatal(err)
		}
		runtime.ReadMemStats(&b)
		return b.TotalAlloc - a.TotalAlloc, b.Mallocs - a.Mallocs
	}
	bytesFor(40) // warm the pools
	short, shortN := bytesFor(8)
	long, longN := bytesFor(40)
	perToken := float64(long-short) / 32
	stepBuffers := float64(4 * (256*6 + 1024*2 + 8192))
	t.Logf("%.0f B in %.0f allocations per token (one step's buffers: %.0f B)", perToken, float64(longN-shortN)/32, stepBuffers)
	if perToken > stepBuffers/4 {
		t.Errorf("decode allocates %.0f B per token; its buffers weigh %.0f B and should be reused", perToken, stepBuffers)
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
