package locate

import (
	"context"
	"math"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/neurosurg/neurosurg/formats/neuronset"
	"github.com/neurosurg/neurosurg/formats/samples"
	"github.com/neurosurg/neurosurg/model"
)

// statsFromP builds stats whose activation probabilities are exactly P[label][layer*N+j].
func statsFromP(labels []string, layers, neurons int, P map[string][]float64) *Stats {
	s := NewStats("llm", layers, neurons)
	for _, l := range labels {
		ls := s.Modules[0].label(l)
		for i := range ls.Positions {
			ls.Positions[i] = 100
		}
		for i, p := range P[l] {
			ls.Fire[i] = p * 100
		}
	}
	return s
}

func TestDAPEHandComputed(t *testing.T) {
	// 1 layer × 4 neurons, 2 labels. Pooled P = {0,0.1,0.2,0.3,0.4,0.5,0.9,1.0}; filter (and
	// bar) 0.5 → τ = 4th smallest = 0.3. Neuron 0 (0.9 vs 0.1) and neuron 3 (1.0 vs 0) pass; neuron 3 has
	// entropy 0, neuron 0 has H(0.9,0.1) = 0.325; top 50% keeps both; neuron 1 (0.2,0.3) fails.
	P := map[string][]float64{"a": {0.9, 0.2, 0.4, 1.0}, "b": {0.1, 0.3, 0.5, 0}}
	s := statsFromP([]string{"a", "b"}, 1, 4, P)
	set, err := DAPE(s, DAPEOptions{TopRate: 0.5, FilterRate: 0.5, ActivationBarRatio: 0.5})
	if err != nil {
		t.Fatal(err)
	}
	set.Sort()
	got := []neuronset.Neuron{}
	for _, n := range set.Neurons {
		n.Score = math.Round(n.Score*1000) / 1000
		got = append(got, n)
	}
	want := []neuronset.Neuron{
		{Module: "llm", Layer: 0, Index: 0, Label: "a", Score: 0.325},
		{Module: "llm", Layer: 0, Index: 3, Label: "a", Score: 0},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("-want +got:\n%s", d)
	}
}

func TestContribAndRandom(t *testing.T) {
	s := NewStats("llm", 2, 3)
	// score = mean activation × Φ: neuron (1,2) wins, then (0,0).
	s.Modules[0].Concepts = []*ConceptStats{{Word: "cat", TokenID: 5, Steps: 2,
		ActSum: []float64{2, 4, 0, 0, 1, 6}, Phi: []float64{1.5, -1, 9, 0, 0.5, 1}}}
	set, err := Contrib(s, ContribOptions{TopK: 2})
	if err != nil {
		t.Fatal(err)
	}
	if len(set.Neurons) != 2 || set.Neurons[0].Layer != 1 || set.Neurons[0].Index != 2 || set.Neurons[0].Score != 3 ||
		set.Neurons[1].Layer != 0 || set.Neurons[1].Index != 0 || set.Neurons[1].Score != 1.5 {
		t.Errorf("contrib = %+v", set.Neurons)
	}
	geom := map[string]neuronset.Geometry{"llm": {Layers: 2, Neurons: 3}}
	r, err := Random(set, geom, 7)
	if err != nil {
		t.Fatal(err)
	}
	per := map[int]int{}
	for _, n := range r.Neurons {
		per[n.Layer]++
	}
	if per[0] != 1 || per[1] != 1 || len(r.Neurons) != 2 {
		t.Errorf("random per layer %v", per)
	}
	r2, _ := Random(set, geom, 7)
	if !cmp.Equal(r.Neurons, r2.Neurons) {
		t.Error("random is not reproducible for a seed")
	}
}

func TestStatsFileRoundTripAndMerge(t *testing.T) {
	s := statsFromP([]string{"a", "b"}, 1, 2, map[string][]float64{"a": {0.5, 1}, "b": {0, 0.25}})
	s.ModelHash = "m"
	s.Modules[0].ByLabel["a"].Samples = 3
	s.Modules[0].Concepts = []*ConceptStats{{Word: "x", TokenID: 1, Steps: 1, ActSum: []float64{1, 2}, Phi: []float64{3, 4}}}
	path := filepath.Join(t.TempDir(), "s.st")
	if err := s.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	r, err := ReadStats(path)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(s, r); d != "" {
		t.Fatalf("round trip -want +got:\n%s", d)
	}
	if err := r.Merge(s); err != nil {
		t.Fatal(err)
	}
	if r.Modules[0].ByLabel["a"].Fire[1] != 200 || r.Modules[0].Concepts[0].Steps != 2 || r.Modules[0].ByLabel["a"].Samples != 6 {
		t.Errorf("merge did not add: %+v", r.Modules[0].ByLabel["a"])
	}
	other := NewStats("llm", 1, 2)
	other.ModelHash = "other"
	if err := r.Merge(other); err == nil {
		t.Error("merging stats of another model should fail")
	}
}

