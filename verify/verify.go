// Package verify measures what an edit did: it runs the base and edited models (and a random
// baseline edit of the same size) on a bench of prompts and reports perplexity per label,
// KL(base‖edited), generative QA scores and, for token swaps, efficacy and specificity.
// Gates over the metrics decide whether a checkpoint may be written.
package verify

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/neurosurg/neurosurg/formats/samples"
	"github.com/neurosurg/neurosurg/locate"
	"github.com/neurosurg/neurosurg/model"
	"github.com/neurosurg/neurosurg/verify/mmneurons"
)

// ErrGate reports a failed gate.
var ErrGate = errors.New("verify: gate failed")

// ErrOption reports an option or gate that cannot be used.
var ErrOption = errors.New("verify: bad option")

// Options control Run.
type Options struct {
	MaxTokens int    // greedy continuation length for swap and QA measures (default 32)
	Source    string // swap source word ("" when the edit is not a swap)
	Target    string
	// Neurons, when not nil, also measures Pan et al.'s four properties of the bench's
	// concepts' multi-modal neurons on the base model (mmneurons.Evaluate: the bench is
	// captioned images, labelled with their concept), reported as Report.Neurons and as "mm/"
	// metrics of the base; with a swap, each variant's edit specificity too.
	Neurons *mmneurons.Options
}

// Validate reports an option Run cannot use; callers check before loading models.
func (o Options) Validate() error {
	if o.MaxTokens < 0 {
		return fmt.Errorf("%w: max tokens %d is negative", ErrOption, o.MaxTokens)
	}
	if (o.Source == "") != (o.Target == "") {
		return fmt.Errorf("%w: a swap needs both a source and a target word (got %q, %q)", ErrOption, o.Source, o.Target)
	}
	if o.Neurons != nil {
		if err := o.Neurons.Validate(); err != nil {
			return fmt.Errorf("%w: %v", ErrOption, err)
		}
	}
	return nil
}

// Variant is one model measured against the base.
type Variant struct {
	Name  string
	Model *model.Model
}

// Metrics of one variant (all relative to the base model).
type Metrics map[string]float64

// Report holds the metrics of every variant.
type Report struct {
	Variants []string           `json:"variants"`
	Metrics  map[string]Metrics `json:"metrics"`
	Labels   []string           `json:"labels"`
	Gates    []GateResult       `json:"gates,omitempty"`
	Passed   bool               `json:"passed"`
	// Source and Target are the swap's words, when the edit is a swap.
	Source string `json:"source,omitempty"`
	Target string `json:"target,omitempty"`
	// Generations are every variant's greedy continuation of each bench prompt: what a
	// person reads to see what the edit did.
	Generations []Generation `json:"generations,omitempty"`
	// Neurons are Pan et al.'s four metrics of the bench concepts' neurons (Options.Neurons).
	Neurons *mmneurons.Report `json:"multimodal_neurons,omitempty"`
}

// Generation is one bench prompt and each variant's greedy continuation of it.
type Generation struct {
	ID      string            `json:"id"`
	Label   string            `json:"label,omitempty"`
	Control bool              `json:"control,omitempty"`
	Prompt  string            `json:"prompt"`
	Text    map[string]string `json:"text"` // variant → continuation
}

