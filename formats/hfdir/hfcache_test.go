package hfdir_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/neurosurg/neurosurg/formats/edit"
	"github.com/neurosurg/neurosurg/formats/hfdir"
)

const stories = "../../testdata/stories260K"

// hfCacheSnapshot lays out stories260K as `huggingface-cli download` leaves a model in the
// cache: models--org--name/blobs/<sha256> holds the files, and snapshots/<rev>/ holds only
// relative symbolic links into ../../blobs. It returns the snapshot directory.
func hfCacheSnapshot(t *testing.T) string {
	t.Helper()
	repo := filepath.Join(t.TempDir(), "hub", "models--karpathy--stories260K")
	snap := filepath.Join(repo, "snapshots", "0123456789abcdef0123456789abcdef01234567")
	for _, d := range []string{filepath.Join(repo, "blobs"), snap} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	ents, err := os.ReadDir(stories)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(stories, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.Sum256(b)
		blob := hex.EncodeToString(h[:])
		if err := os.WriteFile(filepath.Join(repo, "blobs", blob), b, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(filepath.Join("..", "..", "blobs", blob), filepath.Join(snap, e.Name())); err != nil {
			t.Fatal(err)
		}
	}
	return snap
}

// write and apply from a cache snapshot give a complete checkpoint of regular files (0644 in a
// 0755 directory, less the umask), byte-equal to the files the links point to.
func TestHFCacheSnapshot(t *testing.T) {
	snap := hfCacheSnapshot(t)
	base, err := hfdir.Open(snap)
	if err != nil {
		t.Fatal(err)
	}
	defer base.Close()
	tag, err := hfdir.TagAlongFiles(snap)
	if err != nil {
		t.Fatal(err)
	}
	if len(tag) < 4 {
		t.Fatalf("tag-along files of the snapshot: %v", tag)
	}
	umask := syscall.Umask(0)
	syscall.Umask(umask)
	name := "model.layers.2.mlp.down_proj.weight"
	_, orig, _ := base.Tensor(name)
	changed := append([]byte(nil), orig...)
	clear(changed[:64])
	e, err := edit.Build(base, map[string][]byte{name: changed}, nil)
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	for _, c := range []struct {
		how   string
		write func(out string) (*hfdir.Provenance, error)
	}{
		{"write", func(out string) (*hfdir.Provenance, error) {
			return hfdir.Write(context.Background(), base, out, hfdir.WriteOptions{})
		}},
		{"apply", func(out string) (*hfdir.Provenance, error) {
			return edit.Apply(context.Background(), base, e, out, hfdir.WriteOptions{})
		}},
	} {
		out := filepath.Join(tmp, c.how)
		prov, err := c.write(out)
		if err != nil {
			t.Fatalf("%s: %v", c.how, err)
		}
		st, _ := os.Stat(out)
		if want := os.FileMode(0o755 &^ umask); st.Mode().Perm() != want {
			t.Errorf("%s: directory mode %v, want %v", c.how, st.Mode().Perm(), want)
		}
		for _, f := range []string{"config.json", "tokenizer.json", "tokenizer_config.json", "generation_config.json", "model.safetensors"} {
			fi, err := os.Lstat(filepath.Join(out, f))
			if err != nil {
				t.Errorf("%s: %s missing", c.how, f)
				continue
			}
			if !fi.Mode().IsRegular() || fi.Mode().Perm() != os.FileMode(0o644&^umask) {
				t.Errorf("%s: %s is %v, want a regular 0644 file", c.how, f, fi.Mode())
			}
			want, _ := os.ReadFile(filepath.Join(stories, f))
			got, _ := os.ReadFile(filepath.Join(out, f))
			if f != "model.safetensors" || c.how == "write" {
				if !bytes.Equal(got, want) {
					t.Errorf("%s: %s differs from the snapshot's", c.how, f)
				}
			}
			h := sha256.Sum256(want)
			if prov.Inputs[f] != hex.EncodeToString(h[:]) {
				t.Errorf("%s: provenance input hash of %s is %.12s, the file's is %x", c.how, f, prov.Inputs[f], h[:6])
			}
		}
	}
	// A link into a blob that is not there (a download cut short) is an error, not a file
	// quietly left out of the checkpoint.
	os.Symlink(filepath.Join("..", "..", "blobs", "missing"), filepath.Join(snap, "special_tokens_map.json"))
	if _, err := hfdir.Write(context.Background(), base, filepath.Join(tmp, "broken"), hfdir.WriteOptions{}); err == nil {
		t.Error("a dangling link in the snapshot was written around")
	}
	if _, err := os.Stat(filepath.Join(tmp, "broken")); !os.IsNotExist(err) {
		t.Error("a failed write left its output")
	}
}