// On the real stories260K: DAPE's "animals" neurons, masked, hurt animal stories more than the
// same number of random neurons per layer.
func TestStoriesDAPEMaskingHurtsItsLabel(t *testing.T) {
	m, err := model.Open("../testdata/stories260K")
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ss, err := samples.ReadFile("../testdata/samples/stories-animals-food.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	st, err := Record(context.Background(), m, ss, nil, RecordOptions{})
	if err != nil {
		t.Fatal(err)
	}
	set, err := DAPE(st, DAPEOptions{TopRate: 0.05})
	if err != nil {
		t.Fatal(err)
	}
	animals := &neuronset.Set{Method: "dape", Labels: []string{"animals"}}
	for _, n := range set.Neurons {
		if n.Label == "animals" {
			animals.Neurons = append(animals.Neurons, n)
		}
	}
	if len(animals.Neurons) < 3 {
		t.Fatalf("only %d animal neurons", len(animals.Neurons))
	}
	nll := func(set *neuronset.Set, label string) float64 { return maskedNLL(t, m, ss, set, label) }
	// Domain-specific means: it hurts its own label more than the other one.
	effect := func(set *neuronset.Set) float64 {
		return (nll(set, "animals") - nll(nil, "animals")) - (nll(set, "food") - nll(nil, "food"))
	}
	located := effect(animals)
	var random float64
	for seed := uint64(1); seed <= 5; seed++ {
		random += effect(must(Random(animals, st.Geometry(), seed))) / 5
	}
	t.Logf("%d animal neurons: NLL rise on animal minus food stories %.4f (located) vs %.4f (random, mean of 5)", len(animals.Neurons), located, random)
	if located <= random {
		t.Errorf("located neurons: animal-specific NLL rise %.4f, random %.4f", located, random)
	}
}

// Recording in two halves with resume gives the same statistics as one pass.
func TestRecordResumeEqualsOnePass(t *testing.T) {
	m, err := model.Open("../testdata/stories260K")
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ss, _ := samples.ReadFile("../testdata/samples/stories-animals-food.jsonl")
	ss = ss[15:25]
	one, err := Record(context.Background(), m, ss, nil, RecordOptions{ModelHash: "m"})
	if err != nil {
		t.Fatal(err)
	}
	half, _ := Record(context.Background(), m, ss[:4], nil, RecordOptions{ModelHash: "m"})
	skip := map[string]bool{}
	for _, id := range half.SampleIDs {
		skip[id] = true
	}
	both, err := Record(context.Background(), m, ss, half, RecordOptions{ModelHash: "m", Skip: skip})
	if err != nil {
		t.Fatal(err)
	}
	if !cmp.Equal(one.Modules[0].ByLabel, both.Modules[0].ByLabel) || len(both.SampleIDs) != len(ss) {
		t.Errorf("resumed stats differ from one pass (%d ids)", len(both.SampleIDs))
	}
	if _, err := Record(context.Background(), m, ss, half, RecordOptions{ModelHash: "other"}); err == nil {
		t.Error("resuming stats of another model should fail")
	}
}

// maskedNLL is the mean next-token NLL of the samples with label ("" for all) when the
// neurons of set (nil: none) are zeroed at run time.
func maskedNLL(t *testing.T, m *model.Model, ss []samples.Sample, set *neuronset.Set, label string) float64 {
	t.Helper()
	mask := model.NewMask()
	if set != nil {
		for _, n := range set.Neurons {
			mask.Set(model.Site{Module: n.Module, Layer: n.Layer}, n.Index, 0)
		}
	}
	var total float64
	var count int
	for _, smp := range ss {
		if label != "" && smp.Label != label {
			continue
		}
		ids, _ := m.Tokenizer.Encode(smp.Text, true)
		lp, err := m.LogProbs(context.Background(), ids[:1], ids[1:], model.ForwardOptions{Mask: mask})
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range lp {
			total -= v
			count++
		}
	}
	return total / float64(count)
}

// must is a test's way to take a value whose error cannot happen.
func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