// Run measures every variant against base on bench.
func Run(ctx context.Context, base *model.Model, variants []Variant, bench []samples.Sample, o Options) (*Report, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if o.MaxTokens == 0 {
		o.MaxTokens = 32
	}
	tok := base.Tokenizer
	if tok == nil {
		return nil, fmt.Errorf("verify: the checkpoint has no tokenizer")
	}
	rep := &Report{Metrics: map[string]Metrics{}, Labels: samples.Labels(bench), Passed: true, Source: o.Source, Target: o.Target}
	rep.Metrics["base"] = Metrics{}
	var src, tgt int32 = -1, -1
	if o.Source != "" {
		var err error
		if src, err = tok.WordID(o.Source); err != nil {
			return nil, fmt.Errorf("verify: swap source %w", err)
		}
		if tgt, err = tok.WordID(o.Target); err != nil {
			return nil, fmt.Errorf("verify: swap target %w", err)
		}
	}
	var enc []encoded
	mt := base.MediaTokens()
	for _, s := range bench {
		// verify's prompts are plain (BOS + text), media laid out by the family.
		in, err := base.BuildInput("sample "+s.ID, locate.SamplePrompt(s, false))
		if err != nil {
			return nil, fmt.Errorf("verify: %w", err)
		}
		if len(in.Tokens) == 0 {
			return nil, fmt.Errorf("verify: sample %s: cannot tokenize", s.ID)
		}
		enc = append(enc, encoded{s: s, in: in, text: max(mt.MediaEnd(in)-1, 0)})
	}
	// The base model's greedy continuation of each prompt: the positions swaps are judged on.
	var prompts []model.Input
	for _, e := range enc {
		prompts = append(prompts, e.in)
	}
	baseGen, err := base.GenerateInputs(ctx, prompts, model.GenerateOptions{MaxTokens: o.MaxTokens})
	if err != nil {
		return nil, sampleErr("base", enc, err)
	}
	V := base.Config().Vocab
	all := append([]Variant{{Name: "base", Model: base}}, variants...)
	// logits[variant][sample] over prompt+base continuation.
	logits := make([][][]float32, len(all))
	for vi, v := range all {
		var seqs []model.Input
		for i, e := range enc {
			seqs = append(seqs, e.in.Extend(baseGen[i].Tokens))
		}
		res, err := v.Model.ForwardInputs(ctx, seqs, model.ForwardOptions{AllLogits: true})
		if err != nil {
			return nil, sampleErr(v.Name, enc, err)
		}
		logits[vi] = res.Logits
	}
	for vi, v := range all {
		m := rep.Metrics[v.Name]
		if m == nil {
			m = Metrics{}
			rep.Metrics[v.Name] = m
		}
		rep.Variants = append(rep.Variants, v.Name)
		// Perplexity of the sample text per label.
		nll, cnt := map[string]float64{}, map[string]float64{}
		var kl, klN, same, sameN float64
		var srcPos, eff, swapped, pSrcB, pSrcE, pTgtB, pTgtE float64
		for i, e := range enc {
			L := logits[vi][i]
			B := logits[0][i]
			// Perplexity is of the text: the placeholder runs before it are not predicted.
			for p := e.text; p+1 < len(e.in.Tokens); p++ {
				lp := model.LogSoftmax(L[p*V : (p+1)*V])
				nll[e.s.Label] -= lp[e.in.Tokens[p+1]]
				cnt[e.s.Label]++
			}
			// Judge next-token distributions over the continuation positions.
			start := len(e.in.Tokens) - 1
			end := start + len(baseGen[i].Tokens)
			for p := start; p < end; p++ {
				lb := model.LogSoftmax(B[p*V : (p+1)*V])
				le := model.LogSoftmax(L[p*V : (p+1)*V])
				if e.s.Control || src < 0 {
					var k float64
					for j := range lb {
						k += math.Exp(lb[j]) * (lb[j] - le[j])
					}
					kl += k
					klN++
				}
				ab, ae := model.Argmax(B[p*V:(p+1)*V]), model.Argmax(L[p*V:(p+1)*V])
				if src >= 0 && int32(ab) == src && !e.s.Control {
					srcPos++
					if int32(ae) != src {
						eff++
					}
					if int32(ae) == tgt {
						swapped++
					}
					pSrcB += math.Exp(lb[src])
					pSrcE += math.Exp(le[src])
					pTgtB += math.Exp(lb[tgt])
					pTgtE += math.Exp(le[tgt])
				} else {
					sameN++
					if ab == ae {
						same++
					}
				}
			}
		}
		for _, l := range rep.Labels {
			if cnt[l] > 0 {
				m["ppl/"+label(l)] = math.Exp(nll[l] / cnt[l])
			}
		}
		if klN > 0 {
			m["kl"] = kl / klN
		}
		if sameN > 0 {
			m["specificity"] = same / sameN
		}
		if src >= 0 {
			m["source_positions"] = srcPos
			if srcPos > 0 {
				m["efficacy"] = eff / srcPos
				m["swap_rate"] = swapped / srcPos
				m["source_prob_drop"] = (pSrcB - pSrcE) / srcPos
				m["target_prob_rise"] = (pTgtE - pTgtB) / srcPos
			}
		}
		// Multiple choice by log-likelihood: the choice whose tokens the model finds likeliest.
		var mcRight, mcN float64
		for _, e := range enc {
			if len(e.s.Choices) == 0 || e.s.Answer == "" {
				continue
			}
			best, bestLP := -1, math.Inf(-1)
			for ci, c := range e.s.Choices {
				ct, err := tok.Encode(" "+c, false)
				if err != nil || len(ct) == 0 {
					return nil, fmt.Errorf("verify: sample %s: choice %q does not tokenize", e.s.ID, c)
				}
				lps, err := v.Model.LogProbsInput(ctx, e.in, ct, model.ForwardOptions{})
				if err != nil {
					return nil, fmt.Errorf("verify: %s model, sample %s, choice %q: %w", v.Name, e.s.ID, c, err)
				}
				var lp float64
				for _, x := range lps {
					lp += x
				}
				if lp > bestLP {
					best, bestLP = ci, lp
				}
			}
			mcN++
			if normalize(e.s.Choices[best]) == normalize(e.s.Answer) {
				mcRight++
			}
		}
		if mcN > 0 {
			m["mc_accuracy"] = mcRight / mcN
		}
		// Free generation: how often each word is written, and the texts themselves. The
		// base's greedy continuations are baseGen already.
		{
			gens := baseGen
			if vi > 0 {
				if gens, err = v.Model.GenerateInputs(ctx, prompts, model.GenerateOptions{MaxTokens: o.MaxTokens}); err != nil {
					return nil, sampleErr(v.Name, enc, err)
				}
			}
			if vi == 0 {
				for _, e := range enc {
					rep.Generations = append(rep.Generations, Generation{ID: e.s.ID, Label: e.s.Label, Control: e.s.Control, Prompt: e.s.Text, Text: map[string]string{}})
				}
			}
			var ns, nt, em, contains, anls, nqa float64
			for i, g := range gens {
				rep.Generations[i].Text[v.Name] = tok.Decode(g.Tokens)
				for _, id := range g.Tokens {
					if id == src {
						ns++
					}
					if id == tgt {
						nt++
					}
				}
				if a := enc[i].s.Answer; a != "" && len(enc[i].s.Choices) == 0 {
					out := tok.Decode(g.Tokens)
					nqa++
					if normalize(out) == normalize(a) {
						em++
					}
					if strings.Contains(normalize(out), normalize(a)) {
						contains++
					}
					anls += ANLS(out, a, 0.5)
				}
			}
			if src >= 0 {
				m["generated_source"] = ns
				m["generated_target"] = nt
			}
			if nqa > 0 {
				m["exact_match"], m["contains"], m["anls"] = em/nqa, contains/nqa, anls/nqa
			}
		}
	}
	if o.Neurons != nil {
		if err := neuronMetrics(ctx, rep, all, bench, o); err != nil {
			return nil, err
		}
	}
	// The forward pass refuses NaN logits, so a NaN metric is a bug here: say so rather than
	// report it (a NaN passes no gate, but it is no measurement either).
	for _, v := range rep.Variants {
		for k, x := range rep.Metrics[v] {
			if math.IsNaN(x) {
				return nil, fmt.Errorf("verify: variant %s: metric %s is NaN", v, k)
			}
		}
	}
	return rep, nil
}

