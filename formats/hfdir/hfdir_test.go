package hfdir

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/neurosurg/neurosurg/formats/safetensors"
)

const stories = "../../testdata/stories260K"

func TestUneditedRoundTripIsByteIdentical(t *testing.T) {
	base, err := Open(stories)
	if err != nil {
		t.Fatal(err)
	}
	defer base.Close()
	out := filepath.Join(t.TempDir(), "out")
	prov, err := Write(context.Background(), base, out, WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json", "generation_config.json"} {
		a, _ := os.ReadFile(filepath.Join(stories, name))
		b, err := os.ReadFile(filepath.Join(out, name))
		if err != nil || !bytes.Equal(a, b) {
			t.Errorf("%s: not byte-identical (err %v)", name, err)
		}
	}
	if prov.Inputs["model.safetensors"] != "8086b49673a06f3133188dac99396c6e088c9fe7d3901b991e90c45fb26e548f" {
		t.Errorf("input sha256 = %s, want the one in the model's README", prov.Inputs["model.safetensors"])
	}
	if prov.Inputs["model.safetensors"] != prov.Outputs["model.safetensors"] {
		t.Error("unedited shard hash changed")
	}
	card, _ := os.ReadFile(filepath.Join(out, ModelCardFile))
	if !strings.HasPrefix(string(card), "---\nbase_model: \"stories260K\"\ntags:\n- neurosurg\n") {
		t.Errorf("model card front-matter:\n%s", card)
	}
	var p Provenance
	b, _ := os.ReadFile(filepath.Join(out, ProvenanceFile))
	if err := json.Unmarshal(b, &p); err != nil || p.Outputs[ModelCardFile] == "" {
		t.Errorf("provenance %s: %v", b, err)
	}
}

func TestEditedWriteChangesOnlyEditedBytes(t *testing.T) {
	base, err := Open(stories)
	if err != nil {
		t.Fatal(err)
	}
	defer base.Close()
	name := "model.layers.2.mlp.down_proj.weight"
	_, orig, _ := base.Tensor(name)
	rep := make([]byte, len(orig))
	out := filepath.Join(t.TempDir(), "out")
	if _, err := Write(context.Background(), base, out, WriteOptions{Replace: map[string][]byte{name: rep}, Metadata: map[string]string{"neurosurg.edited": "1"}}); err != nil {
		t.Fatal(err)
	}
	got, err := Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer got.Close()
	if got.Shards[0].Metadata["format"] != "pt" || got.Shards[0].Metadata["neurosurg.edited"] != "1" {
		t.Errorf("metadata = %v", got.Shards[0].Metadata)
	}
	for _, n := range base.TensorNames() {
		_, a, _ := base.Tensor(n)
		bi, b, err := got.Tensor(n)
		if err != nil {
			t.Fatal(err)
		}
		ai, _ := base.Info(n)
		if ai.DType != bi.DType || len(a) != len(b) {
			t.Fatalf("%s: dtype/size changed", n)
		}
		if want := n != name; bytes.Equal(a, b) != want {
			t.Errorf("%s: equal=%v, want %v", n, !want, want)
		}
	}
	if strings.Join(got.Shards[0].HeaderKeys, ",") != strings.Join(base.Shards[0].HeaderKeys, ",") {
		t.Error("header key order changed")
	}
}

// makeSharded writes a two-shard checkpoint from stories260K's tensors.
func makeSharded(t *testing.T) string {
	t.Helper()
	base, err := Open(stories)
	if err != nil {
		t.Fatal(err)
	}
	defer base.Close()
	dir := t.TempDir()
	names := base.TensorNames()
	wm := map[string]string{}
	for s, part := range [][]string{names[:20], names[20:]} {
		shard := []string{"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"}[s]
		var ts []safetensors.Tensor
		for _, n := range part {
			info, b, _ := base.Tensor(n)
			ts = append(ts, safetensors.Tensor{Info: info, Data: b})
			wm[n] = shard
		}
		if err := safetensors.WriteFile(filepath.Join(dir, shard), ts, map[string]string{"format": "pt"}); err != nil {
			t.Fatal(err)
		}
	}
	ix, _ := json.Marshal(map[string]any{"metadata": map[string]any{"total_size": 1}, "weight_map": wm})
	os.WriteFile(filepath.Join(dir, IndexFile), ix, 0o644)
	cfg, _ := os.ReadFile(filepath.Join(stories, "config.json"))
	os.WriteFile(filepath.Join(dir, "config.json"), cfg, 0o644)
	return dir
}

