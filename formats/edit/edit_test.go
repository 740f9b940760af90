package edit

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/neurosurg/neurosurg/formats/hfdir"
	"github.com/neurosurg/neurosurg/formats/safetensors"
)

const stories = "../../testdata/stories260K"

func open(t *testing.T, dir string) *hfdir.Checkpoint {
	t.Helper()
	c, err := hfdir.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// edits changes a column of a down_proj (cols), a row of the embedding (rows) and a few
// scattered elements of a norm (runs).
func edits(t *testing.T, base *hfdir.Checkpoint) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	set := func(name string, elems ...int) {
		_, b, _ := base.Tensor(name)
		nb := out[name]
		if nb == nil {
			nb = append([]byte(nil), b...)
		}
		for _, e := range elems {
			nb[4*e+3] ^= 0x40
		}
		out[name] = nb
	}
	var col []int
	for r := 0; r < 64; r++ {
		col = append(col, r*172+17, r*172+100)
	}
	set("model.layers.1.mlp.down_proj.weight", col...)
	var row []int
	for c := 0; c < 64; c++ {
		row = append(row, 7*64+c)
	}
	set("model.embed_tokens.weight", row...)
	set("model.norm.weight", 3, 4, 9)
	return out
}

func TestDiffApplyByteIdentical(t *testing.T) {
	base := open(t, stories)
	tmp := t.TempDir()
	editedDir := filepath.Join(tmp, "edited")
	md := map[string]string{"neurosurg.edited": "test"}
	if _, err := hfdir.Write(context.Background(), base, editedDir, hfdir.WriteOptions{Replace: edits(t, base), Metadata: md}); err != nil {
		t.Fatal(err)
	}
	edited := open(t, editedDir)
	e, err := Diff(base, edited)
	if err != nil {
		t.Fatal(err)
	}
	layouts := map[string]string{}
	for _, te := range e.Tensors {
		layouts[te.Name] = te.Layout
	}
	want := map[string]string{"model.layers.1.mlp.down_proj.weight": LayoutCols, "model.embed_tokens.weight": LayoutRows, "model.norm.weight": LayoutRuns}
	for k, v := range want {
		if layouts[k] != v {
			t.Errorf("%s layout %q, want %q", k, layouts[k], v)
		}
	}
	path := filepath.Join(tmp, "e.nsd")
	if err := e.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(path)
	if fi.Size() > 4000 {
		t.Errorf("edit file is %d bytes for ~200 edited values", fi.Size())
	}
	e2, err := ReadFile(path, base)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(tmp, "applied")
	if _, err := Apply(context.Background(), base, e2, out, hfdir.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	a, _ := os.ReadFile(filepath.Join(editedDir, "model.safetensors"))
	b, _ := os.ReadFile(filepath.Join(out, "model.safetensors"))
	if !bytes.Equal(a, b) {
		t.Fatal("apply did not reproduce the edited checkpoint byte for byte")
	}
	// Marshal is deterministic.
	m1, _ := e.Marshal()
	m2, _ := e2.Marshal()
	if !bytes.Equal(m1, m2) {
		t.Error("marshal(read(write(e))) differs from marshal(e)")
	}
	// Overlay serves the edited bytes.
	ov, err := e2.Overlay(base)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range base.TensorNames() {
		_, x, _ := ov.Tensor(n)
		_, y, _ := edited.Tensor(n)
		if !bytes.Equal(x, y) {
			t.Errorf("overlay %s differs from edited", n)
		}
	}
	// Applying onto the edited checkpoint (another base) is refused, and nothing is written.
	out2 := filepath.Join(tmp, "wrong")
	if _, err := Apply(context.Background(), edited, e2, out2, hfdir.WriteOptions{}); !errors.Is(err, ErrWrongBase) || !strings.Contains(err.Error(), "sha256") {
		t.Fatalf("err = %v, want ErrWrongBase", err)
	}
	if _, err := os.Stat(out2); !os.IsNotExist(err) {
		t.Error("output left behind after refusal")
	}
}

func TestApplyRefusesBaseDifferingOutsideTheEdit(t *testing.T) {
	base := open(t, stories)
	tmp := t.TempDir()
	e, err := Build(base, edits(t, base), nil)
	if err != nil {
		t.Fatal(err)
	}
	// Another base: same edited tensors, a different untouched one.
	_, nw, _ := base.Tensor("model.layers.0.self_attn.q_proj.weight")
	nb := append([]byte(nil), nw...)
	nb[0] ^= 1
	otherDir := filepath.Join(tmp, "other")
	if _, err := hfdir.Write(context.Background(), base, otherDir, hfdir.WriteOptions{Replace: map[string][]byte{"model.layers.0.self_attn.q_proj.weight": nb}}); err != nil {
		t.Fatal(err)
	}
	other := open(t, otherDir)
	out := filepath.Join(tmp, "out")
	_, err = Apply(context.Background(), other, e, out, hfdir.WriteOptions{})
	if !errors.Is(err, ErrWrongBase) || !strings.Contains(err.Error(), "model.safetensors") {
		t.Fatalf("err = %v", err)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Error("output left behind")
	}
}

func TestBadEditFiles(t *testing.T) {
	base := open(t, stories)
	e, _ := Build(base, edits(t, base), nil)
	good, _ := e.Marshal()
	cases := map[string][]byte{
		"empty":     nil,
		"not-zstd":  []byte("hello"),
		"truncated": good[:len(good)/2],
	}
	for name, b := range cases {
		if _, err := Unmarshal(b, base); !errors.Is(err, ErrFormat) {
			t.Errorf("%s: err = %v, want ErrFormat", name, err)
		}
	}
	// Out-of-range index is caught at apply time, not by a panic.
	e.Tensors[0].Index[0] = 1 << 40
	if _, err := e.Materialize(base); !errors.Is(err, ErrFormat) {
		t.Errorf("err = %v", err)
	}
}

func FuzzEditFile(f *testing.F) {
	base, err := hfdir.Open(stories)
	if err != nil {
		f.Fatal(err)
	}
	defer base.Close()
	changed := map[string][]byte{}
	_, b, _ := base.Tensor("model.norm.weight")
	nb := append([]byte(nil), b...)
	nb[5] ^= 3
	changed["model.norm.weight"] = nb
	e, _ := Build(base, changed, nil)
	good, _ := e.Marshal()
	// Seeds: whole files (framed false), and uncompressed containers the target wraps in a
	// checksum-free zstd frame (framed true) so that mutations reach the header and manifest.
	f.Add(false, good)
	t := &testing.T{}
	all, _ := Build(base, edits(t, base), map[string]string{"k": "v"})
	m, _ := all.Marshal()
	f.Add(false, m)
	f.Add(false, rleFrame(nil, 1<<20))
	for _, x := range []*Edit{e, all} {
		raw, _ := x.container()
		f.Add(true, raw)
		f.Add(true, raw[:8])
	}
	f.Fuzz(func(t *testing.T, framed bool, data []byte) {
		if framed {
			data = rleFrame(data, 0)
		}

		e, err := Unmarshal(data, base)
		if err != nil {
			if !errors.Is(err, ErrFormat) && !errors.Is(err, ErrWrongBase) {
				t.Fatalf("error without a sentinel: %v", err)
			}
			return
		}
		e.Materialize(base) // may refuse (hashes), must not panic
		m, err := e.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		e2, err := Unmarshal(m, base)
		if err != nil {
			t.Fatalf("re-marshalled edit does not parse: %v", err)
		}
		m2, _ := e2.Marshal()
		if !bytes.Equal(m, m2) {
			t.Fatal("marshal not stable")
		}
	})
}

// FuzzIndexLists applies arbitrary column, row and run lists to a small tensor: check accepts
// exactly the lists that are in range, sorted and (runs) separated, and applyTensor then writes
// exactly the selected elements, in order, and nothing else.
func FuzzIndexLists(f *testing.F) {
	le := func(v ...int64) []byte {
		var b []byte
		for _, x := range v {
			b = binary.LittleEndian.AppendUint64(b, uint64(x))
		}
		return b
	}
	f.Add(byte(2), uint8(4), uint8(5), le(0, 2, 5, 3), uint16(5))
	f.Add(byte(2), uint8(4), uint8(5), le(1<<62+1, 1<<62-1), uint16(1))
	f.Add(byte(2), uint8(4), uint8(5), le(3, 2, 5, 1), uint16(3))
	f.Add(byte(0), uint8(4), uint8(5), le(0, 4), uint16(8))
	f.Add(byte(1), uint8(4), uint8(5), le(3), uint16(5))
	f.Add(byte(1), uint8(4), uint8(5), le(-1), uint16(5))
	f.Fuzz(func(t *testing.T, layout byte, r, c uint8, index []byte, nvals uint16) {
		R, C := int64(r%16+1), int64(c%16+1)
		n := R * C
		te := &TensorEdit{Name: "t", DType: safetensors.F32, Shape: []int64{R, C}, Layout: []string{LayoutCols, LayoutRows, LayoutRuns}[layout%3]}
		for i := 0; i+8 <= len(index) && i < 8*64; i += 8 {
			te.Index = append(te.Index, int64(binary.LittleEndian.Uint64(index[i:])))
		}
		te.Values = make([]byte, 4*int(nvals%1024))
		for i := range te.Values {
			te.Values[i] = byte(i/4 + 1) // element v holds v+1 in its low byte
		}
		dst := make([]byte, 4*n)
		err := applyTensor(te, dst)
		// The reference: which elements the lists select, in value order.
		var sel []int64
		ok := len(te.Index) > 0
		switch te.Layout {
		case LayoutCols, LayoutRows:
			limit := C
			if te.Layout == LayoutRows {
				limit = R
			}
			for k, ix := range te.Index {
				ok = ok && ix >= 0 && ix < limit && (k == 0 || ix > te.Index[k-1])
			}
			if ok && te.Layout == LayoutRows {
				for _, ix := range te.Index {
					for j := int64(0); j < C; j++ {
						sel = append(sel, ix*C+j)
					}
				}
			} else if ok {
				for rr := int64(0); rr < R; rr++ {
					for _, ix := range te.Index {
						sel = append(sel, rr*C+ix)
					}
				}
			}
		case LayoutRuns:
			ok = ok && len(te.Index)%2 == 0
			end := int64(-1)
			for k := 0; ok && k < len(te.Index); k += 2 {
				s, l := te.Index[k], te.Index[k+1]
				ok = s > end && s >= 0 && s < n && l >= 1 && l <= n-s
				for j := s; ok && j < s+l; j++ {
					sel = append(sel, j)
				}
				end = s + l
			}
		}
		ok = ok && int64(len(sel)) == int64(len(te.Values)/4)
		if (err == nil) != ok {
			t.Fatalf("%s %v over [%d %d] with %d values: err = %v, reference says ok = %v", te.Layout, te.Index, R, C, len(te.Values)/4, err, ok)
		}
		if err != nil {
			if !errors.Is(err, ErrFormat) {
				t.Fatalf("error without ErrFormat: %v", err)
			}
			return
		}
		want := make([]byte, 4*n)
		for v, e := range sel {
			copy(want[4*e:4*e+4], []byte{byte(v + 1), byte(v + 1), byte(v + 1), byte(v + 1)})
		}
		if !bytes.Equal(dst, want) {
			t.Fatalf("%s %v: wrote the wrong elements", te.Layout, te.Index)
		}
	})
}
