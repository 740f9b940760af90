// Package report renders what a surgery did as one self-contained HTML page: the verdict, the
// verify metrics of base, edited and random side by side, the generations before and after,
// where the selected neurons are (beside the random baseline's), their per-layer distribution
// as the papers draw it, and the top neurons with what they write. The page loads nothing
// (inline SVG and CSS, no script; its Content-Security-Policy forbids every fetch), so it
// opens from a mail attachment or on an air-gapped machine, in light and dark.
package report

import (
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"

	"github.com/neurosurg/neurosurg/formats/atomicfile"
	"github.com/neurosurg/neurosurg/formats/neuronset"
	"github.com/neurosurg/neurosurg/locate"
	"github.com/neurosurg/neurosurg/model"
	"github.com/neurosurg/neurosurg/verify"
)

// ErrInput reports a file the report cannot use.
var ErrInput = errors.New("report")

// Input is what a report shows. Every part is optional; a section shows only when its data is
// there.
type Input struct {
	Title      string
	Tool       string // "neurosurg 0.1.0"
	RecipePath string
	Recipe     string // the recipe's text
	Model      string // the base checkpoint's path
	ModelHash  string
	Hashes     map[string]string // input name → sha256
	Out        string            // where the checkpoint is (or would have been) written
	Written    bool
	Forced     bool // written although a gate failed
	Ops        []string

	Verify  *verify.Report
	Neurons *neuronset.Set // the selection
	Random  *neuronset.Set // the random baseline of the same size per layer and label
	Stats   *locate.Stats  // activation statistics per label: the top neurons' columns

	// Geometry gives each module's layers and neurons per layer. Modules missing here take
	// it from Stats, the model, or the largest layer and index in the sets.
	Geometry map[string]Geometry

	// LM, when set, names what the top neurons write (logit lens of their output vectors).
	LM *model.Model

	TopPerLabel int // top neurons listed per label (default 10)
	MaxRows     int // generations listed (default 60)
}

// Geometry is one module's FFN shape.
type Geometry struct{ Layers, Neurons int }

// WriteFile renders in and writes it to path atomically: a failure leaves no half page.
func WriteFile(path string, in *Input) error {
	b, err := HTML(in)
	if err != nil {
		return err
	}
	if err := atomicfile.Write(path, b); err != nil {
		return fmt.Errorf("report: %s: %w", path, err)
	}
	return nil
}

// geometry fills in the shape of every module that has selected neurons.
func (in *Input) geometry() map[string]Geometry {
	g := map[string]Geometry{}
	for k, v := range in.Geometry {
		g[k] = v
	}
	if in.Stats != nil {
		for _, st := range in.Stats.Modules {
			if _, ok := g[st.Module]; !ok && st.Layers > 0 && st.Neurons > 0 {
				g[st.Module] = Geometry{st.Layers, st.Neurons}
			}
		}
	}
	if in.LM != nil {
		for m, lg := range in.LM.Geometry() {
			if _, ok := g[m]; !ok {
				g[m] = Geometry{lg.Layers, lg.Neurons}
			}
		}
	}
	for _, set := range []*neuronset.Set{in.Neurons, in.Random} {
		if set == nil {
			continue
		}
		// A neuron past the known shape still gets drawn: the shape grows to hold it.
		for _, n := range set.Neurons {
			cur := g[n.Module]
			cur.Layers = max(cur.Layers, n.Layer+1)
			cur.Neurons = max(cur.Neurons, n.Index+1)
			g[n.Module] = cur
		}
	}
	return g
}

// modules are the modules with selected neurons, the language model first.
func (in *Input) modules() []string {
	seen := map[string]bool{}
	var out []string
	for _, set := range []*neuronset.Set{in.Neurons, in.Random} {
		if set == nil {
			continue
		}
		for _, m := range locate.Modules(set) {
			if !seen[m] {
				seen[m] = true
				out = append(out, m)
			}
		}
	}
	sort.Slice(out, func(a, b int) bool {
		if (out[a] == "llm") != (out[b] == "llm") {
			return out[a] == "llm"
		}
		return out[a] < out[b]
	})
	return out
}

