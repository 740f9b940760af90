package locate

import (
	"context"
	"fmt"
	"sort"

	"github.com/neurosurg/neurosurg/formats/neuronset"
	"github.com/neurosurg/neurosurg/formats/samples"
	"github.com/neurosurg/neurosurg/model"
)

// IGOptions control IG.
type IGOptions struct {
	Concept        string
	TopK           int // default 1% of the module
	Steps          int // Riemann points (default 20)
	MaxOccurrences int // stop after this many generating steps (default 50)
	Progress       func(done, total int)
}

// IG ranks neurons by integrated gradients of the concept's logit with respect to their
// activation, at every position of the samples whose next token is the concept, averaged — the
// gradient-based baseline Pan et al. compare their contribution score with. It costs one
// backward pass per layer, step and occurrence.
func IG(ctx context.Context, m *model.Model, ss []samples.Sample, o IGOptions) (*neuronset.Set, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if m.Tokenizer == nil {
		return nil, fmt.Errorf("ig: the checkpoint has no tokenizer")
	}
	cfg := m.Config()
	if o.Steps == 0 {
		o.Steps = 20
	}
	if o.MaxOccurrences == 0 {
		o.MaxOccurrences = 50
	}
	n := cfg.Layers * cfg.Intermediate
	if o.TopK == 0 {
		o.TopK = max(1, n/100)
	}
	cid, err := m.Tokenizer.WordIDs(o.Concept)
	if err != nil || len(cid) == 0 {
		return nil, fmt.Errorf("ig: concept %q does not tokenize", o.Concept)
	}
	var prompts []model.Input
	mt := m.MediaTokens()
	for _, s := range ss {
		in, err := m.BuildInput("sample "+s.ID, SamplePrompt(s, false))
		if err != nil {
			return nil, fmt.Errorf("ig: %w", err)
		}
		// A prefix keeps the sample's media only whole: steps inside the media (up to the
		// last placeholder or markup token) are not attributed; the last of them predicts
		// the text's first token.
		first := max(mt.MediaEnd(in)-1, 0)
		for p := first; p+1 < len(in.Tokens) && len(prompts) < o.MaxOccurrences; p++ {
			if in.Tokens[p+1] == cid[0] {
				prompts = append(prompts, in.Prefix(p+1))
			}
		}
	}
	if len(prompts) == 0 {
		return nil, fmt.Errorf("ig: %q is never generated in the samples", o.Concept)
	}
	score := make([]float64, n)
	for i, p := range prompts {
		for l := 0; l < cfg.Layers; l++ {
			ig, _, _, err := m.IntegratedGradientsInput(ctx, p, model.Site{Module: "llm", Layer: l}, cid[0], o.Steps)
			if err != nil {
				return nil, err
			}
			for j, v := range ig {
				score[l*cfg.Intermediate+j] += v / float64(len(prompts))
			}
		}
		if o.Progress != nil {
			o.Progress(i+1, len(prompts))
		}
	}
	order := make([]int, n)
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return score[order[a]] > score[order[b]] })
	set := &neuronset.Set{Version: neuronset.Version, Method: "ig", Labels: []string{o.Concept},
		Params:   map[string]any{"top_k": o.TopK, "steps": o.Steps, "occurrences": len(prompts)},
		Geometry: map[string]neuronset.Geometry{"llm": {Layers: cfg.Layers, Neurons: cfg.Intermediate}}}
	for _, i := range order[:min(o.TopK, n)] {
		set.Neurons = append(set.Neurons, neuronset.Neuron{Module: "llm", Layer: i / cfg.Intermediate, Index: i % cfg.Intermediate, Label: o.Concept, Score: score[i]})
	}
	return set, nil
}
