package safetensors_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unsafe"

	"github.com/neurosurg/neurosurg/formats/safetensors"
)

const stories = "../../testdata/stories260K/model.safetensors"

// headerInOrder rebuilds f's header in its stored key order.
func headerInOrder(f *safetensors.File) *safetensors.Header {
	h := &safetensors.Header{Metadata: f.Metadata, MetadataKeys: f.MetadataKeys}
	for _, k := range f.HeaderKeys {
		if t, ok := f.Tensor(k); ok {
			h.Tensors = append(h.Tensors, t)
		}
	}
	return h
}

func TestRoundTripStories(t *testing.T) {
	orig, err := os.ReadFile(stories)
	if err != nil {
		t.Fatal(err)
	}
	f, err := safetensors.Open(stories)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if got := len(f.Tensors); got != 48 {
		t.Fatalf("tensors = %d, want 48", got)
	}
	if f.Metadata["format"] != "pt" {
		t.Errorf("metadata = %v", f.Metadata)
	}
	var buf bytes.Buffer
	h := headerInOrder(f)
	w, err := safetensors.NewWriterHeader(&buf, h, f.DataSection().Size())
	if err != nil {
		t.Fatal(err)
	}
	for _, ti := range f.Tensors {
		b, err := f.Bytes(ti.Name)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), orig) {
		t.Fatalf("rewrite differs from original (%d vs %d bytes)", buf.Len(), len(orig))
	}
	// NewReader gives the same tensors as the mapping.
	r, err := safetensors.NewReader(bytes.NewReader(orig), int64(len(orig)), "mem")
	if err != nil {
		t.Fatal(err)
	}
	for _, ti := range f.Tensors {
		a, _ := f.Bytes(ti.Name)
		b, _ := r.Bytes(ti.Name)
		if !bytes.Equal(a, b) {
			t.Fatalf("%s differs between Open and NewReader", ti.Name)
		}
	}
}

// A resident file serves the same bytes as the mapping (Bytes, Section, the whole data
// section), and Release, which drops a mapping's pages, leaves a resident copy intact: on
// anonymous memory the same madvise would zero it.
func TestMakeResident(t *testing.T) {
	orig, err := os.ReadFile(stories)
	if err != nil {
		t.Fatal(err)
	}
	f, err := safetensors.Open(stories)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.MakeResident(); err != nil {
		t.Fatal(err)
	}
	if err := f.MakeResident(); err != nil { // a second call is a no-op
		t.Fatal(err)
	}
	// The data section lands on a 2 MiB boundary (in the file it is only 8-aligned), so a
	// tensor at a multiple of 64 bytes into it starts a cache line.
	first, _ := f.Bytes(f.Tensors[0].Name)
	if addr := uintptr(unsafe.Pointer(&first[0])) - uintptr(f.Tensors[0].Offsets[0]); addr%(2<<20) != 0 {
		t.Errorf("resident data section at %#x, not 2 MiB-aligned", addr)
	}
	for _, ti := range f.Tensors {
		f.Release(ti.Offsets[0], ti.ByteSize())
	}
	ref, err := safetensors.NewReader(bytes.NewReader(orig), int64(len(orig)), "mem")
	if err != nil {
		t.Fatal(err)
	}
	for _, ti := range f.Tensors {
		a, _ := f.Bytes(ti.Name)
		b, _ := ref.Bytes(ti.Name)
		if !bytes.Equal(a, b) {
			t.Fatalf("%s: resident bytes differ from the file's", ti.Name)
		}
		sec, err := f.Section(ti.Name)
		if err != nil {
			t.Fatal(err)
		}
		c := make([]byte, ti.ByteSize())
		if _, err := sec.ReadAt(c, 0); err != nil || !bytes.Equal(c, b) {
			t.Fatalf("%s: resident section differs (%v)", ti.Name, err)
		}
	}
	whole := make([]byte, f.DataSection().Size())
	if _, err := f.DataSection().ReadAt(whole, 0); err != nil || !bytes.Equal(whole, orig[len(orig)-len(whole):]) {
		t.Fatalf("resident data section differs (%v)", err)
	}
	if err := ref.MakeResident(); err != nil { // a NewReader file has nothing to copy
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestWriteFileRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.safetensors")
	in := []safetensors.Tensor{
		{Info: safetensors.TensorInfo{Name: "b", DType: safetensors.BF16, Shape: []int64{2, 3}}, Data: []byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}},
		{Info: safetensors.TensorInfo{Name: "a", DType: safetensors.F32, Shape: []int64{}}, Data: []byte{0, 0, 128, 63}},
		{Info: safetensors.TensorInfo{Name: "f8", DType: safetensors.F8E4M3, Shape: []int64{3}}, Data: []byte{1, 2, 3}},
		{Info: safetensors.TensorInfo{Name: "empty", DType: safetensors.F16, Shape: []int64{0, 4}}, Data: nil},
	}
	if err := safetensors.WriteFile(path, in, map[string]string{"format": "pt"}); err != nil {
		t.Fatal(err)
	}
	f, err := safetensors.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, want := range in {
		got, ok := f.Tensor(want.Info.Name)
		if !ok || got.DType != want.Info.DType || len(got.Shape) != len(want.Info.Shape) {
			t.Fatalf("%s: got %+v", want.Info.Name, got)
		}
		b, _ := f.Bytes(want.Info.Name)
		if !bytes.Equal(b, want.Data) {
			t.Errorf("%s: bytes %v, want %v", want.Info.Name, b, want.Data)
		}
	}
	// Writing twice gives identical bytes.
	path2 := filepath.Join(t.TempDir(), "y.safetensors")
	if err := safetensors.WriteFile(path2, in, map[string]string{"format": "pt"}); err != nil {
		t.Fatal(err)
	}
	a, _ := os.ReadFile(path)
	b, _ := os.ReadFile(path2)
	if !bytes.Equal(a, b) {
		t.Error("two writes differ")
	}
}

