package locate

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/neurosurg/neurosurg/formats/neuronset"
	"github.com/neurosurg/neurosurg/formats/samples"
	"github.com/neurosurg/neurosurg/model"
)

// officialIdentify is activation() of MMNeuron's scripts/identify.py (line for line LAPE's
// identify.py), written out in Go step by step from the official code, independently of DAPE:
//
//	activation_probs = logs / token_nums                       # L × N × D, float32
//	normed = activation_probs / activation_probs.sum(-1); NaN → 0
//	entropy = -Σ normed · log(normed)  (0 where normed = 0)
//	top_prob_value = flattened_probs.kthvalue(round(len · filter_rate))
//	entropy[(activation_probs > top_prob_value).sum(-1) == 0] = inf
//	_, index = entropy.flatten().topk(round(len(entropy) · top_rate), largest=False)
//	activation_bar = flattened_probs.kthvalue(round(len · activation_bar_ratio))
//	lang, indice = torch.where(selected_probs.T > activation_bar)
//
// counts[d][l*N+j] are firing counts, tokens[d] the positions of domain d. The result is, per
// domain, the sorted (layer, neuron) pairs — grouped by domain index, not by the official
// torch.bincount split (which shifts the lists when a domain gets nothing). Python's round is
// half to even; kthvalue counts from 1. torch.topk leaves the order of equal entropies open;
// here the lower flat index goes first, as in DAPE. Arithmetic is float32, as torch's.
func officialIdentify(counts [][]float64, tokens []float64, L, N int, topRate, filterRate, barRatio float64) [][][2]int {
	D := len(counts)
	probs := make([][]float32, L*N) // [l*N+j][d]
	var flat []float32
	for i := range probs {
		probs[i] = make([]float32, D)
		for d := 0; d < D; d++ {
			probs[i][d] = float32(counts[d][i]) / float32(tokens[d])
			flat = append(flat, probs[i][d]) // flatten() of L × N × D: domain fastest
		}
	}
	entropy := make([]float32, L*N)
	for i, p := range probs {
		var sum float32
		for _, v := range p {
			sum += v
		}
		for _, v := range p {
			normed := v / sum
			if math.IsNaN(float64(normed)) {
				normed = 0
			}
			if normed > 0 {
				entropy[i] -= normed * float32(math.Log(float64(normed)))
			}
		}
	}
	kthvalue := func(v []float32, k int) float32 {
		s := append([]float32(nil), v...)
		sort.Slice(s, func(a, b int) bool { return s[a] < s[b] })
		return s[k-1]
	}
	pyRound := func(x float64) int { return int(math.RoundToEven(x)) }
	topProbValue := kthvalue(flat, pyRound(float64(len(flat))*filterRate))
	for i, p := range probs {
		over := 0
		for _, v := range p {
			if v > topProbValue {
				over++
			}
		}
		if over == 0 {
			entropy[i] = float32(math.Inf(1))
		}
	}
	index := make([]int, L*N)
	for i := range index {
		index[i] = i
	}
	sort.SliceStable(index, func(a, b int) bool { return entropy[index[a]] < entropy[index[b]] })
	index = index[:pyRound(float64(len(entropy))*topRate)]
	activationBar := kthvalue(flat, pyRound(float64(len(flat))*barRatio))
	out := make([][][2]int, D)
	for d := 0; d < D; d++ { // torch.where over selected_probs.T: domain-major
		for _, i := range index {
			if probs[i][d] > activationBar {
				out[d] = append(out[d], [2]int{i / N, i % N})
			}
		}
		sort.Slice(out[d], func(a, b int) bool {
			if out[d][a][0] != out[d][b][0] {
				return out[d][a][0] < out[d][b][0]
			}
			return out[d][a][1] < out[d][b][1]
		})
	}
	return out
}

// identifyStats runs officialIdentify on a stats file's counts.
func identifyStats(s *Stats, top, filter, bar float64) [][][2]int {
	var counts [][]float64
	var tokens []float64
	for _, l := range s.Modules[0].Labels {
		counts = append(counts, s.Modules[0].ByLabel[l].Fire)
		tokens = append(tokens, s.Modules[0].ByLabel[l].Positions[0])
	}
	return officialIdentify(counts, tokens, s.Modules[0].Layers, s.Modules[0].Neurons, top, filter, bar)
}

// byLabel groups a set's neurons per label of s, in the officialIdentify layout.
func byLabel(s *Stats, set *neuronset.Set) [][][2]int {
	out := make([][][2]int, len(s.Modules[0].Labels))
	set.Sort()
	for _, n := range set.Neurons {
		d := sort.SearchStrings(s.Modules[0].Labels, n.Label)
		out[d] = append(out[d], [2]int{n.Layer, n.Index})
	}
	return out
}