func TestShardedRoundTrip(t *testing.T) {
	dir := makeSharded(t)
	c, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if len(c.Shards) != 2 || len(c.TensorNames()) != 48 {
		t.Fatalf("shards %d tensors %d", len(c.Shards), len(c.TensorNames()))
	}
	out := filepath.Join(t.TempDir(), "o")
	if _, err := Write(context.Background(), c, out, WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, n := range append(c.ShardNames, IndexFile, "config.json") {
		a, _ := os.ReadFile(filepath.Join(dir, n))
		b, _ := os.ReadFile(filepath.Join(out, n))
		if !bytes.Equal(a, b) {
			t.Errorf("%s differs", n)
		}
	}
}

func TestBadCheckpoints(t *testing.T) {
	cases := []struct {
		name   string
		break_ func(dir string)
		want   string
	}{
		{"missing shard", func(d string) { os.Remove(filepath.Join(d, "model-00002-of-00002.safetensors")) }, "shard model-00002-of-00002.safetensors is missing"},
		{"index names absent tensor", func(d string) {
			b, _ := os.ReadFile(filepath.Join(d, IndexFile))
			b = bytes.Replace(b, []byte(`"weight_map":{`), []byte(`"weight_map":{"ghost.weight":"model-00001-of-00002.safetensors",`), 1)
			os.WriteFile(filepath.Join(d, IndexFile), b, 0o644)
		}, `tensor "ghost.weight" is not in shard`},
		{"index is not JSON", func(d string) { os.WriteFile(filepath.Join(d, IndexFile), []byte("{"), 0o644) }, IndexFile},
		{"no config", func(d string) { os.Remove(filepath.Join(d, "config.json")) }, "config.json"},
		{"truncated shard", func(d string) {
			p := filepath.Join(d, "model-00001-of-00002.safetensors")
			b, _ := os.ReadFile(p)
			os.WriteFile(p, b[:len(b)-10], 0o644)
		}, "model-00001-of-00002.safetensors"},
		{"shard named .", func(d string) {
			b, _ := os.ReadFile(filepath.Join(d, IndexFile))
			b = bytes.ReplaceAll(b, []byte(`"model-00002-of-00002.safetensors"`), []byte(`"."`))
			os.WriteFile(filepath.Join(d, IndexFile), b, 0o644)
		}, IndexFile + `: hfdir: index does not match the shards: shard name "." is not a plain file name`},
		{"shard is a directory", func(d string) {
			p := filepath.Join(d, "model-00002-of-00002.safetensors")
			os.Remove(p)
			os.Mkdir(p, 0o755)
		}, "model-00002-of-00002.safetensors: not a regular file: it is a directory"},
		{"shard is a FIFO", func(d string) {
			p := filepath.Join(d, "model-00001-of-00002.safetensors")
			os.Remove(p)
			syscall.Mkfifo(p, 0o644)
		}, "model-00001-of-00002.safetensors: not a regular file: it is a named pipe"},
		{"config is a FIFO", func(d string) {
			p := filepath.Join(d, "config.json")
			os.Remove(p)
			syscall.Mkfifo(p, 0o644)
		}, "config.json: not a regular file"},
		{"index is a directory", func(d string) {
			p := filepath.Join(d, IndexFile)
			os.Remove(p)
			os.Mkdir(p, 0o755)
		}, IndexFile + ": not a regular file: it is a directory"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := makeSharded(t)
			c.break_(dir)
			_, err := Open(dir)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want it to mention %q", err, c.want)
			}
		})
	}
}

type failAfter struct {
	w    io.Writer
	left int
}

var errDiskFull = errors.New("no space left on device")

func (f *failAfter) Write(p []byte) (int, error) {
	if len(p) > f.left {
		n, _ := f.w.Write(p[:f.left])
		f.left = 0
		return n, errDiskFull
	}
	f.left -= len(p)
	return f.w.Write(p)
}

