package pipeline

import (
	"fmt"

	"github.com/neurosurg/neurosurg/formats/edit"
	"github.com/neurosurg/neurosurg/formats/hfdir"
	"github.com/neurosurg/neurosurg/formats/neuronset"
	"github.com/neurosurg/neurosurg/formats/safetensors"
	"github.com/neurosurg/neurosurg/model/tokenizer"
	"github.com/neurosurg/neurosurg/patch"
)

// ParseOps parses the ops (zero, scale:α, swap:SRC>TGT[:λ], noise:σ, set:FILE), in order, each
// with the seed. resolve maps the FILE of a set op to the path to read (nil: as written).
// Errors wrap patch.ErrOp and name the op: they are errors in what was asked, not in a file.
func ParseOps(specs []string, seed uint64, resolve func(string) string) ([]patch.Op, error) {
	var ops []patch.Op
	for _, s := range specs {
		op, err := patch.ParseOp(s)
		if err != nil {
			return nil, err
		}
		op.Seed = seed
		if op.Kind == "set" && resolve != nil {
			op.Path = resolve(op.Path)
		}
		ops = append(ops, op)
	}
	return ops, nil
}

// CheckOpFiles opens the file of every set op to check it is a safetensors file, so a missing
// or bad one fails before any stage runs rather than when patch reads it.
func CheckOpFiles(ops []patch.Op) error {
	for _, op := range ops {
		if op.Kind != "set" {
			continue
		}
		f, err := safetensors.Open(op.Path)
		if err != nil {
			return fmt.Errorf("%q: %w", op.String(), err)
		}
		f.Close() // opened read-only to check it: its close cannot lose anything
	}
	return nil
}

// SwapOp is the last swap among ops (the one verify measures), or nil.
func SwapOp(ops []patch.Op) *patch.Op {
	var swap *patch.Op
	for i := range ops {
		if ops[i].Kind == "swap" {
			swap = &ops[i]
		}
	}
	return swap
}

// OpPaths are the files the ops read (set:FILE): inputs an output must not overwrite.
func OpPaths(ops []patch.Op) []string {
	var ps []string
	for _, op := range ops {
		if op.Path != "" {
			ps = append(ps, op.Path)
		}
	}
	return ps
}

// Patch applies ops to the output vectors of set's neurons in base and returns the edit file
// that makes the change, with meta in its header. setName (the set's path) prefixes errors
// about the set: a set made on another model, a neuron outside it.
func Patch(base *hfdir.Checkpoint, tok *tokenizer.Tokenizer, set *neuronset.Set, setName string, ops []patch.Op, meta map[string]string) (*edit.Edit, error) {
	in := patch.Inputs{Base: base, Tokenizer: tok}
	if err := patch.CheckSet(set, base); err != nil {
		return nil, fmt.Errorf("%s: %w", setName, err)
	}
	if err := patch.CheckOps(in, ops); err != nil {
		return nil, err
	}
	changed, err := patch.Apply(in, set, ops)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", setName, err)
	}
	return edit.Build(base, changed, meta)
}
