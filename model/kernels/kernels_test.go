package kernels_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/neurosurg/neurosurg/dtype"
	"github.com/neurosurg/neurosurg/formats/safetensors"
	"github.com/neurosurg/neurosurg/model/kernels"
	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/gonum"
)

func encode(v []float32, dt kernels.DType) []byte {
	sd := map[kernels.DType]safetensors.DType{kernels.F32: safetensors.F32, kernels.BF16: safetensors.BF16, kernels.F16: safetensors.F16}[dt]
	b := make([]byte, len(v)*dt.Size())
	dtype.FromFloat32(b, v, sd)
	return b
}

// TestMatMulAgainstReference checks MatMul against a float64 loop over the decoded weights,
// for odd shapes, every dtype, with guard values around the output.
func TestMatMulAgainstReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	for _, dt := range []kernels.DType{kernels.F32, kernels.BF16, kernels.F16} {
		for _, s := range [][3]int{{1, 1, 1}, {1, 3, 17}, {3, 17, 1}, {2, 33, 100}, {17, 64, 64}, {5, 1000, 3}, {64, 40, 257}, {13, 33, 1025}, {25, 64, 600}, {12, 32, 513}, {24, 96, 256}, {1, 7, 1000}, {1, 300, 1025}, {1, 9, 64}, {8, 70, 896}, {16, 33, 99}, {1, 300, 64}, {1, 257, 2048}, {45, 33, 1025}, {64, 64, 600}, {70, 100, 515}, {33, 32, 33}} {
			m, n, k := s[0], s[1], s[2]
			t.Run(fmt.Sprintf("%s/m=%d,n=%d,k=%d", dt, m, n, k), func(t *testing.T) {
				x := make([]float32, m*k)
				for i := range x {
					x[i] = rng.Float32()*2 - 1
				}
				wv := make([]float32, n*k)
				for i := range wv {
					wv[i] = rng.Float32()*2 - 1
				}
				w := encode(wv, dt)
				dec := make([]float32, n*k)
				kernels.ToFloat32(dec, w, dt)
				const guard = 12345
				out := make([]float32, m*n+2)
				out[0], out[m*n+1] = guard, guard
				kernels.MatMul(out[1:m*n+1], x, w, dt, m, n, k)
				if out[0] != guard || out[m*n+1] != guard {
					t.Fatal("MatMul wrote outside its output")
				}
				// A variant that rounds activations to bf16 must equal the reference on the
				// rounded activations: the rounding is the only approximation.
				xr := x
				if dt == kernels.BF16 && kernels.BF16Activations() {
					xr = make([]float32, len(x))
					kernels.ToFloat32(xr, encode(x, kernels.BF16), kernels.BF16)
				}
				for i := 0; i < m; i++ {
					for j := 0; j < n; j++ {
						var ref, mag float64
						for p := 0; p < k; p++ {
							ref += float64(xr[i*k+p]) * float64(dec[j*k+p])
							mag += math.Abs(float64(xr[i*k+p]) * float64(dec[j*k+p]))
						}
						if d := math.Abs(float64(out[1+i*n+j]) - ref); d > 1e-6*mag+1e-7 {
							t.Fatalf("out[%d,%d] = %g, want %g", i, j, out[1+i*n+j], ref)
						}
					}
				}
			})
		}
	}
}

func TestConversionsEdgeValues(t *testing.T) {
	vals := []float32{0, float32(math.Copysign(0, -1)), 1, -1, 65504, 6.1035156e-05, 5.9604645e-08, float32(math.Inf(1)), float32(math.Inf(-1))}
	for _, dt := range []kernels.DType{kernels.BF16, kernels.F16} {
		got := make([]float32, len(vals))
		kernels.ToFloat32(got, encode(vals, dt), dt)
		for i, v := range vals {
			if dt == kernels.BF16 && (v == 65504 || v == 6.1035156e-05 || v == 5.9604645e-08) {
				continue // not exactly representable in bf16
			}
			if got[i] != v || math.Signbit(float64(got[i])) != math.Signbit(float64(v)) {
				t.Errorf("%s: %g -> %g", dt, v, got[i])
			}
		}
	}
	nan := make([]float32, 1)
	kernels.ToFloat32(nan, []byte{0x01, 0x7e}, kernels.F16)
	if !math.IsNaN(float64(nan[0])) {
		t.Errorf("f16 NaN decoded as %g", nan[0])
	}
}

