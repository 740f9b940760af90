// Package tokenizer encodes and decodes text for the runtime from a checkpoint's tokenizer
// files: Hugging Face tokenizer.json (SentencePiece-style BPE with byte fallback, byte-level
// BPE with a pre-tokenizer regex) or GPT-2/Qwen2-style vocab.json + merges.txt, plus
// tokenizer_config.json (added tokens, BOS/EOS, chat template).
package tokenizer

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/dlclark/regexp2"
	"golang.org/x/text/unicode/norm"
)

// Sentinel errors.
var (
	// ErrFormat reports tokenizer files neurosurg cannot read.
	ErrFormat = errors.New("tokenizer: unsupported or invalid file")
	// ErrTooLong reports a text with more tokens than EncodeLimit's limit.
	ErrTooLong = errors.New("tokenizer: text has too many tokens")
)

// Qwen2's and GPT-2's pre-tokenizer patterns (the ones their tokenizers ship).
const (
	patternQwen2 = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
	patternGPT2  = `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
)

// AddedToken is a token matched in raw text before normalization.
type AddedToken struct {
	ID      int32  `json:"id"`
	Content string `json:"content"`
	Special bool   `json:"special"`
	LStrip  bool   `json:"lstrip"`
	RStrip  bool   `json:"rstrip"`
}

// Message is one chat turn. Multimodal templates take Parts (content as a list of typed
// parts, e.g. {type: image} then {type: text}); text-only ones take Content.
type Message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
	Parts   []Part `json:"parts,omitempty"`
}

// Part is one piece of a multimodal message.
type Part struct {
	Type string `json:"type"` // "text", "image", "video", "audio"
	Text string `json:"text,omitempty"`
	// URL is the medium's file: templates that test for it ("'audio_url' in content" in
	// Qwen2-Audio's) see it under the key Type+"_url".
	URL string `json:"url,omitempty"`
}

// Tokenizer is a loaded tokenizer.
type Tokenizer struct {
	vocab                 map[string]int32
	pieces                []string
	ranks                 map[[2]string]int
	byteLevel             bool
	byteFallback, fuseUnk bool
	unk                   int32 // -1 when none
	split                 *regexp2.Regexp
	digits                bool // split digits individually before the regex
	nfc                   bool
	prepend               string // SentencePiece dummy prefix ("▁"), "" for none
	replaceSpace          bool
	stripLeading          int          // decoder strips this many leading spaces
	added                 []AddedToken // longest content first
	addedByID             map[int32]AddedToken
	bosPrefix             []int32 // post-processor prefix
	bos                   int32
	hasBOS                bool
	eos                   []int32
	template              string
	// For EncodeLimit's early refusal: the longest merge result in runes, and whether every
	// symbol left after merging is sure to give a token (not dropped or fused as unknown).
	maxMergeRunes    int
	symbolGivesToken bool
}

var byteToRune, runeToByte = byteMaps()

// byteMaps is GPT-2's reversible byte ↔ printable-rune table.
func byteMaps() ([256]rune, map[rune]byte) {
	var b2r [256]rune
	r2b := map[rune]byte{}
	n := 0
	for b := 0; b < 256; b++ {
		if (b >= '!' && b <= '~') || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff) {
			b2r[b] = rune(b)
		} else {
			b2r[b] = rune(256 + n)
			n++
		}
		r2b[b2r[b]] = byte(b)
	}
	return b2r, r2b
}

// Load reads the tokenizer of a checkpoint directory.
func Load(dir string) (*Tokenizer, error) {
	t := &Tokenizer{unk: -1, addedByID: map[int32]AddedToken{}}
	if b, err := os.ReadFile(filepath.Join(dir, "tokenizer.json")); err == nil {
		if err := t.fromJSON(b); err != nil {
			return nil, fmt.Errorf("%s: %w", filepath.Join(dir, "tokenizer.json"), err)
		}
	} else if err := t.fromVocabMerges(dir); err != nil {
		return nil, err
	}
	if err := t.readConfig(dir); err != nil {
		return nil, err
	}
	sort.SliceStable(t.added, func(i, j int) bool { return len(t.added[i].Content) > len(t.added[j].Content) })
	t.setSymbolGivesToken()
	return t, nil
}

type tokJSON struct {
	AddedTokens []AddedToken    `json:"added_tokens"`
	Normalizer  json.RawMessage `json:"normalizer"`
	PreTok      json.RawMessage `json:"pre_tokenizer"`
	PostProc    json.RawMessage `json:"post_processor"`
	Decoder     json.RawMessage `json:"decoder"`
	Model       struct {
		Type         string           `json:"type"`
		Vocab        map[string]int32 `json:"vocab"`
		Merges       json.RawMessage  `json:"merges"`
		UnkToken     *string          `json:"unk_token"`
		FuseUnk      bool             `json:"fuse_unk"`
		ByteFallback bool             `json:"byte_fallback"`
	} `json:"model"`
}

type component struct {
	Type          string          `json:"type"`
	Normalizers   []component     `json:"normalizers"`
	Pretokenizers []component     `json:"pretokenizers"`
	Decoders      []component     `json:"decoders"`
	Prepend       string          `json:"prepend"`
	Pattern       json.RawMessage `json:"pattern"`
	Content       string          `json:"content"`
	Start         int             `json:"start"`
	Single        []struct {
		SpecialToken *struct {
			ID string `json:"id"`
		} `json:"SpecialToken"`
	} `json:"single"`
	SpecialTokens map[string]struct {
		IDs []int32 `json:"ids"`
	} `json:"special_tokens"`
	UseRegex         *bool `json:"use_regex"`
	AddPrefixSpace   bool  `json:"add_prefix_space"`
	IndividualDigits bool  `json:"individual_digits"`
}

func (c *component) flat() []component {
	switch c.Type {
	case "Sequence":
		var out []component
		for _, l := range [][]component{c.Normalizers, c.Pretokenizers, c.Decoders} {
			for i := range l {
				out = append(out, l[i].flat()...)
			}
		}
		return out
	case "":
		return nil
	}
	return []component{*c}
}

func parseComponent(raw json.RawMessage) ([]component, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var c component
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, err
	}
	return c.flat(), nil
}

func (t *Tokenizer) fromJSON(b []byte) error {
	var j tokJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return fmt.Errorf("%w: %v", ErrFormat, err)
	}
	if j.Model.Type != "BPE" && !(j.Model.Type == "" && j.Model.Vocab != nil) {
		return fmt.Errorf("%w: model type %q (neurosurg reads BPE)", ErrFormat, j.Model.Type)
	}
	if len(j.Model.Vocab) == 0 {
		return fmt.Errorf("%w: empty vocab", ErrFormat)
	}
	var merges [][2]string
	var asStrings []string
	if err := json.Unmarshal(j.Model.Merges, &asStrings); err == nil {
		for i, m := range asStrings {
			a, b, ok := strings.Cut(m, " ")
			if !ok {
				return fmt.Errorf("%w: merge %d %q has no space", ErrFormat, i, m)
			}
			merges = append(merges, [2]string{a, b})
		}
	} else if err := json.Unmarshal(j.Model.Merges, &merges); err != nil {
		return fmt.Errorf("%w: merges: %v", ErrFormat, err)
	}
	t.setVocab(j.Model.Vocab, merges)
	t.byteFallback, t.fuseUnk = j.Model.ByteFallback, j.Model.FuseUnk
	if j.Model.UnkToken != nil {
		if id, ok := t.vocab[*j.Model.UnkToken]; ok {
			t.unk = id
		}
	}
	for _, a := range j.AddedTokens {
		t.addAdded(a)
	}
	norms, err := parseComponent(j.Normalizer)
	if err != nil {
		return fmt.Errorf("%w: normalizer: %v", ErrFormat, err)
	}
	for _, n := range norms {
		switch n.Type {
		case "Prepend":
			t.prepend = n.Prepend
		case "Replace":
			var p struct{ String string }
			json.Unmarshal(n.Pattern, &p)
			if p.String != " " || n.Content != "▁" {
				return fmt.Errorf("%w: normalizer Replace %q→%q", ErrFormat, p.String, n.Content)
			}
			t.replaceSpace = true
		case "NFC":
			t.nfc = true
		default:
			return fmt.Errorf("%w: normalizer %s", ErrFormat, n.Type)
		}
	}
	pres, err := parseComponent(j.PreTok)
	if err != nil {
		return fmt.Errorf("%w: pre_tokenizer: %v", ErrFormat, err)
	}
	for _, p := range pres {
		switch p.Type {
		case "ByteLevel":
			t.byteLevel = true
			if p.UseRegex == nil || *p.UseRegex {
				if t.split == nil {
					t.split = regexp2.MustCompile(patternGPT2, regexp2.Unicode)
				}
			}
		case "Split":
			var pat struct{ Regex, String string }
			json.Unmarshal(p.Pattern, &pat)
			re, err := regexp2.Compile(pat.Regex, regexp2.Unicode)
			if err != nil || pat.Regex == "" {
				return fmt.Errorf("%w: pre_tokenizer Split pattern %q", ErrFormat, pat.Regex)
			}
			t.split = re
		case "Digits":
			t.digits = p.IndividualDigits
		case "Metaspace":
			t.prepend, t.replaceSpace = "▁", true
		default:
			return fmt.Errorf("%w: pre_tokenizer %s", ErrFormat, p.Type)
		}
	}
	post, err := parseComponent(j.PostProc)
	if err != nil {
		return fmt.Errorf("%w: post_processor: %v", ErrFormat, err)
	}
	for _, p := range post {
		if p.Type == "TemplateProcessing" {
			for _, s := range p.Single {
				if s.SpecialToken == nil {
					break
				}
				t.bosPrefix = append(t.bosPrefix, p.SpecialTokens[s.SpecialToken.ID].IDs...)
			}
		}
	}
	decs, err := parseComponent(j.Decoder)
	if err != nil {
		return fmt.Errorf("%w: decoder: %v", ErrFormat, err)
	}
	for _, d := range decs {
		if d.Type == "Strip" {
			t.stripLeading = d.Start
		}
	}
	return nil
}

func (t *Tokenizer) setVocab(vocab map[string]int32, merges [][2]string) {
	t.vocab = vocab
	n := 0
	for _, id := range vocab {
		n = max(n, int(id)+1)
	}
	t.pieces = make([]string, n)
	for p, id := range vocab {
		t.pieces[id] = p
	}
	t.ranks = make(map[[2]string]int, len(merges))
	t.maxMergeRunes = 1
	for i, m := range merges {
		if _, dup := t.ranks[m]; !dup {
			t.ranks[m] = i
		}
		t.maxMergeRunes = max(t.maxMergeRunes, utf8.RuneCountInString(m[0])+utf8.RuneCountInString(m[1]))
	}
}

// setSymbolGivesToken decides whether every merged symbol gives at least one token: it is in
// the vocab, or byte fallback has every byte piece, or it becomes an unfused <unk>.
func (t *Tokenizer) setSymbolGivesToken() {
	switch {
	case t.byteFallback:
		t.symbolGivesToken = true
		for _, p := range byteFallbackPiece {
			if _, ok := t.vocab[p]; !ok {
				t.symbolGivesToken = false
			}
		}
	default:
		t.symbolGivesToken = t.unk >= 0 && !t.fuseUnk
	}
}

func (t *Tokenizer) addAdded(a AddedToken) {
	if _, ok := t.addedByID[a.ID]; ok {
		return
	}
	t.added = append(t.added, a)
	t.addedByID[a.ID] = a
	for int(a.ID) >= len(t.pieces) {
		t.pieces = append(t.pieces, "")
	}
	t.pieces[a.ID] = a.Content
}

// fromVocabMerges reads GPT-2/Qwen2 "slow" files: vocab.json + merges.txt, byte-level.
func (t *Tokenizer) fromVocabMerges(dir string) error {
	vp, mp := filepath.Join(dir, "vocab.json"), filepath.Join(dir, "merges.txt")
	vb, err := os.ReadFile(vp)
	if err != nil {
		return fmt.Errorf("tokenizer: %s has neither tokenizer.json nor vocab.json: %w", dir, err)
	}
	var vocab map[string]int32
	if err := json.Unmarshal(vb, &vocab); err != nil {
		return fmt.Errorf("%s: %w: %v", vp, ErrFormat, err)
	}
	mb, err := os.ReadFile(mp)
	if err != nil {
		return fmt.Errorf("tokenizer: %w", err)
	}
	var merges [][2]string
	for i, line := range strings.Split(string(mb), "\n") {
		if line == "" || (i == 0 && strings.HasPrefix(line, "#version")) {
			continue
		}
		a, b, ok := strings.Cut(line, " ")
		if !ok {
			return fmt.Errorf("%s:%d: %w: merge %q has no space", mp, i+1, ErrFormat, line)
		}
		merges = append(merges, [2]string{a, b})
	}
	t.setVocab(vocab, merges)
	t.byteLevel = true
	t.nfc = true
	t.split = regexp2.MustCompile(patternQwen2, regexp2.Unicode)
	if ab, err := os.ReadFile(filepath.Join(dir, "added_tokens.json")); err == nil {
		var at map[string]int32
		if err := json.Unmarshal(ab, &at); err == nil {
			for c, id := range at {
				t.addAdded(AddedToken{ID: id, Content: c, Special: true})
			}
		}
	}
	return nil
}

// readConfig reads tokenizer_config.json: added tokens, BOS/EOS, add_bos_token, chat template.
func (t *Tokenizer) readConfig(dir string) error {
	p := filepath.Join(dir, "tokenizer_config.json")
	b, err := os.ReadFile(p)
	if err != nil {
		return nil // optional
	}
	var c struct {
		AddedTokensDecoder map[string]AddedToken `json:"added_tokens_decoder"`
		BOSToken           json.RawMessage       `json:"bos_token"`
		EOSToken           json.RawMessage       `json:"eos_token"`
		AddBOS             *bool                 `json:"add_bos_token"`
		ChatTemplate       json.RawMessage       `json:"chat_template"`
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return fmt.Errorf("%s: %w: %v", p, ErrFormat, err)
	}
	for ids, a := range c.AddedTokensDecoder {
		id, err := strconv.Atoi(ids)
		if err != nil {
			return fmt.Errorf("%s: %w: added token id %q", p, ErrFormat, ids)
		}
		a.ID = int32(id)
		t.addAdded(a)
	}
	if id, ok := t.tokenID(c.BOSToken); ok {
		t.bos, t.hasBOS = id, true
	}
	if id, ok := t.tokenID(c.EOSToken); ok {
		t.eos = []int32{id}
	}
	if c.AddBOS != nil && *c.AddBOS && t.hasBOS && len(t.bosPrefix) == 0 {
		t.bosPrefix = []int32{t.bos}
	}
	var tmpl string
	if json.Unmarshal(c.ChatTemplate, &tmpl) == nil {
		t.template = tmpl
	}
	for _, f := range []string{"chat_template.jinja", "chat_template.json"} {
		if t.template != "" {
			break
		}
		if b, err := os.ReadFile(filepath.Join(dir, f)); err == nil {
			if strings.HasSuffix(f, ".json") {
				var ct struct {
					ChatTemplate string `json:"chat_template"`
				}
				json.Unmarshal(b, &ct)
				t.template = ct.ChatTemplate
			} else {
				t.template = string(b)
			}
		}
	}
	return nil
}

// tokenID resolves a bos/eos entry: a string or {"content": …}.
func (t *Tokenizer) tokenID(raw json.RawMessage) (int32, bool) {
	var s string
	if json.Unmarshal(raw, &s) != nil {
		var o struct{ Content string }
		if json.Unmarshal(raw, &o) != nil {
			return 0, false
		}
		s = o.Content
	}
	id, ok := t.ID(s)
	return id, ok && s != ""
}

// ID returns the id of a piece (vocab or added token).
func (t *Tokenizer) ID(piece string) (int32, bool) {
	if id, ok := t.vocab[piece]; ok {
		return id, true
	}
	for _, a := range t.added {
		if a.Content == piece {
			return a.ID, true
		}
	}
	return 0, false
}

// Token returns the piece of id ("" when out of range).
func (t *Tokenizer) Token(id int32) string {
	if id < 0 || int(id) >= len(t.pieces) {
		return ""
	}
	return t.pieces[id]
}

// VocabSize is one more than the largest id.
func (t *Tokenizer) VocabSize() int { return len(t.pieces) }

// BOS returns the beginning-of-sequence id, when there is one.
func (t *Tokenizer) BOS() (int32, bool) { return t.bos, t.hasBOS }

// EOS returns the end-of-sequence ids.
func (t *Tokenizer) EOS() []int32 { return t.eos }

// IsSpecial reports whether id is a special added token.
func (t *Tokenizer) IsSpecial(id int32) bool { a, ok := t.addedByID[id]; return ok && a.Special }

// Encode tokenizes text; addSpecial adds the post-processor's tokens (e.g. BOS).
func (t *Tokenizer) Encode(text string, addSpecial bool) ([]int32, error) {
	return t.EncodeLimit(text, addSpecial, 0)
}

// EncodeLimit is Encode for a caller that cannot use more than limit tokens (a model's
// max_position_embeddings; limit ≤ 0: no limit). A text with more fails with an error
// wrapping ErrTooLong as soon as that is certain, before the rest is tokenized: a 10 MB line
// is refused at once instead of after seconds of merging and hundreds of MB of symbols.
func (t *Tokenizer) EncodeLimit(text string, addSpecial bool, limit int) ([]int32, error) {
	if !utf8.ValidString(text) {
		return nil, fmt.Errorf("tokenizer: text is not valid UTF-8")
	}
	tooLong := func() error { return fmt.Errorf("%w: more than %d tokens", ErrTooLong, limit) }
	var out []int32
	if addSpecial {
		out = append(out, t.bosPrefix...)
	}
	// next[i] is the byte offset of the next occurrence of added token i at or after at (-1:
	// none left, -2: not searched yet). Each token's search resumes only once the text has
	// moved past its last find: searching every token from the cursor again at each match
	// made a text with many special tokens quadratic.
	next := make([]int, len(t.added))
	for i := range next {
		next[i] = -2
	}
	for at := 0; at < len(text); {
		// The earliest (then longest) added token splits the text.
		pos, which := -1, -1
		for i, a := range t.added {
			if a.Content == "" {
				continue
			}
			if next[i] == -2 || (next[i] >= 0 && next[i] < at) {
				next[i] = strings.Index(text[at:], a.Content)
				if next[i] >= 0 {
					next[i] += at
				}
			}
			if p := next[i]; p >= 0 && (pos < 0 || p < pos) {
				pos, which = p, i
			}
		}
		seg := text[at:]
		if pos >= 0 {
			seg = text[at:pos]
		}
		if which >= 0 && t.added[which].LStrip {
			seg = strings.TrimRight(seg, " ")
		}
		budget := 0
		if limit > 0 {
			budget = limit - len(out)
		}
		ids, err := t.encodeSegment(seg, len(out) == len(t.bosPrefix)*b2i(addSpecial), budget)
		if err != nil {
			if errors.Is(err, ErrTooLong) {
				return nil, tooLong()
			}
			return nil, err
		}
		out = append(out, ids...)
		if limit > 0 && len(out) > limit {
			return nil, tooLong()
		}
		if pos < 0 {
			break
		}
		a := t.added[which]
		out = append(out, a.ID)
		at = pos + len(a.Content)
		if a.RStrip {
			for at < len(text) && text[at] == ' ' {
				at++
			}
		}
	}
	if limit > 0 && len(out) > limit {
		return nil, tooLong()
	}
	return out, nil
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// encodeSegment tokenizes text between added tokens. With budget > 0 it may stop early with
// ErrTooLong once the segment certainly has more than budget tokens.
func (t *Tokenizer) encodeSegment(s string, first bool, budget int) ([]int32, error) {
	if s == "" {
		return nil, nil
	}
	if t.nfc {
		s = norm.NFC.String(s)
	}
	if !t.byteLevel {
		// Every symbol left after merging is at most maxMergeRunes runes and gives at least
		// one token, so a segment of more runes than that many budgets cannot fit (the prefix
		// and the ▁ for spaces below only add runes).
		if budget > 0 && t.symbolGivesToken && utf8.RuneCountInString(s) > budget*t.maxMergeRunes {
			return nil, ErrTooLong
		}
		// SentencePiece style: dummy prefix, spaces as ▁, one BPE over the whole segment.
		if t.prepend != "" {
			s = t.prepend + s
		}
		if t.replaceSpace {
			s = strings.ReplaceAll(s, " ", "▁")
		}
		return t.bpe(splitRunes(s)), nil
	}
	var out []int32
	var syms []string
	word := func(w string) {
		syms = syms[:0]
		for i := 0; i < len(w); i++ {
			syms = append(syms, byteLevelPiece[w[i]])
		}
		out = append(out, t.bpe(syms)...)
	}
	words := func(w string) {
		if !t.digits {
			word(w)
			return
		}
		for _, d := range splitDigits(w) {
			word(d)
		}
	}
	if t.split == nil {
		words(s)
	} else {
		for m, _ := t.split.FindStringMatch(s); m != nil; m, _ = t.split.FindNextMatch(m) {
			words(m.String())
			if budget > 0 && len(out) > budget {
				return nil, ErrTooLong
			}
		}
	}
	return out, nil
}

func splitDigits(w string) []string {
	var out []string
	start := 0
	for i, r := range w {
		if r >= '0' && r <= '9' {
			if i > start {
				out = append(out, w[start:i])
			}
			out = append(out, string(r))
			start = i + 1
		}
	}
	if start < len(w) {
		out = append(out, w[start:])
	}
	return out
}

// splitRunes cuts s into one-rune substrings (sharing s's bytes).
func splitRunes(s string) []string {
	out := make([]string, 0, len(s))
	for i := 0; i < len(s); {
		_, n := utf8.DecodeRuneInString(s[i:])
		out = append(out, s[i:i+n])
		i += n
	}
	return out
}

// bpe merges symbols by rank and maps them to ids (byte fallback for unknown symbols).
// It gives what merging the lowest-ranked adjacent pair (the leftmost on ties) until none has
// a rank gives, in O(n log n) instead of O(n²): the symbols form a linked list and every
// adjacent pair with a rank waits in a min-heap keyed by (rank, position); a popped pair that
// a neighbouring merge has since changed is skipped (Hugging Face tokenizers' word.rs
// merge_all and SentencePiece's BPE do the same). The SentencePiece-style path runs it over a
// whole segment, so the quadratic loop took 48 s for 60 KB of text.
func (t *Tokenizer) bpe(syms []string) []int32 {
	syms, _ = t.merge(syms)
	return t.toIDs(syms)
}

// merge applies the merges to syms (reusing its backing array) and returns the symbols left
// and how many pair ranks it looked up (what its cost grows with: a test checks it is linear).
func (t *Tokenizer) merge(syms []string) (_ []string, lookups int) {
	if len(syms) < 2 {
		return syms, 0
	}
	n := len(syms)
	prev := make([]int32, n) // -1: none
	next := make([]int32, n) // -1: none
	for i := range syms {
		prev[i], next[i] = int32(i-1), int32(i+1)
	}
	next[n-1] = -1
	var h pairHeap
	for i := 0; i+1 < n; i++ {
		if r, ok := t.ranks[[2]string{syms[i], syms[i+1]}]; ok {
			h = append(h, pairKey(r, i))
		}
	}
	lookups = n - 1
	h.init()
	for len(h) > 0 {
		rank, l := h.pop()
		r := next[l]
		// Stale: l was merged into its left neighbour (emptied), or its right neighbour is
		// now another symbol. The rank names the pair of strings, so an equal rank means the
		// pair is still there.
		if syms[l] == "" || r < 0 {
			continue
		}
		lookups++
		if cur, ok := t.ranks[[2]string{syms[l], syms[r]}]; !ok || cur != rank {
			continue
		}
		syms[l] += syms[r]
		syms[r] = ""
		nr := next[r]
		next[l] = nr
		lookups += 2
		if nr >= 0 {
			prev[nr] = int32(l)
			if c, ok := t.ranks[[2]string{syms[l], syms[nr]}]; ok {
				h.push(pairKey(c, l))
			}
		}
		if p := prev[l]; p >= 0 {
			if c, ok := t.ranks[[2]string{syms[p], syms[l]}]; ok {
				h.push(pairKey(c, int(p)))
			}
		}
	}
	out := syms[:0]
	for i := 0; i >= 0; i = int(next[i]) {
		out = append(out, syms[i])
	}
	return out, lookups
}

// pairHeap is a binary min-heap of (rank, position) keys packed into one uint64 each, so that
// the order is a plain integer comparison.
type pairHeap []uint64

func pairKey(rank, pos int) uint64 { return uint64(rank)<<32 | uint64(uint32(pos)) }

func (h pairHeap) init() {
	for i := len(h)/2 - 1; i >= 0; i-- {
		h.down(i)
	}
}

func (h *pairHeap) push(k uint64) {
	*h = append(*h, k)
	s := *h
	for i := len(s) - 1; i > 0; {
		p := (i - 1) / 2
		if s[p] <= s[i] {
			break
		}
		s[p], s[i] = s[i], s[p]
		i = p
	}
}

func (h *pairHeap) pop() (rank, pos int) {
	s := *h
	k := s[0]
	s[0] = s[len(s)-1]
	*h = s[:len(s)-1]
	h.down(0)
	return int(k >> 32), int(uint32(k))
}

func (h pairHeap) down(i int) {
	for {
		c := 2*i + 1
		if c >= len(h) {
			return
		}
		if c+1 < len(h) && h[c+1] < h[c] {
			c++
		}
		if h[i] <= h[c] {
			return
		}
		h[i], h[c] = h[c], h[i]
		i = c
	}
}

// toIDs maps merged symbols to ids: byte fallback or <unk> for symbols not in the vocab.
func (t *Tokenizer) toIDs(syms []string) []int32 {
	out := make([]int32, 0, len(syms))
	lastUnk := false
	for _, s := range syms {
		if id, ok := t.vocab[s]; ok {
			out = append(out, id)
			lastUnk = false
			continue
		}
		if t.byteFallback {
			for i := 0; i < len(s); i++ {
				if id, ok := t.vocab[byteFallbackPiece[s[i]]]; ok {
					out = append(out, id)
				}
			}
			continue
		}
		if t.unk >= 0 && !(t.fuseUnk && lastUnk) {
			out = append(out, t.unk)
		}
		lastUnk = true
	}
	return out
}

// byteFallbackPiece[b] is "<0xBB>", byteLevelPiece[b] the byte-level BPE rune of b as a string.
var byteFallbackPiece, byteLevelPiece = func() (fb, bl [256]string) {
	for b := range fb {
		fb[b] = fmt.Sprintf("<0x%02X>", b)
		bl[b] = string(byteToRune[b])
	}
	return
}()

// Decode turns ids back into text.
func (t *Tokenizer) Decode(ids []int32) string {
	var b []byte
	for _, id := range ids {
		p := t.Token(id)
		if _, added := t.addedByID[id]; added {
			b = append(b, p...)
			continue
		}
		if t.byteLevel {
			for _, r := range p {
				if c, ok := runeToByte[r]; ok {
					b = append(b, c)
				}
			}
			continue
		}
		if len(p) == 6 && strings.HasPrefix(p, "<0x") && p[5] == '>' {
			if v, err := strconv.ParseUint(p[3:5], 16, 8); err == nil {
				b = append(b, byte(v))
				continue
			}
		}
		b = append(b, strings.ReplaceAll(p, "▁", " ")...)
	}
	s := string(b)
	for i := 0; i < t.stripLeading && strings.HasPrefix(s, " "); i++ {
		s = s[1:]
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}

// ChatTemplate is the Jinja chat template, "" when the checkpoint has none.
func (t *Tokenizer) ChatTemplate() string { return t.template }

// WordIDs returns the ids of word as it appears mid-sentence, after a space (what a concept
// or swap word means): " word" for byte-level BPE, "▁word" for SentencePiece.
func (t *Tokenizer) WordIDs(word string) ([]int32, error) {
	if t.byteLevel {
		return t.Encode(" "+word, false)
	}
	return t.Encode(word, false)
}
