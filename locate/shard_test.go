package locate

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/neurosurg/neurosurg/formats/samples"
	"github.com/neurosurg/neurosurg/model"
)

func TestParseShard(t *testing.T) {
	for _, c := range []struct {
		in   string
		want Shard
		ok   bool
	}{
		{"0/1", Shard{0, 1}, true}, {"3/4", Shard{3, 4}, true}, {"7/1000", Shard{7, 1000}, true},
		{"4/4", Shard{}, false}, {"-1/4", Shard{}, false}, {"0/0", Shard{}, false}, {"1", Shard{}, false},
		{"a/b", Shard{}, false}, {"1/2/3", Shard{}, false}, {"0/2000000", Shard{}, false}, {"", Shard{}, false},
	} {
		got, err := ParseShard(c.in)
		if (err == nil) != c.ok || c.ok && got != c.want {
			t.Errorf("ParseShard(%q) = %v, %v", c.in, got, err)
		}
		if err != nil && !errors.Is(err, ErrShard) {
			t.Errorf("ParseShard(%q): %v is not ErrShard", c.in, err)
		}
	}
}

// The shards' blocks cover every sample once, in order, for any count (also above n).
func TestShardRangeCovers(t *testing.T) {
	for _, n := range []int{0, 1, 5, 88} {
		for _, count := range []int{1, 2, 3, 7, 100} {
			next := 0
			for i := 0; i < count; i++ {
				lo, hi := Shard{i, count}.Range(n)
				if lo != next || hi < lo {
					t.Fatalf("n %d, shard %d/%d: [%d,%d) after %d", n, i, count, lo, hi, next)
				}
				next = hi
			}
			if next != n {
				t.Fatalf("n %d, %d shards cover %d", n, count, next)
			}
		}
	}
}

