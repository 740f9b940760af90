package tokenizer

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

// naiveMerge is the quadratic merge loop the heap replaced: merge the lowest-ranked adjacent
// pair, the leftmost on ties, until no pair has a rank. merge must give exactly its result.
func naiveMerge(t *Tokenizer, syms []string) []string {
	syms = slices.Clone(syms)
	for len(syms) > 1 {
		best, at := -1, -1
		for i := 0; i+1 < len(syms); i++ {
			if r, ok := t.ranks[[2]string{syms[i], syms[i+1]}]; ok && (best < 0 || r < best) {
				best, at = r, i
			}
		}
		if at < 0 {
			break
		}
		merged := syms[at] + syms[at+1]
		syms = append(syms[:at+1], syms[at+2:]...)
		syms[at] = merged
	}
	return syms
}

// randomText mixes words, digits, punctuation, runs of spaces and newlines, accents and CJK:
// the shapes the pre-tokenizers and merges treat differently.
func randomText(rng *rand.Rand, n int) string {
	words := []string{"the", "cat", "sat", "on", "a", "mat", "Lily", "happy", "dog", "ran", "über", "naïve", "日本語", "12345",
		"hello,", "world!", "  ", "\n\n", "aaaa", "ing", "'s", "you'll", "🎉", "\t", "éé", "once", "upon", "time", "x=1+2;"}
	var b strings.Builder
	for b.Len() < n {
		b.WriteString(words[rng.IntN(len(words))])
		if rng.IntN(8) == 0 {
			b.WriteByte('\n')
		} else {
			b.WriteByte(' ')
		}
	}
	return b.String()
}

// words returns what encodeSegment hands to bpe for text: the pre-tokenized chunks as symbols.
func words(t *Tokenizer, text string) [][]string {
	if !t.byteLevel {
		s := t.prepend + text
		if t.replaceSpace {
			s = strings.ReplaceAll(s, " ", "▁")
		}
		return [][]string{splitRunes(s)}
	}
	var out [][]string
	for m, _ := t.split.FindStringMatch(text); m != nil; m, _ = t.split.FindNextMatch(m) {
		var syms []string
		for _, c := range []byte(m.String()) {
			syms = append(syms, byteLevelPiece[c])
		}
		out = append(out, syms)
	}
	return out
}

func TestMergeMatchesNaive(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	// The naive loop is quadratic in a SentencePiece chunk (the whole text): keep that one short.
	for _, c := range []struct {
		dir string
		n   int
	}{{"../../testdata/stories260K", 5000}, {"../../testdata/qwen2-tokenizer", 20000}} {
		dir := c.dir
		tok, err := Load(dir)
		if err != nil {
			t.Fatal(err)
		}
		text := randomText(rng, c.n)
		n := 0
		for _, w := range words(tok, text) {
			want := naiveMerge(tok, w)
			got, _ := tok.merge(slices.Clone(w))
			if !slices.Equal(got, want) {
				t.Fatalf("%s: %q merges to %q, the naive loop to %q", dir, strings.Join(w, ""), got, want)
			}
			n += len(w)
		}
		t.Logf("%s: %d symbols merged alike", dir, n)
	}
}

// Made-up merge tables over a 3-letter alphabet make ties, overlaps ("aaa") and merges whose
// rank is lower than the merges that build their parts: cases a real vocab rarely shows.
func TestMergeMatchesNaiveOnRandomTables(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for trial := 0; trial < 300; trial++ {
		pieces := []string{"a", "b", "c"}
		var merges [][2]string
		for len(merges) < 12 {
			x, y := pieces[rng.IntN(len(pieces))], pieces[rng.IntN(len(pieces))]
			merges = append(merges, [2]string{x, y})
			pieces = append(pieces, x+y)
		}
		vocab := map[string]int32{}
		for i, p := range pieces {
			if _, ok := vocab[p]; !ok {
				vocab[p] = int32(i)
			}
		}
		tok := &Tokenizer{unk: -1}
		tok.setVocab(vocab, merges)
		syms := make([]string, rng.IntN(40))
		for i := range syms {
			syms[i] = pieces[rng.IntN(3)]
		}
		want := naiveMerge(tok, syms)
		got, _ := tok.merge(slices.Clone(syms))
		if !slices.Equal(got, want) {
			t.Fatalf("merges %v: %q -> %q, naive %q", merges, syms, got, want)
		}
	}
}

// The cost of merge grows linearly (times the heap's log) with the input: the pair lookups,
// which the quadratic loop made n² of, stay under 6 per symbol however long the chunk (n−1
// at the start, then per merge one for the pop, two for the new neighbours, and one pop per
// pair pushed, stale or not).
// (A count, not a clock: timing tests flake on a shared machine; BenchmarkEncode times it.)
func TestMergeLookupsAreLinear(t *testing.T) {
	tok, err := Load("../../testdata/stories260K")
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(5, 6))
	text := randomText(rng, 240000)
	for _, n := range []int{15000, 60000, 240000} {
		w := words(tok, text[:n])[0] // SentencePiece style: one chunk for the whole text
		_, lookups := tok.merge(w)
		if per := float64(lookups) / float64(len(w)); per > 6 {
			t.Errorf("%d symbols: %d pair lookups (%.1f per symbol), want linear", len(w), lookups, per)
		}
	}
}

func BenchmarkEncode(b *testing.B) {
	for _, dir := range []string{"stories260K", "qwen2-tokenizer"} {
		tok, err := Load("../../testdata/" + dir)
		if err != nil {
			b.Fatal(err)
		}
		for _, n := range []int{15 << 10, 60 << 10} {
			text := randomText(rand.New(rand.NewPCG(7, 8)), n)
			b.Run(fmt.Sprintf("%s/%dKB", dir, n>>10), func(b *testing.B) {
				b.SetBytes(int64(len(text)))
				for b.Loop() {
					if _, err := tok.Encode(text, true); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// FuzzMergeMatchesNaive: on any text, both tokenizer styles merge as the quadratic loop does,
// and EncodeLimit agrees with Encode about whether the text fits.
func FuzzMergeMatchesNaive(f *testing.F) {
	var toks []*Tokenizer
	for _, dir := range []string{"../../testdata/stories260K", "../../testdata/qwen2-tokenizer"} {
		tok, err := Load(dir)
		if err != nil {
			f.Fatal(err)
		}
		toks = append(toks, tok)
	}
	for _, s := range []string{"Once upon a time", "aaaaaaaa", "  \n\n x", "日本語 naïve café 🎉", "<s>Lily</s> <|im_start|>", "12345 hello,world!"} {
		f.Add(s, uint8(3))
	}
	f.Fuzz(func(t *testing.T, s string, limit uint8) {
		if !utf8.ValidString(s) || len(s) > 4096 {
			return
		}
		for _, tok := range toks {
			for _, w := range words(tok, s) {
				got, _ := tok.merge(slices.Clone(w))
				if want := naiveMerge(tok, w); !slices.Equal(got, want) {
					t.Fatalf("%q: merge %q, naive %q", s, got, want)
				}
			}
			all, err := tok.Encode(s, true)
			if err != nil {
				t.Fatal(err)
			}
			ids, err := tok.EncodeLimit(s, true, int(limit))
			if fits := limit == 0 || len(all) <= int(limit); fits != (err == nil) || (fits && !slices.Equal(ids, all)) {
				t.Fatalf("%q: limit %d, %d tokens: EncodeLimit %v %v", s, limit, len(all), ids, err)
			}
		}
	})
}
