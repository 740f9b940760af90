package edit

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/neurosurg/neurosurg/formats/hfdir"
	"github.com/neurosurg/neurosurg/formats/safetensors"
)

// rleFrame is a zstd frame holding prefix and then zeros zero bytes, written by hand with RLE
// blocks (4 bytes per 128 KiB), so a test can make a multi-GB bomb of a few KB instantly.
func rleFrame(prefix []byte, zeros int64) []byte {
	b := binary.LittleEndian.AppendUint32(nil, 0xFD2FB528)
	b = append(b, 0x00, 13<<3) // no content size, not single-segment; window 2^(10+13) = 8 MiB
	const maxBlock = 128 << 10
	block := func(typ byte, size int, last bool) {
		h := uint32(size)<<3 | uint32(typ)<<1
		if last {
			h |= 1
		}
		b = append(b, byte(h), byte(h>>8), byte(h>>16))
	}
	for len(prefix) > 0 {
		n := min(len(prefix), maxBlock)
		block(0, n, zeros == 0 && n == len(prefix)) // raw block
		b = append(b, prefix[:n]...)
		prefix = prefix[n:]
	}
	for zeros > 0 {
		n := min(zeros, maxBlock)
		zeros -= n
		block(1, int(n), zeros == 0) // RLE block of one byte
		b = append(b, 0)
	}
	return b
}

// container makes an uncompressed edit file from a manifest and data tensors.
func container(t *testing.T, man any, tensors []safetensors.TensorInfo) []byte {
	t.Helper()
	mj, err := json.Marshal(man)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := safetensors.Layout(tensors); err != nil {
		t.Fatal(err)
	}
	return (&safetensors.Header{Metadata: map[string]string{ManifestKey: string(mj)}, Tensors: tensors}).Encode()
}

// allocated runs f and returns the bytes it allocated.
func allocated(f func()) uint64 {
	var a, b runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&a)
	f()
	runtime.ReadMemStats(&b)
	return b.TotalAlloc - a.TotalAlloc
}

func TestBombsFailFastWithBoundedMemory(t *testing.T) {
	base := open(t, stories)
	e, err := Build(base, edits(t, base), nil)
	if err != nil {
		t.Fatal(err)
	}
	good, err := e.container()
	if err != nil {
		t.Fatal(err)
	}
	zero := strings.Repeat("0", 64)
	norm := func(shape []int64, layout string) map[string]any {
		return map[string]any{"version": 1,
			"shards":  []map[string]string{{"file": "model.safetensors", "base_sha256": zero, "result_sha256": zero}},
			"tensors": []map[string]any{{"name": "model.norm.weight", "shard": "model.safetensors", "dtype": "F32", "shape": shape, "layout": layout, "base_sha256": zero, "result_sha256": zero}}}
	}
	const gib = 1 << 30
	cases := []struct {
		name  string
		frame []byte
		base  bool // read with the base
		want  error
		msg   string
	}{
		// 1 GiB of zeros: the header length is 0.
		{"zeros", rleFrame(nil, gib), true, ErrFormat, "header length 0"},
		// A header length at the limit, then zeros: the header is read (≤ 16 MiB), not parsed.
		{"header of zeros", rleFrame(binary.LittleEndian.AppendUint64(nil, MaxHeaderSize), gib), true, ErrFormat, "header"},
		{"header too long", rleFrame(binary.LittleEndian.AppendUint64(nil, MaxHeaderSize+1), gib), true, ErrFormat, "header length"},
		// The manifest claims a 1 GiB edit of the 64-element model.norm.weight.
		{"manifest bigger than base", rleFrame(container(t, norm([]int64{gib / 4}, LayoutRuns), []safetensors.TensorInfo{
			{Name: "0.index", DType: safetensors.I64, Shape: []int64{1, 2}}, {Name: "0.values", DType: safetensors.F32, Shape: []int64{gib / 4}}}), gib+16), true, ErrWrongBase, "the edit expects F32 [268435456]"},
		// The manifest matches the base, the values tensor claims 1 GiB.
		{"values bigger than tensor", rleFrame(container(t, norm([]int64{64}, LayoutRuns), []safetensors.TensorInfo{
			{Name: "0.index", DType: safetensors.I64, Shape: []int64{1, 2}}, {Name: "0.values", DType: safetensors.F32, Shape: []int64{gib / 4}}}), gib+16), true, ErrFormat, "values for 1 runs in 64 elements"},
		{"more runs than the tensor can hold", rleFrame(container(t, norm([]int64{64}, LayoutRuns), []safetensors.TensorInfo{
			{Name: "0.index", DType: safetensors.I64, Shape: []int64{gib / 16, 2}}, {Name: "0.values", DType: safetensors.F32, Shape: []int64{1}}}), gib+4), true, ErrFormat, "index shape"},
		// Without a base the manifest bounds the data: a shape too large to be a tensor.
		{"absurd shape, no base", rleFrame(container(t, norm([]int64{1 << 40, 1 << 40}, LayoutRuns), []safetensors.TensorInfo{
			{Name: "0.index", DType: safetensors.I64, Shape: []int64{1, 2}}, {Name: "0.values", DType: safetensors.F32, Shape: []int64{1}}}), 20), false, ErrFormat, "too large"},
		// A valid edit followed by 1 GiB of zeros in the same frame.
		{"trailing zeros", rleFrame(good, gib), true, ErrFormat, "bytes after"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var b *hfdir.Checkpoint
			if c.base {
				b = base
			}
			var err error
			n := allocated(func() { _, err = Unmarshal(c.frame, b) })
			if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.msg) {
				t.Fatalf("err = %v, want %v mentioning %q", err, c.want, c.msg)
			}
			if n > 48<<20 {
				t.Errorf("allocated %d MiB for a %d-byte file", n>>20, len(c.frame))
			}
		})
	}
	// The frame writer itself is right: the valid edit alone in an RLE frame reads back.
	if _, err := Unmarshal(rleFrame(good, 0), base); err != nil {
		t.Fatalf("hand-made frame of a valid edit: %v", err)
	}
}