// neuronMetrics adds Pan et al.'s metrics (docs/metrics.md) to the report: the neurons' own on
// the base model, and with a swap each variant's edit specificity: how much the edit moves the
// source word's probability at its caption steps against the bench's other label concepts'.
func neuronMetrics(ctx context.Context, rep *Report, all []Variant, bench []samples.Sample, o Options) error {
	base := all[0].Model
	nr, err := mmneurons.Evaluate(ctx, base, bench, *o.Neurons)
	if err != nil {
		return fmt.Errorf("verify: multi-modal neurons: %w", err)
	}
	rep.Neurons = nr
	for k, v := range nr.Metrics() {
		rep.Metrics["base"][k] = v
	}
	if o.Source == "" {
		return nil
	}
	words := []string{o.Source}
	for _, l := range samples.Labels(bench) {
		if l != "" && l != o.Source {
			words = append(words, l)
		}
	}
	inputs, steps, err := mmneurons.ConceptSteps(base, bench, words, o.Neurons.Chat)
	if err != nil {
		return fmt.Errorf("verify: edit specificity: %w", err)
	}
	p0, err := mmneurons.StepProbs(ctx, base, inputs, steps, nil)
	if err != nil {
		return fmt.Errorf("verify: edit specificity: %w", err)
	}
	for _, v := range all[1:] {
		p, err := mmneurons.StepProbs(ctx, v.Model, inputs, steps, nil)
		if err != nil {
			return fmt.Errorf("verify: %s model: edit specificity: %w", v.Name, err)
		}
		ratio, self, other := mmneurons.Specificity(steps, p0, p, o.Source)
		if ratio == nil {
			continue // the bench lacks the source's or other concepts' steps, or nothing moved
		}
		m := rep.Metrics[v.Name]
		m["mm/edit_specificity"], m["mm/edit_self_change"], m["mm/edit_other_change"] = *ratio, self, other
	}
	return nil
}

