package report

import (
	"bytes"
	_ "embed"
	"fmt"
	"html/template"
	"math"
	"slices"
	"sort"
	"strings"

	"github.com/neurosurg/neurosurg/formats/neuronset"
	"github.com/neurosurg/neurosurg/locate"
	"github.com/neurosurg/neurosurg/report/chart"
	"github.com/neurosurg/neurosurg/verify"
)

//go:embed page.html.tmpl
var pageTemplate string

//go:embed page.css
var pageCSS string

var page = template.Must(template.New("page").Funcs(template.FuncMap{
	"num": formatNum,
}).Parse(pageTemplate))

// maxLayers bounds what a report draws: a neuron set naming layer 10⁹ is a broken file, not a
// reason to allocate a billion rows.
const maxLayers = 4096

// view is what the template reads.
type view struct {
	Title, Tool       string
	CSS               template.CSS
	Verdict           string // "pass", "fail", "forced", "none"
	VerdictText       string
	Gates             []verify.GateResult
	Facts             [][2]string
	Recipe            string
	RecipePath        string
	Hashes            [][2]string
	Variants          []string
	Metrics           []metricRow
	VerifyCharts      []template.HTML
	Swap              [2]string
	Generations       []genRow
	GenerationsHidden int
	Maps              []mapView
	Layers            []template.HTML
	LayerNote         string
	Top               []topRow
	TopHasWrites      bool
	TopStats          []string // stats labels shown as columns
	TopConcepts       []string
}

type metricRow struct {
	Name, What string
	Values     []string
	Gate       string // "pass", "fail" or ""
	GateText   string
}

type genRow struct {
	ID, Label, Prompt string
	Control           bool
	Texts             [][]Span // per variant; the base's unmarked but for swap words
}

type mapView struct {
	Module              string
	Geometry            Geometry
	Selected, Random    template.HTML
	SelectedN, RandomN  int
	RandomLayoutMatches bool
}

type topRow struct {
	N        neuronset.Neuron
	Writes   []string
	Stats    []neuronStats
	Concepts []conceptStats
}

// HTML renders in as one self-contained page.
func HTML(in *Input) ([]byte, error) {
	if in == nil {
		in = &Input{}
	}
	geo := in.geometry()
	for m, g := range geo {
		if g.Layers > maxLayers {
			return nil, fmt.Errorf("%w: module %q has a neuron in layer %d: more than %d layers is not a model this report can draw", ErrInput, m, g.Layers-1, maxLayers)
		}
	}
	v := &view{Title: in.Title, Tool: in.Tool, CSS: template.CSS(chart.Style + pageCSS), Recipe: in.Recipe, RecipePath: in.RecipePath}
	if v.Title == "" {
		v.Title = "neurosurg report"
	}
	v.verdict(in)
	v.facts(in)
	if in.Verify != nil {
		v.verify(in.Verify)
		v.generations(in)
	}
	v.maps(in, geo)
	v.layers(in, geo)
	v.top(in)
	var b bytes.Buffer
	if err := page.Execute(&b, v); err != nil {
		return nil, fmt.Errorf("report: %w", err)
	}
	return b.Bytes(), nil
}

func (v *view) verdict(in *Input) {
	rep := in.Verify
	switch {
	case rep == nil || len(rep.Gates) == 0:
		v.Verdict, v.VerdictText = "none", "no gates"
	case in.Forced:
		v.Verdict, v.VerdictText = "forced", "FAIL — written anyway (--force)"
	case rep.Passed:
		v.Verdict, v.VerdictText = "pass", "PASS"
	default:
		v.Verdict, v.VerdictText = "fail", "FAIL"
	}
	if rep != nil {
		v.Gates = rep.Gates
	}
	switch {
	case in.Written && in.Out != "":
		v.VerdictText += " — checkpoint written to " + in.Out
	case in.Out != "" && rep != nil && len(rep.Gates) > 0:
		v.VerdictText += " — no checkpoint written"
	}
}

