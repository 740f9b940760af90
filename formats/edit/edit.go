// Package edit holds neurosurg's release diff: the edited elements of a checkpoint, in each
// tensor's own dtype, with the sha256 of the base and of the result, zstd-compressed. Apply
// refuses a base whose hashes differ and reproduces the edited checkpoint byte for byte.
// The layout is documented in docs/formats.md.
package edit

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"sync"

	"github.com/klauspost/compress/zstd"
	"github.com/neurosurg/neurosurg/formats/atomicfile"
	"github.com/neurosurg/neurosurg/formats/hfdir"
	"github.com/neurosurg/neurosurg/formats/safetensors"
)

// Sentinel errors.
var (
	ErrFormat    = errors.New("edit: invalid edit file")
	ErrWrongBase = errors.New("edit: base checkpoint does not match the edit")
	ErrMismatch  = errors.New("edit: checkpoints do not have the same structure")
)

// Version of the edit format this package writes.
const Version = 1

// ManifestKey is the __metadata__ key holding the manifest JSON.
const ManifestKey = "neurosurg.edit"

var layouts = map[string]bool{LayoutCols: true, LayoutRows: true, LayoutRuns: true}

// Layouts of the edited elements of a tensor.
const (
	LayoutCols = "cols" // Index: column ids; Values: [rows, len(Index)] row-major
	LayoutRows = "rows" // Index: row ids; Values: [len(Index), cols]
	LayoutRuns = "runs" // Index: (start, length) pairs of flat element ranges; Values: the elements
)

// TensorEdit is the edit of one tensor.
type TensorEdit struct {
	Name         string            `json:"name"`
	Shard        string            `json:"shard"`
	DType        safetensors.DType `json:"dtype"`
	Shape        []int64           `json:"shape"`
	Layout       string            `json:"layout"`
	BaseSHA256   string            `json:"base_sha256"`
	ResultSHA256 string            `json:"result_sha256"`
	Index        []int64           `json:"-"`
	Values       []byte            `json:"-"`
}

// ShardHashes are the sha256 of one shard file before and after the edit.
type ShardHashes struct {
	File         string `json:"file"`
	BaseSHA256   string `json:"base_sha256"`
	ResultSHA256 string `json:"result_sha256"`
}

// Edit is a release diff.
type Edit struct {
	Version  int               `json:"version"`
	Metadata map[string]string `json:"metadata,omitempty"` // added to every shard's __metadata__
	Shards   []ShardHashes     `json:"shards"`
	Tensors  []TensorEdit      `json:"tensors"`

	// Source is the file the edit was read from (set by ReadFile), named in Apply's errors.
	Source string `json:"-"`
}

// Build makes the edit that turns base into base with changed tensors (full new bytes in each
// tensor's dtype) and the given metadata added to every shard header. It reads every shard once
// to hash it.
func Build(base *hfdir.Checkpoint, changed map[string][]byte, metadata map[string]string) (*Edit, error) {
	e := &Edit{Version: Version, Metadata: metadata}
	names := make([]string, 0, len(changed))
	for n := range changed {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		info, orig, err := base.Tensor(n)
		if err != nil {
			return nil, err
		}
		nb := changed[n]
		if len(nb) != len(orig) {
			return nil, fmt.Errorf("%s: tensor %q: new bytes %d, want %d", base.Dir, n, len(nb), len(orig))
		}
		if bytes.Equal(nb, orig) {
			continue
		}
		te, err := diffTensor(info, orig, nb)
		if err != nil {
			return nil, fmt.Errorf("%s: tensor %q: %w", base.Dir, n, err)
		}
		te.Shard, _ = base.ShardOf(n)
		e.Tensors = append(e.Tensors, te)
	}
	for i, f := range base.Shards {
		bs, rs := shardSums(f, changed, metadata)
		e.Shards = append(e.Shards, ShardHashes{File: base.ShardNames[i], BaseSHA256: bs, ResultSHA256: rs})
	}
	return e, nil
}

