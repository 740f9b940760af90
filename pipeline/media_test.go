package pipeline

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/neurosurg/neurosurg/formats/edit"
	"github.com/neurosurg/neurosurg/formats/hfdir"
	"github.com/neurosurg/neurosurg/formats/neuronset"
	"github.com/neurosurg/neurosurg/formats/samples"
	"github.com/neurosurg/neurosurg/internal/testfixture"
	"github.com/neurosurg/neurosurg/locate"
	"github.com/neurosurg/neurosurg/model"
	"github.com/neurosurg/neurosurg/model/kernels"
)

// writePNG writes a w×h picture: a gradient whose colours depend on tint.
func writePNG(t *testing.T, path string, w, h int, tint [3]int) {
	t.Helper()
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			img.Set(x, y, color.NRGBA{uint8(tint[0] + 9*x), uint8(tint[1] + 7*y), uint8(tint[2] + 5*(x+y)), 255})
		}
	}
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// The multimodal path end to end on the test family: samples with images are recorded per
// module (vision, projector, llm), DAPE selects vision neurons among others, a vision neuron
// is zeroed in a written checkpoint, and that checkpoint's logits on an image sample equal
// the base model's with the same neuron masked at run time; verify measures the edit on the
// image samples.
func TestMediaSamplesEndToEnd(t *testing.T) {
	prev := kernels.Use(exactVariant())
	defer kernels.Use(prev)
	ctx := context.Background()
	dir := t.TempDir()
	ckDir := tinyVLMWithTokenizer(t, dir)
	red, blue := filepath.Join(dir, "red.png"), filepath.Join(dir, "blue.png")
	writePNG(t, red, 9, 7, [3]int{200, 10, 30})
	writePNG(t, blue, 6, 8, [3]int{5, 40, 190})
	var lines bytes.Buffer
	texts := []string{"Once upon a time", "The cat sat", "A little girl", "They played"}
	for i, txt := range texts {
		img, label := red, "red"
		if i%2 == 1 {
			img, label = blue, "blue"
		}
		b, _ := json.Marshal(samples.Sample{ID: fmt.Sprintf("s%d", i), Text: txt, Image: img, Label: label})
		lines.Write(append(b, '\n'))
	}
	sp := filepath.Join(dir, "samples.jsonl")
	os.WriteFile(sp, lines.Bytes(), 0o644)
	data, err := samples.ReadFile(sp)
	if err != nil {
		t.Fatal(err)
	}
	m, err := OpenModel(ckDir)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()

	st, err := Record(ctx, m, data, nil, RecordParams{})
	if err != nil {
		t.Fatal(err)
	}
	var mods []string
	for _, ms := range st.Modules {
		mods = append(mods, ms.Module)
		for _, lb := range []string{"red", "blue"} {
			ls := ms.ByLabel[lb]
			if ls == nil || ls.Samples != 2 || ls.Positions[0] == 0 {
				t.Errorf("module %s label %s: %+v, want 2 samples with positions", ms.Module, lb, ls)
			}
		}
	}
	slices.Sort(mods)
	if !slices.Equal(mods, []string{"llm", "projector", "vision"}) {
		t.Fatalf("recorded modules %v, want llm, projector, vision", mods)
	}
	// Each image fills 4 placeholders: the vision module saw 4 rows per sample and layer.
	if got := st.Module("vision").ByLabel["red"].Positions[0]; got != 8 {
		t.Errorf("vision positions of label red: %v, want 8 (2 images × 4 patches)", got)
	}
	statsPath := filepath.Join(dir, "stats.st")
	if err := st.WriteFile(statsPath); err != nil {
		t.Fatal(err)
	}
	st, hash, err := ReadStats(statsPath)
	if err != nil {
		t.Fatal(err)
	}

	set, err := Locate(ctx, LocateParams{Method: "dape", TopRate: 0.2, FilterRate: 0.5, ActivationBarRatio: 0.5}, LocateInputs{Stats: st, StatsSHA256: hash})
	if err != nil {
		t.Fatal(err)
	}
	var vision []neuronset.Neuron
	for _, n := range set.Neurons {
		if !slices.Contains(mods, n.Module) {
			t.Errorf("set names module %q, not recorded", n.Module)
		}
		if n.Module == "vision" {
			vision = append(vision, n)
		}
	}
	if len(vision) == 0 {
		t.Fatalf("dape selected no vision neuron among %d (%v)", len(set.Neurons), set.Params)
	}

	// ig attributes the concept's steps of the image samples, their images run through the encoder.
	igSet, err := Locate(ctx, LocateParams{Method: "ig", Concept: "cat", TopK: 3, Steps: 2}, LocateInputs{Model: m, Data: data})
	if err != nil || len(igSet.Neurons) == 0 {
		t.Errorf("ig on image samples: %v, %v", igSet, err)
	}

	// Zero one vision neuron in a written checkpoint.
	target := vision[0]
	one := *set
	one.Neurons = []neuronset.Neuron{target}
	ops, _ := ParseOps([]string{"zero"}, 0, nil)
	base, tok, err := OpenForPatch(ckDir, ops)
	if err != nil {
		t.Fatal(err)
	}
	defer base.Close()
	e, err := Patch(base, tok, &one, "set.json", ops, nil)
	if err != nil {
		t.Fatal(err)
	}
	// verify feeds the images too: the edit is measured on the image samples' text.
	editPath := filepath.Join(dir, "edit.nsd")
	if err := e.WriteFile(editPath); err != nil {
		t.Fatal(err)
	}
	vo, _ := VerifyOptions(4, nil, nil, nil)
	rep, err := Verify(ctx, m, []EditVariant{{Name: "edited", Edit: editPath}}, data, vo)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"base", "edited"} {
		if p := rep.Metrics[v]["ppl/red"]; !(p > 1) {
			t.Errorf("verify %s: ppl/red %v, want a perplexity", v, p)
		}
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

	smp := data[0]
	in, err := m.BuildInput("sample "+smp.ID, locate.SamplePrompt(smp, false))
	if err != nil {
		t.Fatal(err)
	}
	worst, moved := writtenVsMask(t, m, patched, in, []neuronset.Neuron{target})
	if worst > 1e-6 {
		t.Errorf("vision neuron %d/%d: the written checkpoint and the runtime mask differ by %g", target.Layer, target.Index, worst)
	}
	if moved == 0 {
		t.Errorf("zeroing vision neuron %d/%d changed no logit", target.Layer, target.Index)
	}
}

