package locate

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/neurosurg/neurosurg/formats/safetensors"
	"github.com/neurosurg/neurosurg/model"
	"github.com/neurosurg/neurosurg/model/synth"
	"github.com/neurosurg/neurosurg/model/tokenizer"
)

func TestChatPrompt(t *testing.T) {
	tok, err := tokenizer.Load("../testdata/qwen2-tokenizer")
	if err != nil {
		t.Fatal(err)
	}
	ids, err := model.TextPrompt(tok, "Hello world", true, 0)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := tok.ApplyChatTemplate([]tokenizer.Message{{Role: "user", Content: "Hello world"}}, true)
	if got := tok.Decode(ids); got != want || ids[0] != 151644 {
		t.Errorf("chat prompt decodes to %q (first id %d), want %q", got, ids[0], want)
	}
}

// BenchmarkRecord: tokens/s of recording (all accumulators; MINER with attention) beside the
// plain forward pass, on a shrunk Qwen2 (hidden 256, 4 layers, FFN 1024), 8 sequences × 128.
func BenchmarkRecord(b *testing.B) {
	dir := filepath.Join(b.TempDir(), "q")
	if err := synth.Generate("../testdata/configs/Qwen2-0.5B", dir, synth.Options{DType: safetensors.BF16, Seed: 1,
		Set: map[string]any{"num_hidden_layers": 4, "hidden_size": 256, "intermediate_size": 1024, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 4096}}); err != nil {
		b.Fatal(err)
	}
	m, err := model.Open(dir)
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	var batch [][]int32
	for s := 0; s < 8; s++ {
		seq := make([]int32, 128)
		for i := range seq {
			seq[i] = int32((i*31 + s*7) % 4096)
		}
		batch = append(batch, seq)
	}
	tokens := float64(8 * 128)
	run := func(b *testing.B, taps func() []model.Tap) {
		for b.Loop() {
			for _, seq := range batch {
				if _, err := m.Forward(context.Background(), [][]int32{seq}, model.ForwardOptions{Taps: taps()}); err != nil {
					b.Fatal(err)
				}
			}
		}
		b.ReportMetric(tokens*float64(b.N)/b.Elapsed().Seconds(), "tokens/s")
	}
	b.Run("forward", func(b *testing.B) { run(b, func() []model.Tap { return nil }) })
	for _, c := range []struct {
		name  string
		miner bool
	}{{"record", false}, {"record+miner", true}} {
		b.Run(c.name, func(b *testing.B) {
			s := NewStats("llm", 4, 1024)
			r := newRecorder(s)
			r.miner, r.ismCur = c.miner, s.Modules[0].ism("x")
			r.startSample("x")
			for i := 0; i < 128; i++ {
				r.types = append(r.types, TokText)
			}
			r.types[0] = TokSpecial
			run(b, func() []model.Tap { r.ids = batch[0]; return []model.Tap{r} })
		})
	}
}

// BenchmarkRecordLong: record and record --miner beside the plain forward at the length of an
// image prompt (one sequence of 1,500 tokens) on Qwen2-0.5B's layer shapes (hidden 896, FFN
// 4864, 14 heads, 2 KV heads), 4 layers, BF16. MINER's bar (#16) is ≤ 1.5× the forward.
func BenchmarkRecordLong(b *testing.B) {
	const T, layers, vocab = 1500, 4, 32768
	dir := filepath.Join(b.TempDir(), "q")
	if err := synth.Generate("../testdata/configs/Qwen2-0.5B", dir, synth.Options{DType: safetensors.BF16, Seed: 1,
		Set: map[string]any{"num_hidden_layers": layers, "vocab_size": vocab}}); err != nil {
		b.Fatal(err)
	}
	m, err := model.Open(dir)
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	seq := make([]int32, T)
	for i := range seq {
		seq[i] = int32(i * 7919 % vocab)
	}
	run := func(b *testing.B, taps func() []model.Tap) {
		for b.Loop() {
			if _, err := m.Forward(context.Background(), [][]int32{seq}, model.ForwardOptions{Taps: taps()}); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(T*float64(b.N)/b.Elapsed().Seconds(), "tokens/s")
	}
	b.Run("forward", func(b *testing.B) { run(b, func() []model.Tap { return nil }) })
	for _, c := range []struct {
		name  string
		miner bool
	}{{"record", false}, {"record+miner", true}} {
		b.Run(c.name, func(b *testing.B) {
			s := NewStats("llm", layers, 4864)
			r := newRecorder(s)
			r.miner, r.ismCur = c.miner, s.Modules[0].ism("x")
			r.startSample("x")
			r.ids = seq
			r.types = make([]int, T)
			r.types[0] = TokSpecial
			run(b, func() []model.Tap { return []model.Tap{r} })
		})
	}
}
