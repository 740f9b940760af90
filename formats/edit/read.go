package edit

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"

	"github.com/klauspost/compress/zstd"
	"github.com/neurosurg/neurosurg/formats/hfdir"
	"github.com/neurosurg/neurosurg/formats/safetensors"
)

// Limits on what an edit file can make the reader allocate before its content is checked.
const (
	// MaxHeaderSize bounds the safetensors header (the manifest is in it): a manifest entry is
	// ~400 bytes per edited tensor, so this holds ~40,000 edited tensors.
	MaxHeaderSize = 16 << 20
	// maxWindow bounds the zstd window (and so the decoder's buffers). Marshal writes frames
	// with an 8 MiB window.
	maxWindow = 64 << 20
	// maxUnknownElem is the element size assumed for a dtype neurosurg does not know when no
	// base says how many bytes the tensor has.
	maxUnknownElem = 8
)

// ReadFile reads and validates the edit file at path. With base, the manifest is checked
// against base (shards, tensor names, dtypes, shapes) before any tensor data is decompressed,
// so the reader never holds more than base's edited tensors can take, whatever the file
// claims; with a nil base, the bound is what the manifest's shapes can hold.
func ReadFile(path string, base *hfdir.Checkpoint) (*Edit, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	e, err := Decode(bufio.NewReader(f), base)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	e.Source = path
	return e, nil
}

// Unmarshal decodes and validates an edit file held in memory (see ReadFile for base).
func Unmarshal(b []byte, base *hfdir.Checkpoint) (*Edit, error) {
	return Decode(bytes.NewReader(b), base)
}

// Decode reads an edit file from r as a stream: the header first, then, once every data
// tensor is known to fit the edited tensors, exactly the data it declares. A decompression
// bomb stops at the first size that does not fit.
func Decode(r io.Reader, base *hfdir.Checkpoint) (*Edit, error) {
	dec, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true),
		zstd.WithDecoderMaxWindow(maxWindow), zstd.WithDecoderMaxMemory(maxWindow))
	if err != nil {
		return nil, err
	}
	defer dec.Close()
	readErr := func(what string, err error) error {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return fmt.Errorf("%w: %s: the file ends early", ErrFormat, what)
		}
		return fmt.Errorf("%w: %s: zstd: %v", ErrFormat, what, err)
	}
	var lenBuf [8]byte
	if _, err := io.ReadFull(dec, lenBuf[:]); err != nil {
		return nil, readErr("header length", err)
	}
	n := binary.LittleEndian.Uint64(lenBuf[:])
	if n == 0 || n > MaxHeaderSize {
		return nil, fmt.Errorf("%w: header length %d, want 1..%d", ErrFormat, n, MaxHeaderSize)
	}
	header := make([]byte, n) // ≤ MaxHeaderSize
	if _, err := io.ReadFull(dec, header); err != nil {
		return nil, readErr("header", err)
	}
	f, dataSize, err := safetensors.ParseHeader("edit", header)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrFormat, err)
	}
	e, err := parseManifest(f)
	if err != nil {
		return nil, err
	}
	if base != nil {
		if err := e.checkBase(base); err != nil {
			return nil, err
		}
	}
	sizes := make([]int64, len(e.Tensors))
	for i := range e.Tensors {
		sizes[i] = tensorBytes(&e.Tensors[i], base)
	}
	if err := e.checkDataTensors(f, sizes); err != nil {
		return nil, err
	}
	// dataSize is now the sum of data tensors each within its edited tensor's bound.
	data := make([]byte, dataSize)
	if _, err := io.ReadFull(dec, data); err != nil {
		return nil, readErr("tensor data", err)
	}
	// The frame must end here; reading to its end also checks the zstd checksum.
	var one [1]byte
	switch _, err := io.ReadFull(dec, one[:]); {
	case err == nil:
		return nil, fmt.Errorf("%w: bytes after the %d data bytes the header declares", ErrFormat, dataSize)
	case !errors.Is(err, io.EOF):
		return nil, readErr("end of frame", err)
	}
	for i := range e.Tensors {
		te := &e.Tensors[i]
		ix, _ := f.Tensor(strconv.Itoa(i) + ".index")
		vals, _ := f.Tensor(strconv.Itoa(i) + ".values")
		raw := data[ix.Offsets[0]:ix.Offsets[1]]
		te.Index = make([]int64, len(raw)/8)
		for k := range te.Index {
			te.Index[k] = int64(binary.LittleEndian.Uint64(raw[8*k:]))
		}
		te.Values = data[vals.Offsets[0]:vals.Offsets[1]:vals.Offsets[1]]
		if err := te.check(sizes[i]); err != nil {
			return nil, err
		}
	}
	return e, nil
}

