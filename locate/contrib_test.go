package locate

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/neurosurg/neurosurg/formats/neuronset"
	"github.com/neurosurg/neurosurg/formats/samples"
	"github.com/neurosurg/neurosurg/model"
)

// Per-sample contribution scores (Pan et al.'s official reading), by hand: 2 layers × 3
// neurons, Φ = (1.5, −1, 9 | 0, .5, 1). Sample s1's first "cat" step has activations
// (2, 4, 0 | 0, 1, 6) → scores (3, −4, 0 | 0, .5, 6): top 2 = (1,2) 6, (0,0) 3. Sample s2's
// (0, −2, 1 | 3, 8, 0) → (0, 2, 9 | 0, 4, 0): top 2 = (0,2) 9, (1,1) 4. Each sample keeps its
// own list; nothing is merged. The pooled reading of the same stats ranks the mean instead.
func TestContribPerSampleHandComputed(t *testing.T) {
	s := NewStats("llm", 2, 3)
	s.Modules[0].Concepts = []*ConceptStats{{Word: "cat", TokenID: 5, Steps: 3,
		ActSum: []float64{2, 2, 1, 6, 9, 6}, Phi: []float64{1.5, -1, 9, 0, 0.5, 1},
		First:    [][]float64{{2, 4, 0, 0, 1, 6}, {0, -2, 1, 3, 8, 0}},
		FirstIDs: []string{"s1", "s2"}}}
	set, err := Contrib(s, ContribOptions{TopK: 2, Mode: ContribPerSample})
	if err != nil {
		t.Fatal(err)
	}
	want := []neuronset.Neuron{
		{Module: "llm", Layer: 1, Index: 2, Label: "cat@s1", Score: 6},
		{Module: "llm", Layer: 0, Index: 0, Label: "cat@s1", Score: 3},
		{Module: "llm", Layer: 0, Index: 2, Label: "cat@s2", Score: 9},
		{Module: "llm", Layer: 1, Index: 1, Label: "cat@s2", Score: 4},
	}
	if d := cmp.Diff(want, set.Neurons); d != "" {
		t.Errorf("per-sample (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]string{"cat@s1", "cat@s2"}, set.Labels); d != "" || set.Params["mode"] != ContribPerSample {
		t.Errorf("labels %v, params %v", set.Labels, set.Params)
	}
	// Restricted to layer 1: s1 → (1,2) 6, (1,1) .5; s2 → (1,1) 4, then (1,0) and (1,2) tie
	// at 0: the lower index first.
	set, _ = Contrib(s, ContribOptions{TopK: 2, Mode: ContribPerSample, Layers: []int{1}})
	got := [][2]int{}
	for _, n := range set.Neurons {
		got = append(got, [2]int{n.Layer, n.Index})
	}
	if d := cmp.Diff([][2]int{{1, 2}, {1, 1}, {1, 1}, {1, 0}}, got); d != "" {
		t.Errorf("per-sample in layer 1 (-want +got):\n%s", d)
	}
	// Pooled: mean (2/3, 2/3, 1/3 | 2, 3, 2) × Φ = (1, −2/3, 3 | 0, 1.5, 2): (0,2), (1,2).
	pooled, _ := Contrib(s, ContribOptions{TopK: 2})
	if len(pooled.Neurons) != 2 || pooled.Neurons[0].Index != 2 || pooled.Neurons[0].Layer != 0 ||
		pooled.Neurons[1].Layer != 1 || pooled.Neurons[1].Index != 2 || pooled.Labels[0] != "cat" || pooled.Params["mode"] != nil {
		t.Errorf("pooled = %+v %v", pooled.Neurons, pooled.Params)
	}
	if _, err := Contrib(s, ContribOptions{Mode: "sum"}); err == nil {
		t.Error("an unknown mode was accepted")
	}
	s.Modules[0].Concepts[0].First, s.Modules[0].Concepts[0].FirstIDs = nil, nil
	if _, err := Contrib(s, ContribOptions{Mode: ContribPerSample}); err == nil {
		t.Error("per-sample mode without per-sample activations should fail")
	}
}

// actAt is a tap keeping the activations of one position.
type actAt struct {
	pos int
	act [][]float32 // [layer]
}

func (a *actAt) FFN(e *model.FFNEvent) {
	if t := a.pos - e.Pos0; t >= 0 && t < e.Rows {
		for len(a.act) <= e.Site.Layer {
			a.act = append(a.act, nil)
		}
		a.act[e.Site.Layer] = append([]float32(nil), e.Act[t*e.Neurons:(t+1)*e.Neurons]...)
	}
}

// Record --per-sample keeps, for every sample that writes the concept, the activations at the
// step that generates its first occurrence — a sample that writes "Lily" twice contributes its
// first step only, one without "Lily" nothing — and they survive the stats file and merge.
func TestRecordPerSampleFirstOccurrence(t *testing.T) {
	m, err := model.Open("../testdata/stories260K")
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ss := []samples.Sample{
		{ID: "twice", Text: "Once upon a time, there was a girl named Lily. Lily liked to play.", Label: "s"},
		{ID: "none", Text: "The dog ran to the park.", Label: "s"},
		{ID: "once", Text: "Tom and Lily went to the park.", Label: "s"},
	}
	st, err := Record(context.Background(), m, ss, nil, RecordOptions{Concepts: []string{"Lily"}, PerSample: true})
	if err != nil {
		t.Fatal(err)
	}
	c := st.Modules[0].Concepts[0]
	if c.Steps != 3 || !cmp.Equal(c.FirstIDs, []string{"twice", "once"}) || len(c.First) != 2 {
		t.Fatalf("steps %g, first samples %v", c.Steps, c.FirstIDs)
	}
	for k, smp := range []samples.Sample{ss[0], ss[2]} {
		ids, _ := model.TextPrompt(m.Tokenizer, smp.Text, false, 0)
		first := -1
		for p := 0; p+1 < len(ids); p++ {
			if ids[p+1] == c.TokenID {
				first = p
				break
			}
		}
		tap := &actAt{pos: first}
		if _, err := m.Forward(context.Background(), [][]int32{ids}, model.ForwardOptions{Taps: []model.Tap{tap}}); err != nil {
			t.Fatal(err)
		}
		for l, row := range tap.act {
			for j, v := range row {
				if got := c.First[k][l*st.Modules[0].Neurons+j]; got != float64(v) {
					t.Fatalf("%s: first[%d][%d] = %g, want the activation at position %d, %g", smp.ID, l, j, got, first, v)
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
	if d := cmp.Diff(st.Modules[0].Concepts, back.Modules[0].Concepts); d != "" {
		t.Fatalf("concepts changed in the file round trip:\n%s", d)
	}
	if err := back.Merge(st); err != nil {
		t.Fatal(err)
	}
	if bc := back.Modules[0].Concepts[0]; len(bc.First) != 4 || bc.FirstIDs[2] != "twice" || bc.Steps != 6 {
		t.Errorf("merge: %d first rows, ids %v", len(bc.First), bc.FirstIDs)
	}
	set, err := Contrib(back, ContribOptions{TopK: 5, Mode: ContribPerSample})
	if err != nil {
		t.Fatal(err)
	}
	if len(set.Neurons) != 4*5 || set.Neurons[0].Label != "Lily@twice" {
		t.Errorf("%d neurons, first label %q", len(set.Neurons), set.Neurons[0].Label)
	}
	// Without --per-sample nothing per sample is kept (the stats stay the size they were).
	plain, _ := Record(context.Background(), m, ss, nil, RecordOptions{Concepts: []string{"Lily"}})
	if len(plain.Modules[0].Concepts[0].First) != 0 || !cmp.Equal(plain.Modules[0].Concepts[0].ActSum, c.ActSum) {
		t.Error("recording without PerSample kept per-sample rows or changed the pooled sums")
	}
}
