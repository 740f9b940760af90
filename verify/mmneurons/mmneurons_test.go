package mmneurons

import (
	"bytes"
	"context"
	"image"
	"image/color"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/neurosurg/neurosurg/formats/neuronset"
	"github.com/neurosurg/neurosurg/formats/samples"
	"github.com/neurosurg/neurosurg/internal/testfixture"
	"github.com/neurosurg/neurosurg/model"
)

func nr(l, j int) neuronset.Neuron { return neuronset.Neuron{Module: "llm", Layer: l, Index: j} }

func TestJaccard(t *testing.T) {
	a := []neuronset.Neuron{nr(0, 1), nr(0, 2), nr(1, 1)}
	b := []neuronset.Neuron{nr(0, 2), nr(1, 1), nr(1, 5), nr(1, 6)}
	vis := neuronset.Neuron{Module: "vision", Layer: 0, Index: 1}
	for _, c := range []struct {
		a, b []neuronset.Neuron
		want float64
	}{
		{a, b, 2.0 / 5},
		{a, a, 1},
		{a, nil, 0},
		{nil, nil, 1},
		{[]neuronset.Neuron{nr(0, 1)}, []neuronset.Neuron{vis}, 0}, // same layer and index, other module
		{[]neuronset.Neuron{{Module: "llm", Layer: 0, Index: 1, Label: "x", Score: 3}}, []neuronset.Neuron{nr(0, 1)}, 1},
	} {
		if got := Jaccard(c.a, c.b); got != c.want {
			t.Errorf("Jaccard(%v, %v) = %v, want %v", c.a, c.b, got, c.want)
		}
	}
	c := []neuronset.Neuron{nr(0, 1)}
	// pairs: a-b 2/5, a-c 1/3, b-c 0
	if got, n := MeanPairwiseJaccard([][]neuronset.Neuron{a, b, c}); n != 3 || math.Abs(got-(2.0/5+1.0/3)/3) > 1e-15 {
		t.Errorf("MeanPairwiseJaccard = %v over %d pairs, want %v over 3", got, n, (2.0/5+1.0/3)/3)
	}
	if got, n := MeanPairwiseJaccard([][]neuronset.Neuron{a}); n != 0 || !math.IsNaN(got) {
		t.Errorf("one set: %v over %d pairs, want NaN over 0", got, n)
	}
}

func TestFillColour(t *testing.T) {
	if got := FillColour("TinyVLMForConditionalGeneration"); got != [3]uint8{128, 128, 128} {
		t.Errorf("test family: %v", got)
	}
	if got := FillColour("LlavaForConditionalGeneration"); got != [3]uint8{123, 117, 104} {
		t.Errorf("LLaVA: %v, want CLIP's mean colour", got)
	}
}

func TestOptionsValidate(t *testing.T) {
	if err := (Options{TopN: -1}).Validate(); err == nil {
		t.Error("top-n -1: want an error")
	}
}