var sink float32

// BenchmarkMatMul reports GFLOP/s at real model shapes; GB/s of weights for m=1 (decode).
// gonum's Sgemm on f32 runs beside it for the ratio.
func BenchmarkMatMul(b *testing.B) {
	shapes := [][3]int{{1, 896, 4864}, {1, 896, 151936}, {64, 896, 4864}, {512, 896, 4864}, {512, 4864, 896}, {1024, 896, 4864}}
	for _, s := range shapes {
		m, k, n := s[0], s[1], s[2]
		x := make([]float32, m*k)
		for i := range x {
			x[i] = float32(i%7) * 0.1
		}
		out := make([]float32, m*n)
		for _, dt := range []kernels.DType{kernels.F32, kernels.BF16} {
			w := make([]byte, n*k*dt.Size())
			for _, v := range kernels.Variants() {
				b.Run(fmt.Sprintf("%s/m=%d,k=%d,n=%d/%s", dt, m, k, n, v), func(b *testing.B) {
					prev := kernels.Use(v)
					defer kernels.Use(prev)
					b.SetBytes(int64(len(w)))
					for b.Loop() {
						kernels.MatMul(out, x, w, dt, m, n, k)
					}
					b.ReportMetric(2*float64(m*n*k)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
				})
			}
		}
		wf := make([]float32, n*k)
		b.Run(fmt.Sprintf("f32/m=%d,k=%d,n=%d/gonum", m, k, n), func(b *testing.B) {
			impl := gonum.Implementation{}
			b.SetBytes(int64(4 * len(wf)))
			for b.Loop() {
				impl.Sgemm(blas.NoTrans, blas.Trans, m, n, k, 1, x, k, wf, k, 0, out, n)
			}
			b.ReportMetric(2*float64(m*n*k)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
	}
	sink = out0(shapes)
}

func out0([][3]int) float32 { return 0 }

// Every variant the CPU has must pass the reference test.
func TestMatMulEveryVariant(t *testing.T) {
	for _, v := range kernels.Variants() {
		t.Run(v, func(t *testing.T) {
			prev := kernels.Use(v)
			defer kernels.Use(prev)
			TestMatMulAgainstReference(t)
		})
	}
}

// Exp and Scale on every variant against float64 math, over x ≤ 0 down past e^x's underflow.
func TestExpScaleEveryVariant(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	for _, v := range kernels.Variants() {
		prev := kernels.Use(v)
		for _, n := range []int{1, 15, 16, 17, 1000} {
			x := make([]float32, n)
			for i := range x {
				x[i] = -float32(rng.ExpFloat64() * 10)
			}
			if n == 1000 {
				copy(x, []float32{0, float32(math.Copysign(0, -1)), -1e-30, -87, -88.5, -103, -104, -200, -1e6})
			}
			got := append([]float32(nil), x...)
			kernels.Exp(got)
			for i, xv := range x {
				want := math.Exp(float64(xv))
				if d := math.Abs(float64(got[i]) - want); d > 3e-7*want+1e-37 {
					t.Errorf("%s n=%d: Exp(%g) = %g, want %g", v, n, xv, got[i], want)
				}
			}
			kernels.Scale(got, 3)
			for i, xv := range x {
				want := 3 * math.Exp(float64(xv))
				if d := math.Abs(float64(got[i]) - want); d > 1e-6*want+1e-36 {
					t.Errorf("%s n=%d: 3·Exp(%g) = %g, want %g", v, n, xv, got[i], want)
				}
			}
		}
		kernels.Use(prev)
	}
}

// SiLU on every variant against float64 math, over the range a model produces and past the
// points where e^(−x) overflows or underflows f32.
func TestSiLUEveryVariant(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 5))
	for _, v := range kernels.Variants() {
		prev := kernels.Use(v)
		for _, n := range []int{1, 15, 16, 17, 1000} {
			x := make([]float32, n)
			for i := range x {
				x[i] = float32(rng.NormFloat64() * 4)
			}
			if n == 1000 {
				copy(x, []float32{0, float32(math.Copysign(0, -1)), 1e-30, -1e-30, 20, -20, 87, -87, 88.5, -88.5, 89, -89, 100, -100, 1e6, -1e6})
			}
			got := append([]float32(nil), x...)
			kernels.SiLU(got)
			for i, xv := range x {
				want := float64(xv) / (1 + math.Exp(-float64(xv)))
				if d := math.Abs(float64(got[i]) - want); d > 1e-6*math.Abs(want)+1e-35 { // below 1e-35 both flush toward 0
					t.Errorf("%s n=%d: SiLU(%g) = %g, want %g", v, n, xv, got[i], want)
				}
			}
		}
		kernels.Use(prev)
	}
}

// GELU (erf) on every variant against float64 math: within 5e-6 relative (plus 1e-25 absolute:
// the float64 GELU underflows to 0 below −11), the sign (firing) the definition's, over a fine
// grid of [−30, 30], the lane body's edges and the extremes; NaN stays NaN.
func TestGELUEveryVariant(t *testing.T) {
	var grid []float32
	for v := -30.0; v <= 30; v += 0.00731 {
		grid = append(grid, float32(v))
	}
	grid = append(grid, 0, float32(math.Copysign(0, -1)), 1e-30, -1e-30, 88, -88, 1e4, -1e4, float32(math.Inf(1)), float32(math.Inf(-1)))
	for _, v := range kernels.Variants() {
		prev := kernels.Use(v)
		for _, n := range []int{1, 15, 16, 17, len(grid)} {
			x := grid[len(grid)-n:]
			got := append([]float32(nil), x...)
			kernels.GELU(got)
			for i, xv := range x {
				want := 0.5 * float64(xv) * math.Erfc(-float64(xv)/math.Sqrt2)
				if math.IsInf(float64(xv), -1) {
					want = 0 // −∞·0 in the definition; ±0 and NaN both say "does not fire"
					if got[i] > 0 {
						t.Errorf("%s: GELU(−Inf) = %g, want ≤ 0 or NaN", v, got[i])
					}
					continue
				}
				if d := math.Abs(float64(got[i]) - want); float64(got[i]) != want && !(d <= 5e-6*math.Abs(want)+1e-25) {
					t.Fatalf("%s n=%d: GELU(%g) = %g, want %g", v, n, xv, got[i], want)
				}
				if (got[i] > 0) != (want > 0) {
					t.Fatalf("%s n=%d: GELU(%g) = %g fires differently from %g", v, n, xv, got[i], want)
				}
			}
		}
		nan := make([]float32, 17)
		for i := range nan {
			nan[i] = float32(math.NaN())
		}
		kernels.GELU(nan)
		for i, g := range nan {
			if !math.IsNaN(float64(g)) {
				t.Errorf("%s: GELU(NaN)[%d] = %g", v, i, g)
			}
		}
		kernels.Use(prev)
	}
}

// Softmax on every variant against float64 math: lengths around the 16-lane body, large
// spreads (underflowing terms) and a constant row.
func TestSoftmaxEveryVariant(t *testing.T) {
	rng := rand.New(rand.NewPCG(6, 6))
	for _, v := range kernels.Variants() {
		prev := kernels.Use(v)
		for _, n := range []int{1, 15, 16, 17, 33, 1000} {
			for _, spread := range []float64{0, 1, 30, 200} {
				x := make([]float32, n)
				for i := range x {
					x[i] = float32(rng.NormFloat64() * spread)
				}
				got := append([]float32(nil), x...)
				kernels.Softmax(got)
				mx := math.Inf(-1)
				for _, xv := range x {
					mx = math.Max(mx, float64(xv))
				}
				var sum float64
				for _, xv := range x {
					sum += math.Exp(float64(xv) - mx)
				}
				for i, xv := range x {
					want := math.Exp(float64(xv)-mx) / sum
					// x−max is rounded to f32 first: e^t's relative error grows with |t|.
					if d := math.Abs(float64(got[i]) - want); d > (1e-6+1.2e-7*(mx-float64(xv)))*want+1e-30 {
						t.Fatalf("%s n=%d spread=%g: p[%d] = %g, want %g", v, n, spread, i, got[i], want)
					}
				}
			}
		}
		kernels.Use(prev)
	}
}

// RMSNorm and Mul on every variant against float64, lengths around every lane count, and
// the largest element found wherever it sits (Softmax's max: its rows are shifted by it).
func TestRMSNormMulMaxEveryVariant(t *testing.T) {
	rng := rand.New(rand.NewPCG(10, 10))
	for _, v := range kernels.Variants() {
		prev := kernels.Use(v)
		for _, n := range []int{1, 7, 8, 9, 15, 16, 17, 31, 33, 896, 1000} {
			x, w, y := make([]float32, n), make([]float32, n), make([]float32, n)
			var ss float64
			for i := range x {
				x[i], w[i], y[i] = float32(rng.NormFloat64()*3), float32(1+rng.NormFloat64()*0.1), float32(rng.NormFloat64())
				ss += float64(x[i]) * float64(x[i])
			}
			out := make([]float32, n)
			kernels.RMSNorm(out, x, w, 1e-6)
			inv := 1 / math.Sqrt(ss/float64(n)+1e-6)
			for i := range x {
				want := float64(x[i]) * inv * float64(w[i])
				if d := math.Abs(float64(out[i]) - want); d > 1e-6*math.Abs(want)+1e-7 {
					t.Fatalf("%s n=%d: RMSNorm[%d] = %g, want %g", v, n, i, out[i], want)
				}
			}
			got := append([]float32(nil), x...)
			kernels.Mul(got, y)
			for i := range x {
				if want := x[i] * y[i]; got[i] != want {
					t.Fatalf("%s n=%d: Mul[%d] = %g, want %g", v, n, i, got[i], want)
				}
			}
			for _, at := range []int{0, n / 2, n - 1} { // softmax of a row with one large entry
				z := make([]float32, n)
				z[at] = 100
				kernels.Softmax(z)
				if z[at] != 1 {
					t.Fatalf("%s n=%d: softmax with the maximum at %d gives it %g, want 1", v, n, at, z[at])
				}
			}
		}
		kernels.Use(prev)
	}
}

// Dot and Axpy on every variant against float64, lengths around every lane count.
func TestDotAxpyEveryVariant(t *testing.T) {
	rng := rand.New(rand.NewPCG(8, 8))
	for _, v := range kernels.Variants() {
		prev := kernels.Use(v)
		for _, n := range []int{1, 7, 8, 9, 15, 16, 17, 64, 1000} {
			a, b := make([]float32, n), make([]float32, n+1)
			var want float64
			for i := range a {
				a[i], b[i] = rng.Float32()-.5, rng.Float32()-.5
				want += float64(a[i]) * float64(b[i])
			}
			if got := kernels.Dot(a, b[:n]); math.Abs(float64(got)-want) > 1e-5 {
				t.Errorf("%s: Dot n=%d = %g, want %g", v, n, got, want)
			}
			b[n] = 777
			y := append([]float32(nil), b...)
			kernels.Axpy(0.25, a, y[:n])
			for i := 0; i < n; i++ {
				if d := float64(y[i]) - (float64(b[i]) + 0.25*float64(a[i])); math.Abs(d) > 1e-6 {
					t.Fatalf("%s: Axpy n=%d at %d: %g", v, n, i, y[i])
				}
			}
			if y[n] != 777 {
				t.Fatalf("%s: Axpy n=%d wrote past its slice", v, n)
			}
		}
		kernels.Use(prev)
	}
}

// MatMulShared gives bit for bit what separate MatMuls give, on every variant, for weights of
// several widths (narrow panels included) and for mixed dtypes (which fall back).
func TestMatMulSharedEqualsSeparate(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 9))
	randw := func(n, k int, dt kernels.DType) []byte {
		v := make([]float32, n*k)
		for i := range v {
			v[i] = rng.Float32() - .5
		}
		return encode(v, dt)
	}
	for _, v := range kernels.Variants() {
		prev := kernels.Use(v)
		for _, c := range []struct {
			m, k int
			ns   []int
			dts  []kernels.DType
		}{
			{40, 96, []int{64, 16, 33}, []kernels.DType{kernels.BF16, kernels.BF16, kernels.BF16}},
			{25, 301, []int{70, 70}, []kernels.DType{kernels.F32, kernels.F32}},
			{17, 64, []int{32, 40}, []kernels.DType{kernels.BF16, kernels.F32}},
			{1, 896, []int{300, 128, 128}, []kernels.DType{kernels.BF16, kernels.BF16, kernels.BF16}}, // decode
			{1, 100, []int{40, 7}, []kernels.DType{kernels.BF16, kernels.BF16}},
		} {
			x := make([]float32, c.m*c.k)
			for i := range x {
				x[i] = rng.Float32() - .5
			}
			var ps []kernels.Product
			var want [][]float32
			for i, n := range c.ns {
				w := randw(n, c.k, c.dts[i])
				ps = append(ps, kernels.Product{Out: make([]float32, c.m*n), W: w, DType: c.dts[i], N: n})
				sep := make([]float32, c.m*n)
				kernels.MatMul(sep, x, w, c.dts[i], c.m, n, c.k)
				want = append(want, sep)
			}
			kernels.MatMulShared(x, c.m, c.k, ps...)
			for i, p := range ps {
				for j := range p.Out {
					if p.Out[j] != want[i][j] {
						t.Fatalf("%s m=%d k=%d product %d: out[%d] = %g, separately %g", v, c.m, c.k, i, j, p.Out[j], want[i][j])
					}
				}
			}
		}
		kernels.Use(prev)
	}
}

