package model

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/neurosurg/neurosurg/model/kernels"
)

// BenchmarkBidirectional: an encoder's attention over one span at the vision towers' and
// Whisper's shapes (1024 rows × 1280 wide, 16 heads of 80; 1500 rows × 1280, 20 heads of 64).
// loop is the per-row form (what forwardBidirectional ran before it had a GEMM path), gemm/f32
// and gemm/bf16 the GEMM form with f32 or bf16-rounded keys and values (bf16 only under a
// variant that rounds), layer the whole forwardBidirectional with BF16 weights (projections
// included) under the active variant.
func BenchmarkBidirectional(b *testing.B) {
	for _, c := range []struct{ rows, width, heads int }{{1024, 1280, 16}, {1500, 1280, 20}} {
		hd := c.width / c.heads
		rng := rand.New(rand.NewPCG(1, 2))
		q, k, v := randn(rng, c.rows*c.width), randn(rng, c.rows*c.width), randn(rng, c.rows*c.width)
		for i := range q {
			q[i] *= 0.3 // scores of a trained model's magnitude, not a one-hot softmax
		}
		a := &Attention{heads: c.heads, kvHeads: c.heads, hd: hd}
		out := make([]float32, c.rows*c.width)
		name := fmt.Sprintf("%dx%dh%d", c.rows, c.width, c.heads)
		report := func(b *testing.B) {
			b.ReportMetric(float64(c.rows)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
		}
		b.Run(name+"/loop", func(b *testing.B) {
			sc := new(scratch)
			for b.Loop() {
				a.attentionRows(sc, out, q, k, v, 0, c.rows, true)
			}
			report(b)
		})
		kvs := []kernels.DType{kernels.F32}
		if kernels.BF16Activations() {
			kvs = append(kvs, kernels.BF16)
		}
		for _, kv := range kvs {
			b.Run(fmt.Sprintf("%s/gemm/%s", name, kv), func(b *testing.B) {
				sc := new(scratch)
				for b.Loop() {
					a.attentionBlocks(sc, out, q, k, v, 0, c.rows, kv, false)
				}
				report(b)
			})
		}
		b.Run(name+"/layer", func(b *testing.B) {
			w := func(name string) Linear {
				vals := randn(rng, c.width*c.width)
				for i := range vals {
					vals[i] *= 0.03
				}
				buf := make([]byte, 2*len(vals))
				bf16bytes(buf, vals)
				return Linear{w: weight{name: name, b: buf, dt: kernels.BF16, rows: c.width, cols: c.width}, b: make([]float32, c.width)}
			}
			l := &Attention{q: w("q"), k: w("k"), v: w("v"), o: w("o"), heads: c.heads, kvHeads: c.heads, hd: hd}
			x := randn(rng, c.rows*c.width)
			sc := new(scratch)
			spans := [][2]int{{0, c.rows}}
			for b.Loop() {
				sc.reuseFrom(0)
				l.forwardBidirectional(sc, out, x, c.rows, spans, nil, nil)
			}
			report(b)
		})
	}
}