// tinyVLM synthesises the test family's checkpoint with the stories tokenizer
// (testfixture.TinyVLM) and opens it.
func tinyVLM(t *testing.T, dir string) *model.Model {
	t.Helper()
	out, err := testfixture.TinyVLM("../..", dir)
	if err != nil {
		t.Fatal(err)
	}
	m, err := model.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// writePNG writes a w×h gradient whose colours depend on tint.
func writePNG(t *testing.T, path string, w, h int, tint [3]int) {
	t.Helper()
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			img.Set(x, y, color.NRGBA{uint8(tint[0] + 29*x), uint8(tint[1] + 31*y), uint8(tint[2] + 17*(x+y)), 255})
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

// captions are four captioned images: "cat" is written after the images of c0, c1, c3 and
// "dog" after those of c1, c2, c3 (six lists). c0's box is its whole picture, c2's a corner.
func captions(t *testing.T, dir string) []samples.Sample {
	var out []samples.Sample
	for i, c := range []struct {
		text, label string
		box         []float64
	}{
		{"An image of a cat on the mat", "cat", []float64{0, 0, 8, 8}},
		{"An image of a cat and a dog", "cat", nil},
		{"An image of a dog with a ball", "dog", []float64{0, 0, 3, 3}},
		{"An image of a dog and a cat", "dog", nil},
	} {
		p := filepath.Join(dir, string(rune('a'+i))+".png")
		writePNG(t, p, 8, 8, [3]int{40 * i, 200 - 50*i, 90})
		out = append(out, samples.Sample{ID: "c" + string(rune('0'+i)), Text: c.text, Label: c.label, Image: p, BBox: c.box})
	}
	return out
}

// The four metrics end to end on the test family, with the values a hand computation (or
// the construction) fixes checked exactly.
func TestEvaluateTinyVLM(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	m := tinyVLM(t, dir)
	data := captions(t, dir)
	seed := uint64(3)
	rep, err := Evaluate(ctx, m, data, Options{TopN: 10, Seed: 1, ShuffleSeed: &seed, TempDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Lists != 6 || len(rep.Concepts) != 2 {
		t.Fatalf("%d lists over %d concepts, want 6 over 2 (cat and dog in three images each)", rep.Lists, len(rep.Concepts))
	}
	for k, v := range rep.Metrics() {
		lo := 0.0
		if k == "mm/prob_drop" || k == "mm/prob_drop_random" {
			lo = -1
		}
		if v < lo || v > 1 {
			t.Errorf("%s = %v, out of [%v, 1]", k, v, lo)
		}
	}
	for _, k := range []string{"mm/specificity", "mm/specificity_random", "mm/cross_image", "mm/cross_image_random", "mm/region_invariance", "mm/shuffle_overlap"} {
		if _, ok := rep.Metrics()[k]; !ok {
			t.Errorf("no %s", k)
		}
	}
	// c0's region is its whole picture: the restricted image is the image, the list the same.
	byWord := map[string]Concept{}
	for _, c := range rep.Concepts {
		byWord[c.Word] = c
	}
	if r := byWord["cat"].RegionInvariance; r == nil || *r != 1 {
		t.Errorf("cat's region invariance (its box is the whole picture) %v, want 1", r)
	}
	if rep.RegionSamples != 2 {
		t.Errorf("%d samples with a region, want 2", rep.RegionSamples)
	}

	// The lists again, by hand: cross-image invariance is their pairwise Jaccard, and the
	// probability drop of one list is what a mask of it does to the concept at its step.
	lists, _, err := Lists(ctx, m, data, 10, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	cat := [][]neuronset.Neuron{lists[Key{"cat", "c0"}], lists[Key{"cat", "c1"}], lists[Key{"cat", "c3"}]}
	want, _ := MeanPairwiseJaccard(cat)
	if got := byWord["cat"].CrossImage; got == nil || *got != want {
		t.Errorf("cat's cross-image invariance %v, want %v", got, want)
	}
	for _, l := range cat {
		if len(l) != 10 {
			t.Fatalf("a cat list of %d neurons, want 10", len(l))
		}
	}
	// The report's dog drop is the mean over dog's three lists (c1, c2, c3): each what a mask
	// of the list does to dog's probability at its step, recomputed here.
	dogID, _ := m.Tokenizer.WordIDs("dog")
	sum := 0.0
	for _, s := range data[1:4] {
		in, err := m.BuildInput(s.ID, model.Prompt{Text: s.Text, Media: []model.Medium{{Kind: "image", Paths: []string{s.Image}}}})
		if err != nil {
			t.Fatal(err)
		}
		pos := -1
		for p := m.MediaTokens().MediaEnd(in) - 1; p+1 < len(in.Tokens); p++ {
			if in.Tokens[p+1] == dogID[0] {
				pos = p
				break
			}
		}
		if pos < 0 {
			t.Fatalf("%s does not write dog", s.ID)
		}
		prob := func(mask *model.Mask) float64 {
			r, err := m.ForwardInputs(ctx, []model.Input{in}, model.ForwardOptions{AllLogits: true, Mask: mask})
			if err != nil {
				t.Fatal(err)
			}
			V := m.Config().Vocab
			return math.Exp(model.LogSoftmax(r.Logits[0][pos*V : (pos+1)*V])[dogID[0]])
		}
		mask := model.NewMask()
		for _, n := range lists[Key{"dog", s.ID}] {
			mask.Set(model.Site{Module: n.Module, Layer: n.Layer}, n.Index, 0)
		}
		sum += prob(nil) - prob(mask)
	}
	if got := byWord["dog"].ProbDrop; math.Abs(got-sum/3) > 1e-6 {
		t.Errorf("dog's probability drop %v, by hand %v", got, sum/3)
	}
	t.Logf("report: %+v", rep.Metrics())
}

// Specificity by hand: the word's steps move by 0.3 and 0.1 (mean 0.2), the others' by 0.05
// and 0.15 (mean 0.1): 0.2 / 0.3.
func TestSpecificityHandComputed(t *testing.T) {
	steps := []Step{{Word: "dog"}, {Word: "cat"}, {Word: "dog"}, {Word: "ball"}}
	base := []float64{0.5, 0.2, 0.4, 0.3}
	moved := []float64{0.2, 0.25, 0.5, 0.15}
	r, self, other := Specificity(steps, base, moved, "dog")
	if r == nil || math.Abs(*r-2.0/3) > 1e-12 || math.Abs(self-0.2) > 1e-12 || math.Abs(other-0.1) > 1e-12 {
		t.Errorf("Specificity = %v, %v, %v; want 2/3, 0.2, 0.1", r, self, other)
	}
	if r, _, _ := Specificity(steps, base, base, "dog"); r != nil {
		t.Errorf("nothing moved: %v, want nil", *r)
	}
	if r, _, _ := Specificity(steps[:1], base[:1], moved[:1], "dog"); r != nil {
		t.Errorf("no other word: %v, want nil", *r)
	}
}
