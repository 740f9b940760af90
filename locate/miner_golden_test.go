package locate

import (
	"compress/gzip"
	"context"
	"io"
	"math"
	"math/rand/v2"
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

// ismSample (exp table shared by the modalities, sums on row and column spans of the cores)
// equals the direct loops it replaced bit for bit: on a subset of positions and on all of
// them, with and without attention.
func TestISMSampleMatchesLoop(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	const T, N = 150, 300
	act := make([]float32, T*N)
	for i := range act {
		act[i] = float32(rng.NormFloat64())
		if i%N < 3 { // neurons whose maximum is a signed zero: +0 beats −0 either way round
			act[i] = -float32(math.Abs(float64(act[i])))
			if i/N%7 == 3 {
				act[i] = float32(math.Copysign(0, float64(i%N)-1))
			}
		}
	}
	S := make([]float32, T*T)
	for i := range S {
		S[i] = float32(rng.Float64() / 20)
	}
	var sub, all []int
	for p := 0; p < T; p++ {
		if rng.IntN(3) > 0 {
			sub = append(sub, p)
		}
		all = append(all, p)
	}
	for _, idx := range [][]int{sub, all, {7}} {
		for _, s := range [][]float32{S, nil} {
			got, want := ismSample(act, N, s, T, idx), ismSampleLoop(act, N, s, T, idx)
			for i := range want {
				if !slices.EqualFunc(got[i], want[i], func(a, b float64) bool { return math.Float64bits(a) == math.Float64bits(b) }) {
					t.Fatalf("%d positions, attention %v: %s differs", len(idx), s != nil, Metrics[i])
				}
			}
		}
	}
}

// ismSampleLoop is ismSample as it was before the exp table (the reference of the test above).
func ismSampleLoop(act []float32, N int, S []float32, T int, idx []int) [5][]float64 {
	var out [5][]float64
	for i := range out {
		out[i] = make([]float64, N)
	}
	n := len(idx)
	prob, mean, mx := out[0], out[1], out[2]
	var wk, wq []float64
	if S != nil {
		// Ŝ = S[idx, idx]; a second softmax over probabilities, as the official code does:
		// wk sums the column softmaxes by row, wq the row softmaxes by column.
		e := make([]float64, n*n)
		for a, q := range idx {
			for b, k := range idx {
				e[a*n+b] = math.Exp(float64(S[q*T+k]))
			}
		}
		wk, wq = make([]float64, n), make([]float64, n)
		for b := 0; b < n; b++ {
			var z float64
			for a := 0; a < n; a++ {
				z += e[a*n+b]
			}
			for a := 0; a < n; a++ {
				wk[a] += e[a*n+b] / z
			}
		}
		for a := 0; a < n; a++ {
			var z float64
			for b := 0; b < n; b++ {
				z += e[a*n+b]
			}
			for b := 0; b < n; b++ {
				wq[b] += e[a*n+b] / z
			}
		}
	}
	// Neurons are independent: spans of them go to the cores (each sums its rows in order).
	kernels.Parallel(N, coreSpan(N, n), func(j0, j1 int) {
		for j := j0; j < j1; j++ {
			mx[j] = math.Inf(-1)
		}
		for a, t := range idx {
			row := act[t*N+j0 : t*N+j1]
			p, m, x := prob[j0:j1], mean[j0:j1], mx[j0:j1]
			for j, v := range row {
				var fired uint64 // branch-free: firing is a coin toss the predictor loses
				if v > 0 {
					fired = 1
				}
				p[j] += float64(fired)
				m[j] += float64(v)
				x[j] = max(x[j], float64(v))
			}
			if S != nil {
				o3, o4 := out[3][j0:j1], out[4][j0:j1]
				for j, v := range row {
					o3[j] += wk[a] * float64(v)
					o4[j] += wq[a] * float64(v)
				}
			}
		}
		for j := j0; j < j1; j++ {
			prob[j] /= float64(n)
			mean[j] /= float64(n)
		}
	})
	for i := range out {
		minMax(out[i])
	}
	return out
}

// BenchmarkISMSample: one layer's MINER scores of one modality at T = 1500 positions and
// Qwen2-0.5B's 4864 neurons, with attention: the direct loops it replaced beside ismSample.
func BenchmarkISMSample(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 1))
	const T, N = 1500, 4864
	act := make([]float32, T*N)
	for i := range act {
		act[i] = float32(rng.NormFloat64())
	}
	S := make([]float32, T*T)
	for i := range S {
		S[i] = float32(rng.Float64() / T)
	}
	idx := make([]int, T)
	for i := range idx {
		idx[i] = i
	}
	b.Run("loop", func(b *testing.B) {
		for b.Loop() {
			ismSampleLoop(act, N, S, T, idx)
		}
	})
	b.Run("now", func(b *testing.B) {
		for b.Loop() {
			ismSample(act, N, S, T, idx)
		}
	})
}
