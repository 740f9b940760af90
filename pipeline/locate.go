package pipeline

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/neurosurg/neurosurg/formats/neuronset"
	"github.com/neurosurg/neurosurg/formats/samples"
	"github.com/neurosurg/neurosurg/locate"
	"github.com/neurosurg/neurosurg/model"
)

// LocateParams are every selection parameter a caller can give, named as the recipe's
// locate keys name them (the CLI's flags are the same names with dashes). Zero values pick
// each method's default. A parameter the method does not read is refused, so a value meant
// for another method never silently does nothing.
type LocateParams struct {
	Method string // one of locate.Methods

	// miner
	Weights  []float64 // prob, mean, max, attn_k, attn_q
	Ratio    float64
	Strategy string
	Split    string

	// dape
	TopRate            float64
	FilterRate         float64
	ActivationBarRatio float64

	// contrib and ig
	TopK int
	// contrib
	Layers      []int
	ContribMode string

	// ig
	Concept        string
	Steps          int
	MaxOccurrences int

	// random: the set whose count per (label, module, layer) the random draw copies
	Like *neuronset.Set

	// miner (strategy random) and random
	Seed uint64

	// every method: keep only the neurons of this label
	Label string

	// dape: the modules to select in, each on its own (default every recorded one); miner and
	// contrib: the one module (default llm, contrib's only)
	Modules []string
}

// uses lists, per method, the parameters it reads (Label is read by every method).
var uses = map[string][]string{
	"miner":   {"weights", "ratio", "strategy", "split", "seed", "module"},
	"dape":    {"top_rate", "filter_rate", "activation_bar_ratio", "module"},
	"contrib": {"top_k", "layers", "contrib_mode", "module"},
	"ig":      {"concept", "top_k", "steps", "max_occurrences"},
	"random":  {"like", "seed"},
}

// given lists the parameters p sets (non-zero).
func (p LocateParams) given() []string {
	var g []string
	add := func(name string, set bool) {
		if set {
			g = append(g, name)
		}
	}
	add("weights", len(p.Weights) > 0)
	add("ratio", p.Ratio != 0)
	add("strategy", p.Strategy != "")
	add("split", p.Split != "")
	add("top_rate", p.TopRate != 0)
	add("filter_rate", p.FilterRate != 0)
	add("activation_bar_ratio", p.ActivationBarRatio != 0)
	add("top_k", p.TopK != 0)
	add("layers", len(p.Layers) > 0)
	add("contrib_mode", p.ContribMode != "")
	add("concept", p.Concept != "")
	add("steps", p.Steps != 0)
	add("max_occurrences", p.MaxOccurrences != 0)
	add("like", p.Like != nil)
	add("seed", p.Seed != 0)
	add("module", len(p.Modules) > 0)
	return g
}

// Locator is a method with its parameters checked: what Locate runs.
type Locator struct {
	p       LocateParams
	miner   locate.MINEROptions
	dape    locate.DAPEOptions
	contrib locate.ContribOptions
	ig      locate.IGOptions
}

// NewLocator checks p: a known method, only parameters it reads, each within its range. Every
// error wraps locate.ErrOption and names the parameter, so a caller fails before it records or
// loads anything.
func NewLocator(p LocateParams) (*Locator, error) {
	want, ok := uses[p.Method]
	if !ok {
		return nil, fmt.Errorf("%w: method %q: want one of %s", locate.ErrOption, p.Method, strings.Join(locate.Methods, ", "))
	}
	for _, g := range p.given() {
		if !slices.Contains(want, g) {
			return nil, fmt.Errorf("%w: %s does not apply to method %s (it reads %s)", locate.ErrOption, g, p.Method, strings.Join(want, ", "))
		}
	}
	// Module names as users give them: MMNeuron's aliases read as ours; "all" is every
	// recorded module, which dape selects in each on its own (its default).
	if len(p.Modules) > 0 {
		var mods []string
		for _, m := range p.Modules {
			if c := neuronset.CanonicalModule(m); c == neuronset.AllModules {
				if p.Method != "dape" || len(p.Modules) > 1 {
					return nil, fmt.Errorf("%w: module all selects in every recorded module, each on its own: dape only, and alone", locate.ErrOption)
				}
			} else if !slices.Contains(mods, c) {
				mods = append(mods, c)
			}
		}
		p.Modules = mods
	}
	l := &Locator{p: p}
	var err error
	// miner and contrib select in one module
	one := ""
	if len(p.Modules) > 1 && p.Method != "dape" {
		return nil, fmt.Errorf("%w: method %s selects in one module; got module %s", locate.ErrOption, p.Method, strings.Join(p.Modules, ", "))
	} else if len(p.Modules) == 1 {
		one = p.Modules[0]
	}
	switch p.Method {
	case "miner":
		l.miner = locate.MINEROptions{Module: one, Ratio: p.Ratio, Strategy: p.Strategy, Split: p.Split, Seed: p.Seed}
		if len(p.Weights) != 0 && len(p.Weights) != len(l.miner.Weights) {
			return nil, fmt.Errorf("%w: weights takes %d numbers (%s), got %d", locate.ErrOption, len(l.miner.Weights), strings.Join(locate.Metrics, ", "), len(p.Weights))
		}
		copy(l.miner.Weights[:], p.Weights)
		err = l.miner.Validate()
	case "dape":
		l.dape = locate.DAPEOptions{Modules: p.Modules, TopRate: p.TopRate, FilterRate: p.FilterRate, ActivationBarRatio: p.ActivationBarRatio}
		if err = l.dape.Validate(); err == nil && !(p.ActivationBarRatio >= 0 && p.ActivationBarRatio <= 1) {
			err = fmt.Errorf("%w: activation_bar_ratio %v: want a fraction in [0, 1]", locate.ErrOption, p.ActivationBarRatio)
		}
	case "contrib":
		l.contrib = locate.ContribOptions{Module: one, TopK: p.TopK, Layers: p.Layers, Mode: p.ContribMode}
		if err = l.contrib.Validate(); err == nil && p.ContribMode != "" && p.ContribMode != locate.ContribPooled && p.ContribMode != locate.ContribPerSample {
			err = fmt.Errorf("%w: contrib_mode %q: want %s or %s", locate.ErrOption, p.ContribMode, locate.ContribPooled, locate.ContribPerSample)
		}
	case "ig":
		l.ig = locate.IGOptions{Concept: p.Concept, TopK: p.TopK, Steps: p.Steps, MaxOccurrences: p.MaxOccurrences}
		err = l.ig.Validate()
	case "random":
		if p.Like == nil {
			err = fmt.Errorf("%w: method random needs like: the neuron set whose count per label, module and layer it draws", locate.ErrOption)
		}
	}
	if err != nil {
		return nil, err
	}
	return l, nil
}