// parseManifest decodes and validates the manifest in f's metadata.
func parseManifest(f *safetensors.File) (*Edit, error) {
	man, ok := f.Metadata[ManifestKey]
	if !ok {
		return nil, fmt.Errorf("%w: no %s manifest in the header metadata", ErrFormat, ManifestKey)
	}
	var e Edit
	d := json.NewDecoder(bytes.NewReader([]byte(man)))
	d.DisallowUnknownFields()
	if err := d.Decode(&e); err != nil {
		return nil, fmt.Errorf("%w: manifest: %v", ErrFormat, err)
	}
	if _, err := d.Token(); err != io.EOF {
		return nil, fmt.Errorf("%w: manifest: data after the JSON object", ErrFormat)
	}
	if err := e.validate(); err != nil {
		return nil, err
	}
	return &e, nil
}

// tensorBytes is the byte size of te's tensor: base's, or what the manifest's shape can hold.
func tensorBytes(te *TensorEdit, base *hfdir.Checkpoint) int64 {
	if base != nil {
		if info, ok := base.Info(te.Name); ok {
			return info.ByteSize()
		}
	}
	n := int64(1)
	for _, d := range te.Shape {
		n *= d // validate bounded the product
	}
	if es := te.DType.Size(); es > 0 {
		return n * int64(es)
	}
	return n * maxUnknownElem
}

// checkDataTensors checks, from the header alone, that the file holds exactly an index and a
// values tensor per edited tensor, of the right dtypes, and no larger than the edited tensor
// (of sizes[i] bytes) allows.
func (e *Edit) checkDataTensors(f *safetensors.File, sizes []int64) error {
	if len(f.Tensors) != 2*len(e.Tensors) {
		return fmt.Errorf("%w: %d data tensors for %d edited tensors (want an index and a values tensor each)", ErrFormat, len(f.Tensors), len(e.Tensors))
	}
	for i := range e.Tensors {
		te := &e.Tensors[i]
		bad := func(format string, a ...any) error {
			return fmt.Errorf("%w: tensor %d (%q): %s", ErrFormat, i, te.Name, fmt.Sprintf(format, a...))
		}
		ix, ok1 := f.Tensor(strconv.Itoa(i) + ".index")
		vals, ok2 := f.Tensor(strconv.Itoa(i) + ".values")
		if !ok1 || !ok2 {
			return bad("missing %d.index or %d.values", i, i)
		}
		es := int64(te.DType.Size())
		vdt := te.DType
		if es == 0 {
			es, vdt = 1, safetensors.U8
		}
		if ix.DType != safetensors.I64 {
			return bad("index dtype %s, want I64", ix.DType)
		}
		if vals.DType != vdt || len(vals.Shape) != 1 {
			return bad("values are %s %v, want 1-d %s", vals.DType, vals.Shape, vdt)
		}
		n := sizes[i] / es // elements of the edited tensor
		m := vals.Shape[0] // values stored
		switch te.Layout {
		case LayoutCols, LayoutRows:
			R, C := te.Shape[0], te.Shape[1]
			limit, line := C, R
			if te.Layout == LayoutRows {
				limit, line = R, C
			}
			if len(ix.Shape) != 1 || ix.Shape[0] < 1 || ix.Shape[0] > limit {
				return bad("index shape %v, want [k] with 1 ≤ k ≤ %d", ix.Shape, limit)
			}
			if m != ix.Shape[0]*line {
				return bad("%d values for %d %s of %d elements", m, ix.Shape[0], te.Layout, line)
			}
		case LayoutRuns:
			// Runs are non-empty and separated, so k runs cover at most n-k+1 elements.
			if len(ix.Shape) != 2 || ix.Shape[1] != 2 || ix.Shape[0] < 1 || ix.Shape[0] > (n+1)/2 {
				return bad("index shape %v, want [k, 2] with 1 ≤ k ≤ %d", ix.Shape, (n+1)/2)
			}
			if m < ix.Shape[0] || m > n-ix.Shape[0]+1 {
				return bad("%d values for %d runs in %d elements", m, ix.Shape[0], n)
			}
		}
	}
	return nil
}
