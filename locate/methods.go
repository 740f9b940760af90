package locate

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sort"

	"github.com/neurosurg/neurosurg/formats/neuronset"
)

// DAPEOptions are MMNeuron's (LAPE's) constants, named as in their identify.py.
type DAPEOptions struct {
	// Modules are the modules to select in (default: every module the stats hold). Each is
	// selected on its own, as MMNeuron identifies per module: its own quantiles, its own top
	// rate.
	Modules    []string
	TopRate    float64 // fraction of the module's neurons kept by lowest entropy (default 0.01)
	FilterRate float64 // quantile of all P a neuron's largest P must exceed to be a candidate (default 0.95)
	// ActivationBarRatio is the quantile of all P a label's P must exceed for a kept neuron to
	// be assigned to that label (default 0.95). The official code keeps it apart from
	// FilterRate: filtering at 0.9 still assigns at the 0.95 quantile.
	ActivationBarRatio float64
}

// DAPE selects domain-specific neurons as MMNeuron's (and LAPE's) identify.py does
// (algorithms.md §3.4): P = firing probability per label; p̃ = P normalised over labels;
// entropy of p̃. Over all L·N·D values of P, τ is the k-th smallest with k = round(FilterRate ·
// L·N·D) and the bar the k-th smallest with k = round(ActivationBarRatio · L·N·D) (Python's
// round, half to even; no interpolation). Neurons with no P > τ are excluded; of the rest the
// round(TopRate · L·N) with the lowest entropy are kept (ties: lower layer, then index, first —
// torch.topk leaves their order unspecified), each assigned to every label whose P > bar.
//
// P is computed in float32, as the official torch tensors are, so that the quantiles and the
// strict comparisons decide as they do; the entropy is taken in float64. One deviation: when
// fewer neurons pass the filter than TopRate keeps, torch.topk fills the rest with excluded
// ones in an unspecified order; DAPE keeps only candidates. The two agree whenever
// ActivationBarRatio ≥ FilterRate (the defaults): an excluded neuron has no P above τ ≤ bar.
func DAPE(s *Stats, o DAPEOptions) (*neuronset.Set, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if o.TopRate == 0 {
		o.TopRate = 0.01
	}
	if o.FilterRate == 0 {
		o.FilterRate = 0.95
	}
	if o.ActivationBarRatio == 0 {
		o.ActivationBarRatio = 0.95
	}
	for _, r := range []struct {
		name string
		v    float64
	}{{"top rate", o.TopRate}, {"filter rate", o.FilterRate}, {"activation bar ratio", o.ActivationBarRatio}} {
		if !(r.v > 0 && r.v <= 1) {
			return nil, fmt.Errorf("%w: DAPE %s %g is not in (0, 1]", ErrStats, r.name, r.v)
		}
	}
	mods := o.Modules
	if len(mods) == 0 {
		mods = s.ModuleNames()
	}
	set := &neuronset.Set{Version: neuronset.Version, Method: "dape",
		Params: map[string]any{"top_rate": o.TopRate, "filter_rate": o.FilterRate, "activation_bar_ratio": o.ActivationBarRatio}}
	taus, bars := map[string]any{}, map[string]any{}
	for _, name := range mods {
		ms, err := s.module(name)
		if err != nil {
			return nil, err
		}
		tau, bar, err := ms.dape(o, set)
		if err != nil {
			return nil, err
		}
		taus[name], bars[name] = float64(tau), float64(bar)
		for _, l := range ms.Labels {
			if !slices.Contains(set.Labels, l) {
				set.Labels = append(set.Labels, l)
			}
		}
	}
	sort.Strings(set.Labels)
	// One module keeps the single thresholds of a decoder-only run; several name theirs.
	if len(mods) == 1 {
		set.Params["tau"], set.Params["bar"] = taus[mods[0]], bars[mods[0]]
	} else {
		set.Params["tau"], set.Params["bar"] = taus, bars
	}
	return set, nil
}

