// Package outpath refuses output paths that would overwrite an input or land inside one:
// `record CKPT --out CKPT/model.safetensors` must not replace the weights it reads, and
// `write CKPT --out CKPT/edited` must not nest a checkpoint inside its base.
package outpath

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// ErrCollision reports an output that resolves to an input, into an input directory, or to a
// directory holding an input.
var ErrCollision = errors.New("output collides with an input")

// CollisionError says which output met which input, and how.
type CollisionError struct {
	Out, Input string // as the caller gave them
	How        string // "is", "is inside", "contains"
}

func (e *CollisionError) Error() string {
	what := "the input"
	if e.How == "is inside" {
		what = "the input directory"
	}
	return fmt.Sprintf("output %s %s %s %s (outputs never overwrite or go into an input)", e.Out, e.How, what, e.Input)
}

// Is makes errors.Is(err, ErrCollision) true.
func (e *CollisionError) Is(target error) bool { return target == ErrCollision }

// Check returns a *CollisionError when out, after making it absolute and resolving the symbolic
// links of the part of it that exists, is one of inputs (or a hard link to one), lies inside
// an input that is a directory, or is a directory that contains an input. Inputs are resolved
// the same way; empty or missing inputs are skipped (opening them reports the problem).
func Check(out string, inputs ...string) error {
	if out == "" {
		return nil
	}
	ro, err := Resolve(out)
	if err != nil {
		return fmt.Errorf("%s: %w", out, err)
	}
	outInfo, outErr := os.Stat(ro)
	for _, in := range inputs {
		if in == "" {
			continue
		}
		ri, err := Resolve(in)
		if err != nil {
			continue
		}
		inInfo, err := os.Stat(ri)
		if err != nil {
			continue
		}
		switch {
		case ro == ri || (outErr == nil && os.SameFile(outInfo, inInfo)):
			return &CollisionError{Out: out, Input: in, How: "is"}
		case inInfo.IsDir() && within(ri, ro):
			return &CollisionError{Out: out, Input: in, How: "is inside"}
		case within(ro, ri):
			return &CollisionError{Out: out, Input: in, How: "contains"}
		}
	}
	return nil
}

// Resolve returns the absolute form of p with the symbolic links of its longest existing
// prefix resolved; the rest, which does not exist yet, is appended as written (cleaned).
func Resolve(p string) (string, error) {
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", err
	}
	head, tail := abs, ""
	for {
		if r, err := filepath.EvalSymlinks(head); err == nil {
			return filepath.Join(r, tail), nil
		}
		parent := filepath.Dir(head)
		if parent == head {
			return abs, nil
		}
		tail = filepath.Join(filepath.Base(head), tail)
		head = parent
	}
}

// within reports whether p lies strictly below dir.
func within(dir, p string) bool {
	rel, err := filepath.Rel(dir, p)
	return err == nil && rel != "." && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) && !filepath.IsAbs(rel)
}
