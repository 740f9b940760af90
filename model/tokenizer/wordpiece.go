package tokenizer

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"unicode"

	"golang.org/x/text/unicode/norm"
)

// WordPiece is BERT's tokenizer (transformers' BertTokenizer): basic tokenization (clean the
// text, space out CJK characters, lower-case and strip accents when uncased, split on
// whitespace and punctuation), then greedy longest-match-first word pieces with "##"
// continuations. InstructBLIP's Q-Former reads its instruction through one
// (qformer_tokenizer/: bert-base-uncased plus [DEC]).
type WordPiece struct {
	vocab         map[string]int32
	pieces        []string
	lower         bool
	stripAccents  bool
	chinese       bool
	special       []string // split out whole before basic tokenization, longest first
	unk, cls, sep int32
}

// maxWordPieceVocab bounds vocab.txt (bert-base has 30522 lines, multilingual 119547).
const maxWordPieceVocab = 1 << 20

// maxWordPieceLine bounds a line of vocab.txt (a piece is a word or less).
const maxWordPieceLine = 64 << 10

// maxWordChars is BertTokenizer's max_input_chars_per_word: a longer word is [UNK].
const maxWordChars = 100

// LoadWordPiece reads dir/vocab.txt (one piece a line, the id is the line number),
// tokenizer_config.json (do_lower_case, strip_accents, tokenize_chinese_chars; BertTokenizer's
// defaults when absent), added_tokens.json and special_tokens_map.json.
func LoadWordPiece(dir string) (*WordPiece, error) {
	path := filepath.Join(dir, "vocab.txt")
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	t := &WordPiece{vocab: map[string]int32{}, lower: true, chinese: true}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, maxWordPieceLine), maxWordPieceLine)
	for sc.Scan() {
		if len(t.pieces) >= maxWordPieceVocab {
			return nil, fmt.Errorf("%s: more than %d lines", path, maxWordPieceVocab)
		}
		// load_vocab keeps the line as written minus its newline (rstrip("\n")).
		p := strings.TrimSuffix(sc.Text(), "\r")
		if _, dup := t.vocab[p]; !dup {
			t.vocab[p] = int32(len(t.pieces))
		}
		t.pieces = append(t.pieces, p)
	}
	if err := sc.Err(); errors.Is(err, bufio.ErrTooLong) {
		return nil, fmt.Errorf("%s:%d: a line longer than %d bytes", path, len(t.pieces)+1, maxWordPieceLine)
	} else if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var cfg struct {
		DoLowerCase  *bool `json:"do_lower_case"`
		StripAccents *bool `json:"strip_accents"`
		ChineseChars *bool `json:"tokenize_chinese_chars"`
		UnkToken     any   `json:"unk_token"`
		ClsToken     any   `json:"cls_token"`
		SepToken     any   `json:"sep_token"`
		PadToken     any   `json:"pad_token"`
		MaskToken    any   `json:"mask_token"`
		BosToken     any   `json:"bos_token"`
	}
	if err := readJSONIfPresent(filepath.Join(dir, "tokenizer_config.json"), &cfg); err != nil {
		return nil, err
	}
	if cfg.DoLowerCase != nil {
		t.lower = *cfg.DoLowerCase
	}
	// strip_accents None follows lowercase.
	t.stripAccents = t.lower
	if cfg.StripAccents != nil {
		t.stripAccents = *cfg.StripAccents
	}
	if cfg.ChineseChars != nil {
		t.chinese = *cfg.ChineseChars
	}
	var added map[string]int32
	if err := readJSONIfPresent(filepath.Join(dir, "added_tokens.json"), &added); err != nil {
		return nil, err
	}
	names := make([]string, 0, len(added))
	for p := range added {
		names = append(names, p)
	}
	sort.Slice(names, func(i, j int) bool { return added[names[i]] < added[names[j]] })
	for _, p := range names {
		id := added[p]
		if id < 0 || int(id) > len(t.pieces) || int(id) > maxWordPieceVocab {
			return nil, fmt.Errorf("%s: added token %q has id %d; the vocabulary has %d pieces", filepath.Join(dir, "added_tokens.json"), p, id, len(t.pieces))
		}
		if int(id) == len(t.pieces) {
			t.pieces = append(t.pieces, p)
		} else {
			t.pieces[id] = p
		}
		t.vocab[p] = id
	}
	var smap map[string]any
	if err := readJSONIfPresent(filepath.Join(dir, "special_tokens_map.json"), &smap); err != nil {
		return nil, err
	}
	tokenOf := func(key, def string, v any) string {
		if s := tokenContent(smap[key]); s != "" {
			return s
		}
		if s := tokenContent(v); s != "" {
			return s
		}
		return def
	}
	unk, cls, sep := tokenOf("unk_token", "[UNK]", cfg.UnkToken), tokenOf("cls_token", "[CLS]", cfg.ClsToken), tokenOf("sep_token", "[SEP]", cfg.SepToken)
	specials := []string{unk, cls, sep, tokenOf("pad_token", "[PAD]", cfg.PadToken), tokenOf("mask_token", "[MASK]", cfg.MaskToken)}
	if s := tokenOf("bos_token", "", cfg.BosToken); s != "" {
		specials = append(specials, s)
	}
	specials = append(specials, names...)
	for _, c := range []struct {
		name string
		id   *int32
	}{{unk, &t.unk}, {cls, &t.cls}, {sep, &t.sep}} {
		id, ok := t.vocab[c.name]
		if !ok {
			return nil, fmt.Errorf("%s: special token %q is not in the vocabulary", path, c.name)
		}
		*c.id = id
	}
	seen := map[string]bool{}
	for _, s := range specials {
		if _, ok := t.vocab[s]; ok && !seen[s] {
			seen[s] = true
			t.special = append(t.special, s)
		}
	}
	sort.Slice(t.special, func(i, j int) bool { return len(t.special[i]) > len(t.special[j]) })
	return t, nil
}

