package locate

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sort"

	"github.com/neurosurg/neurosurg/formats/neuronset"
)

// DAPEOptions are MMNeuron's (LAPE's) constants.
type DAPEOptions struct {
	TopRate    float64 // fraction of the module's neurons kept (default 0.01)
	FilterRate float64 // percentile of P used as the firing bar (default 0.95)
}

// DAPE selects domain-specific neurons (algorithms.md §3.4): P per label, normalised over
// labels, entropy; neurons whose max P is not above the 95th percentile τ are excluded; the
// TopRate lowest-entropy neurons are kept and assigned to every label where P > τ.
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
	D := len(s.Labels)
	if D < 2 {
		return nil, fmt.Errorf("%w: DAPE needs at least two labels, the stats have %d", ErrStats, D)
	}
	n := s.Layers * s.Neurons
	P := make([][]float64, D)
	var all []float64
	for d, l := range s.Labels {
		P[d] = s.Prob(l)
		all = append(all, P[d]...)
	}
	sort.Float64s(all)
	k := int(math.Round(o.FilterRate * float64(len(all))))
	tau := all[max(0, min(k, len(all))-1)] // the k-th smallest
	ent := make([]float64, n)
	for i := 0; i < n; i++ {
		var sum, mx float64
		for d := 0; d < D; d++ {
			sum += P[d][i]
			mx = math.Max(mx, P[d][i])
		}
		if mx <= tau {
			ent[i] = math.Inf(1)
			continue
		}
		for d := 0; d < D; d++ {
			if p := P[d][i] / sum; p > 0 {
				ent[i] -= p * math.Log(p)
			}
		}
	}
	order := make([]int, n)
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return ent[order[a]] < ent[order[b]] })
	keep := int(math.Round(o.TopRate * float64(n)))
	set := &neuronset.Set{Version: neuronset.Version, Method: "dape", Labels: s.Labels,
		Params: map[string]any{"top_rate": o.TopRate, "filter_rate": o.FilterRate, "tau": tau}}
	for _, i := range order[:keep] {
		if math.IsInf(ent[i], 1) {
			break
		}
		for d, l := range s.Labels {
			if P[d][i] > tau {
				set.Neurons = append(set.Neurons, neuronset.Neuron{Module: s.Module, Layer: i / s.Neurons, Index: i % s.Neurons, Label: l, Score: ent[i]})
			}
		}
	}
	return set, nil
}

// ContribOptions control Contrib.
type ContribOptions struct {
	TopK   int   // neurons per concept (default 1% of the module)
	Layers []int // search only these layers (default: all)
}

// Contrib ranks neurons by Pan et al.'s contribution score to each recorded concept: the mean
// activation at the steps that generate the concept × ⟨down_proj[:, j], unembed[w]⟩
// (algorithms.md §4.5), descending, and keeps the top k.
func Contrib(s *Stats, o ContribOptions) (*neuronset.Set, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	for _, l := range o.Layers {
		if l >= s.Layers {
			return nil, fmt.Errorf("%w: layer %d: the stats have %d layers (0–%d)", ErrOption, l, s.Layers, s.Layers-1)
		}
	}
	if len(s.Concepts) == 0 {
		return nil, fmt.Errorf("%w: no concept was recorded (record --concept WORD)", ErrStats)
	}
	n := s.Layers * s.Neurons
	if o.TopK == 0 {
		o.TopK = max(1, n/100)
	}
	set := &neuronset.Set{Version: neuronset.Version, Method: "contrib", Params: map[string]any{"top_k": o.TopK}}
	for _, c := range s.Concepts {
		if c.Steps == 0 {
			return nil, fmt.Errorf("%w: concept %q was never generated in the recorded samples", ErrStats, c.Word)
		}
		set.Labels = append(set.Labels, c.Word)
		score := make([]float64, n)
		order := make([]int, n)
		for i := range score {
			score[i] = c.ActSum[i] / c.Steps * c.Phi[i]
			order[i] = i
		}
		if len(o.Layers) > 0 {
			in := map[int]bool{}
			for _, l := range o.Layers {
				in[l] = true
			}
			keep := order[:0]
			for _, i := range order {
				if in[i/s.Neurons] {
					keep = append(keep, i)
				}
			}
			order = keep
		}
		sort.SliceStable(order, func(a, b int) bool { return score[order[a]] > score[order[b]] })
		for _, i := range order[:min(o.TopK, len(order))] {
			set.Neurons = append(set.Neurons, neuronset.Neuron{Module: s.Module, Layer: i / s.Neurons, Index: i % s.Neurons, Label: c.Word, Score: score[i]})
		}
	}
	return set, nil
}

// Random draws, for every label and layer, as many neurons as like has there, uniformly
// without replacement, from a seeded generator: the control every paper reports.
func Random(like *neuronset.Set, layers, neurons int, seed uint64) *neuronset.Set {
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
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	set := &neuronset.Set{Version: neuronset.Version, Method: "random", Labels: like.Labels,
		Params: map[string]any{"seed": seed, "like": like.Method}}
	for _, k := range keys {
		for _, j := range rng.Perm(neurons)[:min(count[k], neurons)] {
			set.Neurons = append(set.Neurons, neuronset.Neuron{Module: k.module, Layer: k.layer, Index: j, Label: k.label})
		}
	}
	return set
}
