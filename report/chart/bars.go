package chart

import (
	"fmt"
	"math"
)

// HBarOptions describe a grouped horizontal bar chart: one row per category (its name on the
// left, however long: cut with an ellipsis past MaxLabel), one bar per series in each row, the
// value printed at the bar's end. Negative values grow left of a zero line.
type HBarOptions struct {
	Title      string
	Categories []string
	Series     []Series
	Format     func(float64) string // value labels (default FormatValue)
	Axis       string               // caption under the value axis
	PlotWidth  float64              // of the value range (default 400)
	MaxLabel   float64              // widest category label before it is cut (default 260)
}

const (
	barH   = 14 // one bar's thickness
	barGap = 2  // between the bars of a group
	rowGap = 10 // between groups
)

// HBar draws o.
func HBar(o HBarOptions) *Chart {
	c := &Chart{Title: o.Title}
	format := o.Format
	if format == nil {
		format = FormatValue
	}
	if o.PlotWidth <= 0 {
		o.PlotWidth = 400
	}
	if o.MaxLabel <= 0 {
		o.MaxLabel = 260
	}
	names, colors := seriesColors(o.Series)
	// Horizontal layout: [label column][negative value labels][plot][positive value labels].
	var labelW float64
	cats := make([]string, len(o.Categories))
	cut := make([]bool, len(o.Categories))
	for i, s := range o.Categories {
		cats[i], cut[i] = Truncate(display(s), fontSize, o.MaxLabel, false)
		labelW = math.Max(labelW, TextWidth(cats[i], fontSize, false))
	}
	lo, hi := 0.0, 0.0
	var negW, posW float64
	for _, s := range o.Series {
		for i := range o.Categories {
			v := value(s, i)
			if !finite(v) {
				posW = math.Max(posW, TextWidth("n/a", smallSize, false))
				continue
			}
			lo, hi = math.Min(lo, v), math.Max(hi, v)
			w := TextWidth(format(v), smallSize, false)
			if v < 0 {
				negW = math.Max(negW, w)
			} else {
				posW = math.Max(posW, w)
			}
		}
	}
	ticks := niceTicks(lo, hi, max(2, int(o.PlotWidth/90)))
	lo, hi = math.Min(lo, ticks[0]), math.Max(hi, ticks[len(ticks)-1])
	tickW0 := TextWidth(FormatTick(ticks[0]), smallSize, false)
	tickWN := TextWidth(FormatTick(ticks[len(ticks)-1]), smallSize, false)
	plotL := pad + labelW + 10
	if negW > 0 {
		plotL += negW + 4
	}
	plotL = math.Max(plotL, pad+tickW0/2)
	plotR := plotL + o.PlotWidth
	right := plotR
	if posW > 0 {
		right += 4 + posW
	}
	right = math.Max(right, plotR+tickWN/2)
	c.W = math.Ceil(right + pad)
	if o.Axis != "" {
		c.W = math.Max(c.W, math.Ceil(plotL+TextWidth(o.Axis, smallSize, false)+pad))
	}
	x := func(v float64) float64 { return plotL + (v-lo)/(hi-lo)*o.PlotWidth }

	y := c.title(pad)
	y = c.legend(y, names, colors)
	if len(o.Categories) == 0 || len(o.Series) == 0 {
		c.text(pad, y+ascent*fontSize, "no data", fontSize, "start", "muted", false, "")
		c.H = math.Ceil(y + (ascent+descent)*fontSize + pad)
		return c
	}
	top := y
	nS := len(o.Series)
	groupH := float64(nS*barH + (nS-1)*barGap)
	// Grid lines first, so bars and labels are drawn over them.
	rowsH := float64(len(o.Categories))*(groupH+rowGap) - rowGap
	for _, t := range ticks {
		c.line(x(t), top-2, x(t), top+rowsH+2, "grid")
	}
	for i := range o.Categories {
		gy := top + float64(i)*(groupH+rowGap)
		tip := ""
		if cut[i] {
			tip = o.Categories[i]
		}
		c.text(pad+labelW, gy+groupH/2+(ascent-descent)/2*fontSize, cats[i], fontSize, "end", "", false, tip)
		for si, s := range o.Series {
			by := gy + float64(si*(barH+barGap))
			base := by + barH/2 + (ascent-descent)/2*smallSize
			v := value(s, i)
			if !finite(v) {
				c.text(x(0)+4, base, "n/a", smallSize, "start", "muted", false, "")
				continue
			}
			x0, x1 := x(math.Min(0, v)), x(math.Max(0, v))
			c.mark(x0, by, x1-x0, barH, colors[si], fmt.Sprintf("%s — %s: %s", display(o.Categories[i]), display(s.Name), format(v)), 0)
			if v < 0 {
				c.text(x0-4, base, format(v), smallSize, "end", "", false, "")
			} else {
				c.text(x1+4, base, format(v), smallSize, "start", "", false, "")
			}
		}
	}
	if lo < 0 {
		c.line(x(0), top-2, x(0), top+rowsH+2, "zero")
	}
	y = top + rowsH + 4
	c.line(plotL, y, plotR, y, "axis")
	for _, t := range ticks {
		c.line(x(t), y, x(t), y+4, "axis")
		c.text(x(t), y+6+ascent*smallSize, FormatTick(t), smallSize, "middle", "muted", false, "")
	}
	y += 6 + (ascent+descent)*smallSize
	if o.Axis != "" {
		c.text(plotL, y+4+ascent*smallSize, o.Axis, smallSize, "start", "muted", false, "")
		y += 4 + (ascent+descent)*smallSize
	}
	c.H = math.Ceil(y + pad)
	return c
}

