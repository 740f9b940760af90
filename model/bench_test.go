package model_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/neurosurg/neurosurg/formats/safetensors"
	"github.com/neurosurg/neurosurg/model"
	"github.com/neurosurg/neurosurg/model/synth"
)

// BenchmarkForward: prefill and decode tokens/s on Qwen2-0.5B's layer shapes (hidden 896,
// FFN 4864, 14 heads, 2 KV heads) with 4 layers and a 32k vocabulary, BF16. The full model is
// `neurosurg bench forward`.
func BenchmarkForward(b *testing.B) {
	dir := filepath.Join(b.TempDir(), "q")
	if err := synth.Generate("../testdata/configs/Qwen2-0.5B", dir, synth.Options{DType: safetensors.BF16, Seed: 1,
		Set: map[string]any{"num_hidden_layers": 4, "vocab_size": 32768}}); err != nil {
		b.Fatal(err)
	}
	m, err := model.Open(dir)
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	seq := func(n int) []int32 {
		s := make([]int32, n)
		for i := range s {
			s[i] = int32(i * 7919 % 32768)
		}
		return s
	}
	b.Run("prefill/1x512", func(b *testing.B) {
		for b.Loop() {
			if _, err := m.Forward(context.Background(), [][]int32{seq(512)}, model.ForwardOptions{}); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(512*float64(b.N)/b.Elapsed().Seconds(), "tokens/s")
	})
	b.Run("decode/64after128", func(b *testing.B) {
		for b.Loop() {
			if _, err := m.Generate(context.Background(), [][]int32{seq(128)}, model.GenerateOptions{MaxTokens: 64}); err != nil {
				b.Fatal(err)
			}
		}
		// Includes the 128-token prefill; `neurosurg bench forward` subtracts it.
		b.ReportMetric(64*float64(b.N)/b.Elapsed().Seconds(), "tokens/s")
	})
}