// Recording in shards and merging them, in a scrambled order, gives the single pass's stats
// file byte for byte: counts, sums, maxima, concepts (per-sample rows too) and MINER's
// per-dataset sums; with more shards than samples some shards are empty, and still valid.
// A shard interrupted and resumed is the same shard.
func TestShardedRecordMergesToSinglePass(t *testing.T) {
	m, err := model.Open("../testdata/stories260K")
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	a, err := samples.ReadFile("../testdata/samples/stories-animals-food.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	g, err := samples.ReadFile("../examples/stories-generated.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	// Interleave the files so that datasets and labels first appear in different shards.
	var ss []samples.Sample
	for i := 0; i < max(len(a), len(g)); i++ {
		if i < len(a) {
			ss = append(ss, a[i])
		}
		if i < len(g) {
			ss = append(ss, g[i])
		}
	}
	ss = ss[:60]
	dir := t.TempDir()
	ctx := context.Background()
	record := func(name string, o RecordOptions, into *Stats, skip []string) string {
		t.Helper()
		o.ModelHash, o.Skip = "model", map[string]bool{}
		for _, id := range skip {
			o.Skip[id] = true
		}
		st, err := Record(ctx, m, ss, into, o)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		path := filepath.Join(dir, name)
		if err := st.WriteFile(path); err != nil {
			t.Fatal(err)
		}
		return path
	}
	read := func(path string) []byte {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	rng := rand.New(rand.NewPCG(7, 8))
	for _, oc := range []struct {
		name   string
		o      RecordOptions
		counts []int
	}{
		{"miner+concept+per-sample", RecordOptions{MINER: true, Concepts: []string{"Lily", "cat"}, PerSample: true}, []int{1, 2, 3, 7, len(ss) + 5}},
		{"au+concepts from labels", RecordOptions{Product: true, ConceptsFromLabels: true, Concepts: []string{"Lily"}}, []int{3}},
	} {
		single := read(record(oc.name+".st", oc.o, nil, nil))
		for _, n := range oc.counts {
			var parts []*Stats
			empty := 0
			for i := 0; i < n; i++ {
				o := oc.o
				o.Shard = &Shard{i, n}
				path := record(fmt.Sprintf("%s-%d-of-%d.st", oc.name, i, n), o, nil, nil)
				st, err := ReadStats(path)
				if err != nil {
					t.Fatalf("%s: shard %d/%d does not read back: %v", oc.name, i, n, err)
				}
				if len(st.SampleIDs) == 0 {
					empty++
				}
				parts = append(parts, st)
			}
			if n > len(ss) && empty != n-len(ss) {
				t.Errorf("%s: %d shards of %d samples: %d empty", oc.name, n, len(ss), empty)
			}
			rng.Shuffle(len(parts), func(i, j int) { parts[i], parts[j] = parts[j], parts[i] })
			merged, err := MergeAll(parts)
			if err != nil {
				t.Fatalf("%s: merging %d shards: %v", oc.name, n, err)
			}
			path := filepath.Join(dir, fmt.Sprintf("%s-merged-%d.st", oc.name, n))
			if err := merged.WriteFile(path); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(read(path), single) {
				t.Errorf("%s: %d shards merged differ from a single pass", oc.name, n)
			}
		}
	}
	// Resume per shard: shard 1/3 recorded in two runs is the shard recorded in one.
	o := RecordOptions{MINER: true, Concepts: []string{"Lily"}, PerSample: true, Shard: &Shard{1, 3}}
	whole := read(record("whole-1-of-3.st", o, nil, nil))
	lo, hi := o.Shard.Range(len(ss))
	var later []string
	for _, s := range ss[lo+(hi-lo)/2 : hi] {
		later = append(later, s.ID)
	}
	first, err := ReadStats(record("first-1-of-3.st", o, nil, later))
	if err != nil {
		t.Fatal(err)
	}
	var done []string
	done = append(done, first.SampleIDs...)
	if !bytes.Equal(read(record("resumed-1-of-3.st", o, first, done)), whole) {
		t.Error("a resumed shard differs from the shard recorded at once")
	}
	// Resuming another shard's stats is refused.
	o.Shard = &Shard{2, 3}
	if _, err := Record(ctx, m, ss, first, o); !errors.Is(err, ErrStats) {
		t.Errorf("resuming shard 1/3 as 2/3: %v", err)
	}
}

func TestMergeAllRefuses(t *testing.T) {
	mk := func(sh *Shard, data string) *Stats {
		s := NewStats("llm", 1, 2)
		s.Shard, s.DataHash = sh, data
		return s
	}
	for _, c := range []struct {
		name string
		in   []*Stats
		msg  string
	}{
		{"missing", []*Stats{mk(&Shard{0, 3}, "d"), mk(&Shard{2, 3}, "d")}, "shard 1/3 is missing"},
		{"missing last", []*Stats{mk(&Shard{0, 3}, "d"), mk(&Shard{1, 3}, "d")}, "shard 2/3 is missing"},
		{"twice", []*Stats{mk(&Shard{0, 2}, "d"), mk(&Shard{0, 2}, "d"), mk(&Shard{1, 2}, "d")}, "given twice"},
		{"counts differ", []*Stats{mk(&Shard{0, 2}, "d"), mk(&Shard{1, 3}, "d")}, "different recordings"},
		{"data differ", []*Stats{mk(&Shard{0, 2}, "d"), mk(&Shard{1, 2}, "e")}, "other data"},
		{"mixed", []*Stats{mk(&Shard{0, 1}, "d"), mk(nil, "d")}, "are not"},
		{"none", nil, "nothing"},
	} {
		_, err := MergeAll(c.in)
		if !errors.Is(err, ErrStats) || !bytes.Contains([]byte(err.Error()), []byte(c.msg)) {
			t.Errorf("%s: %v, want %q", c.name, err, c.msg)
		}
	}
	s, err := MergeAll([]*Stats{mk(&Shard{0, 1}, "d")})
	if err != nil || s.Shard != nil {
		t.Errorf("the one shard of one: %v %v", s, err)
	}
}
