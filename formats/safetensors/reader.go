package safetensors

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"syscall"
)

// ErrFormat reports a file that is not a valid safetensors file.
var ErrFormat = errors.New("safetensors: invalid format")

// TensorInfo describes one tensor of a file. Offsets are relative to the start of the data
// section, as in the header.
type TensorInfo struct {
	Name    string
	DType   DType
	Shape   []int64
	Offsets [2]int64
}

// NumElements is the product of the shape (1 for a 0-d tensor).
func (t TensorInfo) NumElements() int64 {
	n := int64(1)
	for _, d := range t.Shape {
		n *= d
	}
	return n
}

// File is an open safetensors file.
type File struct {
	Path       string
	HeaderSize int64             // length of the JSON header (without the 8-byte prefix)
	Metadata   map[string]string // the header's __metadata__, nil when absent
	Tensors    []TensorInfo      // in data order (ascending offsets)
	data       []byte            // data section (a slice of the mapping)
	mapping    []byte
	byName     map[string]int
}

// Open memory-maps path and parses its header.
func Open(path string) (*File, error) {
	fd, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer fd.Close()
	st, err := fd.Stat()
	if err != nil {
		return nil, err
	}
	size := st.Size()
	if size < 8 {
		return nil, fmt.Errorf("%s: %w: file is %d bytes, shorter than the 8-byte header length", path, ErrFormat, size)
	}
	m, err := syscall.Mmap(int(fd.Fd()), 0, int(size), syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("mmap %s: %w", path, err)
	}
	f, err := parse(path, m)
	if err != nil {
		syscall.Munmap(m)
		return nil, err
	}
	f.mapping = m
	return f, nil
}

func parse(path string, buf []byte) (*File, error) {
	n := binary.LittleEndian.Uint64(buf[:8])
	if n > uint64(len(buf)-8) {
		return nil, fmt.Errorf("%s: %w: header length %d exceeds file size %d", path, ErrFormat, n, len(buf))
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(buf[8:8+n], &raw); err != nil {
		return nil, fmt.Errorf("%s: %w: header: %v", path, ErrFormat, err)
	}
	f := &File{Path: path, HeaderSize: int64(n), data: buf[8+n:], byName: map[string]int{}}
	for name, msg := range raw {
		if name == "__metadata__" {
			if err := json.Unmarshal(msg, &f.Metadata); err != nil {
				return nil, fmt.Errorf("%s: %w: __metadata__ must map strings to strings: %v", path, ErrFormat, err)
			}
			continue
		}
		var h struct {
			DType       DType   `json:"dtype"`
			Shape       []int64 `json:"shape"`
			DataOffsets []int64 `json:"data_offsets"`
		}
		if err := json.Unmarshal(msg, &h); err != nil || len(h.DataOffsets) != 2 {
			return nil, fmt.Errorf("%s: tensor %q: %w: bad entry", path, name, ErrFormat)
		}
		f.Tensors = append(f.Tensors, TensorInfo{Name: name, DType: h.DType, Shape: h.Shape, Offsets: [2]int64{h.DataOffsets[0], h.DataOffsets[1]}})
	}
	sort.Slice(f.Tensors, func(i, j int) bool { return f.Tensors[i].Offsets[0] < f.Tensors[j].Offsets[0] })
	for i, t := range f.Tensors {
		if t.Offsets[0] < 0 || t.Offsets[1] < t.Offsets[0] || t.Offsets[1] > int64(len(f.data)) {
			return nil, fmt.Errorf("%s: tensor %q: %w: offsets %v out of range", path, t.Name, ErrFormat, t.Offsets)
		}
		f.byName[t.Name] = i
	}
	return f, nil
}

// Tensor returns the info of the named tensor.
func (f *File) Tensor(name string) (TensorInfo, bool) {
	i, ok := f.byName[name]
	if !ok {
		return TensorInfo{}, false
	}
	return f.Tensors[i], true
}

// Bytes returns the raw little-endian bytes of the named tensor, zero-copy from the mapping.
// The slice is valid until Close.
func (f *File) Bytes(name string) ([]byte, error) {
	t, ok := f.Tensor(name)
	if !ok {
		return nil, fmt.Errorf("%s: no tensor %q", f.Path, name)
	}
	return f.data[t.Offsets[0]:t.Offsets[1]], nil
}

// Close unmaps the file.
func (f *File) Close() error {
	if f.mapping == nil {
		return nil
	}
	err := syscall.Munmap(f.mapping)
	f.mapping, f.data = nil, nil
	return err
}
