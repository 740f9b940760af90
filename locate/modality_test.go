package locate

import (
	"context"
	"errors"
	"math"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/neurosurg/neurosurg/formats/samples"
	"github.com/neurosurg/neurosurg/model"
)

type specials map[int32]bool

func (s specials) IsSpecial(id int32) bool { return s[id] }

// MINER's token types come from ids (algorithms.md §2.2): placeholders by kind, markup and
// the tokenizer's special tokens as special, everything else text — whatever the tokens spell.
func TestTokenTypes(t *testing.T) {
	mt := model.MediaTokens{Placeholders: map[string][]int32{"image": {151655}, "video": {151656}, "audio": {151646}}, Markup: []int32{151652, 151653}}
	tok := specials{151644: true, 151645: true}
	ids := []int32{151644, 872, 151652, 151655, 151655, 151653, 151656, 151646, 3, 151645}
	want := []int{TokSpecial, TokText, TokSpecial, TokImage, TokImage, TokSpecial, TokVideo, TokAudio, TokText, TokSpecial}
	if got := tokenTypes(nil, tok, mt, ids); !reflect.DeepEqual(got, want) {
		t.Errorf("types %v, want %v", got, want)
	}
	// A text-only model has no placeholders: an id that is one elsewhere is text here.
	if got := tokenTypes(nil, tok, model.MediaTokens{}, []int32{151655}); got[0] != TokText {
		t.Errorf("text-only model: %v", got)
	}
}

// SamplePrompt keeps the order images, video, audio and resolves paths against the samples
// file's directory.
func TestSamplePrompt(t *testing.T) {
	s := samples.Sample{Text: "q", Image: "a.png", Images: []string{"/b.png"}, Video: []string{"frames"}, Audio: "c.wav", Dir: "/data"}
	p := SamplePrompt(s, true)
	want := model.Prompt{Text: "q", Chat: true, Media: []model.Medium{
		{Kind: "image", Paths: []string{"/data/a.png"}}, {Kind: "image", Paths: []string{"/b.png"}},
		{Kind: "video", Paths: []string{"/data/frames"}}, {Kind: "audio", Paths: []string{"/data/c.wav"}}}}
	if !reflect.DeepEqual(p, want) {
		t.Errorf("%+v, want %+v", p, want)
	}
}

// actTap keeps every prefill FFN activation of the language model: [layer] rows × N.
type actTap struct{ act map[int][]float32 }

func (a *actTap) FFN(e *model.FFNEvent) {
	if e.Site.Module == "llm" && e.Pos0 == 0 {
		a.act[e.Site.Layer] = append([]float32(nil), e.Act...)
	}
}

