package report

import (
	"strings"
	"unicode"
)

// Span is a piece of a generated text as the report shows it.
type Span struct {
	Text string
	Op   string // "" same as the base, "ins" only in this text, "del" only in the base's
	Word string // "src" or "tgt" when the piece is the swap's source or target word
}

// maxDiffWords bounds the word diff's table (n×m): texts longer than this are shown plain.
const maxDiffWords = 1500

// words splits s into words, each with the spaces after it, so joining them gives s back.
func words(s string) []string {
	var out []string
	start := 0
	inWord := false
	for i, r := range s {
		space := unicode.IsSpace(r)
		if !space && !inWord && i > start && strings.TrimSpace(s[start:i]) != "" {
			out = append(out, s[start:i])
			start = i
		}
		inWord = !space
	}
	if start < len(s) {
		out = append(out, s[start:])
	}
	return out
}

// WordDiff marks where text differs from base, word by word (a longest common subsequence):
// words only in text are "ins", words only in base "del", in reading order. Words equal to
// the swap's source or target (punctuation aside) are marked as such.
func WordDiff(base, text, source, target string) []Span {
	a, b := words(base), words(text)
	if len(a) > maxDiffWords || len(b) > maxDiffWords {
		return mark([]Span{{Text: text}}, source, target)
	}
	key := func(w string) string { return strings.TrimSpace(w) }
	// lcs[i][j]: the longest common subsequence of a[i:] and b[j:].
	lcs := make([][]int32, len(a)+1)
	for i := range lcs {
		lcs[i] = make([]int32, len(b)+1)
	}
	for i := len(a) - 1; i >= 0; i-- {
		for j := len(b) - 1; j >= 0; j-- {
			if key(a[i]) == key(b[j]) {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	var out []Span
	add := func(w, op string) {
		if n := len(out); n > 0 && out[n-1].Op == op {
			out[n-1].Text += w
			return
		}
		out = append(out, Span{Text: w, Op: op})
	}
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		switch {
		case i < len(a) && j < len(b) && key(a[i]) == key(b[j]):
			add(b[j], "")
			i, j = i+1, j+1
		case j < len(b) && (i == len(a) || lcs[i][j+1] >= lcs[i+1][j]):
			add(b[j], "ins")
			j++
		default:
			add(a[i], "del")
			i++
		}
	}
	return mark(out, source, target)
}

// mark splits spans so that each source or target word is a span of its own.
func mark(spans []Span, source, target string) []Span {
	if source == "" && target == "" {
		return spans
	}
	var out []Span
	for _, s := range spans {
		var cur strings.Builder
		for _, w := range words(s.Text) {
			core := strings.TrimFunc(w, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsPunct(r) })
			kind := ""
			switch {
			case isWord(core, source):
				kind = "src"
			case isWord(core, target):
				kind = "tgt"
			}
			if kind == "" {
				cur.WriteString(w)
				continue
			}
			if cur.Len() > 0 {
				out = append(out, Span{Text: cur.String(), Op: s.Op})
				cur.Reset()
			}
			out = append(out, Span{Text: w, Op: s.Op, Word: kind})
		}
		if cur.Len() > 0 {
			out = append(out, Span{Text: cur.String(), Op: s.Op})
		}
	}
	return out
}

// isWord reports whether core is w, or w with a possessive ("Lily's").
func isWord(core, w string) bool {
	if w == "" {
		return false
	}
	rest, ok := strings.CutPrefix(core, w)
	return ok && (rest == "" || rest == "'s" || rest == "’s")
}
