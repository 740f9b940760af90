package pipeline

import (
	"fmt"

	"github.com/neurosurg/neurosurg/formats/edit"
	"github.com/neurosurg/neurosurg/formats/hfdir"
	"github.com/neurosurg/neurosurg/model"
	"github.com/neurosurg/neurosurg/model/tokenizer"
	"github.com/neurosurg/neurosurg/patch"
)

// OpenModel opens the checkpoint directory dir: its weights, its tokenizer (when it has one)
// and the checkpoint itself (Model.Checkpoint), which Close releases. Every command and
// surgery open models here, so a bad checkpoint gives the same error everywhere.
func OpenModel(dir string) (*model.Model, error) { return model.Open(dir) }

// OpenVariant is base with the edit file at editPath laid over its weights: the edited model
// verify measures. The edit is checked against base's checkpoint before any of it is read; the
// variant shares base's weights and stays usable while base is open.
func OpenVariant(base *model.Model, editPath string) (*model.Model, error) {
	c := base.Checkpoint()
	if c == nil {
		return nil, fmt.Errorf("%s: the base model has no checkpoint to lay the edit over", editPath)
	}
	e, err := edit.ReadFile(editPath, c)
	if err != nil {
		return nil, err
	}
	ov, err := e.Overlay(c)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", editPath, err)
	}
	m, err := model.Load(c.ConfigJSON, ov)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", editPath, err)
	}
	return m, nil
}

// OpenForPatch opens the checkpoint directory dir for patching: patch computes nothing with
// the model, so the checkpoint suffices, plus the tokenizer when an op swaps words.
func OpenForPatch(dir string, ops []patch.Op) (*hfdir.Checkpoint, *tokenizer.Tokenizer, error) {
	c, err := hfdir.Open(dir)
	if err != nil {
		return nil, nil, err
	}
	if SwapOp(ops) == nil {
		return c, nil, nil
	}
	tok, err := tokenizer.Load(dir)
	if err != nil {
		c.Close() // read-only: its error adds nothing to the tokenizer's
		return nil, nil, err
	}
	return c, tok, nil
}