// Parallel visits every index once, for chunk sizes around n, and nested calls (a chunk that
// itself runs a Parallel while the workers are busy) finish instead of deadlocking.
func TestParallelCoversAndNests(t *testing.T) {
	for _, c := range [][2]int{{0, 4}, {1, 4}, {7, 1}, {1000, 256}, {1000, 7}, {5, 100}} {
		n, chunk := c[0], c[1]
		seen := make([]atomic.Int32, n)
		kernels.Parallel(n, chunk, func(lo, hi int) {
			for i := lo; i < hi; i++ {
				seen[i].Add(1)
			}
		})
		for i := range seen {
			if v := seen[i].Load(); v != 1 {
				t.Fatalf("n=%d chunk=%d: index %d visited %d times", n, chunk, i, v)
			}
		}
	}
	var total atomic.Int64
	kernels.Parallel(64, 1, func(lo, hi int) {
		kernels.Parallel(100, 3, func(a, b int) { total.Add(int64(b - a)) })
	})
	if total.Load() != 64*100 {
		t.Fatalf("nested: %d of %d indices", total.Load(), 64*100)
	}
	// Calls from several goroutines at once (one holds the pool, the others run on their own
	// callers), and a call after the workers have parked (they spin only ~200 µs).
	total.Store(0)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 50 {
				kernels.Parallel(100, 3, func(a, b int) { total.Add(int64(b - a)) })
			}
		})
	}
	wg.Wait()
	time.Sleep(5 * time.Millisecond)
	kernels.Parallel(100, 1, func(a, b int) { total.Add(int64(b - a)) })
	if want := int64(8*50*100 + 100); total.Load() != want {
		t.Fatalf("concurrent and after parking: %d of %d indices", total.Load(), want)
	}
}

