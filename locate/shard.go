package locate

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Shard is one part of a sharded recording: of a data file of n samples, shard Index of Count
// records the contiguous block [n·Index/Count, n·(Index+1)/Count) (in file order). Contiguous
// blocks make the merge of the shards in index order list the samples in file order, as a
// single pass does; with Count > n some shards are empty, which is valid.
type Shard struct {
	Index int `json:"index"`
	Count int `json:"count"`
}

// MaxShards bounds a shard count (far above any cluster's array size).
const MaxShards = 1 << 20

// ErrShard reports a shard specification that is not index/count with 0 ≤ index < count.
var ErrShard = fmt.Errorf("locate: shard")

// ParseShard reads "i/N" (0 ≤ i < N ≤ MaxShards).
func ParseShard(s string) (Shard, error) {
	a, b, ok := strings.Cut(s, "/")
	i, err1 := strconv.Atoi(a)
	n, err2 := strconv.Atoi(b)
	if !ok || err1 != nil || err2 != nil {
		return Shard{}, fmt.Errorf("%w: %q is not INDEX/COUNT (e.g. 0/4)", ErrShard, s)
	}
	sh := Shard{Index: i, Count: n}
	return sh, sh.Check()
}

// Check reports a shard outside 0 ≤ Index < Count ≤ MaxShards.
func (sh Shard) Check() error {
	if sh.Count < 1 || sh.Count > MaxShards || sh.Index < 0 || sh.Index >= sh.Count {
		return fmt.Errorf("%w: %d/%d: want 0 ≤ index < count ≤ %d", ErrShard, sh.Index, sh.Count, MaxShards)
	}
	return nil
}

func (sh Shard) String() string { return fmt.Sprintf("%d/%d", sh.Index, sh.Count) }

// Range is the block of sample indices [lo, hi) the shard records out of n.
func (sh Shard) Range(n int) (lo, hi int) {
	return int(int64(n) * int64(sh.Index) / int64(sh.Count)), int(int64(n) * int64(sh.Index+1) / int64(sh.Count))
}

// MergeAll merges stats files' contents into the first of them. Shards of one recording
// (every index of one count, each once) are merged in index order whatever order they come
// in, and give exactly the single pass's stats, with no shard. Stats without a shard merge in
// the order given. Shards mixed with other stats, or an incomplete set, are an error.
func MergeAll(ss []*Stats) (*Stats, error) {
	if len(ss) == 0 {
		return nil, fmt.Errorf("%w: nothing to merge", ErrStats)
	}
	sharded := 0
	for _, s := range ss {
		if s.Shard != nil {
			sharded++
		}
	}
	if sharded > 0 {
		if sharded < len(ss) {
			return nil, fmt.Errorf("%w: %d of the %d stats are shards of a recording and the others are not; merge the shards first", ErrStats, sharded, len(ss))
		}
		ss = slices.Clone(ss)
		slices.SortStableFunc(ss, func(a, b *Stats) int { return a.Shard.Index - b.Shard.Index })
		n := ss[0].Shard.Count
		for i, s := range ss {
			if s.Shard.Count != n {
				return nil, fmt.Errorf("%w: shard %s and shard %s are of different recordings", ErrStats, ss[0].Shard, s.Shard)
			}
			if s.Shard.Index != i {
				if s.Shard.Index < i {
					return nil, fmt.Errorf("%w: shard %s given twice", ErrStats, s.Shard)
				}
				return nil, fmt.Errorf("%w: shard %d/%d is missing", ErrStats, i, n)
			}
			if s.DataHash != ss[0].DataHash {
				return nil, fmt.Errorf("%w: shard %s was recorded on other data than shard %s", ErrStats, s.Shard, ss[0].Shard)
			}
		}
		if len(ss) != n {
			return nil, fmt.Errorf("%w: shard %d/%d is missing", ErrStats, len(ss), n)
		}
	}
	acc := ss[0]
	for _, s := range ss[1:] {
		if err := acc.Merge(s); err != nil {
			return nil, err
		}
	}
	acc.Shard = nil
	return acc, nil
}
