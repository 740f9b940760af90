package safetensors

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
)

// ErrWriter reports misuse of a Writer or a byte count that does not match the header.
var ErrWriter = errors.New("safetensors: writer")

// Header is what a safetensors header holds, in the order it is written: metadata first (keys
// in MetadataKeys order, then any remaining keys sorted), then tensors in the given order.
type Header struct {
	Metadata     map[string]string
	MetadataKeys []string
	Tensors      []TensorInfo // offsets are computed by Encode when Layout is used
}

// Layout assigns contiguous offsets to tensors in order of the slice and returns the data size.
func Layout(tensors []TensorInfo) (int64, error) {
	var off int64
	for i := range tensors {
		t := &tensors[i]
		es := t.DType.Size()
		if es == 0 {
			// Unknown dtypes keep their stored byte count.
			n := t.Offsets[1] - t.Offsets[0]
			t.Offsets = [2]int64{off, off + n}
		} else {
			n, ok := byteSize(t.Shape, es)
			if !ok {
				return 0, fmt.Errorf("%w: tensor %q: shape %v overflows", ErrWriter, t.Name, t.Shape)
			}
			t.Offsets = [2]int64{off, off + n}
		}
		off = t.Offsets[1]
	}
	return off, nil
}

// Encode returns the full header block: 8-byte little-endian length followed by the compact
// JSON, padded with spaces to a multiple of 8 bytes, as the reference implementation writes it.
func (h *Header) Encode() []byte {
	var js bytes.Buffer
	js.WriteByte('{')
	first := true
	if len(h.Metadata) > 0 {
		js.WriteString(`"__metadata__":{`)
		for i, k := range metadataOrder(h.MetadataKeys, h.Metadata) {
			if i > 0 {
				js.WriteByte(',')
			}
			writeString(&js, k)
			js.WriteByte(':')
			writeString(&js, h.Metadata[k])
		}
		js.WriteByte('}')
		first = false
	}
	for _, t := range h.Tensors {
		if !first {
			js.WriteByte(',')
		}
		first = false
		writeString(&js, t.Name)
		js.WriteString(`:{"dtype":`)
		writeString(&js, string(t.DType))
		js.WriteString(`,"shape":[`)
		for i, d := range t.Shape {
			if i > 0 {
				js.WriteByte(',')
			}
			js.WriteString(strconv.FormatInt(d, 10))
		}
		js.WriteString(`],"data_offsets":[`)
		js.WriteString(strconv.FormatInt(t.Offsets[0], 10))
		js.WriteByte(',')
		js.WriteString(strconv.FormatInt(t.Offsets[1], 10))
		js.WriteString("]}")
	}
	js.WriteByte('}')
	for js.Len()%8 != 0 {
		js.WriteByte(' ')
	}
	out := make([]byte, 8, 8+js.Len())
	binary.LittleEndian.PutUint64(out, uint64(js.Len()))
	return append(out, js.Bytes()...)
}

func metadataOrder(keys []string, m map[string]string) []string {
	var out []string
	seen := map[string]bool{}
	for _, k := range keys {
		if _, ok := m[k]; ok && !seen[k] {
			out = append(out, k)
			seen[k] = true
		}
	}
	var rest []string
	for k := range m {
		if !seen[k] {
			rest = append(rest, k)
		}
	}
	sort.Strings(rest)
	return append(out, rest...)
}

func writeString(b *bytes.Buffer, s string) {
	enc, _ := json.Marshal(s)
	b.Write(enc)
}

// Writer streams a safetensors file: the header is written first, then tensor bytes in order.
type Writer struct {
	w       io.Writer
	total   int64
	written int64
	closed  bool
}

// NewWriter writes the header for tensors (offsets assigned contiguously in slice order) and
// returns a Writer expecting exactly the tensors' bytes, in order.
func NewWriter(w io.Writer, tensors []TensorInfo, metadata map[string]string) (*Writer, error) {
	ts := append([]TensorInfo(nil), tensors...)
	total, err := Layout(ts)
	if err != nil {
		return nil, err
	}
	h := Header{Metadata: metadata, Tensors: ts}
	return NewWriterHeader(w, &h, total)
}

// NewWriterHeader writes an already laid-out header and expects dataSize bytes.
func NewWriterHeader(w io.Writer, h *Header, dataSize int64) (*Writer, error) {
	if _, err := w.Write(h.Encode()); err != nil {
		return nil, err
	}
	return &Writer{w: w, total: dataSize}, nil
}

// Write writes tensor bytes; more than the header declared is an error.
func (w *Writer) Write(p []byte) (int, error) {
	if w.closed {
		return 0, fmt.Errorf("%w: write after close", ErrWriter)
	}
	if w.written+int64(len(p)) > w.total {
		return 0, fmt.Errorf("%w: %d bytes past the %d the header declares", ErrWriter, w.written+int64(len(p))-w.total, w.total)
	}
	n, err := w.w.Write(p)
	w.written += int64(n)
	return n, err
}

// Close checks that every declared byte arrived. It does not close the underlying writer.
func (w *Writer) Close() error {
	if w.closed {
		return fmt.Errorf("%w: closed twice", ErrWriter)
	}
	w.closed = true
	if w.written != w.total {
		return fmt.Errorf("%w: %d of %d data bytes written", ErrWriter, w.written, w.total)
	}
	return nil
}

// Tensor is a tensor with its bytes, for WriteFile.
type Tensor struct {
	Info TensorInfo
	Data []byte
}

// WriteFile writes tensors (in slice order) to path through a temporary file and a rename.
func WriteFile(path string, tensors []Tensor, metadata map[string]string) error {
	infos := make([]TensorInfo, len(tensors))
	for i, t := range tensors {
		infos[i] = t.Info
		infos[i].Offsets = [2]int64{0, int64(len(t.Data))}
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path)+"-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	bw := newBufWriter(tmp)
	w, err := NewWriter(bw, infos, metadata)
	if err == nil {
		for _, t := range tensors {
			if _, err = w.Write(t.Data); err != nil {
				break
			}
		}
	}
	if err == nil {
		err = w.Close()
	}
	if err == nil {
		err = bw.Flush()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	// CreateTemp makes the file 0600; a written file gets the usual 0644.
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