// BenchmarkParallelFanOut: what a fan-out costs beyond its work (4 chunks of 10 µs on the
// cores), after a serial stretch of the given length, as between decode's matrix products.
func BenchmarkParallelFanOut(b *testing.B) {
	spin := func(d time.Duration) {
		for t := time.Now(); time.Since(t) < d; {
		}
	}
	for _, gap := range []time.Duration{0, 5 * time.Microsecond, 20 * time.Microsecond, 100 * time.Microsecond} {
		b.Run(fmt.Sprint("gap=", gap), func(b *testing.B) {
			for b.Loop() {
				spin(gap)
				kernels.Parallel(4, 1, func(lo, hi int) { spin(10 * time.Microsecond) })
			}
			ideal := gap + 40*time.Microsecond/time.Duration(min(4, runtime.GOMAXPROCS(0)))
			b.ReportMetric(float64(b.Elapsed()-ideal*time.Duration(b.N))/float64(b.N), "overhead-ns")
		})
	}
}

// BenchmarkMatMulEncoder reports GFLOP/s of the BF16 GEMMs of the vision towers (CLIP
// ViT-L/14-336's 577 rows, EVA ViT-g's 257) with weights of nonzero values: AMX's tiles run
// faster on zeros, so BenchmarkMatMul's zero weights flatter that variant.
func BenchmarkMatMulEncoder(b *testing.B) {
	shapes := [][3]int{{577, 1024, 1024}, {577, 1024, 4096}, {577, 4096, 1024}, {257, 1408, 4224}, {257, 1408, 6144}, {257, 6144, 1408}}
	for _, s := range shapes {
		m, k, n := s[0], s[1], s[2]
		x := make([]float32, m*k)
		for i := range x {
			x[i] = float32(i%7)*0.1 - 0.3
		}
		w := make([]byte, 2*n*k)
		for i := 0; i < len(w); i += 2 {
			w[i], w[i+1] = byte(i*31), 0x3c+byte(i%3) // bf16 values around ±1e-2…1
		}
		out := make([]float32, m*n)
		for _, v := range []string{"avx512bf16", "amx"} {
			if !slices.Contains(kernels.Variants(), v) {
				continue
			}
			b.Run(fmt.Sprintf("m=%d,k=%d,n=%d/%s", m, k, n, v), func(b *testing.B) {
				prev := kernels.Use(v)
				defer kernels.Use(prev)
				for b.Loop() {
					kernels.MatMul(out, x, w, kernels.BF16, m, n, k)
				}
				b.ReportMetric(2*float64(m*n*k)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			})
		}
	}
}

// RoundBF16 rounds to nearest even as dtype's conversion does, through the vector body and the
// scalar tail alike: ties both ways, carries into the exponent, ±Inf, ±0 and values near the
// bf16 overflow, at lengths around the 32-value blocks.
func TestRoundBF16(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 9))
	special := []float32{0, float32(math.Copysign(0, -1)), 1, -1, float32(math.Inf(1)), float32(math.Inf(-1)),
		math.Float32frombits(0x3f808000), math.Float32frombits(0x3f818000), // ties: to even down, up
		math.Float32frombits(0x3fffffff), math.Float32frombits(0x7f7fffff), 3.3895314e38, 1e-30}
	for _, n := range []int{1, 31, 32, 33, 64, 100} {
		src := make([]float32, n)
		for i := range src {
			src[i] = float32(rng.NormFloat64() * 10)
		}
		copy(src, special)
		if n > 40 {
			copy(src[32:], special) // the vector body sees them too
		}
		got := make([]byte, 2*n+2)
		got[2*n], got[2*n+1] = 0xaa, 0xbb
		kernels.RoundBF16(got, src)
		for i, v := range src {
			want := dtype.Float32ToBF16(v)
			if h := uint16(got[2*i]) | uint16(got[2*i+1])<<8; h != want {
				t.Fatalf("n=%d: RoundBF16(%g) = %#04x, want %#04x", n, v, h, want)
			}
		}
		if got[2*n] != 0xaa || got[2*n+1] != 0xbb {
			t.Fatalf("n=%d: wrote past 2·len(src)", n)
		}
	}
}

