package model

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/neurosurg/neurosurg/model/kernels"
)

// The GEMM form of prefill attention equals the per-row loop: GQA groups, a cached prefix
// (pos0 > 0), more rows than one score block, and a sliding window.
func TestAttentionGEMMMatchesLoop(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	type shape struct {
		heads, kv, hd, pos0, n, window int
		bidir                          bool // an encoder's span: no mask (pos0 0, no window)
	}
	cases := []shape{
		{4, 4, 8, 0, 16, 0, false},
		{14, 2, 64, 0, 300, 0, false},
		{6, 2, 16, 37, 129, 0, false},
		{4, 1, 32, 5, 200, 50, false},
		{4, 4, 8, 0, 16, 0, true},
		{16, 16, 80, 0, 300, 0, true},
		{6, 2, 16, 0, 129, 0, true},
		{20, 20, 64, 0, 150, 0, true},
	}
	for _, variant := range kernels.Variants() {
		prev := kernels.Use(variant)
		// Keys and values of F32 (and F16) layers stay f32 under every variant. Under a variant
		// that rounds activations to bf16, BF16 layers round q, k, the probabilities and v (8
		// bits): the loop stays f32, so there only a mask or GQA mistake (order 1) fails.
		kvs := []kernels.DType{kernels.F32}
		if kernels.BF16Activations() {
			kvs = append(kvs, kernels.BF16)
		}
		for _, c := range cases {
			for _, kv := range kvs {
				tol := 1e-5
				if kv == kernels.BF16 {
					tol = 3e-2
				}
				t.Run(fmt.Sprintf("%s/%s/%+v", variant, kv, c), func(t *testing.T) {
					m := &Attention{heads: c.heads, kvHeads: c.kv, hd: c.hd, window: c.window}
					T := c.pos0 + c.n
					q := randn(rng, c.n*c.heads*c.hd)
					keys := randn(rng, T*c.kv*c.hd)
					vals := randn(rng, T*c.kv*c.hd)
					want := make([]float32, c.n*c.heads*c.hd)
					got := make([]float32, len(want))
					m.attentionRows(new(scratch), want, q, keys, vals, c.pos0, c.n, c.bidir)
					m.attentionBlocks(new(scratch), got, q, keys, vals, c.pos0, c.n, kv, !c.bidir)
					for i := range want {
						if d := math.Abs(float64(got[i] - want[i])); d > tol {
							t.Fatalf("out[%d] = %g, want %g", i, got[i], want[i])
						}
					}
				})
			}
		}
		kernels.Use(prev)
	}
}

// Attention rounds keys and values to bf16 only for BF16 layers under a variant that rounds
// activations where they meet BF16 weights; F32 and F16 layers stay f32 under every variant.
func TestAttentionKVDTypeFollowsWeights(t *testing.T) {
	for _, variant := range kernels.Variants() {
		prev := kernels.Use(variant)
		for _, dt := range []kernels.DType{kernels.F32, kernels.F16, kernels.BF16} {
			ly := &Attention{k: Linear{w: weight{dt: dt}}, v: Linear{w: weight{dt: dt}}}
			want := kernels.F32
			if dt == kernels.BF16 && kernels.BF16Activations() {
				want = kernels.BF16
			}
			if got := ly.kvDType(); got != want {
				t.Errorf("%s, %s weights: attention in %s, want %s", variant, dt, got, want)
			}
		}
		kernels.Use(prev)
	}
}

