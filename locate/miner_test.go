package locate

import (
	"context"
	"math"
	"math/rand/v2"
	"path/filepath"
	"sort"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/neurosurg/neurosurg/formats/neuronset"
	"github.com/neurosurg/neurosurg/formats/samples"
	"github.com/neurosurg/neurosurg/model"
)

func near(a, b float64) bool { return math.Abs(a-b) < 1e-12 }

// Two positions, three neurons, hand-computed (algorithms.md §2.3).
func TestISMSampleHandComputed(t *testing.T) {
	act := []float32{
		1, -1, 0.5,
		3, -2, 0.5,
	}
	// S rows are queries; Ŝ = S (both positions in the modality).
	S := []float32{0, 0, 0, 1}
	sc := ismSample(act, 3, S, 2, []int{0, 1})
	// prob = {1, 0, 1} -> min-max {1, 0, 1}; mean = {2, -1.5, .5} -> {1, 0, 2/3.5};
	// max = {3, -1, .5} -> {1, 0, 1.5/4}.
	want := [3][]float64{{1, 0, 1}, {1, 0, 2 / 3.5}, {1, 0, 1.5 / 4}}
	for i := 0; i < 3; i++ {
		for j := range want[i] {
			if !near(sc[i][j], want[i][j]) {
				t.Errorf("%s[%d] = %g, want %g", Metrics[i], j, sc[i][j], want[i][j])
			}
		}
	}
	// attn_k: column softmax of [[0,0],[0,1]]: col0 = (.5,.5), col1 = (1/(1+e), e/(1+e));
	// row sums w = (.5+1/(1+e), .5+e/(1+e)).
	e := math.E
	w := []float64{0.5 + 1/(1+e), 0.5 + e/(1+e)}
	raw := make([]float64, 3)
	for j := 0; j < 3; j++ {
		raw[j] = w[0]*float64(act[j]) + w[1]*float64(act[3+j])
	}
	minMax(raw)
	for j := range raw {
		if !near(sc[3][j], raw[j]) {
			t.Errorf("attn_k[%d] = %g, want %g", j, sc[3][j], raw[j])
		}
	}
	// A constant vector normalises to 0, not NaN.
	flat := ismSample([]float32{2, 2}, 2, nil, 1, []int{0})
	if flat[1][0] != 0 || flat[1][1] != 0 {
		t.Errorf("constant mean -> %v", flat[1])
	}
}

// minerNaive writes the four strategies out directly from the table in §2.5.
func minerNaive(W [][]float64, L, N, K int, strategy string) map[[3]int]bool {
	M := len(W)
	type e struct {
		v    float64
		m, k int
	}
	top := func(es []e, k int) []e {
		sort.SliceStable(es, func(a, b int) bool { return es[a].v > es[b].v })
		return es[:min(k, len(es))]
	}
	out := map[[3]int]bool{}
	switch strategy {
	case "adaptive":
		var es []e
		for k := 0; k < L*N; k++ {
			var c float64
			best := 0
			for m := range W {
				c += W[m][k]
				if W[m][k] > W[best][k] {
					best = m
				}
			}
			es = append(es, e{c, best, k})
		}
		for _, x := range top(es, K) {
			out[[3]int{x.m, x.k / N, x.k % N}] = true
		}
	case "LA_MU":
		for m := range W {
			var es []e
			for k := 0; k < L*N; k++ {
				es = append(es, e{W[m][k], m, k})
			}
			for _, x := range top(es, K/M) {
				out[[3]int{m, x.k / N, x.k % N}] = true
			}
		}
	case "LU_MA":
		for l := 0; l < L; l++ {
			var es []e
			for m := range W {
				for j := 0; j < N; j++ {
					es = append(es, e{W[m][l*N+j], m, l*N + j})
				}
			}
			for _, x := range top(es, K/L) {
				out[[3]int{x.m, l, x.k % N}] = true
			}
		}
	case "uniform":
		for l := 0; l < L; l++ {
			for m := range W {
				var es []e
				for j := 0; j < N; j++ {
					es = append(es, e{W[m][l*N+j], m, l*N + j})
				}
				for _, x := range top(es, K/(M*L)) {
					out[[3]int{m, l, x.k % N}] = true
				}
			}
		}
	}
	return out
}

