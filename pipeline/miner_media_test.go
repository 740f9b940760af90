package pipeline

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/neurosurg/neurosurg/formats/edit"
	"github.com/neurosurg/neurosurg/formats/hfdir"
	"github.com/neurosurg/neurosurg/formats/neuronset"
	"github.com/neurosurg/neurosurg/formats/samples"
	"github.com/neurosurg/neurosurg/locate"
	"github.com/neurosurg/neurosurg/model/kernels"
)

// MINER on image samples end to end on the test family: record --miner over samples whose
// images are named relative to the samples file, MINER's modality split from the expanded
// token ids (4 image positions a sample), locate --method miner selects image neurons, patch
// zero, verify beside the random baseline of the same count per module and layer (with the QA
// scores on answers), write — and the written checkpoint equals the runtime mask.
func TestMINEROnImagesEndToEnd(t *testing.T) {
	prev := kernels.Use(exactVariant())
	defer kernels.Use(prev)
	ctx := context.Background()
	dir := t.TempDir()
	ckDir := tinyVLMWithTokenizer(t, dir)
	data := filepath.Join(dir, "data")
	os.MkdirAll(filepath.Join(data, "pics"), 0o755)
	writePNG(t, filepath.Join(data, "pics", "red.png"), 9, 7, [3]int{200, 10, 30})
	writePNG(t, filepath.Join(data, "pics", "blue.png"), 6, 8, [3]int{5, 40, 190})
	lines := `{"id":"a","text":"Once upon a time","image":"pics/red.png","dataset":"pics","answer":"there was"}
{"id":"b","text":"The cat sat","image":["pics/blue.png"],"dataset":"pics","answer":"on"}
{"id":"c","text":"A little girl","image":"pics/red.png","dataset":"pics"}
{"id":"d","text":"They played","image":"pics/blue.png","dataset":"pics"}
`
	sp := filepath.Join(data, "samples.jsonl")
	os.WriteFile(sp, []byte(lines), 0o644)
	// Run from elsewhere: the paths are the samples file's, not the working directory's.
	ss, err := samples.ReadFile(sp)
	if err != nil {
		t.Fatal(err)
	}
	m, err := OpenModel(ckDir)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()

	st, err := Record(ctx, m, ss, nil, RecordParams{MINER: true})
	if err != nil {
		t.Fatal(err)
	}
	llm := st.Module("llm")
	if llm == nil || len(llm.ISMs) != 1 {
		t.Fatalf("MINER datasets: %+v", llm)
	}
	d := llm.ISMs[0]
	// Every sample has image, text, special (BOS) and prompt positions, none of video or audio.
	for mo, want := range map[int]float64{0: 4, 1: 4, 2: 4, 3: 4, 4: 0, 5: 0, 6: 4} {
		if d.Count[mo] != want {
			t.Errorf("dataset %s: modality %s in %v samples, want %v", d.Dataset, locate.Modalities[mo], d.Count[mo], want)
		}
	}
	L := llm.Layers
	for l := 0; l < L; l++ {
		if got := d.Raw.Positions[3*L+l]; got != 16 {
			t.Errorf("layer %d: %v image positions, want 16 (4 samples × 4 placeholders)", l, got)
		}
	}
	statsPath := filepath.Join(dir, "miner.st")
	if err := st.WriteFile(statsPath); err != nil {
		t.Fatal(err)
	}
	st, hash, err := ReadStats(statsPath)
	if err != nil {
		t.Fatal(err)
	}
	rows, err := st.ExportByModality()
	if err != nil {
		t.Fatal(err)
	}
	imageRows := 0
	for _, r := range rows {
		if r.Modality == "image" {
			imageRows++
			if r.Module != "llm" || r.Dataset != "pics" || r.Probability < 0 || r.Probability > 1 || r.Max < r.Mean {
				t.Fatalf("row %+v", r)
			}
		}
	}
	if imageRows != L*llm.Neurons {
		t.Errorf("%d image rows, want %d", imageRows, L*llm.Neurons)
	}

	set, err := Locate(ctx, LocateParams{Method: "miner", Ratio: 0.1}, LocateInputs{Stats: st, StatsSHA256: hash})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(set.Labels, "image") || !slices.Contains(set.Labels, "text") {
		t.Fatalf("miner labels %v, want image and text among them", set.Labels)
	}
	var img []neuronset.Neuron
	for _, n := range set.Neurons {
		if n.Label == "image" {
			img = append(img, n)
		}
	}
	if len(img) == 0 {
		t.Fatal("no image neuron selected")
	}
	imgSet := *set
	imgSet.Neurons, imgSet.Labels = img, []string{"image"}
	rnd, err := RandomBaseline(ctx, &imgSet, st, hash, 3)
	if err != nil {
		t.Fatal(err)
	}
	if len(rnd.Neurons) != len(img) {
		t.Errorf("random baseline has %d neurons, the set %d", len(rnd.Neurons), len(img))
	}

	ops, _ := ParseOps([]string{"zero"}, 0, nil)
	base, tok, err := OpenForPatch(ckDir, ops)
	if err != nil {
		t.Fatal(err)
	}
	defer base.Close()
	var editPaths []string
	for name, s := range map[string]*neuronset.Set{"edited": &imgSet, "random": rnd} {
		e, err := Patch(base, tok, s, name+".json", ops, nil)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, name+".nsd")
		if err := e.WriteFile(p); err != nil {
			t.Fatal(err)
		}
		editPaths = append(editPaths, p)
	}
	slices.Sort(editPaths)
	vo, _ := VerifyOptions(3, nil, nil, nil)
	rep, err := Verify(ctx, m, []EditVariant{{Name: "edited", Edit: editPaths[0]}, {Name: "random", Edit: editPaths[1]}}, ss, vo)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"base", "edited", "random"} {
		mt := rep.Metrics[v]
		for _, k := range []string{"exact_match", "contains", "anls", "ppl/all", "kl"} {
			if _, ok := mt[k]; !ok && !(v == "base" && k == "kl") {
				t.Errorf("verify %s: no metric %s (have %v)", v, k, mt)
			}
		}
		if p := mt["ppl/all"]; !(p > 1) {
			t.Errorf("verify %s: ppl %v", v, p)
		}
	}
	if rep.Metrics["base"]["kl"] != 0 {
		t.Errorf("base against itself: kl %v", rep.Metrics["base"]["kl"])
	}

	e, err := edit.ReadFile(editPaths[0], base)
	if err != nil {
		t.Fatal(err)
	}
	outDir := filepath.Join(dir, "out")
	if _, err := edit.Apply(ctx, base, e, outDir, hfdir.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	patched, err := OpenModel(outDir)
	if err != nil {
		t.Fatal(err)
	}
	defer patched.Close()
	in, err := m.BuildInput("sample a", locate.SamplePrompt(ss[0], false))
	if err != nil {
		t.Fatal(err)
	}
	if len(in.Tokens) < 6 || !slices.Equal(in.Tokens[1:5], []int32{3, 3, 3, 3}) || slices.Contains(in.Tokens[5:], 3) || m.MediaTokens().MediaEnd(in) != 5 {
		t.Fatalf("prompt %v: want BOS, 4 placeholders (id 3), text", in.Tokens)
	}
	worst, moved := writtenVsMask(t, m, patched, in, img)
	if moved == 0 {
		t.Errorf("zeroing %d image neurons changed no logit", len(img))
	}
	if worst > 1e-6 {
		t.Errorf("the written checkpoint and the runtime mask of %d image neurons differ by %g", len(img), worst)
	}
}
