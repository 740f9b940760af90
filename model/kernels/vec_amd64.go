//go:build !purego && !noasm

package kernels

import (
	"math"

	"golang.org/x/sys/cpu"
)

// dotBF16 is Σ_p x[p]·bf16(w[2p:]) for k a multiple of 32. Requires AVX-512F.
//
//go:noescape
func dotBF16(x *float32, w *byte, k int) float32

// dotF32 is Σ a[i]·b[i] for n a multiple of 16. Requires AVX-512F.
//
//go:noescape
func dotF32(a, b *float32, n int) float32

// axpyF32 computes y += alpha·x for n a multiple of 16. Requires AVX-512F.
//
//go:noescape
func axpyF32(alpha float32, x, y *float32, n int)

// fmaPeak runs iters × 12 AVX-512 FMAs (384 flops per iteration) on registers only.
//
//go:noescape
func fmaPeak(iters int)

// siluF32 computes x[i] = x[i]·σ(x[i]) for n a positive multiple of 16. Requires AVX-512F.
//
//go:noescape
func siluF32(x *float32, n int)

// geluF32 computes GELU (erf) as GELU documents it, for n a positive multiple of 16, the fit's
// polynomial in f32. Requires AVX-512F and AVX512DQ.
//
//go:noescape
func geluF32(x *float32, n int)

// sumF64, sqDevF64 and normAffineF32 are LayerNorm's three passes in float64 lanes (n a
// positive multiple of 16): Σx, Σ(x − mean)², and y = float32((x − mean)·inv)·w + b.
// Require AVX-512F (AVX512DQ for the 256-bit insert).
//
//go:noescape
func sumF64(x *float32, n int) float64

//go:noescape
func sqDevF64(x *float32, n int, mean float64) float64

//go:noescape
func normAffineF32(y, x, w, b *float32, n int, mean, inv float64)

// expSubSumF32 sets x[i] = e^(x[i]−max) and returns their sum, n a positive multiple of 16.
// Requires AVX-512F.
//
//go:noescape
func expSubSumF32(x *float32, n int, max float32) float32

// dotF32AVX2 is Σ a[i]·b[i] for n a positive multiple of 8. Requires AVX2 and FMA.
//
//go:noescape
func dotF32AVX2(a, b *float32, n int) float32

// axpyF32AVX2 computes y += alpha·x for n a positive multiple of 8. Requires AVX2 and FMA.
//
//go:noescape
func axpyF32AVX2(alpha float32, x, y *float32, n int)

// dotBF16AVX2 is Σ_p x[p]·bf16(w[2p:]) for k a positive multiple of 16. Requires AVX2, FMA.
//
//go:noescape
func dotBF16AVX2(x *float32, w *byte, k int) float32

// fmaPeakAVX2 runs iters × 12 ymm FMAs (192 flops per iteration) on registers only.
//
//go:noescape
func fmaPeakAVX2(iters int)

// siluF32AVX2 is siluF32 for n a positive multiple of 8. Requires AVX2 and FMA.
//
//go:noescape
func siluF32AVX2(x *float32, n int)

// expSubSumF32AVX2 is expSubSumF32 for n a positive multiple of 8. Requires AVX2 and FMA.
//
//go:noescape
func expSubSumF32AVX2(x *float32, n int, max float32) float32

// maxF32 is max_i x[i]; mulF32 sets x[i] *= y[i], scaleF32 x[i] *= s and normMulF32
// out[i] = x[i]·s·w[i] (RMSNorm's last step); n is a positive multiple of 16. Generated in
// gemm_amd64.s (gen's elementwise); they require AVX-512F, and the ...AVX2 twins take
// multiples of 8 and need AVX2.
//
//go:noescape
func maxF32(x *float32, n int) float32

//go:noescape
func mulF32(x, y *float32, n int)

//go:noescape
func scaleF32(x *float32, n int, s float32)

//go:noescape
func normMulF32(out, x, w *float32, n int, s float32)

//go:noescape
func maxF32AVX2(x *float32, n int) float32

//go:noescape
func mulF32AVX2(x, y *float32, n int)

//go:noescape
func scaleF32AVX2(x *float32, n int, s float32)

//go:noescape
func normMulF32AVX2(out, x, w *float32, n int, s float32)