func (v *view) facts(in *Input) {
	add := func(k, val string) {
		if val != "" {
			v.Facts = append(v.Facts, [2]string{k, val})
		}
	}
	add("model", in.Model)
	add("model fingerprint", in.ModelHash)
	if s := in.Neurons; s != nil {
		add("selection", fmt.Sprintf("%s: %d neurons, labels %s", s.Method, len(s.Neurons), strings.Join(quoteAll(locate.SetLabels(s)), ", ")))
		if len(s.Params) > 0 {
			add("selection parameters", params(s.Params))
		}
	}
	if len(in.Ops) > 0 {
		add("patch", strings.Join(in.Ops, ", "))
	}
	if in.Random != nil {
		add("random baseline", fmt.Sprintf("%d neurons, same count per layer and label (%s)", len(in.Random.Neurons), params(in.Random.Params)))
	}
	add("checkpoint", in.Out)
	var keys []string
	for k := range in.Hashes {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v.Hashes = append(v.Hashes, [2]string{k, in.Hashes[k]})
	}
}

// params lists a selection's parameters as key=value, in key order.
func params(p map[string]any) string {
	var keys []string
	for k := range p {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var out []string
	for _, k := range keys {
		out = append(out, fmt.Sprintf("%s=%v", k, p[k]))
	}
	return strings.Join(out, ", ")
}

func quoteAll(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		if s == "" {
			s = "(no label)"
		}
		out[i] = fmt.Sprintf("%q", s)
	}
	return out
}

// metricWhat says what each verify metric measures.
var metricWhat = map[string]string{
	"efficacy":         "share of the bench positions where the base writes the source word and this model no longer does",
	"swap_rate":        "share of those positions where this model writes the target word instead",
	"specificity":      "share of all other positions whose top token is unchanged",
	"kl":               "KL(base ‖ this model) of the next-token distribution, on control prompts (all prompts when the edit is not a swap)",
	"source_positions": "bench positions where the base writes the source word",
	"source_prob_drop": "mean fall of the source word's probability at those positions",
	"target_prob_rise": "mean rise of the target word's probability at those positions",
	"generated_source": "times the source word is written in the greedy continuations",
	"generated_target": "times the target word is written in the greedy continuations",
	"mc_accuracy":      "multiple choice: share answered right by log-likelihood",
	"exact_match":      "open answers: share generated exactly",
	"contains":         "open answers: share contained in the generation",
	"anls":             "open answers: average normalised Levenshtein similarity",
	// Pan et al.'s metrics of the bench concepts' multi-modal neurons (docs/metrics.md).
	"mm/semantic_lens":        "share of a concept's top neurons whose logit-lens top tokens include the concept",
	"mm/semantic_lens_random": "the same for as many random neurons",
	"mm/prob_drop":            "fall of the concept's probability at its caption step when its top neurons are zeroed",
	"mm/prob_drop_random":     "the same for as many random neurons",
	"mm/specificity":          "|Δp| of the concept over it plus the mean |Δp| of the other concepts, its neurons zeroed (0.5: no preference)",
	"mm/specificity_random":   "the same for as many random neurons",
	"mm/cross_image":          "mean Jaccard index of a concept's top neurons across images",
	"mm/cross_image_random":   "the same for random neurons",
	"mm/region_invariance":    "mean Jaccard index of a concept's top neurons on the image and on the image restricted to its bbox",
	"mm/shuffle_overlap":      "mean Jaccard index of a concept's top neurons with and without the image's patches shuffled",
	"mm/edit_specificity":     "|Δp| of the swap source at its caption steps over it plus the mean |Δp| of the other label concepts",
	"mm/edit_self_change":     "mean |Δp| of the swap source at its caption steps",
	"mm/edit_other_change":    "mean |Δp| of the other label concepts at theirs",
}