// writtenVsMask runs in through base with neurons zeroed by a runtime mask, through base
// plainly and through written (the checkpoint with those neurons' columns zeroed): the largest
// difference of all logits between written and masked, and how far the mask moved them.
func writtenVsMask(t *testing.T, base, written *model.Model, in model.Input, neurons []neuronset.Neuron) (worst, moved float64) {
	t.Helper()
	ctx := context.Background()
	mask := model.NewMask()
	for _, n := range neurons {
		mask.Set(model.Site{Module: n.Module, Layer: n.Layer}, n.Index, 0)
	}
	run := func(m *model.Model, o model.ForwardOptions) []float32 {
		o.AllLogits = true
		r, err := m.ForwardInputs(ctx, []model.Input{in}, o)
		if err != nil {
			t.Fatal(err)
		}
		return r.Logits[0]
	}
	masked, plain, got := run(base, model.ForwardOptions{Mask: mask}), run(base, model.ForwardOptions{}), run(written, model.ForwardOptions{})
	for i := range got {
		worst = max(worst, math.Abs(float64(got[i]-masked[i])))
		moved = max(moved, math.Abs(float64(plain[i]-masked[i])))
	}
	return worst, moved
}

// exactVariant is the kernel variant under which a mask and a weight edit agree to 1e-6.
func exactVariant() string {
	if slices.Contains(kernels.Variants(), "avx512") {
		return "avx512"
	}
	return "generic"
}

// tinyVLMWithTokenizer synthesises the test family's checkpoint with the stories tokenizer
// (testfixture.TinyVLM) into dir/vlm.
func tinyVLMWithTokenizer(t *testing.T, dir string) string {
	t.Helper()
	out, err := testfixture.TinyVLM("..", dir)
	if err != nil {
		t.Fatal(err)
	}
	return out
}