// topNeurons are each label's best-scored neurons, labels in order.
func (in *Input) topNeurons() []neuronset.Neuron {
	if in.Neurons == nil {
		return nil
	}
	k := in.TopPerLabel
	if k <= 0 {
		k = 10
	}
	by := map[string][]neuronset.Neuron{}
	for _, n := range in.Neurons.Neurons {
		by[n.Label] = append(by[n.Label], n)
	}
	var out []neuronset.Neuron
	for _, l := range locate.SetLabels(in.Neurons) {
		ns := by[l]
		sort.SliceStable(ns, func(a, b int) bool {
			if ns[a].Score != ns[b].Score {
				return ns[a].Score > ns[b].Score || math.IsNaN(ns[b].Score)
			}
			if ns[a].Layer != ns[b].Layer {
				return ns[a].Layer < ns[b].Layer
			}
			return ns[a].Index < ns[b].Index
		})
		out = append(out, ns[:min(k, len(ns))]...)
	}
	return out
}

// writes lists the tokens neuron n writes most (its output vector through the unembedding),
// or nil without a model or outside the language model.
func (in *Input) writes(n neuronset.Neuron, k int) []string {
	if in.LM == nil || in.LM.Tokenizer == nil || n.Module != "llm" {
		return nil
	}
	c := in.LM.Config()
	if n.Layer >= c.Layers || n.Index >= c.Intermediate {
		return nil
	}
	var out []string
	for _, id := range in.LM.TopTokensOfNeuron(model.Site{Module: n.Module, Layer: n.Layer}, n.Index, k) {
		t := in.LM.Tokenizer.Decode([]int32{id})
		if t == "" || strings.ContainsRune(t, '\uFFFD') {
			t = in.LM.Tokenizer.Token(id) // a byte of a longer character, or a special token
		}
		out = append(out, showToken(t))
	}
	return out
}

// showToken makes a token's leading space and invisible characters visible.
func showToken(s string) string {
	if s == "" {
		return "∅"
	}
	if strings.HasPrefix(s, " ") {
		s = "␣" + s[1:]
	}
	s = strings.ReplaceAll(s, "▁", "␣") // SentencePiece's space
	return strings.Map(func(r rune) rune {
		switch {
		case r == '\n':
			return '↵'
		case r < 0x20:
			return '·'
		}
		return r
	}, s)
}

// neuronStats is one neuron's activation under one label.
type neuronStats struct {
	Label          string
	Prob, Mean, Mx float64
}

// conceptStats is one neuron at the steps that generate a concept word.
type conceptStats struct {
	Word      string
	Mean, Phi float64
}

func (in *Input) statsOf(n neuronset.Neuron) ([]neuronStats, []conceptStats) {
	if in.Stats == nil {
		return nil, nil
	}
	st := in.Stats.Module(n.Module)
	if st == nil || n.Layer >= st.Layers || n.Index >= st.Neurons {
		return nil, nil
	}
	i := n.Layer*st.Neurons + n.Index
	var out []neuronStats
	for _, l := range st.Labels {
		ls := st.ByLabel[l]
		if ls == nil || len(ls.Positions) <= n.Layer || len(ls.Fire) <= i || ls.Positions[n.Layer] == 0 {
			continue
		}
		pos := ls.Positions[n.Layer]
		out = append(out, neuronStats{Label: l, Prob: ls.Fire[i] / pos, Mean: ls.Sum[i] / pos, Mx: ls.Max[i]})
	}
	var cs []conceptStats
	for _, c := range st.Concepts {
		if c.Steps > 0 && len(c.ActSum) > i && len(c.Phi) > i {
			cs = append(cs, conceptStats{Word: c.Word, Mean: c.ActSum[i] / c.Steps, Phi: c.Phi[i]})
		}
	}
	return out, cs
}