func TestMINERStrategiesAgainstNaive(t *testing.T) {
	L, N := 3, 40
	s := NewStats("llm", L, N)
	d := s.Modules[0].ism("d1")
	rng := rand.New(rand.NewPCG(4, 4))
	for i := range d.Sum {
		d.Sum[i] = rng.Float64()
	}
	d.Count[0], d.Count[1] = 1, 1 // text and special occur; nothing else
	for i := 0; i < 5; i++ {
		for m := 2; m < 7; m++ {
			for k := 0; k < L*N; k++ {
				d.Sum[(i*7+m)*L*N+k] = 0
			}
		}
	}
	weights := [5]float64{0, .25, .25, .5, 0}
	var W [][]float64
	ism := s.Modules[0].ISM()
	for _, m := range []int{0, 1} {
		w := make([]float64, L*N)
		for i := 0; i < 5; i++ {
			for k := range w {
				w[k] += weights[i] * ism[i][m][k]
			}
		}
		W = append(W, w)
	}
	for _, st := range []string{"adaptive", "LA_MU", "LU_MA", "uniform"} {
		set, err := MINER(s, MINEROptions{Strategy: st, Ratio: 0.1})
		if err != nil {
			t.Fatal(err)
		}
		got := map[[3]int]bool{}
		for _, n := range set.Neurons {
			m := map[string]int{"text": 0, "special": 1}[n.Label]
			got[[3]int{m, n.Layer, n.Index}] = true
		}
		if want := minerNaive(W, L, N, 12, st); len(want) == 0 || !cmp.Equal(want, got) {
			t.Errorf("%s: got %d, want %d neurons (or different ones)", st, len(got), len(want))
		}
	}
	r, _ := MINER(s, MINEROptions{Strategy: "random", Ratio: 0.1, Seed: 1})
	if len(r.Neurons) != 12 {
		t.Errorf("random drew %d", len(r.Neurons))
	}
}