// shardSums hashes the shard as stored and as it would be written with changes and metadata.
func shardSums(f *safetensors.File, changed map[string][]byte, metadata map[string]string) (string, string) {
	bh, rh := sha256.New(), sha256.New()
	bh.Write(hfdir.ShardHeader(f, nil))
	rh.Write(hfdir.ShardHeader(f, metadata))
	for _, t := range f.Tensors {
		b, _ := f.Bytes(t.Name)
		c, ok := changed[t.Name]
		for off := 0; off < len(b); off += 8 << 20 {
			end := min(off+8<<20, len(b))
			bh.Write(b[off:end])
			if ok {
				rh.Write(c[off:end])
			} else {
				rh.Write(b[off:end])
			}
			f.Release(t.Offsets[0]+int64(off), int64(end-off))
		}
	}
	return hex.EncodeToString(bh.Sum(nil)), hex.EncodeToString(rh.Sum(nil))
}

// Diff builds the edit from base to edited, two checkpoints of the same structure.
func Diff(base, edited *hfdir.Checkpoint) (*Edit, error) {
	bn, en := base.TensorNames(), edited.TensorNames()
	if len(bn) != len(en) {
		return nil, fmt.Errorf("%w: %s has %d tensors, %s has %d", ErrMismatch, base.Dir, len(bn), edited.Dir, len(en))
	}
	if len(base.Shards) != len(edited.Shards) {
		return nil, fmt.Errorf("%w: %s has %d shards, %s has %d", ErrMismatch, base.Dir, len(base.Shards), edited.Dir, len(edited.Shards))
	}
	changed := map[string][]byte{}
	for _, n := range bn {
		bi, b, _ := base.Tensor(n)
		ei, eb, err := edited.Tensor(n)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrMismatch, err)
		}
		bs, _ := base.ShardOf(n)
		es, _ := edited.ShardOf(n)
		if bi.DType != ei.DType || !slices.Equal(bi.Shape, ei.Shape) || bs != es {
			return nil, fmt.Errorf("%w: tensor %q: %s %v in %s vs %s %v in %s", ErrMismatch, n, bi.DType, bi.Shape, bs, ei.DType, ei.Shape, es)
		}
		if !bytes.Equal(b, eb) {
			changed[n] = eb
		}
	}
	// Metadata the edited shards add to the base's (the same for every shard).
	var added map[string]string
	for i, ef := range edited.Shards {
		a := map[string]string{}
		for k, v := range ef.Metadata {
			if base.Shards[i].Metadata[k] != v {
				a[k] = v
			}
		}
		if i == 0 {
			added = a
		} else if !sameMap(a, added) {
			return nil, fmt.Errorf("%w: shards of %s add different metadata", ErrMismatch, edited.Dir)
		}
	}
	if len(added) == 0 {
		added = nil
	}
	e, err := Build(base, changed, added)
	if err != nil {
		return nil, err
	}
	// The edit must reproduce edited exactly; a header written by another tool may not.
	for i, s := range e.Shards {
		got, _ := shardSums(edited.Shards[i], nil, nil)
		if got != s.ResultSHA256 {
			return nil, fmt.Errorf("%w: %s: its header is not what neurosurg writes (key order or spacing), so apply could not reproduce it byte for byte", ErrMismatch, filepath.Join(edited.Dir, s.File))
		}
	}
	return e, nil
}

func sameMap(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if bv, ok := b[k]; !ok || bv != v {
			return false
		}
	}
	return true
}

