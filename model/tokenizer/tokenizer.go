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

// ErrFormat reports tokenizer files neurosurg cannot read.
var ErrFormat = errors.New("tokenizer: unsupported or invalid file")

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
	for i, m := range merges {
		if _, dup := t.ranks[m]; !dup {
			t.ranks[m] = i
		}
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
	if !utf8.ValidString(text) {
		return nil, fmt.Errorf("tokenizer: text is not valid UTF-8")
	}
	var out []int32
	if addSpecial {
		out = append(out, t.bosPrefix...)
	}
	for len(text) > 0 {
		// The earliest (then longest) added token splits the text.
		pos, which := -1, -1
		for i, a := range t.added {
			if a.Content == "" {
				continue
			}
			if p := strings.Index(text, a.Content); p >= 0 && (pos < 0 || p < pos) {
				pos, which = p, i
			}
		}
		seg := text
		if pos >= 0 {
			seg = text[:pos]
		}
		if which >= 0 && t.added[which].LStrip {
			seg = strings.TrimRight(seg, " ")
		}
		ids, err := t.encodeSegment(seg, len(out) == len(t.bosPrefix)*b2i(addSpecial))
		if err != nil {
			return nil, err
		}
		out = append(out, ids...)
		if pos < 0 {
			break
		}
		a := t.added[which]
		out = append(out, a.ID)
		text = text[pos+len(a.Content):]
		if a.RStrip {
			text = strings.TrimLeft(text, " ")
		}
	}
	return out, nil
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

func (t *Tokenizer) encodeSegment(s string, first bool) ([]int32, error) {
	if s == "" {
		return nil, nil
	}
	if t.nfc {
		s = norm.NFC.String(s)
	}
	if !t.byteLevel {
		// SentencePiece style: dummy prefix, spaces as ▁, one BPE over the whole segment.
		if t.prepend != "" {
			s = t.prepend + s
		}
		if t.replaceSpace {
			s = strings.ReplaceAll(s, " ", "▁")
		}
		return t.bpe(splitRunes(s)), nil
	}
	var words []string
	if t.split != nil {
		for m, _ := t.split.FindStringMatch(s); m != nil; m, _ = t.split.FindNextMatch(m) {
			words = append(words, m.String())
		}
	} else {
		words = []string{s}
	}
	if t.digits {
		var w2 []string
		for _, w := range words {
			w2 = append(w2, splitDigits(w)...)
		}
		words = w2
	}
	var out []int32
	for _, w := range words {
		syms := make([]string, 0, len(w))
		for i := 0; i < len(w); i++ {
			syms = append(syms, string(byteToRune[w[i]]))
		}
		out = append(out, t.bpe(syms)...)
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

func splitRunes(s string) []string {
	out := make([]string, 0, len(s))
	for _, r := range s {
		out = append(out, string(r))
	}
	return out
}

// bpe merges symbols by rank and maps them to ids (byte fallback for unknown symbols).
func (t *Tokenizer) bpe(syms []string) []int32 {
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
				if id, ok := t.vocab[fmt.Sprintf("<0x%02X>", s[i])]; ok {
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
