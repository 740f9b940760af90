package locate

import (
	"compress/gzip"
	"context"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/neurosurg/neurosurg/formats/samples"
	"github.com/neurosurg/neurosurg/model"
	"github.com/neurosurg/neurosurg/model/kernels"
)

// MINER's record before and after its attention probabilities moved from a per-(row, head)
// loop of dot products to blocked f32 MatMuls with the mean over heads computed in the runtime:
// testdata/miner-before.st.gz was recorded by the loop (`record --miner --kernels avx512` over
// stories-animals-food.jsonl). The activation metrics (prob, mean, max) and the counts are
// unchanged to the bit; attn_k and attn_q move only by f32 summation order; every strategy
// and split selects the same neurons with the same labels.
func TestMINERMatchesLoopRecording(t *testing.T) {
	if !slices.Contains(kernels.Variants(), "avx512") {
		t.Skip("the golden was recorded under the avx512 kernels")
	}
	defer kernels.Use(kernels.Use("avx512"))
	before := readGzipStats(t, "testdata/miner-before.st.gz")
	m, err := model.Open("../testdata/stories260K")
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ss, err := samples.ReadFile("../testdata/samples/stories-animals-food.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	after, err := Record(context.Background(), m, ss, nil, RecordOptions{MINER: true})
	if err != nil {
		t.Fatal(err)
	}
	b, a := before.Modules[0], after.Modules[0]
	if len(b.ISMs) != 2 || len(a.ISMs) != len(b.ISMs) {
		t.Fatalf("datasets: %d before, %d after", len(b.ISMs), len(a.ISMs))
	}
	worst := 0.0
	for k, bi := range b.ISMs {
		ai := a.ISMs[k]
		if ai.Dataset != bi.Dataset || !slices.Equal(bi.Count, ai.Count) {
			t.Fatalf("dataset %s counts %v, before %s %v", ai.Dataset, ai.Count, bi.Dataset, bi.Count)
		}
		n := len(bi.Sum) / 5
		for i, want := range bi.Sum {
			got := ai.Sum[i]
			if i < 3*n { // prob, mean, max do not read attention
				if got != want {
					t.Fatalf("%s: %s sum [%d] = %v, before %v", bi.Dataset, Metrics[i/n], i%n, got, want)
				}
				continue
			}
			d := math.Abs(got-want) / max(1, math.Abs(want))
			worst = max(worst, d)
			if d > 1e-6 {
				t.Fatalf("%s: %s sum [%d] = %v, before %v", bi.Dataset, Metrics[i/n], i%n, got, want)
			}
		}
	}
	t.Logf("largest relative change of attn_k/attn_q sums: %.2g", worst)
	for _, split := range []string{"special_text_separate", "special_text_as_one", "prompt"} {
		for _, strategy := range []string{"adaptive", "LA_MU", "LU_MA", "uniform"} {
			for _, w := range [][5]float64{{}, {0, 0, 0, 1, 0}, {0, 0, 0, 0, 1}} {
				o := MINEROptions{Split: split, Strategy: strategy, Weights: w}
				sb, err := MINER(before, o)
				if err != nil {
					t.Fatal(err)
				}
				sa, err := MINER(after, o)
				if err != nil {
					t.Fatal(err)
				}
				if len(sa.Neurons) != len(sb.Neurons) || len(sa.Neurons) == 0 {
					t.Fatalf("%+v: %d neurons, before %d", o, len(sa.Neurons), len(sb.Neurons))
				}
				for i, nb := range sb.Neurons {
					na := sa.Neurons[i]
					if na.Module != nb.Module || na.Layer != nb.Layer || na.Index != nb.Index || na.Label != nb.Label || math.Abs(na.Score-nb.Score) > 1e-6 {
						t.Fatalf("%+v: neuron %d = %+v, before %+v", o, i, na, nb)
					}
				}
			}
		}
	}
}

func readGzipStats(t *testing.T, path string) *Stats {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(t.TempDir(), "before.st")
	out, err := os.Create(tmp)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, zr); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	st, err := ReadStats(tmp)
	if err != nil {
		t.Fatal(err)
	}
	return st
}
