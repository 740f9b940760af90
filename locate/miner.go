package locate

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"sort"

	"github.com/neurosurg/neurosurg/formats/neuronset"
	"github.com/neurosurg/neurosurg/model/kernels"
)

// MINER's modality split of token positions (algorithms.md §2.2) and metric order (§2.3).
var (
	Modalities = []string{"text", "special", "special_text", "image", "video", "audio", "prompt"}
	Metrics    = []string{"prob", "mean", "max", "attn_k", "attn_q"}
)

// Token types of one position.
const (
	TokText = iota
	TokSpecial
	TokImage
	TokVideo
	TokAudio
)

// modalityMasks returns, for each of the 7 modalities, the positions it holds.
func modalityMasks(types []int) [7][]int {
	var m [7][]int
	for p, t := range types {
		switch t {
		case TokText:
			m[0] = append(m[0], p)
			m[2] = append(m[2], p)
		case TokSpecial:
			m[1] = append(m[1], p)
			m[2] = append(m[2], p)
		case TokImage:
			m[3] = append(m[3], p)
		case TokVideo:
			m[4] = append(m[4], p)
		case TokAudio:
			m[5] = append(m[5], p)
		}
		m[6] = append(m[6], p)
	}
	return m
}

// ismSample computes the five min-max-normalised metric vectors of one layer for the positions
// idx: X = act[idx, :] (rows of n neurons), S = mean-over-heads non-causal attention (T×T).
// out[metric][j]. S may be nil (the attention metrics are then 0).
func ismSample(act []float32, N int, S []float32, T int, idx []int) [5][]float64 {
	var E []float64
	if S != nil {
		E = expTable(S, T, nil)
	}
	return ismSampleExp(act, N, E, T, idx, nil)
}

// expTable is exp(S) element-wise in float64: the second softmax's numerators, computed once per
// layer for every modality (each reads its submatrix). Rows go to the cores.
func expTable(S []float32, T int, buf []float64) []float64 {
	if cap(buf) < T*T {
		buf = make([]float64, T*T)
	}
	E := buf[:T*T]
	kernels.Parallel(T, coreSpan(T, T), func(r0, r1 int) {
		for i, v := range S[r0*T : r1*T] {
			E[r0*T+i] = math.Exp(float64(v))
		}
	})
	return E
}

// ismSampleExp is ismSample with exp(S) given (expTable; nil: no attention metrics). When raw
// is not nil (three slices of N) it also gives the raw sums over the positions before any
// division or normalisation: the positions with a > 0, Σ a (in the positions' order) and max a.
func ismSampleExp(act []float32, N int, E []float64, T int, idx []int, raw *[3][]float64) [5][]float64 {
	var out [5][]float64
	for i := range out {
		out[i] = make([]float64, N)
	}
	n := len(idx)
	var wk, wq []float64
	if E != nil {
		// Ŝ = S[idx, idx]; a second softmax over probabilities, as the official code does:
		// wk sums the column softmaxes by row, wq the row softmaxes by column. Every sum runs
		// in the order of the direct loops (column sums over rows a ascending, wk[a] over
		// columns b ascending, wq[b] over rows a ascending), on row or column spans of the
		// cores, reading the rows of E in place.
		e := func(a int) []float64 { return E[idx[a]*T : idx[a]*T+T] }
		zc, zr := make([]float64, n), make([]float64, n)
		wk, wq = make([]float64, n), make([]float64, n)
		span := coreSpan(n, n)
		kernels.Parallel(n, span, func(b0, b1 int) {
			for a := 0; a < n; a++ {
				row := e(a)
				for b := b0; b < b1; b++ {
					zc[b] += row[idx[b]]
				}
			}
		})
		kernels.Parallel(n, span, func(a0, a1 int) {
			for a := a0; a < a1; a++ {
				row := e(a)
				var z, w float64
				for b, k := range idx {
					v := row[k]
					z += v
					w += v / zc[b]
				}
				zr[a], wk[a] = z, w
			}
		})
		kernels.Parallel(n, span, func(b0, b1 int) {
			for a := 0; a < n; a++ {
				row, z := e(a), zr[a]
				for b := b0; b < b1; b++ {
					wq[b] += row[idx[b]] / z
				}
			}
		})
	}
	// Neurons are independent: spans of them go to the cores (each sums its rows in order),
	// a tile of neurons at a time so that its five accumulators stay in L1 while all rows pass.
	kernels.Parallel(N, coreSpan(N, n), func(s0, s1 int) {
		for j0 := s0; j0 < s1; j0 += ismTile {
			ismTileRows(act, N, idx, wk, wq, &out, j0, min(j0+ismTile, s1), raw)
		}
	})
	for i := range out {
		minMax(out[i])
	}
	return out
}

