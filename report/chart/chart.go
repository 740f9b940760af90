// Package chart draws the report's charts as hand-written SVG. Every piece of text is measured
// (text.go) before the layout is fixed, and the drawing's size follows from the layout, so a
// long label, many series or a negative value grows the chart instead of clipping it; legends
// sit in their own band above the plot, never on a bar. Each chart keeps the boxes of what it
// drew so tests can check those promises without a browser.
package chart

import (
	"fmt"
	"html"
	"math"
	"strconv"
	"strings"
)

// Layout constants (SVG user units = CSS px at scale 1).
const (
	pad       = 8  // around the whole chart
	fontSize  = 12 // category and legend labels
	smallSize = 11 // ticks and values
	titleSize = 14
	swatch    = 10
	legendGap = 16 // between legend items
)

// Box is an axis-aligned rectangle in the chart's coordinates.
type Box struct {
	X, Y, W, H float64
	Text       string // the text drawn, for text boxes
}

// Overlaps reports whether a and b share more than a hairline.
func (a Box) Overlaps(b Box) bool {
	const eps = 0.01
	return a.X+eps < b.X+b.W && b.X+eps < a.X+a.W && a.Y+eps < b.Y+b.H && b.Y+eps < a.Y+a.H
}

// Inside reports whether a lies within a W×H canvas.
func (a Box) Inside(w, h float64) bool {
	const eps = 0.01
	return a.X >= -eps && a.Y >= -eps && a.X+a.W <= w+eps && a.Y+a.H <= h+eps
}

func union(a, b Box) Box {
	if a.W == 0 && a.H == 0 {
		return b
	}
	x0, y0 := math.Min(a.X, b.X), math.Min(a.Y, b.Y)
	x1, y1 := math.Max(a.X+a.W, b.X+b.W), math.Max(a.Y+a.H, b.Y+b.H)
	return Box{X: x0, Y: y0, W: x1 - x0, H: y1 - y0}
}

// Chart is one drawn chart.
type Chart struct {
	W, H   float64
	Title  string
	Marks  []Box // bars and cells: what the data is drawn as
	Texts  []Box // every text, as the layout reserved it
	Legend Box   // the legend's band (zero when there is none)
	body   strings.Builder
}

// Series is one named row of values, one per category; NaN marks a missing value.
type Series struct {
	Name   string
	Values []float64
	Color  string // CSS colour; empty: the palette's
}

func (c *Chart) printf(format string, a ...any) { fmt.Fprintf(&c.body, format, a...) }

// rect draws a data mark with a tooltip.
func (c *Chart) mark(x, y, w, h float64, fill, tip string, opacity float64) {
	op := ""
	if opacity > 0 && opacity < 1 {
		op = fmt.Sprintf(` fill-opacity="%s"`, num(opacity))
	}
	c.printf(`<rect class="mark" x="%s" y="%s" width="%s" height="%s" fill="%s"%s><title>%s</title></rect>`+"\n",
		num(x), num(y), num(w), num(h), esc(fill), op, esc(tip))
	c.Marks = append(c.Marks, Box{X: x, Y: y, W: w, H: h})
}

// text draws s with its baseline at y; anchor is start, middle or end. tip, when not empty,
// becomes a tooltip (the full text of a truncated label).
func (c *Chart) text(x, y float64, s string, px float64, anchor, class string, bold bool, tip string) Box {
	w := TextWidth(s, px, bold)
	b := Box{Y: y - ascent*px, W: w, H: (ascent + descent) * px, Text: s}
	switch anchor {
	case "end":
		b.X = x - w
	case "middle":
		b.X = x - w/2
	default:
		b.X = x
		anchor = "start"
	}
	attrs := ""
	if bold {
		attrs = ` font-weight="bold"`
	}
	if px != fontSize {
		attrs += fmt.Sprintf(` font-size="%s"`, num(px))
	}
	if class != "" {
		attrs += ` class="` + class + `"`
	}
	title := ""
	if tip != "" {
		title = "<title>" + esc(tip) + "</title>"
	}
	c.printf(`<text x="%s" y="%s" text-anchor="%s"%s>%s%s</text>`+"\n", num(x), num(y), anchor, attrs, title, esc(s))
	c.Texts = append(c.Texts, b)
	return b
}

func (c *Chart) line(x1, y1, x2, y2 float64, class string) {
	c.printf(`<line class="%s" x1="%s" y1="%s" x2="%s" y2="%s"/>`+"\n", class, num(x1), num(y1), num(x2), num(y2))
}

// maxTitleWidth is how far a title may widen a narrow chart before it is cut.
const maxTitleWidth = 640

// title draws the chart's title at the top and returns the y below it. A title longer than
// the chart widens it, up to maxTitleWidth.
func (c *Chart) title(y float64) float64 {
	if c.Title != "" {
		c.W = math.Max(c.W, math.Min(maxTitleWidth, math.Ceil(TextWidth(oneLine(c.Title), titleSize, true)+2*pad)))
	}
	if c.Title == "" {
		return y
	}
	s, cut := Truncate(c.Title, titleSize, c.W-2*pad, true)
	tip := ""
	if cut {
		tip = c.Title
	}
	c.text(pad, y+ascent*titleSize, s, titleSize, "start", "title", true, tip)
	return y + (ascent+descent)*titleSize + 6
}

