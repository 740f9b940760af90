package chart

import (
	"strings"
	"unicode/utf8"
)

//go:generate go run genwidths.go /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf

// FontFamily is what every chart asks the browser for. DejaVu Sans comes first because the
// widths below are its own; Verdana and Bitstream Vera are as wide, the generic sans-serif
// fallbacks (Arial, Helvetica, Liberation) are narrower, so text never outgrows its box.
const FontFamily = `"DejaVu Sans", Verdana, "Bitstream Vera Sans", sans-serif`

// Text metrics of the layout model, in em. The ascent and descent are a little above DejaVu
// Sans' own (0.93, 0.24) so that fonts with taller boxes (Verdana: 1.01, 0.21) still fit.
const (
	ascent   = 1.0
	descent  = 0.25
	safety   = 1.06 // on every measured width: hinting, kerning and a wider fallback
	boldness = 1.12 // DejaVu Sans Bold against Regular, at most
	// unknownWidth is the advance of a rune missing from the table: CJK and most symbols are
	// one em wide; the few wider ones (some emoji) are rare in labels.
	unknownWidth = 1.05
)

// TextWidth is the width of s at font size px, as the layout reserves it.
func TextWidth(s string, px float64, bold bool) float64 {
	var w float64
	for _, r := range s {
		if a, ok := dejaVuWidths[r]; ok {
			w += a
		} else if r < 0x20 || (r >= 0x300 && r < 0x370) || r == 0x200b || r == 0xfe0f {
			// control characters, combining marks and zero-width joiners take no room
		} else {
			w += unknownWidth
		}
	}
	w *= px * safety
	if bold {
		w *= boldness
	}
	return w
}

// Truncate shortens s with an ellipsis until it fits in maxW; it returns s unchanged when it
// fits, and whether it was cut.
func Truncate(s string, px, maxW float64, bold bool) (string, bool) {
	s = oneLine(s)
	if TextWidth(s, px, bold) <= maxW {
		return s, false
	}
	r := []rune(s)
	lo, hi := 0, len(r) // the longest prefix that fits with the ellipsis
	for lo < hi {
		mid := (lo + hi + 1) / 2
		if TextWidth(string(r[:mid])+"…", px, bold) <= maxW {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	return strings.TrimRight(string(r[:lo]), " ") + "…", true
}

// oneLine replaces line breaks and tabs, which SVG text would collapse unpredictably, and
// invalid UTF-8, which would make the document unparseable.
func oneLine(s string) string {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	return strings.Map(func(r rune) rune {
		if r == '\n' || r == '\r' || r == '\t' {
			return ' '
		}
		if r < 0x20 || r == 0x7f {
			return -1
		}
		return r
	}, s)
}