// ismTile is how many neurons ismTileRows accumulates at once: its accumulators (3 float64, a
// count and an f32 maximum per neuron, 7 KiB) stay in L1 while all rows pass.
const ismTile = 256

// ismTileRows accumulates the five metrics of neurons [j0, j1) (at most ismTile) over the rows
// idx (wk, wq nil: no attention metrics) and divides prob and mean by the row count. The firing
// count is an integer and the maximum is taken in f32: both equal the float64 sums and maxima
// of the direct loop exactly (counts below 2⁵³; float64(max) = max of the float64s).
func ismTileRows(act []float32, N int, idx []int, wk, wq []float64, out *[5][]float64, j0, j1 int, raw *[3][]float64) {
	n := len(idx)
	var fires [ismTile]uint32
	var maxes [ismTile]float32
	w := j1 - j0
	fire, mx := fires[:w], maxes[:w]
	for j := range mx {
		mx[j] = float32(math.Inf(-1))
	}
	m := out[1][j0:j1]
	var o3, o4 []float64
	if wk != nil {
		o3, o4 = out[3][j0:j1], out[4][j0:j1]
	}
	for a, t := range idx {
		row := act[t*N+j0 : t*N+j1]
		row = row[:w]
		fire, mx, m := fire[:w], mx[:w], m[:w]
		var ka, qa float64
		if wk != nil {
			ka, qa = wk[a], wq[a]
		}
		for j, v := range row {
			var fired uint32 // branch-free: firing is a coin toss the predictor loses
			if v > 0 {
				fired = 1
			}
			fire[j] += fired
			// max(mx[j], v) as the builtin defines it (a NaN wins, +0 beats −0), spelled with
			// branches that settle once the maximum has been seen: the builtin's selects
			// cost half the loop.
			if x := mx[j]; v > x {
				mx[j] = v
			} else if v == x {
				mx[j] = math.Float32frombits(math.Float32bits(x) & math.Float32bits(v))
			} else if v != v {
				mx[j] = v
			}
			m[j] += float64(v)
		}
		if wk == nil {
			continue
		}
		o3, o4 := o3[:w], o4[:w]
		for j, v := range row {
			f := float64(v)
			o3[j] += ka * f
			o4[j] += qa * f
		}
	}
	if raw != nil {
		for j := range w {
			raw[0][j0+j], raw[1][j0+j], raw[2][j0+j] = float64(fire[j]), out[1][j0+j], float64(mx[j])
		}
	}
	for j := range w {
		out[0][j0+j] = float64(fire[j]) / float64(n)
		out[1][j0+j] /= float64(n)
		out[2][j0+j] = float64(mx[j])
	}
}

// minMax rescales v to [0,1]; a constant vector becomes 0 (the official code divides by zero).
func minMax(v []float64) {
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, x := range v {
		lo, hi = math.Min(lo, x), math.Max(hi, x)
	}
	for i := range v {
		if hi > lo {
			v[i] = (v[i] - lo) / (hi - lo)
		} else {
			v[i] = 0
		}
	}
}

// ISMStats accumulate MINER's per-sample scores of one dataset.
type ISMStats struct {
	Dataset string
	Sum     []float64 // [metric][modality][layer][neuron]
	Count   []float64 // [modality] samples in which the modality occurred
	// SumExact is Sum exactly (Sum is its rounding): what merging adds.
	SumExact []Fixed
	// Raw are the activations over each modality's positions themselves, not MINER's
	// per-sample normalised scores: what stats export --by-modality prints. Nil when some of
	// the dataset's samples were recorded without them (a version 3 file, or merged with one).
	Raw *ModalityRaw
}