func sum(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// diffTensor encodes the changed elements of one tensor in the smallest layout.
func diffTensor(info safetensors.TensorInfo, orig, nb []byte) (TensorEdit, error) {
	es := info.DType.Size()
	if es == 0 {
		es = 1 // unknown dtype: diff bytes
	}
	te := TensorEdit{Name: info.Name, DType: info.DType, Shape: info.Shape, BaseSHA256: sum(orig), ResultSHA256: sum(nb)}
	n := len(orig) / es
	// Runs of changed elements.
	var runs []int64
	var runElems int64
	for i := 0; i < n; {
		if bytes.Equal(orig[i*es:(i+1)*es], nb[i*es:(i+1)*es]) {
			i++
			continue
		}
		j := i + 1
		for j < n && !bytes.Equal(orig[j*es:(j+1)*es], nb[j*es:(j+1)*es]) {
			j++
		}
		runs = append(runs, int64(i), int64(j-i))
		runElems += int64(j - i)
		i = j
	}
	best := runElems*int64(es) + int64(len(runs))*8
	layout := LayoutRuns
	var rowSet, colSet []int64
	if len(info.Shape) == 2 && info.DType.Size() > 0 {
		R, C := info.Shape[0], info.Shape[1]
		rows, cols := make([]bool, R), make([]bool, C)
		for k := 0; k+1 < len(runs); k += 2 {
			for e := runs[k]; e < runs[k]+runs[k+1]; e++ {
				rows[e/C], cols[e%C] = true, true
			}
		}
		for i, b := range rows {
			if b {
				rowSet = append(rowSet, int64(i))
			}
		}
		for i, b := range cols {
			if b {
				colSet = append(colSet, int64(i))
			}
		}
		if c := int64(len(colSet))*R*int64(es) + int64(len(colSet))*8; c < best {
			best, layout = c, LayoutCols
		}
		if c := int64(len(rowSet))*C*int64(es) + int64(len(rowSet))*8; c < best {
			layout = LayoutRows
		}
		switch layout {
		case LayoutCols:
			te.Index = colSet
			te.Values = make([]byte, 0, int64(len(colSet))*R*int64(es))
			for r := int64(0); r < R; r++ {
				for _, c := range colSet {
					o := (r*C + c) * int64(es)
					te.Values = append(te.Values, nb[o:o+int64(es)]...)
				}
			}
		case LayoutRows:
			te.Index = rowSet
			for _, r := range rowSet {
				te.Values = append(te.Values, nb[r*C*int64(es):(r+1)*C*int64(es)]...)
			}
		}
	}
	if layout == LayoutRuns {
		te.Index = runs
		for k := 0; k+1 < len(runs); k += 2 {
			te.Values = append(te.Values, nb[runs[k]*int64(es):(runs[k]+runs[k+1])*int64(es)]...)
		}
	}
	te.Layout = layout
	return te, nil
}

// applyTensor writes te's values into dst (a copy of the base tensor's bytes), after checking
// every index against dst.
func applyTensor(te *TensorEdit, dst []byte) error {
	if err := te.check(int64(len(dst))); err != nil {
		return err
	}
	es := int64(te.DType.Size())
	if es == 0 {
		es = 1
	}
	switch te.Layout {
	case LayoutRows:
		C := te.Shape[1]
		for k, ix := range te.Index {
			copy(dst[ix*C*es:(ix+1)*C*es], te.Values[int64(k)*C*es:int64(k+1)*C*es])
		}
	case LayoutCols:
		R, C, K := te.Shape[0], te.Shape[1], int64(len(te.Index))
		for k, ix := range te.Index {
			for r := int64(0); r < R; r++ {
				src := (r*K + int64(k)) * es
				copy(dst[(r*C+ix)*es:(r*C+ix+1)*es], te.Values[src:src+es])
			}
		}
	case LayoutRuns:
		var v int64
		for k := 0; k < len(te.Index); k += 2 {
			s, l := te.Index[k], te.Index[k+1]
			copy(dst[s*es:(s+l)*es], te.Values[v*es:(v+l)*es])
			v += l
		}
	}
	return nil
}

// Materialize returns the full new bytes of every edited tensor, after checking that base
// holds the tensors the edit was made for.
func (e *Edit) Materialize(base *hfdir.Checkpoint) (map[string][]byte, error) {
	if err := e.validate(); err != nil {
		return nil, fmt.Errorf("%s%w", e.prefix(), err)
	}
	if err := e.checkBase(base); err != nil {
		return nil, fmt.Errorf("%s%w", e.prefix(), err)
	}
	out := map[string][]byte{}
	for i := range e.Tensors {
		te := &e.Tensors[i]
		_, orig, err := base.Tensor(te.Name)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrWrongBase, err)
		}
		if got := sum(orig); got != te.BaseSHA256 {
			return nil, fmt.Errorf("%w: %s: tensor %q has sha256 %.12s, the edit expects %.12s", ErrWrongBase, base.Dir, te.Name, got, te.BaseSHA256)
		}
		nb := append([]byte(nil), orig...)
		if err := applyTensor(te, nb); err != nil {
			return nil, fmt.Errorf("%s%w", e.prefix(), err)
		}
		if got := sum(nb); got != te.ResultSHA256 {
			return nil, fmt.Errorf("%s%w: tensor %q: result sha256 %.12s, the edit promises %.12s", e.prefix(), ErrFormat, te.Name, got, te.ResultSHA256)
		}
		out[te.Name] = nb
	}
	return out, nil
}

