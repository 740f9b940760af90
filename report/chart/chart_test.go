package chart

import (
	"bytes"
	"encoding/xml"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/*.svg from the current output")

func seq(n int, f func(i int) float64) []float64 {
	v := make([]float64, n)
	for i := range v {
		v[i] = f(i)
	}
	return v
}

func names(n int, f func(i int) string) []string {
	s := make([]string, n)
	for i := range s {
		s[i] = f(i)
	}
	return s
}

const longName = "a label name that goes on and on, far longer than any chart column should ever be asked to hold"

// awkward are the inputs the issue names: one label, 30 labels, long names, negative and zero
// values (and missing ones, and nothing at all).
var awkward = map[string]func() *Chart{
	"hbar-one": func() *Chart {
		return HBar(HBarOptions{Title: "one label", Categories: []string{"names"}, Series: []Series{{Name: "edited", Values: []float64{9.3}}}})
	},
	"hbar-30": func() *Chart {
		return HBar(HBarOptions{Title: "30 labels, 3 series", Axis: "% vs base",
			Categories: names(30, func(i int) string { return fmt.Sprintf("label-%02d", i) }),
			Series: []Series{
				{Name: "base", Values: seq(30, func(i int) float64 { return 0 })},
				{Name: "edited", Values: seq(30, func(i int) float64 { return float64(i*i) - 200 })},
				{Name: "random", Values: seq(30, func(i int) float64 { return math.Sin(float64(i)) * 40 })},
			}})
	},
	"hbar-long": func() *Chart {
		return HBar(HBarOptions{Title: "long names: " + longName,
			Categories: []string{longName, "short", "名前の長いラベル・日本語テキスト", "tab\tand\nnewline"},
			Series:     []Series{{Name: longName, Values: []float64{1e6, 2.5, -3e-4, 0}}, {Name: "second " + longName, Values: []float64{3, 4, 5, 6}}}})
	},
	"hbar-negative-zero": func() *Chart {
		return HBar(HBarOptions{Title: "negative, zero and missing", Categories: []string{"all negative", "zero", "missing", "mixed"},
			Series: []Series{{Name: "edited", Values: []float64{-0.25, 0, math.NaN(), -12.5}}, {Name: "random", Values: []float64{-1, 0, 3}}}})
	},
	"hbar-all-zero": func() *Chart {
		return HBar(HBarOptions{Categories: []string{"a", "b"}, Series: []Series{{Values: []float64{0, 0}}}})
	},
	"hbar-empty": func() *Chart { return HBar(HBarOptions{Title: "nothing"}) },
	"vbar-one": func() *Chart {
		return VBar(VBarOptions{Title: "one layer, one label", Categories: []string{"0"}, Series: []Series{{Name: "animals", Values: []float64{7}}}, XLabel: "layer", YLabel: "neurons"})
	},
	"vbar-30": func() *Chart {
		return VBar(VBarOptions{Title: "30 labels over 28 layers (stacked)", Categories: names(28, func(i int) string { return fmt.Sprint(i) }), XLabel: "layer", YLabel: "neurons",
			Series: func() []Series {
				var ss []Series
				for l := 0; l < 30; l++ {
					ss = append(ss, Series{Name: fmt.Sprintf("domain-%02d", l), Values: seq(28, func(i int) float64 { return float64((i*7 + l*3) % 11) })})
				}
				return ss
			}()})
	},
	"vbar-long": func() *Chart {
		return VBar(VBarOptions{Title: longName, Categories: names(12, func(i int) string { return fmt.Sprint(1000 + i) }), XLabel: longName,
			Series: []Series{{Name: longName, Values: seq(12, func(i int) float64 { return float64(i) })}, {Name: "b", Values: seq(12, func(i int) float64 { return 2 })}}})
	},
	"vbar-negative-zero": func() *Chart {
		return VBar(VBarOptions{Title: "negative and zero", Categories: []string{"0", "1", "2", "3"}, XLabel: "layer",
			Series: []Series{{Name: "a", Values: []float64{-3, 0, 2, math.NaN()}}, {Name: "b", Values: []float64{0, 0, -0.5, 1}}}})
	},
	"map-small": func() *Chart {
		return Map(MapOptions{Title: "5 layers × 172 neurons", Rows: names(5, func(i int) string { return fmt.Sprint(i) }), Columns: 172,
			Series: []string{"animals", "food"}, RowLabel: "layer", ColLabel: "neuron",
			Points: []Point{{0, 0, 0}, {0, 171, 1}, {2, 50, 0}, {2, 50, 1}, {4, 100, 1}, {9, 1, 0}, {1, 500, 0}}})
	},
	"map-wide": func() *Chart {
		var pts []Point
		for i := 0; i < 2000; i++ {
			pts = append(pts, Point{Row: i % 24, Col: (i * 7919) % 18944, Series: i % 30})
		}
		return Map(MapOptions{Title: "24 layers × 18944 neurons, 30 labels", Rows: names(24, func(i int) string { return fmt.Sprint(i) }), Columns: 18944,
			Series: names(30, func(i int) string { return fmt.Sprintf("label-%02d", i) }), RowLabel: "layer", ColLabel: "neuron", Points: pts})
	},
	"map-one": func() *Chart {
		return Map(MapOptions{Rows: []string{"0"}, Columns: 1, Series: []string{longName}, Points: []Point{{0, 0, 0}}, RowLabel: "layer", ColLabel: "neuron"})
	},
}

func TestChartsMatchGoldens(t *testing.T) {
	for name, draw := range awkward {
		t.Run(name, func(t *testing.T) {
			got := draw().Standalone()
			path := filepath.Join("testdata", name+".svg")
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -update to write it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s differs from the golden; look at both, then go test ./report/chart -update", path)
			}
		})
	}
}

// TestChartsGeometry checks, from the layout's own numbers, what the browser test checks from
// the DOM: everything inside the drawing, no text or legend on a mark, no text on another.
func TestChartsGeometry(t *testing.T) {
	for name, draw := range awkward {
		t.Run(name, func(t *testing.T) {
			c := draw()
			if err := checkGeometry(c); err != nil {
				t.Fatal(err)
			}
			if len(c.Texts) == 0 {
				t.Fatal("no text drawn")
			}
		})
	}
}

func checkGeometry(c *Chart) error {
	if !(c.W > 0 && c.H > 0) {
		return fmt.Errorf("size %v×%v", c.W, c.H)
	}
	for _, b := range append(append([]Box(nil), c.Marks...), c.Texts...) {
		if !b.Inside(c.W, c.H) {
			return fmt.Errorf("%+v outside the %v×%v drawing", b, c.W, c.H)
		}
	}
	for _, m := range c.Marks {
		if c.Legend.Overlaps(m) {
			return fmt.Errorf("legend %+v over mark %+v", c.Legend, m)
		}
		for _, tb := range c.Texts {
			if tb.Overlaps(m) {
				return fmt.Errorf("text %q %+v over mark %+v", tb.Text, tb, m)
			}
		}
	}
	for i, a := range c.Texts {
		for _, b := range c.Texts[i+1:] {
			if a.Overlaps(b) {
				return fmt.Errorf("text %q %+v over text %q %+v", a.Text, a, b.Text, b)
			}
		}
	}
	return nil
}

func TestChartsAreWellFormedSVG(t *testing.T) {
	for name, draw := range awkward {
		d := xml.NewDecoder(bytes.NewReader(draw().Standalone()))
		n := 0
		for {
			tok, err := d.Token()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if _, ok := tok.(xml.StartElement); ok {
				n++
			}
		}
		if n < 3 {
			t.Errorf("%s: %d elements", name, n)
		}
	}
}

func TestTruncateFits(t *testing.T) {
	for _, tc := range []struct {
		s    string
		maxW float64
		cut  bool
	}{
		{"short", 200, false},
		{longName, 120, true},
		{"名前の長いラベル・日本語テキスト", 60, true},
		{"x", 1, true},
	} {
		got, cut := Truncate(tc.s, fontSize, tc.maxW, false)
		if cut != tc.cut {
			t.Errorf("%q in %v: cut %v, want %v", tc.s, tc.maxW, cut, tc.cut)
		}
		if cut && (!strings.HasSuffix(got, "…") || (TextWidth(got, fontSize, false) > tc.maxW && got != "…")) {
			t.Errorf("%q in %v: %q (%.1f wide)", tc.s, tc.maxW, got, TextWidth(got, fontSize, false))
		}
	}
}

func TestTextWidthIsDejaVus(t *testing.T) {
	// DejaVu Sans: "Lily" is 0.698+0.278+0.278+0.592 em; a CJK rune is counted as one em.
	if got, want := TextWidth("Lily", 10, false), (0.5566+0.2778+0.2778+0.5918)*10*safety; math.Abs(got-want) > 0.01 {
		t.Errorf("Lily: %.3f, want %.3f", got, want)
	}
	if TextWidth("名", 10, false) < 10 || TextWidth("Lily", 10, true) <= TextWidth("Lily", 10, false) {
		t.Error("wide runes or bold measured too narrow")
	}
}

func TestNiceTicksCoverTheRange(t *testing.T) {
	for _, tc := range [][2]float64{{0, 1}, {-12.5, 0}, {-200, 641}, {0, 0}, {3e-4, 1e6}, {0, 171}} {
		ts := niceTicks(tc[0], tc[1], 5)
		if ts[0] > tc[0] || ts[len(ts)-1] < tc[1] || len(ts) < 2 || len(ts) > 12 {
			t.Errorf("%v: %v", tc, ts)
		}
	}
}