// dape selects in one module (see DAPE) and appends the neurons to set; it returns the
// module's filter threshold τ and assignment bar.
func (s *ModuleStats) dape(o DAPEOptions, set *neuronset.Set) (tau, bar float32, err error) {
	D := len(s.Labels)
	if D < 2 {
		return 0, 0, fmt.Errorf("%w: DAPE needs at least two labels, module %s has %d", ErrStats, s.Module, D)
	}
	n := s.Layers * s.Neurons
	P := make([][]float32, D)
	var all []float32
	for d, l := range s.Labels {
		P[d] = s.prob32(l)
		all = append(all, P[d]...)
	}
	slices.Sort(all)
	// kthValue is torch's kthvalue(round(len · rate)): the k-th smallest, k counted from 1.
	kthValue := func(rate float64) float32 {
		k := int(math.RoundToEven(float64(len(all)) * rate))
		return all[max(1, min(k, len(all)))-1]
	}
	tau, bar = kthValue(o.FilterRate), kthValue(o.ActivationBarRatio)
	ent := make([]float64, n)
	for i := 0; i < n; i++ {
		var sum float64
		candidate := false
		for d := 0; d < D; d++ {
			sum += float64(P[d][i])
			candidate = candidate || P[d][i] > tau
		}
		if !candidate {
			ent[i] = math.Inf(1)
			continue
		}
		for d := 0; d < D; d++ {
			if p := float64(P[d][i]) / sum; p > 0 {
				ent[i] -= p * math.Log(p)
			}
		}
	}
	order := make([]int, n)
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return ent[order[a]] < ent[order[b]] })
	keep := min(n, int(math.RoundToEven(o.TopRate*float64(n))))
	for _, i := range order[:keep] {
		if math.IsInf(ent[i], 1) {
			break
		}
		for d, l := range s.Labels {
			if P[d][i] > bar {
				set.Neurons = append(set.Neurons, neuronset.Neuron{Module: s.Module, Layer: i / s.Neurons, Index: i % s.Neurons, Label: l, Score: ent[i]})
			}
		}
	}
	return tau, bar, nil
}

// Contribution-score modes (ContribOptions.Mode).
const (
	// ContribPooled scores each concept once over the whole corpus: the mean activation over
	// every position that generates it (neurosurg's reading; the default).
	ContribPooled = "pooled"
	// ContribPerSample is Pan et al.'s official reading (MM_Neurons trainer.py): one caption at
	// a time, the activations at the concept's first generating step only, and a ranked list
	// per (sample, concept) that is never merged across samples.
	ContribPerSample = "per-sample"
)

// ContribOptions control Contrib.
type ContribOptions struct {
	// Module is the module to rank in: only the language model ("llm", the default) has a
	// direct effect on the logits, so it is the only one contribution scores are defined for.
	Module string
	TopK   int    // neurons per concept, or per (sample, concept) in per-sample mode (default 1% of the module)
	Layers []int  // search only these layers (default: all)
	Mode   string // ContribPooled (default) or ContribPerSample
}