// The per-row attention (decode's, and prefill's under 16 rows) equals a float64 reading of
// the definition, on one goroutine and spread over the cores by (row, head): GQA, a cached
// prefix long enough to go parallel, rows that straddle chunks, and a sliding window.
func TestAttentionMatchesDefinition(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 9))
	type shape struct{ heads, kv, hd, pos0, n, window int }
	for _, c := range []shape{{4, 2, 8, 3, 1, 0}, {14, 2, 64, 200, 1, 0}, {14, 2, 16, 90, 3, 0}, {6, 3, 8, 300, 5, 64}} {
		m := &Attention{heads: c.heads, kvHeads: c.kv, hd: c.hd, window: c.window}
		T := c.pos0 + c.n
		q, keys, vals := randn(rng, c.n*c.heads*c.hd), randn(rng, T*c.kv*c.hd), randn(rng, T*c.kv*c.hd)
		got := make([]float32, c.n*c.heads*c.hd)
		m.attention(new(scratch), got, q, keys, vals, c.pos0, c.n)
		kvDim, group := c.kv*c.hd, c.heads/c.kv
		for r := 0; r < c.n; r++ {
			p := c.pos0 + r
			for h := 0; h < c.heads; h++ {
				kvh := h / group
				var w []float64
				var sum float64
				first := 0
				if c.window > 0 {
					first = max(0, p-c.window+1)
				}
				for k := first; k <= p; k++ {
					var dot float64
					for i := 0; i < c.hd; i++ {
						dot += float64(q[(r*c.heads+h)*c.hd+i]) * float64(keys[k*kvDim+kvh*c.hd+i])
					}
					w = append(w, math.Exp(dot/math.Sqrt(float64(c.hd))))
					sum += w[len(w)-1]
				}
				for i := 0; i < c.hd; i++ {
					var want float64
					for j, k := 0, first; k <= p; j, k = j+1, k+1 {
						want += w[j] / sum * float64(vals[k*kvDim+kvh*c.hd+i])
					}
					if g := got[(r*c.heads+h)*c.hd+i]; math.Abs(float64(g)-want) > 1e-4 {
						t.Fatalf("%+v: row %d head %d [%d] = %g, want %g", c, r, h, i, g, want)
					}
				}
			}
		}
	}
}

func randn(rng *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(rng.NormFloat64())
	}
	return v
}

func TestFFNChunks(t *testing.T) {
	for _, c := range []struct {
		off  []int
		want string
	}{
		{[]int{0, 128, 256, 384, 512, 640, 768, 896, 1024}, "[[0 4] [4 8]]"},
		{[]int{0, 512}, "[[0 1]]"},
		{[]int{0, 2048}, "[[0 1]]"},
		{[]int{0, 10, 700, 710}, "[[0 1] [1 2] [2 3]]"},
		{[]int{0, 1, 2, 3}, "[[0 3]]"},
	} {
		if got := fmt.Sprint(ffnChunks(nil, c.off, 512)); got != c.want {
			t.Errorf("ffnChunks(%v) = %s, want %s", c.off, got, c.want)
		}
	}
}