// ModalityRaw accumulate the activations of one dataset's positions per modality (the
// language model's prefill, as MINER's scores): [modality][layer] positions and
// [modality][layer][neuron] the positions with a > 0, Σ a and max a.
type ModalityRaw struct {
	Positions []float64
	Fire      []float64
	Sum       []float64
	Max       []float64
	SumExact  []Fixed // Sum exactly (Sum is its rounding): what merging adds
}

func newModalityRaw(L, N int) *ModalityRaw {
	r := &ModalityRaw{Positions: make([]float64, 7*L), Fire: make([]float64, 7*L*N), Sum: make([]float64, 7*L*N),
		Max: make([]float64, 7*L*N), SumExact: make([]Fixed, 7*L*N)}
	for i := range r.Max {
		r.Max[i] = math.Inf(-1)
	}
	return r
}

// merge adds o into r: counts and maxima exactly, sums through their exact accumulators.
func (r *ModalityRaw) merge(o *ModalityRaw) {
	for i, v := range o.Positions {
		r.Positions[i] += v
	}
	for i, v := range o.Fire {
		r.Fire[i] += v
		r.Max[i] = math.Max(r.Max[i], o.Max[i])
	}
	addExact(r.Sum, r.SumExact, o.Sum, o.SumExact)
}

// Samples is the number of samples recorded for the dataset. Every sample has positions, so
// the "prompt" modality (all of them) occurs in each: its count is the sample count, and no
// modality's count exceeds it.
func (d *ISMStats) Samples() float64 {
	var n float64
	for _, c := range d.Count {
		n = max(n, c)
	}
	return n
}

// MINEROptions are MINER's selection parameters (defaults of ISM_gen_and_apply_mask.py).
type MINEROptions struct {
	// Module is the module whose recorded importance scores are selected from (default "llm":
	// MINER studies the language model, and record scores only its positions' modalities).
	Module   string
	Weights  [5]float64 // over prob, mean, max, attn_k, attn_q (default 0, .25, .25, .5, 0)
	Ratio    float64    // r (default 0.02)
	Strategy string     // adaptive, LA_MU (default), LU_MA, uniform, random
	Split    string     // special_text_separate (default), special_text_as_one, prompt
	Seed     uint64     // random strategy
}

// ISM aggregates the datasets into the Importance Score Matrix [metric][modality][L·N]
// (algorithms.md §2.4): per dataset the sum over samples divided by the dataset's sample count
// (ISM_aggregate.py's ISM /= sample_num: a sample without the modality adds 0 and still
// counts), summed over datasets, each modality divided by the number of datasets in which it
// occurs.
func (s *ModuleStats) ISM() [5][7][]float64 {
	var out [5][7][]float64
	n := s.Layers * s.Neurons
	for i := range out {
		for m := range out[i] {
			out[i][m] = make([]float64, n)
		}
	}
	var occurs [7]int
	for _, d := range s.ISMs {
		samples := d.Samples()
		for m := 0; m < 7; m++ {
			if d.Count[m] == 0 {
				continue
			}
			nonzero := false
			for i := 0; i < 5; i++ {
				base := (i*7 + m) * n
				for k := 0; k < n; k++ {
					v := d.Sum[base+k] / samples
					out[i][m][k] += v
					nonzero = nonzero || v != 0
				}
			}
			if nonzero {
				occurs[m]++
			}
		}
	}
	for m := 0; m < 7; m++ {
		if occurs[m] > 1 {
			for i := 0; i < 5; i++ {
				for k := range out[i][m] {
					out[i][m][k] /= float64(occurs[m])
				}
			}
		}
	}
	return out
}

