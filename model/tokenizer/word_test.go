package tokenizer_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/neurosurg/neurosurg/model/tokenizer"
)

func TestWordID(t *testing.T) {
	for _, c := range []struct {
		dir, word string
		id        int32  // when one token
		pieces    string // the pieces the error shows otherwise
	}{
		{stories, "Lily", 317, ""},
		{stories, "Tim", 326, ""},
		{stories, "Zzyzx", 0, "(▁|Z|z|y|z|x)"},
		{stories, "Bartholomew", 0, "9 tokens (▁B|"},
		{stories, "", 0, "no tokens"},
		{qwen2, "Lily", 47290, ""},
		{qwen2, "Bartholomew", 0, "(ĠBarth|ol|om|ew)"},
	} {
		tok, err := tokenizer.Load(c.dir)
		if err != nil {
			t.Fatal(err)
		}
		id, err := tok.WordID(c.word)
		if c.pieces == "" {
			if err != nil || id != c.id {
				t.Errorf("%s %q: %d %v, want %d", c.dir, c.word, id, err, c.id)
			}
			continue
		}
		if !errors.Is(err, tokenizer.ErrNotOneToken) || !strings.Contains(err.Error(), c.pieces) {
			t.Errorf("%s %q: %v, want an error showing %s", c.dir, c.word, err, c.pieces)
		}
	}
}