func (v *view) verify(rep *verify.Report) {
	v.Variants = rep.Variants
	keys := rep.MetricNames()
	gates := map[string]verify.GateResult{}
	for _, g := range rep.Gates {
		name := strings.TrimSpace(g.Gate[:max(0, strings.IndexAny(g.Gate, "<>"))])
		if prev, ok := gates[name]; ok && !prev.Passed {
			continue // a failed gate on the same metric stays visible
		}
		gates[name] = g
	}
	for _, k := range keys {
		r := metricRow{Name: k, What: metricWhat[k]}
		if strings.HasPrefix(k, "ppl/") {
			r.What = "perplexity of the bench texts labelled " + fmt.Sprintf("%q", strings.TrimPrefix(k, "ppl/"))
		}
		for _, variant := range rep.Variants {
			if x, ok := rep.Metrics[variant][k]; ok {
				r.Values = append(r.Values, formatNum(x))
			} else {
				r.Values = append(r.Values, "")
			}
		}
		if g, ok := gates[k]; ok {
			r.Gate, r.GateText = "fail", "✗ "+g.Gate
			if g.Passed {
				r.Gate, r.GateText = "pass", "✓ "+g.Gate
			}
		}
		v.Metrics = append(v.Metrics, r)
	}
	v.VerifyCharts = append(v.VerifyCharts, template.HTML(rep.PerplexityChart().SVG()))
	rates := "Specificity"
	if rep.Source != "" {
		rates = fmt.Sprintf("Swap %s → %s: efficacy and specificity", rep.Source, rep.Target)
	}
	for _, c := range []*chart.Chart{
		rep.MetricsChart(rates, "share (0 to 1)", []string{"efficacy", "swap_rate", "specificity", "source_prob_drop", "target_prob_rise"}),
		rep.MetricsChart("Words written in the greedy continuations", "count", []string{"generated_source", "generated_target"}),
		rep.MetricsChart("Answers", "share (0 to 1)", []string{"mc_accuracy", "exact_match", "contains", "anls"}),
		rep.MetricsChart("KL(base ‖ model) of the next token", "nats per position", []string{"kl"}),
		rep.MetricsChart("Multi-modal neurons (Pan et al.): the concepts' top neurons, beside random ones", "share (0 to 1)",
			[]string{"mm/semantic_lens", "mm/semantic_lens_random", "mm/specificity", "mm/specificity_random", "mm/cross_image",
				"mm/cross_image_random", "mm/region_invariance", "mm/shuffle_overlap", "mm/edit_specificity"}),
	} {
		if c != nil {
			v.VerifyCharts = append(v.VerifyCharts, template.HTML(c.SVG()))
		}
	}
	v.Swap = [2]string{rep.Source, rep.Target}
}

func (v *view) generations(in *Input) {
	rep := in.Verify
	limit := in.MaxRows
	if limit <= 0 {
		limit = 60
	}
	for i, g := range rep.Generations {
		if i >= limit {
			v.GenerationsHidden = len(rep.Generations) - limit
			break
		}
		row := genRow{ID: g.ID, Label: g.Label, Prompt: g.Prompt, Control: g.Control}
		base := g.Text["base"]
		for _, variant := range rep.Variants {
			if variant == "base" {
				row.Texts = append(row.Texts, mark([]Span{{Text: base}}, rep.Source, rep.Target))
				continue
			}
			row.Texts = append(row.Texts, WordDiff(base, g.Text[variant], rep.Source, rep.Target))
		}
		v.Generations = append(v.Generations, row)
	}
}

// mapWidth keeps a selection's map and its baseline's side by side on a wide page.
const mapWidth = 540