func TestWriteFailuresLeaveNothing(t *testing.T) {
	base, err := Open(stories)
	if err != nil {
		t.Fatal(err)
	}
	defer base.Close()
	parent := t.TempDir()
	out := filepath.Join(parent, "out")
	// Full disk in the middle of the shard.
	budget := 500000
	opts := WriteOptions{wrap: func(w io.Writer) io.Writer { return &failAfter{w: w, left: budget} }}
	if _, err := Write(context.Background(), base, out, opts); !errors.Is(err, errDiskFull) || !strings.Contains(err.Error(), "model.safetensors") {
		t.Fatalf("err = %v", err)
	}
	if ents, _ := os.ReadDir(parent); len(ents) != 0 {
		t.Fatalf("left behind: %v", ents)
	}
	// Existing output.
	os.Mkdir(out, 0o755)
	if _, err := Write(context.Background(), base, out, WriteOptions{}); !errors.Is(err, ErrExists) {
		t.Fatalf("err = %v, want ErrExists", err)
	}
	// Replacement of the wrong size.
	_, err = Write(context.Background(), base, filepath.Join(parent, "x"), WriteOptions{Replace: map[string][]byte{"model.norm.weight": {1}}})
	if err == nil || !strings.Contains(err.Error(), "model.norm.weight") {
		t.Fatalf("err = %v", err)
	}
}