func TestZstdDamage(t *testing.T) {
	base := open(t, stories)
	e, _ := Build(base, edits(t, base), nil)
	good, _ := e.Marshal()
	flip := func(i int) []byte {
		b := append([]byte(nil), good...)
		b[i] ^= 0xff
		return b
	}
	raw, _ := e.container()
	bigWindow := rleFrame(raw, 0)
	bigWindow[5] = (30 - 10) << 3 // a 1 GiB window
	cases := map[string][]byte{
		"empty":     nil,
		"not zstd":  []byte("hello"),
		"truncated": good[:len(good)/2],
		"checksum":  flip(len(good) - 1),
		"last byte": good[:len(good)-1],
	}
	for name, b := range cases {
		if _, err := Unmarshal(b, base); !errors.Is(err, ErrFormat) {
			t.Errorf("%s: err = %v, want ErrFormat", name, err)
		}
	}
	// A frame asking for a window beyond the limit is refused by the decoder, not allocated.
	var err error
	if n := allocated(func() { _, err = Unmarshal(bigWindow, base) }); !errors.Is(err, ErrFormat) || n > 16<<20 {
		t.Errorf("1 GiB window: err = %v, allocated %d MiB", err, n>>20)
	}
}

// TestBadIndices tampers with each layout's index and values; every case is refused at read,
// with no panic.
func TestBadIndices(t *testing.T) {
	base := open(t, stories)
	cases := []struct {
		name   string
		layout string
		mod    func(te *TensorEdit)
		msg    string
	}{
		{"cols out of range", LayoutCols, func(te *TensorEdit) { te.Index[0] = 172 }, "out of range"},
		{"cols negative", LayoutCols, func(te *TensorEdit) { te.Index[0] = -1 }, "out of range"},
		{"cols unsorted", LayoutCols, func(te *TensorEdit) { te.Index[0], te.Index[1] = te.Index[1], te.Index[0] }, "not after"},
		{"cols repeated", LayoutCols, func(te *TensorEdit) { te.Index[1] = te.Index[0] }, "not after"},
		{"cols short values", LayoutCols, func(te *TensorEdit) { te.Values = te.Values[:len(te.Values)-4] }, "values"},
		{"rows out of range", LayoutRows, func(te *TensorEdit) { te.Index[0] = 512 }, "out of range"},
		{"rows huge", LayoutRows, func(te *TensorEdit) { te.Index[0] = 1 << 62 }, "out of range"},
		{"runs overflow", LayoutRuns, func(te *TensorEdit) { te.Index[0], te.Index[1] = 1<<62+1, 1<<62-1 }, "run ("},
		{"runs negative start", LayoutRuns, func(te *TensorEdit) { te.Index[0] = -1 }, "run ("},
		{"runs empty", LayoutRuns, func(te *TensorEdit) { te.Index[1] = 0 }, "run ("},
		{"runs past the end", LayoutRuns, func(te *TensorEdit) { te.Index[len(te.Index)-1] = 1000 }, "run ("},
		{"runs overlap", LayoutRuns, func(te *TensorEdit) { te.Index[2] = te.Index[0] }, "run ("},
		{"runs touch", LayoutRuns, func(te *TensorEdit) { te.Index[2] = te.Index[0] + te.Index[1] }, "run ("},
		{"runs values left over", LayoutRuns, func(te *TensorEdit) { te.Values = append(te.Values, 0, 0, 0, 0) }, "value bytes"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e, err := Build(base, edits(t, base), nil)
			if err != nil {
				t.Fatal(err)
			}
			var te *TensorEdit
			for i := range e.Tensors {
				if e.Tensors[i].Layout == c.layout {
					te = &e.Tensors[i]
				}
			}
			c.mod(te)
			m, err := e.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			for _, b := range []*hfdir.Checkpoint{base, nil} {
				if _, err := Unmarshal(m, b); !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), c.msg) {
					t.Errorf("read (base %v): err = %v, want ErrFormat mentioning %q", b != nil, err, c.msg)
				}
			}
			// An edit built in memory is checked as well before it is applied.
			if _, err := e.Materialize(base); !errors.Is(err, ErrFormat) {
				t.Errorf("materialize: err = %v", err)
			}
			parent := t.TempDir()
			if _, err := Apply(context.Background(), base, e, filepath.Join(parent, "out"), hfdir.WriteOptions{}); !errors.Is(err, ErrFormat) {
				t.Errorf("apply: err = %v", err)
			}
			if ents, _ := os.ReadDir(parent); len(ents) != 0 {
				t.Errorf("apply left %v behind", ents)
			}
		})
	}
}