// The raw per-modality statistics equal a direct count over the activations of each
// modality's positions, survive the file round trip and merge exactly; export prints them.
func TestModalityRawAgainstDirect(t *testing.T) {
	m, err := model.Open("../testdata/stories260K")
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ss, _ := samples.ReadFile("../testdata/samples/stories-animals-food.jsonl")
	ss = ss[:4]
	for i := range ss {
		ss[i].Dataset = "d"
	}
	ctx := context.Background()
	st, err := Record(ctx, m, ss, nil, RecordOptions{MINER: true})
	if err != nil {
		t.Fatal(err)
	}
	L, N := m.Config().Layers, m.Config().Intermediate
	// Direct: positions, fire, Σ and max per modality, layer and neuron.
	type acc struct{ pos, fire, sum, max []float64 }
	var want [7]acc
	for mo := range want {
		want[mo] = acc{make([]float64, L), make([]float64, L*N), make([]float64, L*N), make([]float64, L*N)}
		for i := range want[mo].max {
			want[mo].max[i] = math.Inf(-1)
		}
	}
	for _, s := range ss {
		in, err := m.BuildInput(s.ID, SamplePrompt(s, false))
		if err != nil {
			t.Fatal(err)
		}
		tap := &actTap{act: map[int][]float32{}}
		if _, err := m.ForwardInputs(ctx, []model.Input{in}, model.ForwardOptions{Taps: []model.Tap{tap}}); err != nil {
			t.Fatal(err)
		}
		masks := modalityMasks(tokenTypes(nil, m.Tokenizer, m.MediaTokens(), in.Tokens))
		for mo, idx := range masks {
			for l := 0; l < L; l++ {
				want[mo].pos[l] += float64(len(idx))
				for _, p := range idx {
					for j := 0; j < N; j++ {
						v := float64(tap.act[l][p*N+j])
						if v > 0 {
							want[mo].fire[l*N+j]++
						}
						want[mo].sum[l*N+j] += v
						want[mo].max[l*N+j] = math.Max(want[mo].max[l*N+j], v)
					}
				}
			}
		}
	}
	path := filepath.Join(t.TempDir(), "s.st")
	if err := st.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	back, err := ReadStats(path)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back.Modules[0].ISMs[0].Raw, st.Modules[0].ISMs[0].Raw) {
		t.Fatal("raw per-modality stats changed in the file round trip")
	}
	rows, err := back.ExportByModality()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, r := range rows {
		mo := -1
		for i, n := range Modalities {
			if n == r.Modality {
				mo = i
			}
		}
		w := want[mo]
		k := r.Layer*N + r.Neuron
		if r.Dataset != "d" || r.Module != "llm" || r.Positions != w.pos[r.Layer] || r.Probability != w.fire[k]/w.pos[r.Layer] ||
			math.Abs(r.Mean-w.sum[k]/w.pos[r.Layer]) > 1e-9 || r.Max != w.max[k] {
			t.Fatalf("row %+v, want positions %v prob %v mean %v max %v", r, w.pos[r.Layer], w.fire[k]/w.pos[r.Layer], w.sum[k]/w.pos[r.Layer], w.max[k])
		}
		seen[r.Modality] = true
	}
	// A text model's prompts have text, special (BOS), special_text and prompt positions.
	if len(seen) != 4 || !seen["text"] || !seen["special"] || !seen["special_text"] || !seen["prompt"] || len(rows) != 4*L*N {
		t.Errorf("modalities %v, %d rows", seen, len(rows))
	}

	// Two halves merge to the whole exactly.
	a, err := Record(ctx, m, ss, nil, RecordOptions{MINER: true, Shard: &Shard{0, 2}})
	if err != nil {
		t.Fatal(err)
	}
	b, err := Record(ctx, m, ss, nil, RecordOptions{MINER: true, Shard: &Shard{1, 2}})
	if err != nil {
		t.Fatal(err)
	}
	merged, err := MergeAll([]*Stats{b, a})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(merged.Modules[0].ISMs[0].Raw, st.Modules[0].ISMs[0].Raw) {
		t.Error("the merged halves' raw stats differ from one pass's")
	}

	// Stats without them (a version 3 file, or merged with one) say so instead of exporting.
	a.Modules[0].ISMs[0].Raw = nil
	if err := a.Merge(b); err != nil {
		t.Fatal(err)
	}
	if a.Modules[0].ISMs[0].Raw != nil {
		t.Error("merging with a dataset without raw stats kept half of them")
	}
	if _, err := a.ExportByModality(); !errors.Is(err, ErrStats) || !strings.Contains(err.Error(), `dataset "d": no raw per-modality activations`) {
		t.Errorf("export without raw: %v", err)
	}
	plain, _ := Record(ctx, m, ss[:1], nil, RecordOptions{})
	if _, err := plain.ExportByModality(); !errors.Is(err, ErrStats) || !strings.Contains(err.Error(), "record --miner") {
		t.Errorf("export without MINER: %v", err)
	}
}

// A forward with more decoder rows than the prompt's tokens (placeholders expanded inside the
// model) is refused instead of scoring positions without a type.
func TestISMRefusesUntypedRows(t *testing.T) {
	st := NewStats("llm", 1, 2)
	r := newRecorder(st)
	r.miner = true
	r.ismCur = r.llm.ism("d")
	r.types = []int{TokText}
	r.addISM(&model.FFNEvent{Site: model.Site{Module: "llm"}, Rows: 3, Neurons: 2, Act: make([]float32, 6)})
	if !errors.Is(r.err, ErrStats) || !strings.Contains(r.err.Error(), "3 positions for a prompt of 1 tokens") {
		t.Errorf("err %v", r.err)
	}
	if r.ismCur.Count[6] != 0 {
		t.Error("the untyped rows were scored")
	}
}
