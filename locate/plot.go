package locate

import (
	"fmt"
	"path/filepath"
	"sort"
	"strings"

	"github.com/neurosurg/neurosurg/formats/atomicfile"
	"github.com/neurosurg/neurosurg/formats/neuronset"
	"github.com/neurosurg/neurosurg/report/chart"
)

// PlotLayers draws the number of selected neurons per layer, one bar per label — the figure
// every one of the papers shows — as an SVG file: one chart per module of the set, the
// language model first, stacked. geom is the FFN shape of the modules (the stats' or the
// model's).
func PlotLayers(set *neuronset.Set, geom map[string]neuronset.Geometry, path string) error {
	if ext := strings.ToLower(filepath.Ext(path)); ext != ".svg" {
		return fmt.Errorf("locate: plot %s: only .svg is drawn (got %q)", path, ext)
	}
	mods := Modules(set)
	sort.SliceStable(mods, func(a, b int) bool { return mods[a] == "llm" && mods[b] != "llm" })
	if len(mods) == 0 {
		mods = []string{"llm"}
	}
	var charts []*chart.Chart
	for _, m := range mods {
		g, ok := geom[m]
		if !ok {
			return fmt.Errorf("locate: plot %s: the set has neurons in module %q, which the model does not have", path, m)
		}
		charts = append(charts, LayerChart(set, m, g.Layers))
	}
	if len(charts) == 1 {
		return atomicfile.Write(path, charts[0].Standalone())
	}
	return atomicfile.Write(path, stack(charts))
}

// stack draws charts one above the other as one standalone SVG.
func stack(charts []*chart.Chart) []byte {
	var w, h float64
	for _, c := range charts {
		w, h = max(w, c.W), h+c.H
	}
	var b strings.Builder
	fmt.Fprintf(&b, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"chart\" viewBox=\"0 0 %g %g\" width=\"%g\" height=\"%g\">\n<style>%s</style>\n", w, h, w, h, chart.Style)
	var y float64
	for _, c := range charts {
		fmt.Fprintf(&b, "<g transform=\"translate(0 %g)\">\n%s</g>\n", y, c.SVG())
		y += c.H
	}
	b.WriteString("</svg>\n")
	return []byte(b.String())
}

// LayerChart is the per-layer count of one module's selected neurons, one series per label:
// MINER's per-modality and MMNeuron's per-domain distributions.
func LayerChart(set *neuronset.Set, module string, layers int) *chart.Chart {
	labels := SetLabels(set)
	counts := make([][]float64, len(labels))
	at := map[string]int{}
	for i, l := range labels {
		counts[i] = make([]float64, layers)
		at[l] = i
	}
	for _, n := range set.Neurons {
		if n.Module == module && n.Layer < layers {
			counts[at[n.Label]][n.Layer]++
		}
	}
	var series []chart.Series
	for i, l := range labels {
		series = append(series, chart.Series{Name: l, Values: counts[i]})
	}
	cats := make([]string, layers)
	for i := range cats {
		cats[i] = fmt.Sprint(i)
	}
	what := "selected neurons"
	switch set.Method {
	case "miner":
		what = "modality-specific neurons"
	case "dape":
		what = "domain-specific neurons"
	}
	return chart.VBar(chart.VBarOptions{Title: fmt.Sprintf("%s: %s per layer (%s)", set.Method, what, module),
		Categories: cats, Series: series, XLabel: "layer", YLabel: "neurons", Format: func(v float64) string { return fmt.Sprint(v) }})
}

// SetLabels are the labels of a set's neurons, sorted ("" for unlabelled ones).
func SetLabels(set *neuronset.Set) []string {
	return distinct(set, func(n neuronset.Neuron) string { return n.Label })
}

// Modules are the modules a set's neurons are in, sorted.
func Modules(set *neuronset.Set) []string {
	return distinct(set, func(n neuronset.Neuron) string { return n.Module })
}

// distinct lists the values key takes over a set's neurons, sorted.
func distinct(set *neuronset.Set, key func(neuronset.Neuron) string) []string {
	seen := map[string]bool{}
	var out []string
	for _, n := range set.Neurons {
		if k := key(n); !seen[k] {
			seen[k] = true
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}