type encoded struct {
	s    samples.Sample
	in   model.Input // the prompt as model.BuildInput lays it out (media placeholders expanded, positions)
	text int         // the first position whose next token is the text's: the media's last (0 without media)
}

// sampleErr names the sample and the model of a batch's non-finite logits (the runtime knows
// only the sequence's index in the batch).
func sampleErr(variant string, batch []encoded, err error) error {
	var nf *model.NonFiniteError
	if errors.As(err, &nf) && nf.Seq < len(batch) {
		return fmt.Errorf("verify: %s model, sample %s: %w", variant, batch[nf.Seq].s.ID, err)
	}
	return err
}

func label(l string) string {
	if l == "" {
		return "all"
	}
	return l
}

func normalize(s string) string { return strings.Join(strings.Fields(strings.ToLower(s)), " ") }

// ANLS is the average normalised Levenshtein similarity of one prediction: 1 − NL(pred, ans),
// or 0 when NL ≥ threshold.
func ANLS(pred, answer string, threshold float64) float64 {
	a, b := []rune(normalize(pred)), []rune(normalize(answer))
	n := max(len(a), len(b))
	if n == 0 {
		return 1
	}
	nl := float64(levenshtein(a, b)) / float64(n)
	if nl >= threshold {
		return 0
	}
	return 1 - nl
}

func levenshtein(a, b []rune) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			c := 1
			if a[i-1] == b[j-1] {
				c = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+c)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// GateResult is one evaluated gate.
type GateResult struct {
	Gate   string  `json:"gate"`
	Value  float64 `json:"value"`
	Passed bool    `json:"passed"`
}

// MetricNames lists the metrics Run can report, besides "ppl/LABEL" (perplexity per label).
var MetricNames = []string{"kl", "specificity", "source_positions", "efficacy", "swap_rate", "source_prob_drop",
	"target_prob_rise", "mc_accuracy", "generated_source", "generated_target", "exact_match", "contains", "anls",
	"mm/edit_specificity", "mm/edit_self_change", "mm/edit_other_change"}

// Gate is a bound on one metric: Metric < Limit or Metric > Limit.
type Gate struct {
	Text   string // as written
	Metric string
	Less   bool // < (else >)
	Limit  float64
}

// ParseGate reads "kl<0.05" or "efficacy>0.9". The metric must be one Run can report, so a
// typo fails before anything runs.
func ParseGate(s string) (Gate, error) {
	op := strings.IndexAny(s, "<>")
	if op <= 0 {
		return Gate{}, fmt.Errorf("%w: gate %q: want METRIC<VALUE or METRIC>VALUE", ErrOption, s)
	}
	g := Gate{Text: s, Metric: strings.TrimSpace(s[:op]), Less: s[op] == '<'}
	v := strings.TrimSpace(s[op+1:])
	limit, err := strconv.ParseFloat(v, 64)
	if err != nil || math.IsNaN(limit) || math.IsInf(limit, 0) {
		return Gate{}, fmt.Errorf("%w: gate %q: %q is not a finite number", ErrOption, s, v)
	}
	g.Limit = limit
	if !slices.Contains(MetricNames, g.Metric) && !(strings.HasPrefix(g.Metric, "ppl/") && len(g.Metric) > len("ppl/")) {
		return Gate{}, fmt.Errorf("%w: gate %q: no metric %q (have ppl/LABEL, %s)", ErrOption, s, g.Metric, strings.Join(MetricNames, ", "))
	}
	return g, nil
}