func init() {
	if cpu.X86.HasAVX512F {
		peakLoop, peakFlops = fmaPeak, 12*32
		exact := &variant{
			name: "avx512",
			matmul: func(out, x []float32, w []byte, dt DType, m, n, k int) {
				gemmBlocked(&tiles512, out, x, w, dt, m, n, k, false)
			},
			gemvBF16:  gemvBF16Widen(dotBF16, 32),
			dot:       simdDot(dotF32, 16),
			axpy:      simdAxpy(axpyF32, 16),
			silu:      simdSiLU(siluF32, 16),
			gelu:      simdGELU(16),
			layerNorm: simdLayerNorm(),
			expSubSum: simdExpSubSum(expSubSumF32, 16),
			rows:      simdRows(maxF32, mulF32, scaleF32, normMulF32, 16),
		}
		exact.shared = sharedOn(&tiles512, false)
		register(exact, !cpu.X86.HasAVX512BF16)
		if cpu.X86.HasAVX512BF16 {
			roundBF16Blocks = func(dst *uint32, src *float32, blocks int) { cvtBF16Pairs(dst, src, blocks, 64) }
			dotPeakLoop = dpbf16Peak
			// BF16 weights meet activations rounded to bf16 (as PyTorch's bf16 matmul does, but
			// accumulated and returned in f32) at twice the f32 FMA rate.
			fast := *exact
			fast.name, fast.roundsBF16, fast.gemvBF16 = "avx512bf16", true, gemvBF16DotAVX512
			fast.matmul = func(out, x []float32, w []byte, dt DType, m, n, k int) {
				gemmBlocked(&tiles512, out, x, w, dt, m, n, k, dt == BF16)
			}
			fast.shared = sharedOn(&tiles512, true)
			register(&fast, true)
			if cpu.X86.HasAMXBF16 && cpu.X86.HasAMXTile && enableAMX() {
				// AMX tiles multiply the same bf16 products ~4× faster than VDPBF16PS; prefill
				// and encoder GEMMs against BF16 weights take them, decode (m ≤ smallM) keeps
				// the streaming VDPBF16PS path. F32/F16 weights stay f32-exact.
				amx := fast
				amx.name = "amx"
				amx.matmul = func(out, x []float32, w []byte, dt DType, m, n, k int) {
					if dt == BF16 {
						gemmAMX(x, m, k, Product{Out: out, W: w, DType: dt, N: n})
						return
					}
					gemmBlocked(&tiles512, out, x, w, dt, m, n, k, false)
				}
				amx.shared = func(x []float32, m, k int, ps []Product) bool {
					if m <= smallM || !allBF16(ps) {
						return fast.shared(x, m, k, ps)
					}
					gemmAMX(x, m, k, ps...)
					return true
				}
				register(&amx, true)
				amxPeakLoop = func(iters int) { amxPeak(&amxTileConfig[0], iters) }
			}
		}
	}
	if cpu.X86.HasAVX2 && cpu.X86.HasFMA {
		if peakLoop == nil {
			peakLoop, peakFlops = fmaPeakAVX2, 12*16
		}
		register(&variant{
			name: "avx2",
			matmul: func(out, x []float32, w []byte, dt DType, m, n, k int) {
				gemmBlocked(&tiles256, out, x, w, dt, m, n, k, false)
			},
			gemvBF16:  gemvBF16Widen(dotBF16AVX2, 16),
			dot:       simdDot(dotF32AVX2, 8),
			axpy:      simdAxpy(axpyF32AVX2, 8),
			shared:    sharedOn(&tiles256, false),
			silu:      simdSiLU(siluF32AVX2, 8),
			expSubSum: simdExpSubSum(expSubSumF32AVX2, 8),
			rows:      simdRows(maxF32AVX2, mulF32AVX2, scaleF32AVX2, normMulF32AVX2, 8),
		}, !cpu.X86.HasAVX512F)
	}
}

// sharedOn runs MatMulShared on a tiling when every product takes the same path (all BF16
// with VDPBF16PS when roundsBF16, or none).
func sharedOn(t *tiling, roundsBF16 bool) func(x []float32, m, k int, ps []Product) bool {
	return func(x []float32, m, k int, ps []Product) bool {
		if m <= smallM {
			return roundsBF16 && m == 1 && gemvSharedBF16Dot(x, k, ps)
		}
		dot := roundsBF16 && ps[0].DType == BF16
		for _, p := range ps {
			if (roundsBF16 && p.DType == BF16) != dot {
				return false
			}
		}
		gemmShared(t, x, m, k, dot, ps...)
		return true
	}
}

func allBF16(ps []Product) bool {
	for _, p := range ps {
		if p.DType != BF16 {
			return false
		}
	}
	return true
}

// simdSiLU wraps an assembly SiLU over a multiple of lanes with a Go tail.
func simdSiLU(kern func(x *float32, n int), lanes int) func(x []float32) {
	return func(x []float32) {
		body := len(x) / lanes * lanes
		if body > 0 {
			kern(&x[0], body)
		}
		siluGo(x[body:])
	}
}

// simdGELU wraps geluF32 with a Go tail (needs AVX512DQ besides F; nil, the Go GELU, without).
func simdGELU(lanes int) func(x []float32) {
	if !cpu.X86.HasAVX512DQ {
		return nil
	}
	return func(x []float32) {
		body := len(x) / lanes * lanes
		if body > 0 {
			geluF32(&x[0], body)
		}
		geluGo(x[body:])
	}
}

