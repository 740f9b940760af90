package chart

import (
	"fmt"
	"math"
	"sort"
	"strings"
)

// Point is one selected neuron on a map: row (layer), column (neuron index), series (label).
type Point struct {
	Row, Col, Series int
}

// MapOptions describe a neuron map: one row per layer, one cell per neuron, coloured by the
// series (label) that selected it. Rows wider than MaxColumns are binned: a cell then stands
// for several neurons, takes the colour of the series with most of them, and is the more
// opaque the more it holds.
type MapOptions struct {
	Title      string
	Rows       []string // row names, top to bottom
	Columns    int      // neurons per row
	Series     []string // legend names
	Colors     []string // per series; empty: the palette's
	Points     []Point
	MaxColumns int     // default 300
	MaxWidth   float64 // of the cells (default 900)
	RowLabel   string  // caption above the row names ("layer")
	ColLabel   string  // caption under the column axis ("neuron")
}

// Map draws o.
func Map(o MapOptions) *Chart {
	c := &Chart{Title: o.Title}
	if o.MaxColumns <= 0 {
		o.MaxColumns = 300
	}
	if o.MaxWidth <= 0 {
		o.MaxWidth = 900
	}
	colors := make([]string, len(o.Series))
	for i := range colors {
		if i < len(o.Colors) && o.Colors[i] != "" {
			colors[i] = o.Colors[i]
		} else {
			colors[i] = Color(i, len(o.Series))
		}
	}
	cols := max(1, o.Columns)
	bin := 1
	if cols > o.MaxColumns {
		bin = (cols + o.MaxColumns - 1) / o.MaxColumns
	}
	nBins := (cols + bin - 1) / bin
	cellW := math.Max(1, math.Min(8, math.Floor(o.MaxWidth/float64(nBins))))
	const cellH, rowGap = 12.0, 3.0
	var rowW float64
	for _, r := range o.Rows {
		rowW = math.Max(rowW, TextWidth(oneLine(r), smallSize, false))
	}
	if o.RowLabel != "" {
		rowW = math.Max(rowW, TextWidth(o.RowLabel, smallSize, false))
	}
	plotL := pad + rowW + 8
	plotW := float64(nBins) * cellW
	ticks := niceTicks(0, float64(cols-1), max(2, int(plotW/80)))
	for len(ticks) > 0 && ticks[len(ticks)-1] > float64(cols-1) {
		ticks = ticks[:len(ticks)-1]
	}
	lastTickW := 0.0
	if len(ticks) > 0 {
		lastTickW = TextWidth(FormatTick(ticks[len(ticks)-1]), smallSize, false)
	}
	c.W = math.Ceil(math.Max(plotL+plotW, plotL+plotW/float64(nBins)*(math.Floor(ticks[len(ticks)-1]/float64(bin))+0.5)+lastTickW/2) + pad)
	if o.ColLabel != "" {
		c.W = math.Max(c.W, math.Ceil(plotL+TextWidth(o.ColLabel, smallSize, false)+pad))
	}

	y := c.title(pad)
	y = c.legend(y, o.Series, colors)
	if len(o.Rows) == 0 {
		c.text(pad, y+ascent*fontSize, "no data", fontSize, "start", "muted", false, "")
		c.H = math.Ceil(y + (ascent+descent)*fontSize + pad)
		return c
	}
	if o.RowLabel != "" {
		c.text(pad+rowW, y+ascent*smallSize, o.RowLabel, smallSize, "end", "muted", false, "")
		y += (ascent+descent)*smallSize + 2
	}
	// counts[row][bin][series]
	type cellKey struct{ row, bin int }
	counts := map[cellKey]map[int]int{}
	var keys []cellKey
	maxCount := 0
	for _, p := range o.Points {
		if p.Row < 0 || p.Row >= len(o.Rows) || p.Col < 0 || p.Col >= cols || p.Series < 0 || p.Series >= len(o.Series) {
			continue
		}
		k := cellKey{p.Row, p.Col / bin}
		if counts[k] == nil {
			counts[k] = map[int]int{}
			keys = append(keys, k)
		}
		counts[k][p.Series]++
		total := 0
		for _, n := range counts[k] {
			total += n
		}
		maxCount = max(maxCount, total)
	}
	sort.Slice(keys, func(a, b int) bool {
		if keys[a].row != keys[b].row {
			return keys[a].row < keys[b].row
		}
		return keys[a].bin < keys[b].bin
	})
	rowY := func(r int) float64 { return y + float64(r)*(cellH+rowGap) }
	for r, name := range o.Rows {
		ry := rowY(r)
		c.printf(`<rect class="bg" x="%s" y="%s" width="%s" height="%s"/>`+"\n", num(plotL), num(ry), num(plotW), num(cellH))
		c.text(pad+rowW, ry+cellH/2+(ascent-descent)/2*smallSize, oneLine(name), smallSize, "end", "", false, "")
	}
	for _, k := range keys {
		m := counts[k]
		var ss []int
		total := 0
		for s, n := range m {
			ss = append(ss, s)
			total += n
		}
		sort.Ints(ss)
		lo, hi := k.bin*bin, min(cols, (k.bin+1)*bin)-1
		var tip strings.Builder
		if bin == 1 {
			fmt.Fprintf(&tip, "%s %s, %s %d:", o.RowLabel, oneLine(o.Rows[k.row]), o.ColLabel, lo)
		} else {
			fmt.Fprintf(&tip, "%s %s, %s %d–%d:", o.RowLabel, oneLine(o.Rows[k.row]), o.ColLabel, lo, hi)
		}
		for _, s := range ss {
			fmt.Fprintf(&tip, " %s %d", display(o.Series[s]), m[s])
		}
		x := plotL + float64(k.bin)*cellW
		ry := rowY(k.row)
		if bin == 1 {
			// One neuron: a slice per series that selected it.
			h := cellH / float64(len(ss))
			for i, s := range ss {
				c.mark(x, ry+float64(i)*h, cellW, h, colors[s], tip.String(), 0)
			}
			continue
		}
		best := ss[0]
		for _, s := range ss {
			if m[s] > m[best] {
				best = s
			}
		}
		c.mark(x, ry, cellW, cellH, colors[best], tip.String(), 0.35+0.65*float64(total)/float64(maxCount))
	}
	y = rowY(len(o.Rows)) - rowGap + 4
	c.line(plotL, y, plotL+plotW, y, "axis")
	// Column ticks, thinned so that their labels never touch.
	lastEnd := math.Inf(-1)
	for _, t := range ticks {
		x := plotL + (math.Floor(t/float64(bin))+0.5)*cellW
		s := FormatTick(t)
		w := TextWidth(s, smallSize, false)
		if x-w/2 < lastEnd+6 {
			continue
		}
		lastEnd = x + w/2
		c.line(x, y, x, y+4, "axis")
		c.text(x, y+6+ascent*smallSize, s, smallSize, "middle", "muted", false, "")
	}
	y += 6 + (ascent+descent)*smallSize
	if o.ColLabel != "" {
		cap := o.ColLabel
		if bin > 1 {
			cap += fmt.Sprintf(" (one cell = %d neurons)", bin)
		}
		c.W = math.Max(c.W, math.Ceil(plotL+TextWidth(cap, smallSize, false)+pad))
		c.text(plotL, y+4+ascent*smallSize, cap, smallSize, "start", "muted", false, "")
		y += 4 + (ascent+descent)*smallSize
	}
	c.H = math.Ceil(y + pad)
	return c
}
