package model

import (
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/neurosurg/neurosurg/model/archdef"
)

// An embedding span holding a token's own embedding row gives that token's logits exactly; a
// span of another token's row gives that token's; positions 0..n-1 are the default; a text
// model refuses media naming the sequence.
func TestForwardInputs(t *testing.T) {
	m, err := Open(storiesDir)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ctx := context.Background()
	toks := []int32{1, 403, 407, 261, 378, 290, 292}
	alt := slices.Clone(toks)
	alt[2], alt[3] = 300, 301
	run := func(in Input) []float32 {
		t.Helper()
		r, err := m.ForwardInputs(ctx, []Input{in}, ForwardOptions{AllLogits: true})
		if err != nil {
			t.Fatal(err)
		}
		return r.Logits[0]
	}
	d := m.cfg.Hidden
	rows := make([]float32, 2*d)
	m.embed.w.row(rows[:d], 300)
	m.embed.w.row(rows[d:], 301)
	want, plain := run(Input{Tokens: alt}), run(Input{Tokens: toks})
	got := run(Input{Tokens: toks, Embeds: []EmbedSpan{{Start: 2, Rows: 2, Data: rows}}})
	if !slices.Equal(got, want) {
		t.Error("a span of tokens 300, 301's embeddings differs from those tokens")
	}
	if slices.Equal(got, plain) {
		t.Error("the span changed nothing")
	}
	pos := make([]int32, len(toks))
	for i := range pos {
		pos[i] = int32(i)
	}
	if !slices.Equal(run(Input{Tokens: toks, Positions: pos}), plain) {
		t.Error("positions 0..n-1 differ from the default")
	}
	shifted := slices.Clone(pos)
	for i := range shifted {
		shifted[i] += 5
	}
	if slices.Equal(run(Input{Tokens: toks, Positions: shifted}), plain) {
		t.Error("shifted positions changed nothing")
	}
	// Generation continues at max(position)+1: positions 0..n-1 generate what plain does.
	g1, err := m.GenerateInputs(ctx, []Input{{Tokens: toks, Positions: pos}}, GenerateOptions{MaxTokens: 6})
	if err != nil {
		t.Fatal(err)
	}
	g2, _ := m.Generate(ctx, [][]int32{toks}, GenerateOptions{MaxTokens: 6})
	if !slices.Equal(g1[0].Tokens, g2[0].Tokens) {
		t.Errorf("generation with explicit positions %v, plain %v", g1[0].Tokens, g2[0].Tokens)
	}
	for _, c := range []struct {
		in   Input
		want string
	}{
		{Input{Tokens: toks, Embeds: []EmbedSpan{{Start: 6, Rows: 2, Data: rows}}}, "does not fit"},
		{Input{Tokens: toks, Embeds: []EmbedSpan{{Start: 0, Rows: 2, Data: rows[:d]}}}, "does not fit"},
		{Input{Tokens: toks, Positions: pos[:3]}, "3 positions for 7 tokens"},
		{Input{Tokens: toks, Positions: append(slices.Clone(pos), append(pos, pos...)...)}, "mrope_section"},
		{Input{Tokens: toks, Media: []Media{{Kind: "image", Rows: 1, Features: []float32{1}}}}, "sequence 0 has image input"},
	} {
		_, err := m.ForwardInputs(ctx, []Input{c.in}, ForwardOptions{})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("err = %v, want %q", err, c.want)
		}
	}
	if m.Accepts("image") || m.Accepts("audio") {
		t.Error("a text model accepts media")
	}
	if err := m.MediaError("samples.jsonl:3", "audio"); !errors.Is(err, ErrMedia) || !strings.Contains(err.Error(), "samples.jsonl:3") {
		t.Errorf("MediaError = %v", err)
	}
}

// The M-RoPE table equals transformers' apply_multimodal_rotary_pos_emb read literally: a
// full cos/sin per axis (emb = cat(freqs, freqs)), split into chunks mrope_section*2, chunk i
// taken from axis i%3; its first half is the half table the runtime keeps.
func TestMRopeTable(t *testing.T) {
	const hd, n = 16, 5
	section := [3]int{2, 3, 3}
	inv := make([]float64, hd/2)
	for i := range inv {
		inv[i] = 1 / math.Pow(10000, float64(2*i)/hd)
	}
	pos := [3][]int32{{0, 1, 2, 2, 2}, {0, 1, 2, 3, 4}, {0, 4, 1, 3, 2}}
	cos, sin := make([]float32, n*hd/2), make([]float32, n*hd/2)
	task := ropeTableTask{cos: cos, sin: sin, invFreq: inv, scale: 1, pos: pos[0], pos3: pos, section: section}
	task.Run(0, n)
	chunks := []int{section[0], section[1], section[2], section[0], section[1], section[2]}
	for r := 0; r < n; r++ {
		var full [3][hd]float64 // per axis: cos of cat(freqs, freqs)
		for a := 0; a < 3; a++ {
			for j := 0; j < hd; j++ {
				full[a][j] = math.Cos(float64(pos[a][r]) * inv[j%(hd/2)])
			}
		}
		var ref []float64
		at := 0
		for i, c := range chunks {
			ref = append(ref, full[i%3][at:at+c]...)
			at += c
		}
		for j := 0; j < hd/2; j++ {
			if math.Abs(float64(cos[r*hd/2+j])-ref[j]) > 1e-6 || math.Abs(ref[j]-ref[j+hd/2]) > 1e-12 {
				t.Fatalf("row %d freq %d: cos %g, reference %g (second half %g)", r, j, cos[r*hd/2+j], ref[j], ref[j+hd/2])
			}
		}
	}
	if _, err := ParseConfig([]byte(`{"architectures":["Qwen2ForCausalLM"],"hidden_size":32,"num_hidden_layers":1,"num_attention_heads":2,"intermediate_size":8,"vocab_size":8,"rope_scaling":{"type":"mrope","mrope_section":[2,3,2]}}`)); err == nil || !strings.Contains(err.Error(), "head_dim/2 = 8") {
		t.Errorf("mrope_section not summing to head_dim/2: %v", err)
	}
}

// readProcessorConfig: a family whose processor has no defaults needs the file (ErrMediaPath
// without it, or without a directory); the others get nil data and take their defaults, but an
// unreadable file is an error for both.
func TestReadProcessorConfig(t *testing.T) {
	withFile, without, unreadable := t.TempDir(), t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(withFile, "preprocessor_config.json"), []byte(`{"a": 1}`), 0o644); err != nil {
		t.Fatal(err)
	}
	// A directory where the file should be: ReadFile fails with something other than "not exist".
	if err := os.Mkdir(filepath.Join(unreadable, "preprocessor_config.json"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name     string
		dir      string
		required bool
		data     string
		mediaErr bool
	}{
		{"file, required", withFile, true, `{"a": 1}`, false},
		{"file, optional", withFile, false, `{"a": 1}`, false},
		{"no file, required", without, true, "", true},
		{"no file, optional", without, false, "", false},
		{"no directory, required", "", true, "", true},
		{"no directory, optional", "", false, "", false},
		{"unreadable, optional", unreadable, false, "", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			data, _, err := readProcessorConfig(&Model{dir: c.dir}, c.required)
			if errors.Is(err, ErrMediaPath) != c.mediaErr || (err != nil) != c.mediaErr {
				t.Fatalf("err = %v, want ErrMediaPath %v", err, c.mediaErr)
			}
			if string(data) != c.data {
				t.Errorf("data = %q, want %q", data, c.data)
			}
		})
	}
}

// configTokenID: the top level wins, then text_config, then the default; a required key
// (def < 0) must be there; an id must be a whole number below vocab_size.
func TestConfigTokenID(t *testing.T) {
	for _, c := range []struct {
		name string
		cfg  map[string]any
		def  int32
		want int32
		err  bool
	}{
		{"top level", map[string]any{"k": 7.0, "text_config": map[string]any{"k": 8.0}}, 5, 7, false},
		{"text_config", map[string]any{"text_config": map[string]any{"k": 8.0}}, 5, 8, false},
		{"null is absent", map[string]any{"k": nil}, 5, 5, false},
		{"default", map[string]any{}, 5, 5, false},
		{"required, absent", map[string]any{}, -1, 0, true},
		{"required, present", map[string]any{"k": 0.0}, -1, 0, false},
		{"vocab_size", map[string]any{"k": 100.0}, 5, 0, true},
		{"negative", map[string]any{"k": -1.0}, 5, 0, true},
		{"fraction", map[string]any{"k": 3.5}, 5, 0, true},
		{"string", map[string]any{"k": "3"}, 5, 0, true},
	} {
		b := &Binder{Model: &Model{cfg: Config{Vocab: 100}}, Arch: &archdef.Arch{Config: c.cfg}}
		got, err := configTokenID(b, "k", c.def)
		if (err != nil) != c.err || c.err && !errors.Is(err, ErrConfig) || got != c.want {
			t.Errorf("%s: %d, %v; want %d, error %v", c.name, got, err, c.want, c.err)
		}
	}
}
