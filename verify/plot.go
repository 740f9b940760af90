package verify

import (
	"fmt"
	"math"
	"path/filepath"
	"sort"
	"strings"

	"github.com/neurosurg/neurosurg/formats/atomicfile"
	"github.com/neurosurg/neurosurg/report/chart"
)

// VariantColors keeps each variant one colour in every chart: the base grey, the edit in
// orange, the random baseline in blue.
var VariantColors = map[string]string{"base": "#8c8c8c", "edited": "#f28e2b", "random": "#4e79a7"}

// Plot draws each variant's relative change of every per-label perplexity against the base
// (edited beside the random baseline) as an SVG file.
func (r *Report) Plot(path string) error {
	if ext := strings.ToLower(filepath.Ext(path)); ext != ".svg" {
		return fmt.Errorf("verify: plot %s: only .svg is drawn (got %q)", path, ext)
	}
	return atomicfile.Write(path, r.PerplexityChart().Standalone())
}

// PerplexityChart is the relative change of every per-label perplexity against the base, one
// bar per variant.
func (r *Report) PerplexityChart() *chart.Chart {
	base := r.Metrics["base"]
	var keys []string
	for k := range base {
		if strings.HasPrefix(k, "ppl/") {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	var series []chart.Series
	for _, v := range r.Variants {
		if v == "base" {
			continue
		}
		vals := make([]float64, len(keys))
		for j, k := range keys {
			vals[j] = math.NaN()
			if b, e := base[k], r.Metrics[v][k]; b != 0 && r.Metrics[v] != nil {
				if _, ok := r.Metrics[v][k]; ok {
					vals[j] = 100 * (e - b) / b
				}
			}
		}
		series = append(series, chart.Series{Name: v, Values: vals, Color: VariantColors[v]})
	}
	names := make([]string, len(keys))
	for i, k := range keys {
		names[i] = strings.TrimPrefix(k, "ppl/")
	}
	return chart.HBar(chart.HBarOptions{Title: "Perplexity change per label vs base", Categories: names, Series: series,
		Axis: "% change of perplexity (lower is better)", Format: func(v float64) string { return fmt.Sprintf("%+.1f%%", v) }})
}

// MetricsChart draws the named metrics of every variant side by side (those no variant has are
// left out); nil when none is there.
func (r *Report) MetricsChart(title, axis string, metrics []string) *chart.Chart {
	var keys []string
	for _, k := range metrics {
		for _, v := range r.Variants {
			if _, ok := r.Metrics[v][k]; ok {
				keys = append(keys, k)
				break
			}
		}
	}
	if len(keys) == 0 {
		return nil
	}
	var series []chart.Series
	for _, v := range r.Variants {
		vals := make([]float64, len(keys))
		for j, k := range keys {
			x, ok := r.Metrics[v][k]
			if !ok {
				x = math.NaN()
			}
			vals[j] = x
		}
		series = append(series, chart.Series{Name: v, Values: vals, Color: VariantColors[v]})
	}
	return chart.HBar(chart.HBarOptions{Title: title, Categories: keys, Series: series, Axis: axis})
}
