package verify

import (
	"image/color"
	"sort"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

// Plot draws each variant's relative change of every per-label perplexity against the base
// (edited beside the random baseline). The format follows path's extension.
func (r *Report) Plot(path string) error {
	base := r.Metrics["base"]
	var keys []string
	for k := range base {
		if strings.HasPrefix(k, "ppl/") {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	p := plot.New()
	p.Title.Text = "perplexity change per label vs base (%)"
	p.Y.Label.Text = "%"
	palette := []color.Color{color.RGBA{214, 39, 40, 255}, color.RGBA{127, 127, 127, 255}, color.RGBA{31, 119, 180, 255}}
	var variants []string
	for _, v := range r.Variants {
		if v != "base" {
			variants = append(variants, v)
		}
	}
	w := vg.Points(14)
	for i, v := range variants {
		vals := make(plotter.Values, len(keys))
		for j, k := range keys {
			if b := base[k]; b != 0 {
				vals[j] = 100 * (r.Metrics[v][k] - b) / b
			}
		}
		bars, err := plotter.NewBarChart(vals, w)
		if err != nil {
			return err
		}
		bars.Color = palette[i%len(palette)]
		bars.LineStyle.Width = 0
		bars.Offset = w * vg.Length(float64(i)-float64(len(variants)-1)/2)
		p.Add(bars)
		p.Legend.Add(v, bars)
	}
	names := make([]string, len(keys))
	for i, k := range keys {
		names[i] = strings.TrimPrefix(k, "ppl/")
	}
	p.NominalX(names...)
	p.Legend.Top = true
	return p.Save(vg.Length(max(4, float64(len(keys))*1.2+2))*vg.Inch, 3*vg.Inch, path)
}
