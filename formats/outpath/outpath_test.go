package outpath

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	tmp := t.TempDir()
	ckpt := filepath.Join(tmp, "ckpt")
	os.MkdirAll(ckpt, 0o755)
	weights := filepath.Join(ckpt, "model.safetensors")
	os.WriteFile(weights, []byte("w"), 0o644)
	data := filepath.Join(tmp, "data.jsonl")
	os.WriteFile(data, []byte("{}"), 0o644)
	link := filepath.Join(tmp, "link")
	os.Symlink(ckpt, link)
	hard := filepath.Join(tmp, "hard.jsonl")
	os.Link(data, hard)
	sub := filepath.Join(tmp, "sub")
	os.MkdirAll(sub, 0o755)
	inputs := []string{ckpt, data}
	for _, c := range []struct {
		out, how string // how "" = allowed
	}{
		{filepath.Join(tmp, "stats.st"), ""},
		{filepath.Join(tmp, "new", "deeper", "edited"), ""},
		{filepath.Join(tmp, "ckpt-edited"), ""}, // a sibling with the input's name as prefix
		{filepath.Join(tmp, "data.jsonl.out"), ""},
		{weights, "is inside"},
		{filepath.Join(ckpt, "config.json"), "is inside"},
		{filepath.Join(ckpt, "edited"), "is inside"},
		{filepath.Join(ckpt, "a", "b", "c"), "is inside"},
		{ckpt, "is"},
		{ckpt + "/", "is"},
		{filepath.Join(sub, "..", "ckpt", "x"), "is inside"},
		{filepath.Join(link, "model.safetensors"), "is inside"}, // through a symlink
		{link, "is"},
		{data, "is"},
		{hard, "is"}, // a hard link to the input
		{tmp, "contains"},
		{filepath.Dir(tmp), "contains"},
	} {
		err := Check(c.out, inputs...)
		if c.how == "" {
			if err != nil {
				t.Errorf("%s: %v, want allowed", c.out, err)
			}
			continue
		}
		var ce *CollisionError
		if !errors.As(err, &ce) || ce.How != c.how || !errors.Is(err, ErrCollision) {
			t.Errorf("%s: %v, want %q", c.out, err, c.how)
			continue
		}
		if !strings.Contains(err.Error(), c.out) {
			t.Errorf("%s: message %q does not name the output", c.out, err)
		}
	}
	// Missing and empty inputs are skipped, not errors.
	if err := Check(filepath.Join(tmp, "x"), "", filepath.Join(tmp, "missing")); err != nil {
		t.Error(err)
	}
	if err := Check("", ckpt); err != nil {
		t.Error(err)
	}
}

func TestCheckRelative(t *testing.T) {
	tmp := t.TempDir()
	t.Chdir(tmp)
	os.MkdirAll("ckpt", 0o755)
	if err := Check("ckpt/stats.st", filepath.Join(tmp, "ckpt")); !errors.Is(err, ErrCollision) {
		t.Errorf("relative output inside an absolute input: %v", err)
	}
	if err := Check(filepath.Join(tmp, "ckpt", "x"), "./ckpt/"); !errors.Is(err, ErrCollision) {
		t.Errorf("absolute output inside a relative input: %v", err)
	}
	if err := Check("other", "ckpt"); err != nil {
		t.Error(err)
	}
}