// Method is the checked method's name.
func (l *Locator) Method() string { return l.p.Method }

// ReadsStats reports whether the method selects from recorded statistics (every method but
// ig, which runs the model on the samples).
func (l *Locator) ReadsStats() bool { return ReadsStats(l.p.Method) }

// ReadsStats reports whether the named method selects from recorded statistics.
func ReadsStats(method string) bool { return method != "ig" }

// PerSample reports whether the method needs each sample's first generating step recorded
// (locate.RecordOptions.PerSample): contrib in its per-sample mode.
func (l *Locator) PerSample() bool {
	return l.p.Method == "contrib" && l.p.ContribMode == locate.ContribPerSample
}

// LocateInputs are what a method selects from: the stats (every method but ig) with the
// sha256 of their file, or the model and samples (ig).
type LocateInputs struct {
	Stats       *locate.Stats
	StatsSHA256 string
	Model       *model.Model
	Data        []samples.Sample
	Progress    func(done, total int) // ig's occurrences
}

// Locate selects the neurons, keeps those of the label when one is given, and stamps the set
// with the model and stats it was selected on (what patch checks before it edits a
// checkpoint with it). The same parameters and inputs give the same set byte for byte, from
// the CLI or from a recipe.
func (l *Locator) Locate(ctx context.Context, in LocateInputs) (*neuronset.Set, error) {
	if l.ReadsStats() && in.Stats == nil {
		return nil, fmt.Errorf("locate: method %s selects from recorded statistics and got none", l.p.Method)
	}
	if !l.ReadsStats() && (in.Model == nil || len(in.Data) == 0) {
		return nil, fmt.Errorf("locate: method %s runs the model on samples and got none", l.p.Method)
	}
	set, err := l.dispatch(ctx, in)
	if err != nil {
		return nil, err
	}
	if lb := l.p.Label; lb != "" {
		labels := locate.SetLabels(set)
		keep := set.Neurons[:0]
		for _, n := range set.Neurons {
			if n.Label == lb {
				keep = append(keep, n)
			}
		}
		if len(keep) == 0 {
			return nil, fmt.Errorf("locate: %s selected no neuron of label %q (its labels: %s)", l.p.Method, lb, strings.Join(labels, ", "))
		}
		set.Neurons, set.Labels = keep, []string{lb}
	}
	// A set names the stats it was selected from only when it was: ig's come from the model.
	switch {
	case l.ReadsStats():
		in.Stats.Stamp(set)
		set.StatsSHA256 = in.StatsSHA256
	case in.Model.Checkpoint() != nil:
		set.ModelSHA256 = in.Model.Checkpoint().Fingerprint()
	}
	return set, nil
}

// Locate checks p and runs it: NewLocator, then Locator.Locate.
func Locate(ctx context.Context, p LocateParams, in LocateInputs) (*neuronset.Set, error) {
	l, err := NewLocator(p)
	if err != nil {
		return nil, err
	}
	return l.Locate(ctx, in)
}

// RandomBaseline is verify's control: seeded random neurons with the same count per label,
// module and layer as set, stamped like it. It is the method random with like = set.
func RandomBaseline(ctx context.Context, set *neuronset.Set, st *locate.Stats, statsSHA256 string, seed uint64) (*neuronset.Set, error) {
	return Locate(ctx, LocateParams{Method: "random", Like: set, Seed: seed}, LocateInputs{Stats: st, StatsSHA256: statsSHA256})
}

// dispatch is the one place that calls package locate's selection methods: a change to their
// signatures is a change here and nowhere else.
func (l *Locator) dispatch(ctx context.Context, in LocateInputs) (*neuronset.Set, error) {
	switch l.p.Method {
	case "miner":
		return locate.MINER(in.Stats, l.miner)
	case "dape":
		return locate.DAPE(in.Stats, l.dape)
	case "contrib":
		return locate.Contrib(in.Stats, l.contrib)
	case "ig":
		o := l.ig
		o.Progress = in.Progress
		return locate.IG(ctx, in.Model, in.Data, o)
	case "random":
		// Random refuses a like set with a neuron at a module, layer or index the stats lack.
		return locate.Random(l.p.Like, in.Stats.Geometry(), l.p.Seed)
	}
	return nil, fmt.Errorf("%w: method %q", locate.ErrOption, l.p.Method) // NewLocator refuses it first
}