// 1 layer × 5 neurons, 2 labels, 10 positions each; firing counts a/b: 10/0, 9/1, 6/6, 8/0,
// 2/3. Pooled P sorted: 0 0 .1 .2 .3 .6 .6 .8 .9 1. Entropies: 0, .325, ln 2, 0, .673.
func TestDAPEHandBuiltAgainstOfficial(t *testing.T) {
	s := NewStats("llm", 1, 5)
	for l, fire := range map[string][]float64{"a": {10, 9, 6, 8, 2}, "b": {0, 1, 6, 0, 3}} {
		ls := s.Modules[0].label(l)
		ls.Positions[0] = 10
		copy(ls.Fire, fire)
	}
	cases := []struct {
		top, filter, bar float64
		want             [][][2]int // per label a, b
	}{
		// τ = 5th smallest = .3 excludes neuron 4; the 3 lowest entropies are 0, 3, 1; the bar,
		// the 8th smallest = .8, is passed by neurons 0 (1.0) and 1 (.9) of a only: neuron 3's
		// .8 is not above it. With one rate for both (the old reading) neuron 3 was in.
		{0.6, 0.5, 0.8, [][][2]int{{{0, 0}, {0, 1}}, nil}},
		{0.6, 0.5, 0.5, [][][2]int{{{0, 0}, {0, 1}, {0, 3}}, nil}},
		// 10 · .45 = 4.5 rounds half to even, to 4 (Python's round), not 5: τ = bar = .2, so
		// neuron 4 (.2, .3) is a candidate and goes to b; with k = 5 it would be excluded.
		{1, 0.45, 0.45, [][][2]int{{{0, 0}, {0, 1}, {0, 2}, {0, 3}}, {{0, 2}, {0, 4}}}},
		// Defaults .95 for both: bar = 10th smallest = 1.0, which nothing exceeds.
		{0.6, 0.95, 0.95, [][][2]int{nil, nil}},
	}
	for _, c := range cases {
		name := fmt.Sprintf("top%g/filter%g/bar%g", c.top, c.filter, c.bar)
		if d := cmp.Diff(c.want, identifyStats(s, c.top, c.filter, c.bar)); d != "" {
			t.Errorf("%s: the reference disagrees with the hand computation (-hand +reference):\n%s", name, d)
		}
		set, err := DAPE(s, DAPEOptions{TopRate: c.top, FilterRate: c.filter, ActivationBarRatio: c.bar})
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(c.want, byLabel(s, set)); d != "" {
			t.Errorf("%s: DAPE (-hand +DAPE):\n%s", name, d)
		}
	}
	// The bar defaults to 0.95 on its own, whatever the filter rate.
	def, _ := DAPE(s, DAPEOptions{TopRate: 0.6, FilterRate: 0.5})
	bar95, _ := DAPE(s, DAPEOptions{TopRate: 0.6, FilterRate: 0.5, ActivationBarRatio: 0.95})
	if !cmp.Equal(def, bar95) {
		t.Errorf("default bar: %v, bar .95: %v", def.Neurons, bar95.Neurons)
	}
	for _, bad := range []DAPEOptions{{ActivationBarRatio: 1.5}, {FilterRate: -0.1}, {TopRate: math.NaN()}} {
		if _, err := DAPE(s, bad); err == nil {
			t.Errorf("DAPE accepted %+v", bad)
		}
	}
}

// Random counts (with many ties, as real counts have) over 3 labels: DAPE selects what the
// official code selects at every combination of rates with bar ≥ filter.
func TestDAPERandomAgainstOfficial(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	L, N := 4, 50
	s := NewStats("llm", L, N)
	for _, l := range []string{"a", "b", "c"} {
		ls := s.Modules[0].label(l)
		pos := float64(80 + rng.IntN(40))
		for i := range ls.Positions {
			ls.Positions[i] = pos
		}
		for i := range ls.Fire {
			ls.Fire[i] = math.Floor(rng.Float64() * rng.Float64() * pos)
		}
	}
	selected := 0
	for _, top := range []float64{0.01, 0.05, 0.2} {
		for _, fb := range [][2]float64{{0.9, 0.95}, {0.95, 0.95}, {0.8, 0.9}, {0.5, 0.99}} {
			want := identifyStats(s, top, fb[0], fb[1])
			for _, w := range want {
				selected += len(w)
			}
			set, err := DAPE(s, DAPEOptions{TopRate: top, FilterRate: fb[0], ActivationBarRatio: fb[1]})
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(want, byLabel(s, set)); d != "" {
				t.Errorf("top %g filter %g bar %g (-official +DAPE):\n%s", top, fb[0], fb[1], d)
			}
		}
	}
	if selected < 20 {
		t.Errorf("the official code selected only %d neurons over all rates: the comparison is too thin", selected)
	}
}

// On stories260K's recorded statistics (animals vs food), DAPE at filter rate 0.9 selects
// exactly what the official code selects (the bar stays at 0.95).
func TestStoriesDAPEAgainstOfficial(t *testing.T) {
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
	for _, top := range []float64{0.01, 0.05} {
		for _, filter := range []float64{0.9, 0.95} {
			want := identifyStats(st, top, filter, 0.95)
			set, err := DAPE(st, DAPEOptions{TopRate: top, FilterRate: filter})
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("top %g filter %g: %d neurons (official %d + %d)", top, filter, len(set.Neurons), len(want[0]), len(want[1]))
			if len(want[0])+len(want[1]) == 0 {
				t.Errorf("top %g filter %g: the official code selects nothing; the comparison is empty", top, filter)
			}
			if d := cmp.Diff(want, byLabel(st, set)); d != "" {
				t.Errorf("top %g filter %g (-official +DAPE):\n%s", top, filter, d)
			}
		}
	}
}