// Apply writes base with e applied as a new checkpoint directory out. Every shard of base is
// hashed while it is written (or its hash taken from the stat-keyed cache), and so is every
// shard written; unless all match the edit's hashes (base and result), nothing is left at out
// and no hash is cached for it.
func Apply(ctx context.Context, base *hfdir.Checkpoint, e *Edit, out string, opts hfdir.WriteOptions) (*hfdir.Provenance, error) {
	if err := e.validate(); err != nil {
		return nil, fmt.Errorf("%s%w", e.prefix(), err)
	}
	if err := e.checkBase(base); err != nil {
		return nil, fmt.Errorf("%s%w", e.prefix(), err)
	}
	// Edited tensors are made one at a time as the writer reaches them; the base is checked
	// by the hash of every shard it streams, each result by its own hash, and each written
	// shard by the hash of the bytes written.
	opts.Lazy = map[string]func() ([]byte, error){}
	var (
		checks sync.WaitGroup
		mu     sync.Mutex
		bad    []error
	)
	inflight := make(chan struct{}, 2)
	defer checks.Wait()
	for i := range e.Tensors {
		te := &e.Tensors[i]
		opts.Lazy[te.Name] = func() ([]byte, error) {
			_, orig, err := base.Tensor(te.Name)
			if err != nil {
				return nil, err
			}
			nb := append([]byte(nil), orig...)
			base.Release(te.Name)
			if err := applyTensor(te, nb); err != nil {
				return nil, fmt.Errorf("%s%w", e.prefix(), err)
			}
			// Hashed beside the write; checked before the output is renamed into place.
			checks.Add(1)
			inflight <- struct{}{} // at most two tensors wait for their hash: memory stays bounded
			go func() {
				defer func() { <-inflight; checks.Done() }()
				if got := sum(nb); got != te.ResultSHA256 {
					mu.Lock()
					bad = append(bad, fmt.Errorf("%s%w: tensor %q: result sha256 %.12s, the edit promises %.12s (its values or hashes were altered)", e.prefix(), ErrFormat, te.Name, got, te.ResultSHA256))
					mu.Unlock()
				}
			}()
			return nb, nil
		}
	}
	opts.Metadata = e.Metadata
	opts.Check = func(p *hfdir.Provenance) error {
		checks.Wait()
		// The base first: on another base every result differs too.
		for _, s := range e.Shards {
			if p.Inputs[s.File] != s.BaseSHA256 {
				return fmt.Errorf("%s%w: %s has sha256 %.12s, the edit was made for %.12s", e.prefix(), ErrWrongBase, filepath.Join(base.Dir, s.File), p.Inputs[s.File], s.BaseSHA256)
			}
		}
		if len(bad) > 0 {
			return bad[0]
		}
		// Base and tensors verified: a written shard that still differs from the promise means
		// the manifest's shard hash or metadata was changed after the edit was made.
		for _, s := range e.Shards {
			if p.Outputs[s.File] != s.ResultSHA256 {
				return fmt.Errorf("%s%w: shard %s as written has sha256 %.12s, the edit promises %.12s (its manifest was altered: shard hash or metadata); nothing written to %s", e.prefix(), ErrFormat, s.File, p.Outputs[s.File], s.ResultSHA256, out)
			}
		}
		return nil
	}
	return hfdir.Write(ctx, base, out, opts)
}

// prefix names the edit's file in an error, when it came from one.
func (e *Edit) prefix() string {
	if e.Source == "" {
		return ""
	}
	return e.Source + ": "
}

// Marshal encodes the edit: a safetensors file (manifest in __metadata__, per edited tensor an
// I64 index tensor "<i>.index" and a values tensor "<i>.values" in the tensor's dtype), zstd
// compressed.
func (e *Edit) Marshal() ([]byte, error) {
	raw, err := e.container()
	if err != nil {
		return nil, err
	}
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1), zstd.WithEncoderLevel(zstd.SpeedBetterCompression))
	if err != nil {
		return nil, err
	}
	defer enc.Close()
	return enc.EncodeAll(raw, nil), nil
}

