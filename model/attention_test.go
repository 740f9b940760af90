package model

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// The GEMM form of prefill attention equals the per-row loop: GQA groups, a cached prefix
// (pos0 > 0), more rows than one score block, and a sliding window.
func TestAttentionGEMMMatchesLoop(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	cases := []struct{ heads, kv, hd, pos0, n, window int }{
		{4, 4, 8, 0, 16, 0},
		{14, 2, 64, 0, 300, 0},
		{6, 2, 16, 37, 129, 0},
		{4, 1, 32, 5, 200, 50},
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("%+v", c), func(t *testing.T) {
			m := &Model{cfg: Config{Heads: c.heads, KVHeads: c.kv, HeadDim: c.hd, SlidingWindow: c.window}}
			T := c.pos0 + c.n
			q := randn(rng, c.n*c.heads*c.hd)
			keys := randn(rng, T*c.kv*c.hd)
			vals := randn(rng, T*c.kv*c.hd)
			want := make([]float32, c.n*c.heads*c.hd)
			got := make([]float32, len(want))
			m.attention(want, q, keys, vals, c.pos0, c.n)
			m.attentionGEMM(got, q, keys, vals, c.pos0, c.n)
			for i := range want {
				if d := math.Abs(float64(got[i] - want[i])); d > 1e-5 {
					t.Fatalf("out[%d] = %g, want %g", i, got[i], want[i])
				}
			}
		})
	}
}

func randn(rng *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(rng.NormFloat64())
	}
	return v
}