func TestBadManifests(t *testing.T) {
	base := open(t, stories)
	cases := []struct {
		name string
		mod  func(e *Edit)
		want error
		msg  string
	}{
		{"version", func(e *Edit) { e.Version = 2 }, ErrFormat, "version 2"},
		{"no shards", func(e *Edit) { e.Shards = nil }, ErrFormat, "no shards"},
		{"shard path", func(e *Edit) { e.Shards[0].File = "../model.safetensors" }, ErrFormat, "plain file name"},
		{"bad hash", func(e *Edit) { e.Shards[0].BaseSHA256 = "xyz" }, ErrFormat, "not a sha256"},
		{"upper-case hash", func(e *Edit) { e.Tensors[0].ResultSHA256 = strings.ToUpper(e.Tensors[0].ResultSHA256) }, ErrFormat, "not a sha256"},
		{"repeated tensor", func(e *Edit) { e.Tensors[1].Name = e.Tensors[0].Name }, ErrFormat, "repeated"},
		{"unknown shard", func(e *Edit) { e.Tensors[0].Shard = "other.safetensors" }, ErrFormat, "not among"},
		{"zero dim", func(e *Edit) { e.Tensors[0].Shape = []int64{0, 64} }, ErrFormat, "empty or too large"},
		{"cols of 1-d", func(e *Edit) { e.Tensors[0].Shape = []int64{64 * 172} }, ErrFormat, "2-d"},
		{"unknown layout", func(e *Edit) { e.Tensors[0].Layout = "diagonal" }, ErrFormat, "unknown layout"},
		{"shape differs from base", func(e *Edit) { e.Tensors[0].Shape = []int64{172, 64} }, ErrWrongBase, "the edit expects"},
		{"dtype differs from base", func(e *Edit) { e.Tensors[2].DType = "F16" }, ErrWrongBase, "the edit expects"},
		{"tensor not in base", func(e *Edit) { e.Tensors[0].Name = "ghost.weight" }, ErrWrongBase, "no tensor"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e, _ := Build(base, edits(t, base), nil)
			c.mod(e)
			m, err := e.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := Unmarshal(m, base); !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.msg) {
				t.Errorf("err = %v, want %v mentioning %q", err, c.want, c.msg)
			}
		})
	}
}

