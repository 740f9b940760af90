package locate

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/neurosurg/neurosurg/formats/safetensors"
)

// fuzzSeedStats is a small stats file with every kind of tensor: labels, a concept with
// per-sample rows, and a MINER dataset.
func fuzzSeedStats(t testing.TB) []byte {
	s := statsFromP([]string{"a", "b"}, 2, 3, map[string][]float64{"a": {0.5, 1, 0, 0.25, 0, 1}, "b": {0, 0.25, 1, 1, 0.5, 0}})
	s.ModelHash = "m"
	s.Modules[0].Concepts = []*ConceptStats{{Word: "x", TokenID: 1, Steps: 2, ActSum: make([]float64, 6), Phi: []float64{1, 2, 3, 4, 5, 6},
		First: [][]float64{{1, 2, 3, 4, 5, 6}, {6, 5, 4, 3, 2, 1}}, FirstIDs: []string{"s1", "s2"}}}
	d := s.Modules[0].ism("d")
	d.Count[0], d.Count[6] = 1, 1
	d.Raw.Positions[0], d.Raw.Fire[1], d.Raw.Sum[1], d.Raw.SumExact[1], d.Raw.Max[1] = 2, 1, 0.5, Fixed{Lo: 1 << 63}, 0.5
	path := filepath.Join(t.TempDir(), "seed.st")
	if err := s.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Any bytes: ReadStats returns an error or stats whose every accumulator has the size its
// header says, which survive a write and read unchanged; it never panics or allocates more
// than the file holds.
func FuzzReadStats(f *testing.F) {
	f.Add(fuzzSeedStats(f))
	f.Add(fuzzSeedStatsV2(f))
	f.Add([]byte("short"))
	f.Fuzz(func(t *testing.T, b []byte) {
		dir := t.TempDir()
		path := filepath.Join(dir, "s.st")
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		s, err := ReadStats(path)
		if err != nil {
			return
		}
		if err := checkSizes(s); err != nil {
			t.Fatal(err)
		}
		again := filepath.Join(dir, "again.st")
		if err := s.WriteFile(again); err != nil {
			t.Fatal(err)
		}
		back, err := ReadStats(again)
		if err != nil {
			t.Fatalf("a stats file read back fails: %v", err)
		}
		if d := cmp.Diff(s, back, cmp.Comparer(func(a, b float64) bool { return a == b || a != a && b != b })); d != "" {
			t.Fatalf("write + read changed the stats:\n%s", d)
		}
	})
}

// Headers whose dimensions are impossible, or far larger than the tensors the file holds, are
// errors naming the file, before anything of that size is allocated.
func TestReadStatsRejectsBadDimensions(t *testing.T) {
	for _, meta := range []string{
		`{"version":1,"module":"llm","layers":-1,"neurons":3}`,
		`{"version":1,"module":"llm","layers":2,"neurons":0}`,
		`{"version":1,"module":"llm","layers":1048576,"neurons":1048576,"labels":["a"],"samples":[1]}`,
		`{"version":1,"module":"llm","layers":1,"neurons":2,"labels":["a","a"],"samples":[1,1]}`,
	} {
		path := filepath.Join(t.TempDir(), "bad.st")
		ts := []safetensors.Tensor{}
		for _, name := range []string{"label.0.positions", "label.1.positions"} {
			ts = append(ts, safetensors.Tensor{Info: safetensors.TensorInfo{Name: name, DType: safetensors.F64, Shape: []int64{1}}, Data: make([]byte, 8)})
		}
		for _, name := range []string{"label.0.fire", "label.0.sum", "label.0.max", "label.1.fire", "label.1.sum", "label.1.max"} {
			ts = append(ts, safetensors.Tensor{Info: safetensors.TensorInfo{Name: name, DType: safetensors.F64, Shape: []int64{1, 2}}, Data: make([]byte, 16)})
		}
		if err := safetensors.WriteFile(path, ts, map[string]string{statsKey: meta}); err != nil {
			t.Fatal(err)
		}
		if _, err := ReadStats(path); !errors.Is(err, ErrStats) || !strings.Contains(err.Error(), path) {
			t.Errorf("%s: err %v", meta, err)
		}
	}
}

// fuzzSeedStatsV2 is a version-2 stats file of two modules, the decoder's with a concept and a
// MINER dataset.
func fuzzSeedStatsV2(t testing.TB) []byte {
	s := twoModules()
	llm := s.Module("llm")
	llm.Concepts = []*ConceptStats{{Word: "x", TokenID: 1, Steps: 2, ActSum: make([]float64, 4), Phi: []float64{1, 2, 3, 4},
		First: [][]float64{{1, 2, 3, 4}}, FirstIDs: []string{"s1"}}}
	llm.ism("d").Count[6] = 1
	path := filepath.Join(t.TempDir(), "seed2.st")
	if err := s.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// checkSizes reports an accumulator whose size is not its module's header's.
func checkSizes(s *Stats) error {
	for _, m := range s.Modules {
		n := m.Layers * m.Neurons
		for _, l := range m.Labels {
			ls := m.ByLabel[l]
			if len(ls.Positions) != m.Layers || len(ls.Fire) != n || len(ls.Sum) != n || len(ls.Max) != n {
				return fmt.Errorf("module %s, label %q: accumulators of the wrong size", m.Module, l)
			}
		}
		for _, c := range m.Concepts {
			if len(c.ActSum) != n || len(c.Phi) != n || len(c.First) != len(c.FirstIDs) {
				return fmt.Errorf("module %s, concept %q: accumulators of the wrong size", m.Module, c.Word)
			}
			for _, r := range c.First {
				if len(r) != n {
					return fmt.Errorf("module %s, concept %q: a per-sample row of %d, want %d", m.Module, c.Word, len(r), n)
				}
			}
		}
		for _, d := range m.ISMs {
			if len(d.Sum) != 5*7*n || len(d.Count) != 7 {
				return fmt.Errorf("module %s, dataset %q: scores of the wrong size", m.Module, d.Dataset)
			}
			if r := d.Raw; r != nil && (len(r.Positions) != 7*m.Layers || len(r.Fire) != 7*n || len(r.Sum) != 7*n || len(r.Max) != 7*n || len(r.SumExact) != 7*n) {
				return fmt.Errorf("module %s, dataset %q: raw per-modality tensors of the wrong size", m.Module, d.Dataset)
			}
		}
	}
	return nil
}