// MINER selects modality-specific neurons (algorithms.md §2.5).
func MINER(st *Stats, o MINEROptions) (*neuronset.Set, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if o.Module == "" {
		o.Module = "llm"
	}
	s, err := st.module(o.Module)
	if err != nil {
		return nil, err
	}
	if len(s.ISMs) == 0 {
		return nil, fmt.Errorf("%w: no MINER importance scores recorded for module %s", ErrStats, s.Module)
	}
	if o.Weights == ([5]float64{}) {
		o.Weights = [5]float64{0, 0.25, 0.25, 0.5, 0}
	}
	if o.Ratio == 0 {
		o.Ratio = 0.02
	}
	if o.Strategy == "" {
		o.Strategy = "LA_MU"
	}
	if o.Split == "" {
		o.Split = "special_text_separate"
	}
	var split []int
	switch o.Split {
	case "special_text_separate":
		split = []int{0, 1, 3, 4, 5}
	case "special_text_as_one":
		split = []int{2, 3, 4, 5}
	case "prompt":
		split = []int{6}
	default:
		return nil, fmt.Errorf("%w: split %q (special_text_separate, special_text_as_one, prompt)", ErrStats, o.Split)
	}
	ism := s.ISM()
	L, N := s.Layers, s.Neurons
	var names []string
	var W [][]float64
	for _, m := range split {
		w := make([]float64, L*N)
		nonzero := false
		for i := 0; i < 5; i++ {
			for k := range w {
				w[k] += o.Weights[i] * ism[i][m][k]
			}
		}
		for i := 0; i < 5 && !nonzero; i++ {
			for _, v := range ism[i][m] {
				if v != 0 {
					nonzero = true
					break
				}
			}
		}
		if nonzero {
			names = append(names, Modalities[m])
			W = append(W, w)
		}
	}
	M := len(W)
	if M == 0 {
		return nil, fmt.Errorf("%w: no modality of split %s occurs in the stats", ErrStats, o.Split)
	}
	K := int(math.Floor(o.Ratio * float64(L*N)))
	set := &neuronset.Set{Version: neuronset.Version, Method: "miner", Labels: names,
		Params: map[string]any{"weights": o.Weights[:], "ratio": o.Ratio, "strategy": o.Strategy, "split": o.Split, "k": K}}
	add := func(m, k int, score float64) {
		set.Neurons = append(set.Neurons, neuronset.Neuron{Module: s.Module, Layer: k / N, Index: k % N, Label: names[m], Score: score})
	}
	switch o.Strategy {
	case "adaptive":
		C := make([]float64, L*N)
		for _, w := range W {
			for k := range C {
				C[k] += w[k]
			}
		}
		for _, k := range topK(C, K) {
			best := 0
			for m := 1; m < M; m++ {
				if W[m][k] > W[best][k] {
					best = m
				}
			}
			add(best, k, W[best][k])
		}
	case "LA_MU":
		for m := range W {
			for _, k := range topK(W[m], K/M) {
				add(m, k, W[m][k])
			}
		}
	case "LU_MA":
		for l := 0; l < L; l++ {
			stack := make([]float64, 0, M*N)
			for m := range W {
				stack = append(stack, W[m][l*N:(l+1)*N]...)
			}
			for _, e := range topK(stack, K/L) {
				m, j := e/N, e%N
				add(m, l*N+j, W[m][l*N+j])
			}
		}
	case "uniform":
		for l := 0; l < L; l++ {
			for m := range W {
				for _, j := range topK(W[m][l*N:(l+1)*N], K/(M*L)) {
					add(m, l*N+j, W[m][l*N+j])
				}
			}
		}
	case "random":
		rng := rand.New(rand.NewPCG(o.Seed, 2024))
		for i := 0; i < K; i++ {
			k := rng.IntN(L * N)
			set.Neurons = append(set.Neurons, neuronset.Neuron{Module: s.Module, Layer: k / N, Index: k % N, Label: "random"})
		}
	default:
		return nil, fmt.Errorf("%w: strategy %q (adaptive, LA_MU, LU_MA, uniform, random)", ErrStats, o.Strategy)
	}
	return set, nil
}

// topK returns the indices of the k largest values (ties: lower index first).
func topK(v []float64, k int) []int {
	idx := make([]int, len(v))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return v[idx[a]] > v[idx[b]] })
	return idx[:min(k, len(idx))]
}

// coreSpan is the chunk for spreading n independent items (neurons, rows) that each visit w
// elements over the cores: one span per core, or all n on the caller when the work is too
// small to hand off.
func coreSpan(n, w int) int {
	if n*w < 1<<14 {
		return n
	}
	return (n + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0)
}
