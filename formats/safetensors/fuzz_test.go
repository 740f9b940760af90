package safetensors_test

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/neurosurg/neurosurg/formats/safetensors"
)

// FuzzHeader parses arbitrary bytes; whatever parses must re-encode and parse back to the same
// tensors, and encoding twice must give identical bytes.
func FuzzHeader(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/*.safetensors")
	for _, s := range seeds {
		b, _ := os.ReadFile(s)
		f.Add(b)
	}
	f.Add(file(`{"__metadata__":{"format":"pt"},"a":{"dtype":"BF16","shape":[2,2],"data_offsets":[0,8]}}`, 8))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := safetensors.NewReader(bytes.NewReader(data), int64(len(data)), "fuzz")
		if err != nil {
			return
		}
		h := &safetensors.Header{Metadata: r.Metadata, MetadataKeys: r.MetadataKeys, Tensors: r.Tensors}
		enc := h.Encode()
		if !bytes.Equal(enc, h.Encode()) {
			t.Fatal("encode not deterministic")
		}
		out := append(enc, data[8+r.HeaderSize:]...)
		r2, err := safetensors.NewReader(bytes.NewReader(out), int64(len(out)), "re")
		if err != nil {
			t.Fatalf("re-encoded file does not parse: %v", err)
		}
		if len(r2.Tensors) != len(r.Tensors) {
			t.Fatalf("tensor count %d != %d", len(r2.Tensors), len(r.Tensors))
		}
		for i := range r.Tensors {
			a, _ := r.Bytes(r.Tensors[i].Name)
			b, _ := r2.Bytes(r.Tensors[i].Name)
			if !bytes.Equal(a, b) {
				t.Fatalf("tensor %q differs", r.Tensors[i].Name)
			}
		}
	})
}
