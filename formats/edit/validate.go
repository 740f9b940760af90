package edit

import (
	"fmt"
	"slices"
	"strings"

	"github.com/neurosurg/neurosurg/formats/hfdir"
)

// maxTensorElems bounds a manifest shape so that byte counts (×8) never overflow int64.
const maxTensorElems = 1 << 58

// validate checks the manifest on its own: what every later step relies on.
func (e *Edit) validate() error {
	if e.Version != Version {
		return fmt.Errorf("%w: version %d, this neurosurg reads %d", ErrFormat, e.Version, Version)
	}
	if len(e.Shards) == 0 {
		return fmt.Errorf("%w: manifest lists no shards", ErrFormat)
	}
	shards := map[string]bool{}
	for _, s := range e.Shards {
		if s.File == "" || s.File == "." || s.File == ".." || strings.ContainsAny(s.File, `/\`) {
			return fmt.Errorf("%w: shard %q is not a plain file name", ErrFormat, s.File)
		}
		if shards[s.File] {
			return fmt.Errorf("%w: shard %s listed twice", ErrFormat, s.File)
		}
		shards[s.File] = true
		if err := checkSum("shard "+s.File+" base_sha256", s.BaseSHA256); err != nil {
			return err
		}
		if err := checkSum("shard "+s.File+" result_sha256", s.ResultSHA256); err != nil {
			return err
		}
	}
	names := map[string]bool{}
	for i := range e.Tensors {
		te := &e.Tensors[i]
		bad := func(format string, a ...any) error {
			return fmt.Errorf("%w: tensor %d (%q): %s", ErrFormat, i, te.Name, fmt.Sprintf(format, a...))
		}
		if te.Name == "" || names[te.Name] {
			return bad("empty or repeated name")
		}
		names[te.Name] = true
		if !shards[te.Shard] {
			return bad("shard %q is not among the manifest's shards", te.Shard)
		}
		if te.DType == "" {
			return bad("no dtype")
		}
		if !layouts[te.Layout] {
			return bad("unknown layout %q", te.Layout)
		}
		n := int64(1)
		for _, d := range te.Shape {
			if d < 1 || n > maxTensorElems/d {
				return bad("shape %v is empty or too large", te.Shape)
			}
			n *= d
		}
		if te.Layout != LayoutRuns && (len(te.Shape) != 2 || te.DType.Size() == 0) {
			return bad("layout %s needs a 2-d tensor of a known dtype, not %s %v", te.Layout, te.DType, te.Shape)
		}
		if err := checkSum(fmt.Sprintf("tensor %q base_sha256", te.Name), te.BaseSHA256); err != nil {
			return err
		}
		if err := checkSum(fmt.Sprintf("tensor %q result_sha256", te.Name), te.ResultSHA256); err != nil {
			return err
		}
	}
	return nil
}

// checkSum accepts a sha256 as neurosurg writes it: 64 lower-case hex digits.
func checkSum(what, s string) error {
	ok := len(s) == 64
	for i := 0; ok && i < len(s); i++ {
		ok = s[i] >= '0' && s[i] <= '9' || s[i] >= 'a' && s[i] <= 'f'
	}
	if !ok {
		return fmt.Errorf("%w: %s %q is not a sha256 (64 lower-case hex digits)", ErrFormat, what, s)
	}
	return nil
}

// checkBase checks that base has the shards and the tensors (name, dtype, shape, shard) the
// edit was made for. Hashes are checked later, as the bytes are read.
func (e *Edit) checkBase(base *hfdir.Checkpoint) error {
	if len(e.Shards) != len(base.Shards) {
		return fmt.Errorf("%w: %s has %d shards, the edit expects %d", ErrWrongBase, base.Dir, len(base.Shards), len(e.Shards))
	}
	for i, s := range e.Shards {
		if base.ShardNames[i] != s.File {
			return fmt.Errorf("%w: %s has shard %s, the edit expects %s", ErrWrongBase, base.Dir, base.ShardNames[i], s.File)
		}
	}
	for i := range e.Tensors {
		te := &e.Tensors[i]
		info, ok := base.Info(te.Name)
		if !ok {
			return fmt.Errorf("%w: %s has no tensor %q", ErrWrongBase, base.Dir, te.Name)
		}
		if info.DType != te.DType || !slices.Equal(info.Shape, te.Shape) {
			return fmt.Errorf("%w: %s: tensor %q is %s %v, the edit expects %s %v", ErrWrongBase, base.Dir, te.Name, info.DType, info.Shape, te.DType, te.Shape)
		}
		if sh, _ := base.ShardOf(te.Name); sh != te.Shard {
			return fmt.Errorf("%w: %s: tensor %q is in %s, the edit expects %s", ErrWrongBase, base.Dir, te.Name, sh, te.Shard)
		}
	}
	return nil
}

// check validates te's index and values against a tensor of size bytes: indices in range and
// strictly increasing (cols, rows); runs non-empty, sorted, separated by at least one element
// and inside the tensor, with every bound computed without overflow; and exactly as many
// value bytes as the index selects.
func (te *TensorEdit) check(size int64) error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: tensor %q: %s", ErrFormat, te.Name, fmt.Sprintf(format, a...))
	}
	es := int64(te.DType.Size())
	if es == 0 {
		es = 1 // unknown dtype: bytes
	}
	if size <= 0 || size%es != 0 {
		return bad("a tensor of %d bytes cannot hold %s elements", size, te.DType)
	}
	n := size / es
	k := int64(len(te.Index))
	switch te.Layout {
	case LayoutCols, LayoutRows:
		if len(te.Shape) != 2 {
			return bad("layout %s needs a 2-d tensor, not %v", te.Layout, te.Shape)
		}
		R, C := te.Shape[0], te.Shape[1]
		if R < 1 || C < 1 || R > n/C || R*C != n {
			return bad("shape %v does not match the tensor's %d elements", te.Shape, n)
		}
		limit, line := C, R
		if te.Layout == LayoutRows {
			limit, line = R, C
		}
		if k < 1 || k > limit {
			return bad("%d %s edited, the tensor has %d", k, te.Layout, limit)
		}
		prev := int64(-1)
		for _, ix := range te.Index {
			if ix <= prev || ix >= limit {
				return bad("%s index %d out of range [0,%d) or not after %d", te.Layout, ix, limit, prev)
			}
			prev = ix
		}
		if int64(len(te.Values)) != k*line*es { // k ≤ limit: no overflow
			return bad("%d value bytes for %d %s of %d elements", len(te.Values), k, te.Layout, line)
		}
	case LayoutRuns:
		if k < 2 || k%2 != 0 {
			return bad("run index of %d numbers, want (start, length) pairs", k)
		}
		var end, total int64
		for j := int64(0); j < k; j += 2 {
			s, l := te.Index[j], te.Index[j+1]
			if s < end || (j > 0 && s == end) || s >= n || l < 1 || l > n-s {
				return bad("run (%d, %d) is empty, out of [0,%d), or not after the previous run (ending at %d)", s, l, n, end)
			}
			end = s + l
			total += l // the runs are disjoint within n elements: no overflow
		}
		if int64(len(te.Values)) != total*es {
			return bad("%d value bytes for %d elements in runs", len(te.Values), total)
		}
	default:
		return bad("unknown layout %q", te.Layout)
	}
	return nil
}