// forwardBidirectional equals a float64 reading of the definition, span by span: softmax over
// the span's keys of rotated q·k/√d, times v. The projections select parts of x (0/1 weights,
// exact in f32 and bf16) and o is the identity, so out is the attention itself and the
// tolerance is attention's: 1e-5 for f32 keys and values (the GEMM form from 16 rows, the
// loop below), bf16's 8 bits where a variant rounds BF16 layers' keys and values. Spans longer
// than one score block, shorter than the GEMM threshold, GQA, and with and without a table.
func TestBidirectionalMatchesDefinition(t *testing.T) {
	type shape struct {
		heads, kv, hd int
		spans         [][2]int
		rotary        bool
	}
	cases := []shape{
		{4, 4, 16, [][2]int{{0, 300}}, false},
		{6, 2, 16, [][2]int{{0, 40}, {40, 45}, {45, 190}}, true},
		{2, 2, 80, [][2]int{{0, 16}, {16, 31}, {31, 160}}, true},
		{3, 1, 8, [][2]int{{0, 7}}, false},
	}
	for _, variant := range kernels.Variants() {
		prev := kernels.Use(variant)
		dts := []kernels.DType{kernels.F32}
		if kernels.BF16Activations() {
			dts = append(dts, kernels.BF16)
		}
		for ci, c := range cases {
			for _, dt := range dts {
				t.Run(fmt.Sprintf("%s/%s/%d", variant, dt, ci), func(t *testing.T) {
					rng := rand.New(rand.NewPCG(21, uint64(ci)))
					qDim, kvDim := c.heads*c.hd, c.kv*c.hd
					d := qDim + 2*kvDim
					rows := c.spans[len(c.spans)-1][1]
					sel := func(name string, from, n int) Linear {
						w := make([]float32, n*d)
						for i := range n {
							w[i*d+from+i] = 1
						}
						wt := f32weight(name, w, n, d)
						if dt == kernels.BF16 {
							b := make([]byte, 2*len(w))
							bf16bytes(b, w)
							wt = weight{name: name, b: b, dt: kernels.BF16, rows: n, cols: d}
						}
						return Linear{w: wt}
					}
					a := &Attention{q: sel("q", 0, qDim), k: sel("k", qDim, kvDim), v: sel("v", qDim+kvDim, kvDim),
						o: Linear{w: f32weight("o", eye(qDim), qDim, qDim)}, heads: c.heads, kvHeads: c.kv, hd: c.hd}
					x := randn(rng, rows*d)
					var cos, sin []float32
					if c.rotary {
						half := c.hd / 2
						cos, sin = make([]float32, rows*half), make([]float32, rows*half)
						for i := range cos {
							th := rng.Float64() * 2 * math.Pi
							cos[i], sin[i] = float32(math.Cos(th)), float32(math.Sin(th))
						}
					}
					got := make([]float32, rows*qDim)
					a.forwardBidirectional(new(scratch), got, x, rows, c.spans, cos, sin)

					rot := func(v []float64, r int) []float64 {
						if cos == nil {
							return v
						}
						half := c.hd / 2
						out := make([]float64, len(v))
						for h := 0; h < len(v)/c.hd; h++ {
							for i := range half {
								cs, sn := float64(cos[r*half+i]), float64(sin[r*half+i])
								x0, x1 := v[h*c.hd+i], v[h*c.hd+i+half]
								out[h*c.hd+i] = x0*cs - x1*sn
								out[h*c.hd+i+half] = x1*cs + x0*sn
							}
						}
						return out
					}
					q, k := make([][]float64, rows), make([][]float64, rows)
					for r := range rows {
						q[r] = rot(f64s(x[r*d:r*d+qDim]), r)
						k[r] = rot(f64s(x[r*d+qDim:r*d+qDim+kvDim]), r)
					}
					tol := 1e-5
					if dt == kernels.BF16 {
						tol = 3e-2
					}
					for _, sp := range c.spans {
						for r := sp[0]; r < sp[1]; r++ {
							for h := range c.heads {
								kh := h / (c.heads / c.kv)
								w := make([]float64, sp[1]-sp[0])
								mx, sum := math.Inf(-1), 0.0
								for j := range w {
									for i := range c.hd {
										w[j] += q[r][h*c.hd+i] * k[sp[0]+j][kh*c.hd+i]
									}
									w[j] /= math.Sqrt(float64(c.hd))
									mx = math.Max(mx, w[j])
								}
								for j := range w {
									w[j] = math.Exp(w[j] - mx)
									sum += w[j]
								}
								for i := range c.hd {
									want := 0.0
									for j, p := range w {
										want += p / sum * float64(x[(sp[0]+j)*d+qDim+kvDim+kh*c.hd+i])
									}
									if g := float64(got[r*qDim+h*c.hd+i]); math.Abs(g-want) > tol*(1+math.Abs(want)) {
										t.Fatalf("span %v row %d head %d [%d] = %g, want %g", sp, r, h, i, g, want)
									}
								}
							}
						}
					}
				})
			}
		}
		kernels.Use(prev)
	}
}

// eye is the n×n identity.
func eye(n int) []float32 {
	w := make([]float32, n*n)
	for i := range n {
		w[i*n+i] = 1
	}
	return w
}
