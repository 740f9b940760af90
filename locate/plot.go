package locate

import (
	"fmt"
	"image/color"
	"sort"

	"github.com/neurosurg/neurosurg/formats/neuronset"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

// PlotLayers draws the number of selected neurons per layer, one bar group per label — the
// figure every one of the papers shows. The format follows path's extension (.svg, .png, .pdf).
func PlotLayers(set *neuronset.Set, layers int, path string) error {
	counts := map[string][]float64{}
	var labels []string
	for _, n := range set.Neurons {
		if counts[n.Label] == nil {
			counts[n.Label] = make([]float64, layers)
			labels = append(labels, n.Label)
		}
		if n.Layer < layers {
			counts[n.Label][n.Layer]++
		}
	}
	sort.Strings(labels)
	p := plot.New()
	p.Title.Text = fmt.Sprintf("%s: selected neurons per layer", set.Method)
	p.X.Label.Text = "layer"
	p.Y.Label.Text = "neurons"
	w := vg.Points(max(2, 40/float64(max(1, len(labels)))))
	palette := []color.Color{color.RGBA{31, 119, 180, 255}, color.RGBA{255, 127, 14, 255}, color.RGBA{44, 160, 44, 255}, color.RGBA{214, 39, 40, 255}, color.RGBA{148, 103, 189, 255}}
	for i, l := range labels {
		bars, err := plotter.NewBarChart(plotter.Values(counts[l]), w)
		if err != nil {
			return err
		}
		bars.Color = palette[i%len(palette)]
		bars.LineStyle.Width = 0
		bars.Offset = w * vg.Length(float64(i)-float64(len(labels)-1)/2)
		p.Add(bars)
		name := l
		if name == "" {
			name = "(no label)"
		}
		p.Legend.Add(name, bars)
	}
	p.Legend.Top = true
	names := make([]string, layers)
	for i := range names {
		names[i] = fmt.Sprint(i)
	}
	p.NominalX(names...)
	return p.Save(vg.Length(max(4, float64(layers)*0.35+2))*vg.Inch, 3*vg.Inch, path)
}
