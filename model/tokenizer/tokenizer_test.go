package tokenizer_test

import (
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/neurosurg/neurosurg/model/tokenizer"
)

const stories = "../../testdata/stories260K"

func TestStoriesGoldenIDs(t *testing.T) {
	tok, err := tokenizer.Load(stories)
	if err != nil {
		t.Fatal(err)
	}
	var g struct {
		Cases []struct {
			Text       string  `json:"text"`
			IDs        []int32 `json:"ids"`
			IDsWithBOS []int32 `json:"ids_with_bos"`
			Decoded    string  `json:"decoded"`
		} `json:"cases"`
	}
	b, _ := os.ReadFile(stories + "/golden/tokens.json")
	if err := json.Unmarshal(b, &g); err != nil || len(g.Cases) == 0 {
		t.Fatalf("golden: %v", err)
	}
	for _, c := range g.Cases {
		ids, err := tok.Encode(c.Text, false)
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(c.IDs, ids, cmp.Comparer(func(a, b []int32) bool { return len(a) == 0 && len(b) == 0 || cmp.Equal(a, b) })); len(c.IDs)+len(ids) > 0 && d != "" {
			t.Errorf("%q (-want +got):\n%s", c.Text, d)
		}
		withBOS, _ := tok.Encode(c.Text, true)
		if len(withBOS) != len(c.IDsWithBOS) || (len(withBOS) > 0 && withBOS[0] != 1) {
			t.Errorf("%q with BOS = %v, want %v", c.Text, withBOS, c.IDsWithBOS)
		}
		if got := tok.Decode(c.IDs); got != c.Decoded {
			t.Errorf("decode %v = %q, want %q", c.IDs, got, c.Decoded)
		}
	}
	t.Logf("%d golden cases", len(g.Cases))
}

const qwen2 = "../../testdata/qwen2-tokenizer"

func TestQwen2ByteLevel(t *testing.T) {
	tok, err := tokenizer.Load(qwen2)
	if err != nil {
		t.Fatal(err)
	}
	// Hand-checked against vocab.json: whole words are single pieces, "Ġ" marks a space.
	cases := []struct {
		text string
		want []int32
	}{
		{"Hello world", []int32{9707, 1879}},
		{"Hello", []int32{9707}},
		{" Hello", []int32{21927}},
		{"<|im_start|>Hello<|im_end|>", []int32{151644, 9707, 151645}},
		{"!", []int32{0}},
	}
	for _, c := range cases {
		got, err := tok.Encode(c.text, true)
		if err != nil {
			t.Fatal(err)
		}
		if !cmp.Equal(got, c.want) {
			t.Errorf("%q = %v, want %v", c.text, got, c.want)
		}
	}
	if eos := tok.EOS(); len(eos) != 1 || eos[0] != 151643 {
		t.Errorf("eos = %v", eos)
	}
	// Digits are single pieces (Qwen2 splits \p{N} one by one).
	ids, _ := tok.Encode("12345", false)
	if len(ids) != 5 {
		t.Errorf("12345 -> %v, want 5 digit tokens", ids)
	}
}

func FuzzByteLevelRoundTrip(f *testing.F) {
	tok, err := tokenizer.Load(qwen2)
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{"Hello world", "  spaces\n\nnewlines\t", "日本語のテキスト", "emoji 🎉🧠", "x=1+2; y'll", "naïve café"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ids, err := tok.Encode(s, false)
		if err != nil {
			return // invalid UTF-8 is refused
		}
		if got := tok.Decode(ids); got != normNFC(s) {
			t.Fatalf("round trip %q -> %v -> %q", s, ids, got)
		}
	})
}

// EncodeLimit gives Encode's ids up to the limit and refuses one token more, for both
// tokenizer styles; a 10 MB line is refused without being tokenized.
func TestEncodeLimit(t *testing.T) {
	for _, dir := range []string{stories, qwen2} {
		tok, err := tokenizer.Load(dir)
		if err != nil {
			t.Fatal(err)
		}
		text := strings.Repeat("Once upon a time, Lily saw 12 <|im_start|>cats. ", 40)
		all, err := tok.Encode(text, true)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			limit int
			ok    bool
		}{{0, true}, {len(all), true}, {len(all) + 1, true}, {len(all) - 1, false}, {1, false}} {
			got, err := tok.EncodeLimit(text, true, c.limit)
			if c.ok && (err != nil || !cmp.Equal(got, all)) {
				t.Errorf("%s: limit %d of %d tokens: %v", dir, c.limit, len(all), err)
			}
			if !c.ok && !errors.Is(err, tokenizer.ErrTooLong) {
				t.Errorf("%s: limit %d of %d tokens: err %v, want ErrTooLong", dir, c.limit, len(all), err)
			}
		}
		huge := strings.Repeat("a b c d ", 10<<20/8)
		if _, err := tok.EncodeLimit(huge, true, 512); !errors.Is(err, tokenizer.ErrTooLong) {
			t.Errorf("%s: 10 MB text under a 512-token limit: err %v", dir, err)
		}
	}
}