// Contrib ranks neurons by Pan et al.'s contribution score to each recorded concept,
// activation × Φ with Φ[j] = ⟨down_proj[:, j], unembed[w]⟩ (algorithms.md §4.5), descending
// (ties: lower layer, then index, first), and keeps the top k.
//
// Pooled (default): the activation is the mean over every position of the corpus that
// generates the concept; one list per concept, labelled with the word.
//
// Per-sample (the official code's reading; needs RecordOptions.PerSample): for each sample that
// generates the concept, the activation at its first generating step (output_tokens.index),
// one list per (sample, concept) labelled "word@sample-id". The official code saves each such
// list (top 10,000) on its own and perturbs per caption; it never aggregates across samples,
// so neither does this mode. Patching the whole set edits the union of the lists; pick one
// with a label filter.
func Contrib(st *Stats, o ContribOptions) (*neuronset.Set, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	s, err := st.module("llm")
	if err != nil {
		return nil, fmt.Errorf("%w (contribution scores rank the language model's neurons)", err)
	}
	for _, l := range o.Layers {
		if l >= s.Layers {
			return nil, fmt.Errorf("%w: layer %d: the stats have %d layers (0–%d)", ErrOption, l, s.Layers, s.Layers-1)
		}
	}
	if len(s.Concepts) == 0 {
		return nil, fmt.Errorf("%w: no concept was recorded (record --concept WORD)", ErrStats)
	}
	if o.Mode == "" {
		o.Mode = ContribPooled
	}
	if o.Mode != ContribPooled && o.Mode != ContribPerSample {
		return nil, fmt.Errorf("%w: contrib mode %q (%s, %s)", ErrStats, o.Mode, ContribPooled, ContribPerSample)
	}
	n := s.Layers * s.Neurons
	if o.TopK == 0 {
		o.TopK = max(1, n/100)
	}
	set := &neuronset.Set{Version: neuronset.Version, Method: "contrib", Params: map[string]any{"top_k": o.TopK}}
	if o.Mode == ContribPerSample {
		set.Params["mode"] = o.Mode
	}
	var in map[int]bool // layers searched; nil: all
	if len(o.Layers) > 0 {
		in = map[int]bool{}
		for _, l := range o.Layers {
			in[l] = true
		}
	}
	// rank appends the top k neurons by act[i] × Φ[i] under label.
	rank := func(label string, act func(i int) float64, phi []float64) {
		set.Labels = append(set.Labels, label)
		score := make([]float64, n)
		order := make([]int, 0, n)
		for i := range score {
			score[i] = act(i) * phi[i]
			if in == nil || in[i/s.Neurons] {
				order = append(order, i)
			}
		}
		sort.SliceStable(order, func(a, b int) bool { return score[order[a]] > score[order[b]] })
		for _, i := range order[:min(o.TopK, len(order))] {
			set.Neurons = append(set.Neurons, neuronset.Neuron{Module: s.Module, Layer: i / s.Neurons, Index: i % s.Neurons, Label: label, Score: score[i]})
		}
	}
	for _, c := range s.Concepts {
		if c.Steps == 0 {
			return nil, fmt.Errorf("%w: concept %q was never generated in the recorded samples", ErrStats, c.Word)
		}
		if o.Mode == ContribPooled {
			rank(c.Word, func(i int) float64 { return c.ActSum[i] / c.Steps }, c.Phi)
			continue
		}
		if len(c.First) == 0 {
			return nil, fmt.Errorf("%w: concept %q has no per-sample activations (record with --per-sample)", ErrStats, c.Word)
		}
		for k, first := range c.First {
			rank(c.Word+"@"+c.FirstIDs[k], func(i int) float64 { return first[i] }, c.Phi)
		}
	}
	return set, nil
}

// Random draws, for every label, module and layer, as many neurons as like has there,
// uniformly without replacement, from a seeded generator: the control every paper reports.
// geom is the FFN shape of every module of the model (a module or layer of like outside it is
// an error).
func Random(like *neuronset.Set, geom map[string]neuronset.Geometry, seed uint64) (*neuronset.Set, error) {
	type key struct {
		label, module string
		layer         int
	}
	count := map[key]int{}
	var keys []key
	for _, nr := range like.Neurons {
		k := key{nr.Label, nr.Module, nr.Layer}
		if count[k] == 0 {
			keys = append(keys, k)
		}
		count[k]++
	}
	sort.Slice(keys, func(a, b int) bool {
		if keys[a].label != keys[b].label {
			return keys[a].label < keys[b].label
		}
		if keys[a].module != keys[b].module {
			return keys[a].module < keys[b].module
		}
		return keys[a].layer < keys[b].layer
	})
	if err := like.CheckGeometry("the model", geom); err != nil {
		return nil, fmt.Errorf("random: %w", err)
	}
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	set := &neuronset.Set{Version: neuronset.Version, Method: "random", Labels: like.Labels,
		Params: map[string]any{"seed": seed, "like": like.Method}}
	for _, k := range keys {
		neurons := geom[k.module].Neurons
		for _, j := range rng.Perm(neurons)[:min(count[k], neurons)] {
			set.Neurons = append(set.Neurons, neuronset.Neuron{Module: k.module, Layer: k.layer, Index: j, Label: k.label})
		}
	}
	return set, nil
}