// simdLayerNorm runs LayerNorm's passes in float64 vector lanes for widths a multiple of 16
// (every encoder's), the Go loops otherwise; nil without AVX512DQ.
func simdLayerNorm() func(y, x, w, b []float32, eps float32) {
	if !cpu.X86.HasAVX512DQ {
		return nil
	}
	return func(y, x, w, b []float32, eps float32) {
		n := len(x)
		if n == 0 || n%16 != 0 {
			layerNormGo(y, x, w, b, eps)
			return
		}
		y, w, b = y[:n], w[:n], b[:n]
		mean := sumF64(&x[0], n) / float64(n)
		inv := 1 / math.Sqrt(sqDevF64(&x[0], n, mean)/float64(n)+float64(eps))
		normAffineF32(&y[0], &x[0], &w[0], &b[0], n, mean, inv)
	}
}

// simdExpSubSum wraps an assembly x[i] = e^(x[i]−max), Σ over a multiple of lanes with a Go tail.
func simdExpSubSum(kern func(x *float32, n int, max float32) float32, lanes int) func(x []float32, max float32) float32 {
	return func(x []float32, max float32) float32 {
		var s float32
		body := len(x) / lanes * lanes
		if body > 0 {
			s = kern(&x[0], body, max)
		}
		for i := body; i < len(x); i++ {
			x[i] = float32(math.Exp(float64(x[i] - max)))
			s += x[i]
		}
		return s
	}
}

// simdDot wraps an assembly dot product over a multiple of lanes with a Go tail.
func simdDot(kern func(a, b *float32, n int) float32, lanes int) func(a, b []float32) float32 {
	return func(a, b []float32) float32 {
		body := len(a) / lanes * lanes
		var s float32
		if body > 0 {
			s = kern(&a[0], &b[0], body)
		}
		for i := body; i < len(a); i++ {
			s += a[i] * b[i]
		}
		return s
	}
}

// simdAxpy wraps an assembly y += alpha·x over a multiple of lanes with a Go tail.
func simdAxpy(kern func(alpha float32, x, y *float32, n int), lanes int) func(alpha float32, x, y []float32) {
	return func(alpha float32, x, y []float32) {
		body := len(x) / lanes * lanes
		if body > 0 {
			kern(alpha, &x[0], &y[0], body)
		}
		for i := body; i < len(x); i++ {
			y[i] += alpha * x[i]
		}
	}
}

// gemvBF16Widen returns the f32-exact m ≤ smallM path for BF16 weights over an assembly row
// dot that widens bf16 in registers (k a multiple of lanes), with a Go tail. Each weight row is
// streamed once: decode is bound by memory bandwidth, so nothing is packed or converted ahead,
// and rows are read one after another (one sequential stream per core).
func gemvBF16Widen(dot func(x *float32, w *byte, k int) float32, lanes int) func(out, x []float32, w []byte, m, n, k int) {
	return func(out, x []float32, w []byte, m, n, k int) {
		widenTasks.Run(n, rowChunk, widenTask{dot: dot, out: out, x: x, w: w, m: m, n: n, k: k, body: k / lanes * lanes})
	}
}

type widenTask struct {
	dot           func(x *float32, w *byte, k int) float32
	out, x        []float32
	w             []byte
	m, n, k, body int
}

var widenTasks TaskPool[widenTask, *widenTask]

func (t *widenTask) Run(j0, j1 int) {
	out, x, w, m, n, k, body := t.out, t.x, t.w, t.m, t.n, t.k, t.body
	for j := j0; j < j1; j++ {
		row := w[j*k*2 : (j+1)*k*2]
		for i := 0; i < m; i++ {
			xi := x[i*k : (i+1)*k]
			var s float32
			if body > 0 {
				s = t.dot(&xi[0], &row[0], body)
			}
			for p := body; p < k; p++ {
				s += xi[p] * bf16(row[2*p:])
			}
			out[i*n+j] = s
		}
	}
}

// simdRows wraps the assembly element-wise routines (each over a multiple of lanes) with Go
// tails.
func simdRows(max func(x *float32, n int) float32, mul func(x, y *float32, n int),
	scale func(x *float32, n int, s float32), normMul func(out, x, w *float32, n int, s float32), lanes int) *rowKernels {
	return &rowKernels{
		max: func(x []float32) float32 {
			body := len(x) / lanes * lanes
			m := x[0]
			if body > 0 {
				m = max(&x[0], body)
			}
			return maxGo(x[body:], m)
		},
		mul: func(x, y []float32) {
			body := len(x) / lanes * lanes
			if body > 0 {
				mul(&x[0], &y[0], body)
			}
			mulGo(x[body:], y[body:])
		},
		scale: func(x []float32, s float32) {
			body := len(x) / lanes * lanes
			if body > 0 {
				scale(&x[0], body, s)
			}
			scaleGo(x[body:], s)
		},
		normMul: func(out, x, w []float32, s float32) {
			body := len(x) / lanes * lanes
			if body > 0 {
				normMul(&out[0], &x[0], &w[0], body, s)
			}
			normMulGo(out[body:], x[body:], w[body:], s)
		},
	}
}