// TestTamperedEditIsRefused: apply hashes what it writes, so an edit whose promised hashes or
// metadata were changed after it was made is refused, with nothing left at the output, no
// temporary directory, and no hash of the output in the cache.
func TestTamperedEditIsRefused(t *testing.T) {
	base := open(t, stories)
	tmp := t.TempDir()
	editedDir := filepath.Join(tmp, "edited")
	md := map[string]string{"neurosurg.version": "0.1.0"}
	if _, err := hfdir.Write(context.Background(), base, editedDir, hfdir.WriteOptions{Replace: edits(t, base), Metadata: md}); err != nil {
		t.Fatal(err)
	}
	edited := open(t, editedDir)
	cases := []struct {
		name string
		mod  func(e *Edit)
	}{
		{"shard result_sha256 zeroed", func(e *Edit) { e.Shards[0].ResultSHA256 = strings.Repeat("0", 64) }},
		{"metadata changed", func(e *Edit) { e.Metadata["neurosurg.version"] = "9.9.9" }},
		{"metadata added", func(e *Edit) { e.Metadata["neurosurg.extra"] = "x" }},
		{"metadata dropped", func(e *Edit) { e.Metadata = nil }},
		{"tensor result_sha256 changed", func(e *Edit) { e.Tensors[0].ResultSHA256 = strings.Repeat("1", 64) }},
		{"a value changed", func(e *Edit) { e.Tensors[0].Values[0] ^= 1 }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e, err := Diff(base, edited)
			if err != nil {
				t.Fatal(err)
			}
			c.mod(e)
			path := filepath.Join(t.TempDir(), "e.nsd")
			if err := e.WriteFile(path); err != nil {
				t.Fatal(err)
			}
			e2, err := ReadFile(path, base)
			if err != nil {
				t.Fatal(err)
			}
			parent := t.TempDir()
			out := filepath.Join(parent, "out")
			_, err = Apply(context.Background(), base, e2, out, hfdir.WriteOptions{})
			if !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), path) {
				t.Fatalf("err = %v, want ErrFormat naming %s", err, path)
			}
			if ents, _ := os.ReadDir(parent); len(ents) != 0 {
				t.Errorf("left behind: %v", ents)
			}
		})
	}
	// The untampered edit applies, and what the cache now says about every output shard is
	// the sha256 of its bytes on disk; no refused output has an entry.
	e, _ := Diff(base, edited)
	out := filepath.Join(tmp, "applied")
	prov, err := Apply(context.Background(), base, e, out, hfdir.WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(out, "model.safetensors"))
	h := sha256.Sum256(b)
	if got := hex.EncodeToString(h[:]); prov.Outputs["model.safetensors"] != got {
		t.Errorf("provenance says %s, the file hashes to %s", prov.Outputs["model.safetensors"], got)
	}
	cache, err := os.ReadFile(filepath.Join(os.Getenv("XDG_CACHE_HOME"), "neurosurg", "sha256-cache.json"))
	if err != nil {
		t.Fatal(err)
	}
	var entries map[string]string
	json.Unmarshal(cache, &entries)
	found := false
	for k, v := range entries {
		if strings.Contains(k, "/out|") || strings.Contains(k, "/out/") {
			t.Errorf("cache entry for a refused output: %s", k)
		}
		if strings.HasPrefix(k, filepath.Join(out, "model.safetensors")+"|") {
			found = true
			if v != prov.Outputs["model.safetensors"] {
				t.Errorf("cache says %s for the applied shard, its bytes hash to %s", v, prov.Outputs["model.safetensors"])
			}
		}
	}
	if !found {
		t.Error("the applied shard's hash was not cached")
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

// TestLegitimateHighRatioEdit: zeroing many columns makes values that compress thousands of
// times over; the bound is the tensors', not a compression ratio, so such an edit reads.
func TestLegitimateHighRatioEdit(t *testing.T) {
	base := open(t, stories)
	name := "model.layers.0.mlp.down_proj.weight"
	_, b, _ := base.Tensor(name)
	nb := make([]byte, len(b)) // every column zeroed
	e, err := Build(base, map[string][]byte{name: nb}, nil)
	if err != nil {
		t.Fatal(err)
	}
	m, _ := e.Marshal()
	e2, err := Unmarshal(m, base)
	if err != nil {
		t.Fatal(err)
	}
	got, err := e2.Materialize(base)
	if err != nil || !bytes.Equal(got[name], nb) {
		t.Fatalf("materialize: %v", err)
	}
}