func TestMain(m *testing.M) {
	// Keep the hash cache of these tests out of the user's cache directory.
	dir, _ := os.MkdirTemp("", "neurosurg-cache-")
	os.Setenv("XDG_CACHE_HOME", dir)
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func TestHashCache(t *testing.T) {
	dir := makeSharded(t)
	base, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer base.Close()
	tmp := t.TempDir()
	before := hashedInputs.Load()
	p1, err := Write(context.Background(), base, filepath.Join(tmp, "a"), WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if hashedInputs.Load()-before != 2 {
		t.Fatalf("cold write hashed %d shards, want 2", hashedInputs.Load()-before)
	}
	p2, err := Write(context.Background(), base, filepath.Join(tmp, "b"), WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if hashedInputs.Load()-before != 2 {
		t.Error("warm write hashed the base again")
	}
	for n, h := range p1.Inputs {
		if p2.Inputs[n] != h {
			t.Errorf("%s: cached hash %s differs from computed %s", n, p2.Inputs[n], h)
		}
	}
	// A written output is known too: writing from it hashes nothing.
	out, _ := Open(filepath.Join(tmp, "a"))
	defer out.Close()
	if _, err := Write(context.Background(), out, filepath.Join(tmp, "c"), WriteOptions{}); err != nil || hashedInputs.Load()-before != 2 {
		t.Errorf("write from a fresh output hashed it again (err %v)", err)
	}
	// Changing a shard in place (same size) invalidates its entry.
	shard := filepath.Join(dir, base.ShardNames[0])
	b, _ := os.ReadFile(shard)
	b[len(b)-1] ^= 1
	os.WriteFile(shard, b, 0o644)
	base2, _ := Open(dir)
	defer base2.Close()
	p3, err := Write(context.Background(), base2, filepath.Join(tmp, "d"), WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if hashedInputs.Load()-before != 3 || p3.Inputs[base.ShardNames[0]] == p1.Inputs[base.ShardNames[0]] {
		t.Error("a modified shard was served from the cache")
	}
}

// TestEveryWriteErrorRemovesTheTempDir fails Write at each stage; each time the error names
// the problem and the output's parent holds nothing afterwards.
func TestEveryWriteErrorRemovesTheTempDir(t *testing.T) {
	dir := makeSharded(t)
	base, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer base.Close()
	norm := "model.norm.weight"
	info, _ := base.Info(norm)
	errLazy := errors.New("lazy failed")
	errCheck := errors.New("check failed")
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	disk := func(budget int) func(io.Writer) io.Writer {
		return func(w io.Writer) io.Writer { return &failAfter{w: w, left: budget} }
	}
	cases := []struct {
		name string
		ctx  context.Context
		opts WriteOptions
		want error
	}{
		{"disk full in the header", nil, WriteOptions{wrap: disk(3), Metadata: map[string]string{"k": "v"}}, errDiskFull},
		{"disk full in the data", nil, WriteOptions{wrap: disk(20000)}, errDiskFull},
		{"disk full in a replaced tensor", nil, WriteOptions{wrap: disk(20000), Replace: map[string][]byte{"model.layers.0.mlp.down_proj.weight": make([]byte, 64*172*4)}}, errDiskFull},
		{"lazy replacement fails", nil, WriteOptions{Lazy: map[string]func() ([]byte, error){norm: func() ([]byte, error) { return nil, errLazy }}}, errLazy},
		{"lazy replacement of the wrong size", nil, WriteOptions{Lazy: map[string]func() ([]byte, error){norm: func() ([]byte, error) { return []byte{1}, nil }}}, nil},
		{"lazy replacement panics", nil, WriteOptions{Lazy: map[string]func() ([]byte, error){norm: func() ([]byte, error) { panic("boom") }}}, nil},
		{"check refuses", nil, WriteOptions{Check: func(*Provenance) error { return errCheck }, Replace: map[string][]byte{norm: make([]byte, info.ByteSize())}}, errCheck},
		{"cancelled", cancelled, WriteOptions{}, context.Canceled},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx := c.ctx
			if ctx == nil {
				ctx = context.Background()
			}
			parent := t.TempDir()
			_, err := Write(ctx, base, filepath.Join(parent, "out"), c.opts)
			if err == nil || (c.want != nil && !errors.Is(err, c.want)) {
				t.Fatalf("err = %v, want %v", err, c.want)
			}
			if ents, _ := os.ReadDir(parent); len(ents) != 0 {
				t.Errorf("left behind: %v", ents)
			}
		})
	}
}

// TestOutputHashesAreOfTheBytesWritten: whatever replaced the tensors (in memory or lazily)
// and whatever metadata was added, the provenance and the hash cache hold the sha256 of the
// files as they are on disk.
func TestOutputHashesAreOfTheBytesWritten(t *testing.T) {
	dir := makeSharded(t)
	base, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer base.Close()
	norm, down := "model.norm.weight", "model.layers.0.mlp.down_proj.weight"
	ni, _ := base.Info(norm)
	di, _ := base.Info(down)
	out := filepath.Join(t.TempDir(), "out")
	lazy := bytes.Repeat([]byte{7}, int(di.ByteSize()))
	prov, err := Write(context.Background(), base, out, WriteOptions{
		Replace:  map[string][]byte{norm: bytes.Repeat([]byte{3}, int(ni.ByteSize()))},
		Lazy:     map[string]func() ([]byte, error){down: func() ([]byte, error) { return lazy, nil }},
		Metadata: map[string]string{"neurosurg.test": "1"},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range base.ShardNames {
		b, err := os.ReadFile(filepath.Join(out, name))
		if err != nil {
			t.Fatal(err)
		}
		want := sum(b)
		if prov.Outputs[name] != want {
			t.Errorf("%s: provenance %s, bytes %s", name, prov.Outputs[name], want)
		}
		if got, ok := sharedCache().get(filepath.Join(out, name)); !ok || got != want {
			t.Errorf("%s: cache %q (hit %v), bytes %s", name, got, ok, want)
		}
	}
}

func TestHashCacheDropsDamagedEntries(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cache.json")
	good := strings.Repeat("ab", 32)
	os.WriteFile(path, []byte(`{"a":"`+good+`","b":"0000","c":"`+strings.ToUpper(good)+`","d":"`+good+`0"}`), 0o644)
	c := loadHashCache(path)
	if len(c.entries) != 1 || c.entries["a"] != good {
		t.Errorf("entries = %v, want only a", c.entries)
	}
	os.WriteFile(path, []byte(`not json`), 0o644)
	if c := loadHashCache(path); len(c.entries) != 0 {
		t.Errorf("corrupt file gave %v", c.entries)
	}
}

// A second tokenizer's folder (InstructBLIP's qformer_tokenizer/) travels with the weights:
// listed by its path and written byte for byte into the same folder; other folders do not.
func TestTokenizerFolderTagsAlong(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ckpt")
	if err := os.MkdirAll(filepath.Join(dir, "qformer_tokenizer"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "onnx"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"model.safetensors", "config.json", "tokenizer.json"} {
		b, err := os.ReadFile(filepath.Join(stories, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	vocab := []byte("[PAD]\n[UNK]\n[CLS]\n[SEP]\nhello\n")
	for path, b := range map[string][]byte{"qformer_tokenizer/vocab.txt": vocab, "onnx/model.txt": []byte("x")} {
		if err := os.WriteFile(filepath.Join(dir, path), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	files, err := TagAlongFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(files, " ") != "config.json qformer_tokenizer/vocab.txt tokenizer.json" {
		t.Errorf("tag-along files %v", files)
	}
	base, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer base.Close()
	out := filepath.Join(t.TempDir(), "out")
	prov, err := Write(context.Background(), base, out, WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(out, "qformer_tokenizer", "vocab.txt")); err != nil || !bytes.Equal(b, vocab) {
		t.Errorf("written vocab %q, %v", b, err)
	}
	if prov.Outputs["qformer_tokenizer/vocab.txt"] == "" {
		t.Errorf("provenance outputs %v lack the vocabulary", prov.Outputs)
	}
}
