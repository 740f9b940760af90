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
	type shape struct{ heads, kv, hd, pos0, n, window int }
	cases := []shape{
		{4, 4, 8, 0, 16, 0},
		{14, 2, 64, 0, 300, 0},
		{6, 2, 16, 37, 129, 0},
		{4, 1, 32, 5, 200, 50},
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
					m.attention(new(scratch), want, q, keys, vals, c.pos0, c.n)
					m.attentionGEMM(new(scratch), got, q, keys, vals, c.pos0, c.n, kv)
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