func value(s Series, i int) float64 {
	if i < len(s.Values) {
		return s.Values[i]
	}
	return math.NaN()
}

// VBarOptions describe a vertical bar chart over short categories (layers): one bar per
// series in each category, or stacked segments when grouped bars would not fit MaxWidth.
type VBarOptions struct {
	Title      string
	Categories []string // short: tick labels are thinned, not cut, when they would collide
	Series     []Series
	XLabel     string // caption under the categories
	YLabel     string // caption above the value axis
	MaxWidth   float64
	Format     func(float64) string // tooltips (default FormatValue)
}

// VBar draws o.
func VBar(o VBarOptions) *Chart {
	c := &Chart{Title: o.Title}
	format := o.Format
	if format == nil {
		format = FormatValue
	}
	if o.MaxWidth <= 0 {
		o.MaxWidth = 960
	}
	names, colors := seriesColors(o.Series)
	nC, nS := len(o.Categories), max(1, len(o.Series))
	// Grouped bars when they fit, else one stacked bar per category.
	barW := math.Max(3, math.Min(16, math.Floor(48/float64(nS))))
	gap := math.Max(6, barW)
	groupW := float64(nS)*barW + gap
	stacked := nS > 1 && float64(nC)*groupW > o.MaxWidth-80
	if stacked {
		barW = math.Max(4, math.Min(24, math.Floor((o.MaxWidth-80)/float64(max(1, nC))*0.7)))
		gap = math.Max(3, math.Floor(barW*0.4))
		groupW = barW + gap
	}
	plotW := math.Max(240, float64(nC)*groupW)
	groupW = plotW / float64(max(1, nC)) // few categories spread over the plot
	// Value range: stacked sums, or single values.
	lo, hi := 0.0, 0.0
	for i := 0; i < nC; i++ {
		var pos, neg float64
		for _, s := range o.Series {
			v := value(s, i)
			if !finite(v) {
				continue
			}
			if stacked {
				if v > 0 {
					pos += v
				} else {
					neg += v
				}
			} else {
				pos, neg = math.Max(pos, v), math.Min(neg, v)
			}
		}
		lo, hi = math.Min(lo, neg), math.Max(hi, pos)
	}
	const plotH = 180.0
	ticks := niceTicks(lo, hi, 5)
	lo, hi = math.Min(lo, ticks[0]), math.Max(hi, ticks[len(ticks)-1])
	var tickW float64
	for _, t := range ticks {
		tickW = math.Max(tickW, TextWidth(FormatTick(t), smallSize, false))
	}
	// Category ticks: every k-th, so that no two collide.
	var catW float64
	for _, s := range o.Categories {
		catW = math.Max(catW, TextWidth(oneLine(s), smallSize, false))
	}
	plotL := math.Max(pad+tickW+8, pad+(catW-groupW)/2)
	plotR := plotL + plotW
	step := max(1, int(math.Ceil((catW+6)/groupW)))
	right := plotR
	if nC > 0 {
		right = math.Max(right, plotL+(float64(nC-1)+0.5)*groupW+catW/2)
	}
	c.W = math.Ceil(right + pad)
	if o.XLabel != "" {
		c.W = math.Max(c.W, math.Ceil(plotL+TextWidth(o.XLabel, smallSize, false)+pad))
	}
	if o.YLabel != "" {
		c.W = math.Max(c.W, math.Ceil(pad+TextWidth(o.YLabel, smallSize, false)+pad))
	}

	y := c.title(pad)
	y = c.legend(y, names, colors)
	if nC == 0 || len(o.Series) == 0 {
		c.text(pad, y+ascent*fontSize, "no data", fontSize, "start", "muted", false, "")
		c.H = math.Ceil(y + (ascent+descent)*fontSize + pad)
		return c
	}
	if o.YLabel != "" {
		c.text(pad, y+ascent*smallSize, o.YLabel, smallSize, "start", "muted", false, "")
		y += (ascent+descent)*smallSize + 4
	}
	// Half a tick label above the top tick.
	top := y + (ascent+descent)*smallSize/2
	yv := func(v float64) float64 { return top + (hi-v)/(hi-lo)*plotH }
	for _, t := range ticks {
		c.line(plotL, yv(t), plotR, yv(t), "grid")
		c.text(plotL-6, yv(t)+(ascent-descent)/2*smallSize, FormatTick(t), smallSize, "end", "muted", false, "")
	}
	for i, cat := range o.Categories {
		inner := barW
		if !stacked {
			inner = float64(nS) * barW
		}
		gx := plotL + float64(i)*groupW + (groupW-inner)/2
		var pos, neg float64
		for si, s := range o.Series {
			v := value(s, i)
			if !finite(v) || v == 0 {
				continue
			}
			tip := fmt.Sprintf("%s %s — %s: %s", o.XLabel, oneLine(cat), display(s.Name), format(v))
			bx := gx + float64(si)*barW
			a, b := math.Min(0, v), math.Max(0, v)
			if stacked {
				bx = gx
				if v > 0 {
					a, b = pos, pos+v
					pos += v
				} else {
					a, b = neg+v, neg
					neg += v
				}
			}
			c.mark(bx, yv(b), barW, yv(a)-yv(b), colors[si], tip, 0)
		}
	}
	c.line(plotL, yv(0), plotR, yv(0), "zero")
	y = top + plotH + 4
	for i, cat := range o.Categories {
		if i%step != 0 {
			continue
		}
		cx := plotL + (float64(i)+0.5)*groupW
		c.line(cx, y-4, cx, y, "axis")
		c.text(cx, y+4+ascent*smallSize, oneLine(cat), smallSize, "middle", "muted", false, "")
	}
	y += 4 + (ascent+descent)*smallSize
	if o.XLabel != "" {
		c.text(plotL, y+4+ascent*smallSize, o.XLabel, smallSize, "start", "muted", false, "")
		y += 4 + (ascent+descent)*smallSize
	}
	c.H = math.Ceil(y + pad)
	return c
}