// LayerNorm on every variant against the float64 definition, at widths through the vector
// lanes and the Go path (not multiples of 16), rows with a large mean (the variance is not
// E[x²] − mean²), and y aliasing x.
func TestLayerNormEveryVariant(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 11))
	for _, v := range kernels.Variants() {
		prev := kernels.Use(v)
		for _, n := range []int{1, 15, 16, 17, 48, 1024, 1408, 1000} {
			for _, offset := range []float64{0, 1e4} {
				x, w, b := make([]float32, n), make([]float32, n), make([]float32, n)
				for i := range x {
					x[i] = float32(offset + rng.NormFloat64()*3)
					w[i] = float32(rng.NormFloat64())
					b[i] = float32(rng.NormFloat64())
				}
				var mean, ss float64
				for _, xv := range x {
					mean += float64(xv)
				}
				mean /= float64(n)
				for _, xv := range x {
					ss += (float64(xv) - mean) * (float64(xv) - mean)
				}
				inv := 1 / math.Sqrt(ss/float64(n)+1e-5)
				y := append([]float32(nil), x...)
				kernels.LayerNorm(y, y, w, b, 1e-5)
				for i, xv := range x {
					want := (float64(xv)-mean)*inv*float64(w[i]) + float64(b[i])
					if d := math.Abs(float64(y[i]) - want); d > 1e-6*(1+math.Abs(want)) {
						t.Fatalf("%s n=%d offset=%g: y[%d] = %g, want %g", v, n, offset, i, y[i], want)
					}
				}
			}
		}
		kernels.Use(prev)
	}
}