// ParseGates parses every gate; the first bad one is the error.
func ParseGates(gates []string) ([]Gate, error) {
	var out []Gate
	for _, s := range gates {
		g, err := ParseGate(s)
		if err != nil {
			return nil, err
		}
		out = append(out, g)
	}
	return out, nil
}

// CheckGates evaluates gates like "kl<0.05" or "efficacy>0.9" on the named variant's metrics
// and records them in the report.
func (r *Report) CheckGates(variant string, gates []string) error {
	gs, err := ParseGates(gates)
	if err != nil {
		return err
	}
	m := r.Metrics[variant]
	var failed []string
	for _, g := range gs {
		v, ok := m[g.Metric]
		if !ok {
			var names []string
			for k := range m {
				names = append(names, k)
			}
			sort.Strings(names)
			return fmt.Errorf("verify: gate %q: this run has no metric %q (have %s)", g.Text, g.Metric, strings.Join(names, ", "))
		}
		// NaN compares false both ways: it must fail "<" and ">" alike, never pass.
		pass := !math.IsNaN(v) && ((g.Less && v < g.Limit) || (!g.Less && v > g.Limit))
		r.Gates = append(r.Gates, GateResult{Gate: g.Text, Value: v, Passed: pass})
		if !pass {
			failed = append(failed, fmt.Sprintf("%s (is %.4g)", g.Text, v))
		}
	}
	r.Passed = len(failed) == 0
	if !r.Passed {
		return fmt.Errorf("%w: %s", ErrGate, strings.Join(failed, ", "))
	}
	return nil
}

// MetricNames lists every metric any variant has, sorted.
func (r *Report) MetricNames() []string {
	names := map[string]bool{}
	for _, m := range r.Metrics {
		for k := range m {
			names[k] = true
		}
	}
	keys := make([]string, 0, len(names))
	for k := range names {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Markdown renders the report as a table: one row per metric, one column per variant.
func (r *Report) Markdown() string {
	keys := r.MetricNames()
	var b strings.Builder
	b.WriteString("| metric | " + strings.Join(r.Variants, " | ") + " |\n|---|")
	b.WriteString(strings.Repeat("---:|", len(r.Variants)) + "\n")
	for _, k := range keys {
		b.WriteString("| " + k + " |")
		for _, v := range r.Variants {
			if x, ok := r.Metrics[v][k]; ok {
				fmt.Fprintf(&b, " %.4g |", x)
			} else {
				b.WriteString(" |")
			}
		}
		b.WriteString("\n")
	}
	for _, g := range r.Gates {
		mark := "pass"
		if !g.Passed {
			mark = "FAIL"
		}
		fmt.Fprintf(&b, "\ngate `%s`: %.4g — %s", g.Gate, g.Value, mark)
	}
	if len(r.Gates) > 0 {
		b.WriteString("\n")
	}
	if n := r.Neurons; n != nil {
		fmt.Fprintf(&b, "\nMulti-modal neurons (Pan et al.; top %d per concept and image, %d lists; docs/metrics.md):\n\n", n.TopN, n.Lists)
		b.WriteString("| concept | images | semantic lens | prob drop | prob drop (random) | cross-image | region | shuffle overlap |\n|---|---:|---:|---:|---:|---:|---:|---:|\n")
		for _, c := range n.Concepts {
			fmt.Fprintf(&b, "| %s | %d | %.4g | %.4g | %.4g | %s | %s | %s |\n", c.Word, len(c.Images), c.SemanticLens, c.ProbDrop, c.ProbDropRandom,
				optional(c.CrossImage), optional(c.RegionInvariance), optional(c.ShuffleOverlap))
		}
	}
	return b.String()
}

func optional(v *float64) string {
	if v == nil {
		return "–"
	}
	return fmt.Sprintf("%.4g", *v)
}