func TestWriterMisuse(t *testing.T) {
	var buf bytes.Buffer
	w, err := safetensors.NewWriter(&buf, []safetensors.TensorInfo{{Name: "x", DType: safetensors.F32, Shape: []int64{2}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(make([]byte, 4)); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); !errors.Is(err, safetensors.ErrWriter) {
		t.Errorf("short close: %v", err)
	}
	if err := w.Close(); !errors.Is(err, safetensors.ErrWriter) {
		t.Errorf("double close: %v", err)
	}
	w, _ = safetensors.NewWriter(&buf, []safetensors.TensorInfo{{Name: "x", DType: safetensors.F32, Shape: []int64{1}}}, nil)
	if _, err := w.Write(make([]byte, 5)); !errors.Is(err, safetensors.ErrWriter) {
		t.Errorf("overlong write: %v", err)
	}
}

// file builds a safetensors file from a raw header string and data length.
func file(header string, data int) []byte {
	b := make([]byte, 8, 8+len(header)+data)
	binary.LittleEndian.PutUint64(b, uint64(len(header)))
	b = append(b, header...)
	return append(b, make([]byte, data)...)
}

func TestBadInput(t *testing.T) {
	orig, _ := os.ReadFile(stories)
	cases := []struct {
		name string
		data []byte
		want error
		text string
	}{
		{"empty", nil, safetensors.ErrTruncated, "shorter than"},
		{"len-lies", func() []byte { b := append([]byte(nil), orig...); binary.LittleEndian.PutUint64(b, 1<<40); return b }(), safetensors.ErrHeaderSize, "header length"},
		{"truncated", orig[:len(orig)-100], safetensors.ErrTruncated, "data bytes"},
		{"trailing-data", append(append([]byte(nil), orig...), 0, 0, 0, 0), safetensors.ErrOffsets, "not covered"},
		{"overlap", file(`{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"b":{"dtype":"U8","shape":[4],"data_offsets":[2,6]}}`, 6), safetensors.ErrOffsets, "overlap"},
		{"gap", file(`{"a":{"dtype":"U8","shape":[2],"data_offsets":[2,4]}}`, 4), safetensors.ErrOffsets, "gap"},
		{"size-mismatch", file(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}`, 4), safetensors.ErrSizeMismatch, "needs 8 bytes"},
		{"dup-name", file(`{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}`, 2), safetensors.ErrDuplicate, "twice"},
		{"metadata-not-strings", file(`{"__metadata__":{"x":1}}`, 0), safetensors.ErrFormat, "__metadata__"},
		{"not-json", file(`{"a":`, 0), safetensors.ErrFormat, "JSON"},
		{"not-object", file(`[1,2]`, 0), safetensors.ErrFormat, "not a JSON object"},
		{"negative-dim", file(`{"a":{"dtype":"U8","shape":[-1],"data_offsets":[0,0]}}`, 0), safetensors.ErrFormat, "negative"},
		{"missing-offsets", file(`{"a":{"dtype":"U8","shape":[1]}}`, 1), safetensors.ErrFormat, "data_offsets"},
		{"unknown-field", file(`{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1],"x":1}}`, 1), safetensors.ErrFormat, "unknown field"},
		{"trailing-garbage", file(`{}x`, 0), safetensors.ErrFormat, "trailing"},
		{"overflow-shape", file(`{"a":{"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,0]}}`, 0), safetensors.ErrSizeMismatch, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), c.name+".safetensors")
			os.WriteFile(path, c.data, 0o644)
			_, err := safetensors.Open(path)
			if !errors.Is(err, c.want) {
				t.Fatalf("err = %v, want %v", err, c.want)
			}
			if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), c.text) {
				t.Errorf("error %q should name the file and say %q", err, c.text)
			}
		})
	}
}

func TestPassThroughDTypes(t *testing.T) {
	// An unknown dtype and F8 read fine; the unknown one keeps its stored byte count.
	data := file(`{"a":{"dtype":"F8_E5M2","shape":[2],"data_offsets":[0,2]},"b":{"dtype":"Q4_WEIRD","shape":[4],"data_offsets":[2,5]},"c":{"dtype":"F64","shape":[],"data_offsets":[5,13]}}`, 13)
	f, err := safetensors.NewReader(bytes.NewReader(data), int64(len(data)), "mem")
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := f.Bytes("b"); len(b) != 3 {
		t.Errorf("unknown dtype bytes = %d, want 3", len(b))
	}
	if c, _ := f.Tensor("c"); c.NumElements() != 1 {
		t.Errorf("0-d tensor has %d elements", c.NumElements())
	}
}