// legend lays out one swatch and name per series in rows that wrap at the chart's width, and
// returns the y below it. A chart of one unnamed series has none.
func (c *Chart) legend(y float64, names, colors []string) float64 {
	if len(names) == 0 || (len(names) == 1 && names[0] == "") {
		return y
	}
	c.printf(`<g class="legend">` + "\n")
	rowH := (ascent + descent) * fontSize
	x := float64(pad)
	maxText := c.W - 2*pad - swatch - 4
	for i, n := range names {
		label, cut := Truncate(display(n), fontSize, maxText, false)
		tip := ""
		if cut {
			tip = n
		}
		w := swatch + 4 + TextWidth(label, fontSize, false)
		if x > pad && x+w > c.W-pad {
			x, y = pad, y+rowH+4
		}
		sy := y + (rowH-swatch)/2
		c.printf(`<rect class="swatch" x="%s" y="%s" width="%d" height="%d" fill="%s"/>`+"\n", num(x), num(sy), swatch, swatch, esc(colors[i]))
		c.Legend = union(c.Legend, Box{X: x, Y: sy, W: swatch, H: swatch})
		b := c.text(x+swatch+4, y+ascent*fontSize, label, fontSize, "start", "", false, tip)
		c.Legend = union(c.Legend, b)
		x += w + legendGap
	}
	c.printf("</g>\n")
	return y + rowH + 8
}

// display names the empty label.
func display(name string) string {
	if name == "" {
		return "(no label)"
	}
	return name
}

// SVG is the chart as an element to inline in HTML; the page's stylesheet colours it.
func (c *Chart) SVG() string {
	return c.open() + c.body.String() + "</svg>\n"
}

// Standalone is the chart as an .svg file, with its own style (light and dark).
func (c *Chart) Standalone() []byte {
	return []byte(`<?xml version="1.0" encoding="UTF-8"?>` + "\n" + c.open() + "<style>" + Style + "</style>\n" + c.body.String() + "</svg>\n")
}

func (c *Chart) open() string {
	return fmt.Sprintf(`<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 %s %s" width="%s" height="%s" role="img" aria-label="%s" font-family="%s" font-size="%d">`+"\n",
		num(c.W), num(c.H), num(c.W), num(c.H), esc(c.Title), esc(FontFamily), fontSize)
}

// Style colours chart text, axes and backgrounds for light and dark pages. Marks carry their
// own fill: the palette reads on both.
const Style = `
svg.chart text { fill: var(--chart-fg, #1f2328); }
svg.chart text.title { fill: var(--chart-fg, #1f2328); }
svg.chart text.muted { fill: var(--chart-muted, #59636e); }
svg.chart line.axis { stroke: var(--chart-fg, #1f2328); stroke-width: 1; }
svg.chart line.zero { stroke: var(--chart-fg, #1f2328); stroke-width: 1.2; }
svg.chart line.grid { stroke: var(--chart-grid, #d1d9e0); stroke-width: 1; }
svg.chart rect.bg { fill: var(--chart-bg-cell, #eef1f4); }
svg.chart rect.swatch { stroke: none; }
@media (prefers-color-scheme: dark) {
  svg.chart { --chart-fg: #e6edf3; --chart-muted: #9198a1; --chart-grid: #3d444d; --chart-bg-cell: #262c36; }
}
`

// palette reads on white and on near-black: mid-lightness, distinct hues (Tableau 10).
var palette = []string{"#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#b07aa1", "#9c755f", "#76b7b2", "#edc948", "#ff9da7", "#8c8c8c"}

// Color is the i-th of n series colours: the fixed palette up to 10, evenly spaced hues in two
// lightnesses beyond.
func Color(i, n int) string {
	if n <= len(palette) {
		return palette[i%len(palette)]
	}
	h := float64(i) * 360 / float64(n)
	l := 48.0
	if i%2 == 1 {
		l = 62
	}
	return fmt.Sprintf("hsl(%d, 62%%, %d%%)", int(h), int(l))
}

func seriesColors(ss []Series) ([]string, []string) {
	var names, colors []string
	for i, s := range ss {
		col := s.Color
		if col == "" {
			col = Color(i, len(ss))
		}
		names = append(names, s.Name)
		colors = append(colors, col)
	}
	return names, colors
}

// niceTicks covers [lo, hi] with about n round steps (1, 2 or 5 × 10^k).
func niceTicks(lo, hi float64, n int) []float64 {
	if !(hi > lo) {
		hi = lo + 1
	}
	raw := (hi - lo) / float64(max(1, n))
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	step := mag
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if m*mag >= raw {
			step = m * mag
			break
		}
	}
	start := math.Floor(lo/step+1e-9) * step
	var t []float64
	for v := start; v <= hi+step*(1-1e-9); v += step {
		t = append(t, clean(v, step))
		if len(t) > 100 {
			break
		}
	}
	if t[len(t)-1] < hi-1e-12*math.Abs(hi) {
		t = append(t, clean(t[len(t)-1]+step, step))
	}
	return t
}

// clean rounds away floating-point dust (0.30000000000000004 → 0.3) at the step's precision.
func clean(v, step float64) float64 {
	d := math.Max(0, -math.Floor(math.Log10(step))+2)
	p := math.Pow(10, d)
	r := math.Round(v*p) / p
	if r == 0 {
		return 0 // no "-0"
	}
	return r
}

// FormatTick prints a tick value briefly.
func FormatTick(v float64) string {
	a := math.Abs(v)
	switch {
	case v == 0:
		return "0"
	case a >= 1e6 || a < 1e-3:
		return strconv.FormatFloat(v, 'g', 3, 64)
	default:
		return strconv.FormatFloat(v, 'f', -1, 64)
	}
}

// FormatValue is the default value label: four significant digits.
func FormatValue(v float64) string {
	if v == 0 {
		return "0"
	}
	return strconv.FormatFloat(v, 'g', 4, 64)
}

func num(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "0"
	}
	return strconv.FormatFloat(math.Round(v*100)/100, 'f', -1, 64)
}

func esc(s string) string { return html.EscapeString(oneLine(s)) }

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }
