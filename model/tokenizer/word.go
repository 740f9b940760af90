package tokenizer

import (
	"errors"
	"fmt"
	"strings"
)

// ErrNotOneToken reports a word that is not exactly one token mid-sentence.
var ErrNotOneToken = errors.New("not one token")

// WordID returns the one token of word as it appears mid-sentence (see WordIDs). A word that
// tokenizes to several pieces, or to none, is an error that shows the pieces: swapping or
// measuring "Bartholomew" through its first piece "▁B" would edit every word starting with B.
func (t *Tokenizer) WordID(word string) (int32, error) {
	ids, err := t.WordIDs(word)
	if err != nil {
		return 0, fmt.Errorf("%q: %w", word, err)
	}
	if len(ids) == 1 {
		return ids[0], nil
	}
	if len(ids) == 0 {
		return 0, fmt.Errorf("%q: %w: it has no tokens", word, ErrNotOneToken)
	}
	pieces := make([]string, len(ids))
	for i, id := range ids {
		pieces[i] = t.Token(id)
	}
	return 0, fmt.Errorf("%q: %w: it is %d tokens (%s); give a word that is one token", word, ErrNotOneToken, len(ids), strings.Join(pieces, "|"))
}
