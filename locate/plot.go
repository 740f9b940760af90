package locate

import (
	"fmt"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/neurosurg/neurosurg/formats/atomicfile"
	"github.com/neurosurg/neurosurg/formats/neuronset"
	"github.com/neurosurg/neurosurg/report/chart"
)

// PlotLayers draws the number of selected neurons per layer, one bar per label — the figure
// every one of the papers shows — as an SVG file, one chart for the "llm" module (or, when the
// set has none, its first module).
func PlotLayers(set *neuronset.Set, layers int, path string) error {
	if ext := strings.ToLower(filepath.Ext(path)); ext != ".svg" {
		return fmt.Errorf("locate: plot %s: only .svg is drawn (got %q)", path, ext)
	}
	mods := Modules(set)
	module := "llm"
	if len(mods) > 0 && !slices.Contains(mods, module) {
		module = mods[0]
	}
	return atomicfile.Write(path, LayerChart(set, module, layers).Standalone())
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
	seen := map[string]bool{}
	var out []string
	for _, n := range set.Neurons {
		if !seen[n.Label] {
			seen[n.Label] = true
			out = append(out, n.Label)
		}
	}
	sort.Strings(out)
	return out
}

// Modules are the modules a set's neurons are in, sorted.
func Modules(set *neuronset.Set) []string {
	seen := map[string]bool{}
	var out []string
	for _, n := range set.Neurons {
		if !seen[n.Module] {
			seen[n.Module] = true
			out = append(out, n.Module)
		}
	}
	sort.Strings(out)
	return out
}