// container is the uncompressed safetensors file Marshal compresses.
func (e *Edit) container() ([]byte, error) {
	man, err := json.Marshal(e)
	if err != nil {
		return nil, err
	}
	var ts []safetensors.Tensor
	for i, te := range e.Tensors {
		idx := make([]byte, 8*len(te.Index))
		for k, v := range te.Index {
			binary.LittleEndian.PutUint64(idx[8*k:], uint64(v))
		}
		shape := []int64{int64(len(te.Index))}
		if te.Layout == LayoutRuns {
			shape = []int64{int64(len(te.Index) / 2), 2}
		}
		vdt := te.DType
		es := int64(vdt.Size())
		if es == 0 {
			vdt, es = safetensors.U8, 1
		}
		ts = append(ts,
			safetensors.Tensor{Info: safetensors.TensorInfo{Name: strconv.Itoa(i) + ".index", DType: safetensors.I64, Shape: shape}, Data: idx},
			safetensors.Tensor{Info: safetensors.TensorInfo{Name: strconv.Itoa(i) + ".values", DType: vdt, Shape: []int64{int64(len(te.Values)) / es}}, Data: te.Values})
	}
	var raw bytes.Buffer
	infos := make([]safetensors.TensorInfo, len(ts))
	for i := range ts {
		infos[i] = ts[i].Info
	}
	w, err := safetensors.NewWriter(&raw, infos, map[string]string{ManifestKey: string(man)})
	if err != nil {
		return nil, err
	}
	for _, t := range ts {
		if _, err := w.Write(t.Data); err != nil {
			return nil, err
		}
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return raw.Bytes(), nil
}

// WriteFile writes the edit to path through a temporary file and a rename.
func (e *Edit) WriteFile(path string) error {
	b, err := e.Marshal()
	if err == nil {
		err = atomicfile.Write(path, b)
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

var layerRe = regexp.MustCompile(`layers\.(\d+)\.`)

// Stat summarises one edited tensor.
type Stat struct {
	Name   string `json:"name"`
	Layer  int    `json:"layer"` // -1 when the name has no layer
	Layout string `json:"layout"`
	Count  int    `json:"count"` // edited columns, rows or elements
	Unit   string `json:"unit"`  // "cols", "rows" or "elements"
	Bytes  int    `json:"bytes"` // value bytes stored
}

// Stats lists one line per edited tensor.
func (e *Edit) Stats() []Stat {
	var out []Stat
	for _, te := range e.Tensors {
		s := Stat{Name: te.Name, Layer: -1, Layout: te.Layout, Bytes: len(te.Values), Unit: te.Layout}
		if m := layerRe.FindStringSubmatch(te.Name); m != nil {
			s.Layer, _ = strconv.Atoi(m[1])
		}
		switch te.Layout {
		case LayoutRuns:
			s.Unit = "elements"
			for k := 1; k < len(te.Index); k += 2 {
				s.Count += int(te.Index[k])
			}
		default:
			s.Count = len(te.Index)
		}
		out = append(out, s)
	}
	return out
}

// Overlay is a tensor source that serves base's tensors with the edit applied in memory.
type Overlay struct {
	Base    *hfdir.Checkpoint
	changed map[string][]byte
}

// Overlay materialises the edited tensors over base.
func (e *Edit) Overlay(base *hfdir.Checkpoint) (*Overlay, error) {
	ch, err := e.Materialize(base)
	if err != nil {
		return nil, err
	}
	return &Overlay{Base: base, changed: ch}, nil
}

// NewOverlay serves base with the given tensors replaced (new full bytes).
func NewOverlay(base *hfdir.Checkpoint, changed map[string][]byte) *Overlay {
	return &Overlay{Base: base, changed: changed}
}

// Tensor returns the (possibly edited) tensor.
func (o *Overlay) Tensor(name string) (safetensors.TensorInfo, []byte, error) {
	info, b, err := o.Base.Tensor(name)
	if err != nil {
		return info, nil, err
	}
	if c, ok := o.changed[name]; ok {
		return info, c, nil
	}
	return info, b, nil
}

// Has reports whether the base holds name.
func (o *Overlay) Has(name string) bool { return o.Base.Has(name) }

// TensorNames lists the base's tensors (the edit changes bytes, not names).
func (o *Overlay) TensorNames() []string { return o.Base.TensorNames() }