// tokenContent reads a special token as a string or as an AddedToken object's content.
func tokenContent(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case map[string]any:
		s, _ := x["content"].(string)
		return s
	}
	return ""
}

func readJSONIfPresent(path string, v any) error {
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// VocabSize is the number of pieces (vocab.txt plus added tokens).
func (t *WordPiece) VocabSize() int { return len(t.pieces) }

// Token is the piece of id ("" when out of range).
func (t *WordPiece) Token(id int32) string {
	if id < 0 || int(id) >= len(t.pieces) {
		return ""
	}
	return t.pieces[id]
}

// Encode tokenizes text: special tokens written in it are kept whole, the rest goes through
// basic tokenization and word pieces. addSpecial wraps the ids in [CLS] … [SEP], as the
// tokenizer's call does by default.
func (t *WordPiece) Encode(text string, addSpecial bool) []int32 {
	var out []int32
	if addSpecial {
		out = append(out, t.cls)
	}
	for len(text) > 0 {
		at, tok := len(text), ""
		for _, s := range t.special {
			if i := strings.Index(text, s); i >= 0 && (i < at || i == at && len(s) > len(tok)) {
				at, tok = i, s
			}
		}
		for _, w := range t.basic(text[:at]) {
			out = t.wordPieces(out, w)
		}
		if tok == "" {
			break
		}
		out = append(out, t.vocab[tok])
		text = text[at+len(tok):]
	}
	if addSpecial {
		out = append(out, t.sep)
	}
	return out
}

// basic is BasicTokenizer.tokenize: the words and punctuation marks of text.
func (t *WordPiece) basic(text string) []string {
	var b strings.Builder
	for _, r := range text {
		switch {
		case r == 0 || r == 0xFFFD || isBertControl(r):
		case isBertSpace(r):
			b.WriteByte(' ')
		case t.chinese && isCJK(r):
			b.WriteByte(' ')
			b.WriteRune(r)
			b.WriteByte(' ')
		default:
			b.WriteRune(r)
		}
	}
	var out []string
	for _, w := range strings.Fields(norm.NFC.String(b.String())) {
		if t.lower {
			w = strings.ToLower(w)
		}
		if t.stripAccents {
			w = stripAccents(w)
		}
		start := 0
		rs := []rune(w)
		for i, r := range rs {
			if isBertPunct(r) {
				if i > start {
					out = append(out, string(rs[start:i]))
				}
				out = append(out, string(r))
				start = i + 1
			}
		}
		if start < len(rs) {
			out = append(out, string(rs[start:]))
		}
	}
	return out
}

// wordPieces appends the pieces of one word (greedy longest match first), or [UNK] when some
// part of it matches no piece or it is longer than maxWordChars characters.
func (t *WordPiece) wordPieces(out []int32, word string) []int32 {
	rs := []rune(word)
	if len(rs) > maxWordChars {
		return append(out, t.unk)
	}
	n := len(out)
	for start := 0; start < len(rs); {
		end, id := len(rs), int32(-1)
		for ; start < end; end-- {
			s := string(rs[start:end])
			if start > 0 {
				s = "##" + s
			}
			if v, ok := t.vocab[s]; ok {
				id = v
				break
			}
		}
		if id < 0 {
			return append(out[:n], t.unk)
		}
		out = append(out, id)
		start = end
	}
	return out
}

func stripAccents(s string) string {
	var b strings.Builder
	for _, r := range norm.NFD.String(s) {
		if !unicode.Is(unicode.Mn, r) {
			b.WriteRune(r)
		}
	}
	return b.String()
}

// isBertSpace is _is_whitespace: space, tab, newline, carriage return or category Zs.
func isBertSpace(r rune) bool {
	return r == ' ' || r == '\t' || r == '\n' || r == '\r' || unicode.Is(unicode.Zs, r)
}

// isBertControl is _is_control: category C*, except tab, newline and carriage return.
func isBertControl(r rune) bool {
	if r == '\t' || r == '\n' || r == '\r' {
		return false
	}
	return unicode.In(r, unicode.C)
}

// isBertPunct is _is_punctuation: every non-alphanumeric ASCII printable character, or
// category P*.
func isBertPunct(r rune) bool {
	if r >= 33 && r <= 47 || r >= 58 && r <= 64 || r >= 91 && r <= 96 || r >= 123 && r <= 126 {
		return true
	}
	return unicode.In(r, unicode.P)
}

// isCJK is _is_chinese_char: the CJK Unified Ideographs blocks.
func isCJK(r rune) bool {
	return r >= 0x4E00 && r <= 0x9FFF || r >= 0x3400 && r <= 0x4DBF || r >= 0x20000 && r <= 0x2A6DF ||
		r >= 0x2A700 && r <= 0x2B73F || r >= 0x2B740 && r <= 0x2B81F || r >= 0x2B820 && r <= 0x2CEAF ||
		r >= 0xF900 && r <= 0xFAFF || r >= 0x2F800 && r <= 0x2FA1F
}