func (v *view) maps(in *Input, geo map[string]Geometry) {
	if in.Neurons == nil {
		return
	}
	labels := locate.SetLabels(in.Neurons)
	if in.Random != nil {
		for _, l := range locate.SetLabels(in.Random) {
			if !slices.Contains(labels, l) {
				labels = append(labels, l)
			}
		}
	}
	for _, mod := range in.modules() {
		g := geo[mod]
		mv := mapView{Module: mod, Geometry: g}
		draw := func(set *neuronset.Set, title string) (template.HTML, int) {
			o := chart.MapOptions{Title: title, Columns: g.Neurons, Series: labels, RowLabel: "layer", ColLabel: "neuron", MaxWidth: mapWidth}
			for l := 0; l < g.Layers; l++ {
				o.Rows = append(o.Rows, fmt.Sprint(l))
			}
			n := 0
			for _, nr := range set.Neurons {
				if nr.Module == mod {
					o.Points = append(o.Points, chart.Point{Row: nr.Layer, Col: nr.Index, Series: slices.Index(labels, nr.Label)})
					n++
				}
			}
			return template.HTML(chart.Map(o).SVG()), n
		}
		mv.Selected, mv.SelectedN = draw(in.Neurons, fmt.Sprintf("%s: selected (%s)", mod, in.Neurons.Method))
		if in.Random != nil {
			mv.Random, mv.RandomN = draw(in.Random, fmt.Sprintf("%s: random baseline", mod))
		}
		v.Maps = append(v.Maps, mv)
	}
}

func (v *view) layers(in *Input, geo map[string]Geometry) {
	if in.Neurons == nil {
		return
	}
	for _, mod := range in.modules() {
		if c := locate.LayerChart(in.Neurons, mod, geo[mod].Layers); len(c.Marks) > 0 {
			v.Layers = append(v.Layers, template.HTML(c.SVG()))
		}
	}
	switch in.Neurons.Method {
	case "miner":
		v.LayerNote = "As MINER (Huang et al.) draws it: modality-specific neurons per layer, one series per modality."
	case "dape":
		v.LayerNote = "As MMNeuron (Huo et al.) draws it: domain-specific neurons per layer of each module, one series per domain."
	default:
		v.LayerNote = "Selected neurons per layer of each module, one series per label."
	}
	if in.Random != nil {
		v.LayerNote += " The random baseline has the same count in every layer and label by construction."
	}
}

func (v *view) top(in *Input) {
	statsLabels := map[string]bool{}
	concepts := map[string]bool{}
	for _, n := range in.topNeurons() {
		r := topRow{N: n, Writes: in.writes(n, 8)}
		r.Stats, r.Concepts = in.statsOf(n)
		if len(r.Writes) > 0 {
			v.TopHasWrites = true
		}
		for _, s := range r.Stats {
			statsLabels[s.Label] = true
		}
		for _, c := range r.Concepts {
			concepts[c.Word] = true
		}
		v.Top = append(v.Top, r)
	}
	for l := range statsLabels {
		v.TopStats = append(v.TopStats, l)
	}
	sort.Strings(v.TopStats)
	for c := range concepts {
		v.TopConcepts = append(v.TopConcepts, c)
	}
	sort.Strings(v.TopConcepts)
	// Rows fill the columns in the same order.
	for i := range v.Top {
		v.Top[i].Stats = alignStats(v.Top[i].Stats, v.TopStats)
		v.Top[i].Concepts = alignConcepts(v.Top[i].Concepts, v.TopConcepts)
	}
}

func alignStats(have []neuronStats, labels []string) []neuronStats {
	out := make([]neuronStats, len(labels))
	for i, l := range labels {
		out[i] = neuronStats{Label: l, Prob: math.NaN(), Mean: math.NaN(), Mx: math.NaN()}
		for _, s := range have {
			if s.Label == l {
				out[i] = s
			}
		}
	}
	return out
}

func alignConcepts(have []conceptStats, words []string) []conceptStats {
	out := make([]conceptStats, len(words))
	for i, w := range words {
		out[i] = conceptStats{Word: w, Mean: math.NaN(), Phi: math.NaN()}
		for _, c := range have {
			if c.Word == w {
				out[i] = c
			}
		}
	}
	return out
}

func formatNum(x float64) string {
	switch {
	case math.IsNaN(x):
		return "–"
	case x == 0:
		return "0"
	case math.Abs(x) >= 1e5 || math.Abs(x) < 1e-3:
		return fmt.Sprintf("%.3g", x)
	}
	return fmt.Sprintf("%.4g", x)
}
