package tokenizer_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/neurosurg/neurosurg/model/tokenizer"
)

// writeWordPiece writes a vocab.txt (and optional config files) into a temporary folder.
func writeWordPiece(t *testing.T, vocab []string, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "vocab.txt"), []byte(strings.Join(vocab, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// transformers' tests/models/bert/test_tokenization_bert.py: its toy vocabulary and the
// encodings the slow and fast BertTokenizer give.
var bertToyVocab = []string{"[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]", "want", "##want", "##ed", "wa", "un", "runn", "##ing", ",", "low", "lowest"}

func TestWordPieceKnownEncodings(t *testing.T) {
	wp, err := tokenizer.LoadWordPiece(writeWordPiece(t, bertToyVocab, nil))
	if err != nil {
		t.Fatal(err)
	}
	pieces := func(ids []int32) []string {
		var out []string
		for _, id := range ids {
			out = append(out, wp.Token(id))
		}
		return out
	}
	for _, c := range []struct {
		text string
		ids  []int32
		want []string
	}{
		{"UNwant\u00E9d,running", []int32{9, 6, 7, 12, 10, 11}, nil},                 // test_full_tokenizer
		{"unwanted running", nil, []string{"un", "##want", "##ed", "runn", "##ing"}}, // test_wordpiece_tokenizer
		{"unwantedX running", nil, []string{"[UNK]", "runn", "##ing"}},
		{"", nil, nil},
		{"lowest low", []int32{14, 13}, nil},
		{"want [MASK] wa", []int32{5, 4, 8}, nil}, // a special token written in the text stays whole
		{"want[SEP]", []int32{5, 2}, nil},
		{"\x00want\u200b \twa\n", []int32{5, 8}, nil}, // NUL and format characters are dropped
		{strings.Repeat("a", 101), []int32{0}, nil},   // longer than max_input_chars_per_word
	} {
		got := wp.Encode(c.text, false)
		if c.ids != nil && !slices.Equal(got, c.ids) || c.want != nil && !slices.Equal(pieces(got), c.want) || c.ids == nil && c.want == nil && len(got) != 0 {
			t.Errorf("%q: %v %v, want %v %v", c.text, got, pieces(got), c.ids, c.want)
		}
	}
	if got := wp.Encode("unwanted", true); !slices.Equal(got, []int32{1, 9, 6, 7, 2}) {
		t.Errorf("with special tokens: %v, want [CLS] un ##want ##ed [SEP]", got)
	}
}

// BasicTokenizer's cases from the same test file, read through pieces that are single
// words: lower-casing, accent stripping, punctuation and CJK splitting.
func TestWordPieceBasic(t *testing.T) {
	vocab := []string{"[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]", "hello", "!", "how", "are", "you", "?", "ah", "\u535A", "\u63A8", "zz", "HeLLo", "H\u00E9llo", "hällo"}
	for _, c := range []struct {
		cfg  string
		text string
		want []string
	}{
		{``, " \tHeLLo!how  \n Are yoU?  ", []string{"hello", "!", "how", "are", "you", "?"}},
		{``, "H\u00E9llo", []string{"hello"}},
		{``, "ah\u535A\u63A8zz", []string{"ah", "\u535A", "\u63A8", "zz"}},
		{`{"do_lower_case": false}`, "HeLLo!", []string{"HeLLo", "!"}},
		{`{"do_lower_case": false}`, "H\u00E9llo", []string{"H\u00E9llo"}},
		{`{"do_lower_case": true, "strip_accents": false}`, "H\u00E4llo", []string{"hällo"}},
	} {
		files := map[string]string{}
		if c.cfg != "" {
			files["tokenizer_config.json"] = c.cfg
		}
		wp, err := tokenizer.LoadWordPiece(writeWordPiece(t, vocab, files))
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, id := range wp.Encode(c.text, false) {
			got = append(got, wp.Token(id))
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("%s %q: %v, want %v", c.cfg, c.text, got, c.want)
		}
	}
}

// Added tokens extend the vocabulary ([DEC] of InstructBLIP's Q-Former tokenizer) and are
// kept whole; bad files are errors naming them.
func TestWordPieceAddedAndErrors(t *testing.T) {
	dir := writeWordPiece(t, bertToyVocab, map[string]string{"added_tokens.json": `{"[DEC]": 15}`, "special_tokens_map.json": `{"bos_token": "[DEC]"}`})
	wp, err := tokenizer.LoadWordPiece(dir)
	if err != nil {
		t.Fatal(err)
	}
	if wp.VocabSize() != 16 || !slices.Equal(wp.Encode("[DEC]want", true), []int32{1, 15, 5, 2}) {
		t.Errorf("vocab %d, encoding %v", wp.VocabSize(), wp.Encode("[DEC]want", true))
	}
	for _, c := range []struct {
		files map[string]string
		vocab []string
		msg   string
	}{
		{map[string]string{"added_tokens.json": `{"[DEC]": 40}`}, bertToyVocab, "added_tokens.json: added token \"[DEC]\" has id 40"},
		{map[string]string{"tokenizer_config.json": `{`}, bertToyVocab, "tokenizer_config.json"},
		{nil, []string{"a", "b"}, "special token \"[UNK]\" is not in the vocabulary"},
		{nil, []string{"[UNK]", "[CLS]", strings.Repeat("x", 1<<17)}, "vocab.txt:3: a line longer than"},
	} {
		_, err := tokenizer.LoadWordPiece(writeWordPiece(t, c.vocab, c.files))
		if err == nil || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%v: %v, want an error with %q", c.files, err, c.msg)
		}
	}
	if _, err := tokenizer.LoadWordPiece(t.TempDir()); !os.IsNotExist(err) {
		t.Errorf("no vocab.txt: %v", err)
	}
}

// The real bert-base-uncased vocabulary (the reconstructed InstructBLIP config's
// qformer_tokenizer, when the shared folder is present): the encodings transformers'
// documentation shows.
func TestWordPieceBertBaseUncased(t *testing.T) {
	dir := "../../../shared/models/configs/instructblip-vicuna-7b-RECONSTRUCTED/qformer_tokenizer"
	if _, err := os.Stat(filepath.Join(dir, "vocab.txt")); err != nil {
		t.Skip("no shared bert-base-uncased vocabulary here")
	}
	wp, err := tokenizer.LoadWordPiece(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		text string
		want []int32
	}{
		{"Hello, my dog is cute", []int32{101, 7592, 1010, 2026, 3899, 2003, 10140, 102}},
		{"hello world", []int32{101, 7592, 2088, 102}},
		{"What is unusual about this image?", []int32{101, 2054, 2003, 5866, 2055, 2023, 3746, 1029, 102}},
	} {
		if got := wp.Encode(c.text, true); !slices.Equal(got, c.want) {
			t.Errorf("%q: %v, want %v", c.text, got, c.want)
		}
	}
	if wp.VocabSize() != 30523 || wp.Encode("[DEC]", false)[0] != 30522 {
		t.Errorf("vocab %d, [DEC] %v", wp.VocabSize(), wp.Encode("[DEC]", false))
	}
}

func FuzzWordPiece(f *testing.F) {
	for _, s := range []string{"UNwant\u00E9d,running", "[MASK][SEP]x", "\x00\xff\u535A", strings.Repeat("##", 60)} {
		f.Add(s)
	}
	dir := f.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "vocab.txt"), []byte(strings.Join(bertToyVocab, "\n")), 0o644); err != nil {
		f.Fatal(err)
	}
	wp, err := tokenizer.LoadWordPiece(dir)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, id := range wp.Encode(s, true) {
			if id < 0 || int(id) >= wp.VocabSize() {
				t.Fatalf("%q: id %d out of range", s, id)
			}
		}
	})
}

// The vocabulary and its config files are parsed without panics; whatever loads encodes into
// its own id range.
func FuzzLoadWordPiece(f *testing.F) {
	f.Add(strings.Join(bertToyVocab, "\n"), `{"[DEC]": 15}`, `{"do_lower_case": false}`)
	f.Add("[UNK]\n[CLS]\n[SEP]\n", `{"x": 0}`, `{"unk_token": {"content": "[CLS]"}}`)
	f.Add("[UNK]\r\n[CLS]\r\n[SEP]", `{"[DEC]": -1}`, `null`)
	f.Fuzz(func(t *testing.T, vocab, added, cfg string) {
		dir := t.TempDir()
		for name, body := range map[string]string{"vocab.txt": vocab, "added_tokens.json": added, "tokenizer_config.json": cfg} {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		wp, err := tokenizer.LoadWordPiece(dir)
		if err != nil {
			return
		}
		for _, id := range wp.Encode("Hello [DEC] wörld, 中文 unwanted", true) {
			if id < 0 || int(id) >= wp.VocabSize() {
				t.Fatalf("id %d out of range %d", id, wp.VocabSize())
			}
		}
	})
}