// On stories260K: MINER scores are recorded for the text and special (BOS) modalities, survive
// the stats file, and select K = 2% of the neurons split between them.
func TestStoriesMINER(t *testing.T) {
	m, err := model.Open("../testdata/stories260K")
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ss, _ := samples.ReadFile("../testdata/samples/stories-animals-food.jsonl")
	st, err := Record(context.Background(), m, ss[:10], nil, RecordOptions{MINER: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Modules[0].ISMs) != 1 || st.Modules[0].ISMs[0].Count[0] != 10 || st.Modules[0].ISMs[0].Count[1] != 10 || st.Modules[0].ISMs[0].Count[3] != 0 {
		t.Fatalf("ISM counts %+v", st.Modules[0].ISMs[0].Count)
	}
	path := filepath.Join(t.TempDir(), "s.st")
	if err := st.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	back, err := ReadStats(path)
	if err != nil {
		t.Fatal(err)
	}
	if !cmp.Equal(st.Modules[0].ISMs, back.Modules[0].ISMs) {
		t.Fatal("ISMs changed in the file round trip")
	}
	set, err := MINER(back, MINEROptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(set.Labels) != 2 || len(set.Neurons) != 2*(5*172*2/100/2) {
		t.Errorf("labels %v, %d neurons", set.Labels, len(set.Neurons))
	}
}

// MINER's "text" neurons of stories260K, zeroed, raise the NLL of stories more than the same
// number of random neurons per layer (measured: +0.150 vs +0.053, mean of 5 seeds).
func TestStoriesMINERMaskingBeatsRandom(t *testing.T) {
	m, err := model.Open("../testdata/stories260K")
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ss, _ := samples.ReadFile("../testdata/samples/stories-animals-food.jsonl")
	st, err := Record(context.Background(), m, ss, nil, RecordOptions{MINER: true})
	if err != nil {
		t.Fatal(err)
	}
	set, err := MINER(st, MINEROptions{Ratio: 0.05})
	if err != nil {
		t.Fatal(err)
	}
	text := &neuronset.Set{}
	for _, n := range set.Neurons {
		if n.Label == "text" {
			text.Neurons = append(text.Neurons, n)
		}
	}
	nll := func(set *neuronset.Set) float64 { return maskedNLL(t, m, ss, set, "") }
	base := nll(nil)
	located := nll(text) - base
	var random float64
	for seed := uint64(1); seed <= 5; seed++ {
		random += (nll(must(Random(text, st.Geometry(), seed))) - base) / 5
	}
	t.Logf("%d text neurons: NLL +%.4f located, +%.4f random", len(text.Neurons), located, random)
	if located <= random {
		t.Errorf("MINER text neurons raise NLL by %.4f, random ones by %.4f", located, random)
	}
}

// Integrated gradients find neurons whose zeroing lowers the concept's probability where the
// model writes it, more than random neurons of the same per-layer count.
func TestStoriesIGBeatsRandom(t *testing.T) {
	m, err := model.Open("../testdata/stories260K")
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ss, err := samples.ReadFile("../examples/stories-generated.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	set, err := IG(context.Background(), m, ss, IGOptions{Concept: "Lily", TopK: 40, Steps: 8, MaxOccurrences: 8})
	if err != nil {
		t.Fatal(err)
	}
	lily, _ := m.Tokenizer.WordIDs("Lily")
	prompt, _ := m.Tokenizer.Encode("Once upon a time, there was a little girl named", true)
	logp := func(s *neuronset.Set) float64 {
		mask := model.NewMask()
		for _, n := range s.Neurons {
			mask.Set(model.Site{Module: "llm", Layer: n.Layer}, n.Index, 0)
		}
		lp, err := m.LogProbs(context.Background(), prompt, lily[:1], model.ForwardOptions{Mask: mask})
		if err != nil {
			t.Fatal(err)
		}
		return lp[0]
	}
	base := logp(&neuronset.Set{})
	located := base - logp(set)
	var random float64
	for seed := uint64(1); seed <= 5; seed++ {
		random += (base - logp(must(Random(set, map[string]neuronset.Geometry{"llm": {Layers: 5, Neurons: 172}}, seed)))) / 5
	}
	t.Logf("log p(Lily) drop: %.3f with the 40 IG neurons, %.3f with random ones", located, random)
	if located <= random {
		t.Errorf("IG neurons drop log p(Lily) by %.3f, random ones by %.3f", located, random)
	}
}

// A dataset whose samples mix text-only ones with ones holding an image: the per-dataset mean
// divides by the dataset's sample count (ISM_aggregate.py: ISM /= sample_num), so the image
// modality's score is its one sample's score over 2, not over the 1 sample that has an image.
func TestISMDatasetMeanDividesBySampleCount(t *testing.T) {
	s := NewStats("llm", 1, 3)
	r := newRecorder(s)
	r.miner, r.ismCur = true, s.Modules[0].ism("vqa")
	site := model.Site{Module: "llm", Layer: 0}
	// Sample 1: one text position, two image positions.
	r.types = []int{TokText, TokImage, TokImage}
	r.addISM(&model.FFNEvent{Site: site, Rows: 3, Neurons: 3, Act: []float32{
		5, 5, 5,
		1, 0, 3,
		2, 0, 1,
	}})
	// Sample 2: text only.
	r.types = []int{TokText, TokText}
	r.addISM(&model.FFNEvent{Site: site, Rows: 2, Neurons: 3, Act: []float32{
		0, 4, 2,
		0, 2, 2,
	}})
	d := s.Modules[0].ISMs[0]
	if d.Samples() != 2 || d.Count[3] != 1 || d.Count[0] != 2 || d.Count[6] != 2 {
		t.Fatalf("samples %g, counts %v", d.Samples(), d.Count)
	}
	ism := s.Modules[0].ISM()
	// image max = (2, 0, 3) → min-max (2/3, 0, 1), over 2 samples; text max: sample 1 (5,5,5)
	// → 0 (constant), sample 2 (0, 4, 2) → (0, 1, .5); mean over the 2 samples.
	for _, c := range []struct {
		name     string
		modality int
		want     []float64
	}{
		{"image", 3, []float64{1.0 / 3, 0, 0.5}},
		{"text", 0, []float64{0, 0.5, 0.25}},
	} {
		got := ism[2][c.modality]
		for j := range c.want {
			if !near(got[j], c.want[j]) {
				t.Errorf("%s max = %v, want %v", c.name, got, c.want)
				break
			}
		}
	}
	// A one-position prompt is scored (and counted) as the official hook does.
	r.types = []int{TokText}
	r.addISM(&model.FFNEvent{Site: site, Rows: 1, Neurons: 3, Act: []float32{1, 2, 3}})
	if d.Samples() != 3 || d.Count[0] != 3 {
		t.Errorf("one-position sample not counted: %v", d.Count)
	}
}
