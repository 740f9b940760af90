//go:build !purego && !noasm

package kernels

import (
	"runtime"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/cpu"
)

// sgemm6x32 computes a 6×32 tile: c[i*32+j] = Σ_p a[i*lda+p]·b[p*32+j] for i < 6, j < 32.
// Reference loop: see sgemm6x32Generic. Requires AVX-512F.
//
//go:noescape
func sgemm6x32(k int, a *float32, lda int, b *float32, c *float32)

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

// dotBF16x4 computes four row dots against x at once: out[r] = Σ_p x[p]·bf16(w[r*stride+2p:]),
// k a multiple of 16. Requires AVX-512F.
//
//go:noescape
func dotBF16x4(x *float32, w *byte, stride int, k int, out *float32)

func init() {
	if cpu.X86.HasAVX512F {
		peakLoop = fmaPeak
		vecDot = func(a, b []float32) float32 {
			body := len(a) &^ 15
			var s float32
			if body > 0 {
				s = dotF32(&a[0], &b[0], body)
			}
			for i := body; i < len(a); i++ {
				s += a[i] * b[i]
			}
			return s
		}
		vecAxpy = func(alpha float32, x, y []float32) {
			body := len(x) &^ 15
			if body > 0 {
				axpyF32(alpha, &x[0], &y[0], body)
			}
			for i := body; i < len(x); i++ {
				y[i] += alpha * x[i]
			}
		}
		register("avx512", true, matmulTiled)
		gemvBF16 = gemvBF16AVX512
	}
}

// gemvBF16AVX512 computes out[j] = x·W[j] for bf16 weights, streaming each row once: decode
// is bound by memory bandwidth, so nothing is packed or converted ahead.
func gemvBF16AVX512(out, x []float32, w []byte, n, k int) {
	body := k &^ 15
	rows := func(j0, j1 int) {
		var four [4]float32
		j := j0
		for ; j+4 <= j1 && body > 0; j += 4 {
			dotBF16x4(&x[0], &w[j*k*2], k*2, body, &four[0])
			for r := 0; r < 4; r++ {
				s := four[r]
				row := w[(j+r)*k*2 : (j+r+1)*k*2]
				for p := body; p < k; p++ {
					s += x[p] * bf16(row[2*p:])
				}
				out[j+r] = s
			}
		}
		for ; j < j1; j++ {
			row := w[j*k*2 : (j+1)*k*2]
			var s float32
			if b32 := k &^ 31; b32 > 0 {
				s = dotBF16(&x[0], &row[0], b32)
			}
			for p := k &^ 31; p < k; p++ {
				s += x[p] * bf16(row[2*p:])
			}
			out[j] = s
		}
	}
	parallelRows(n, rows)
}

// matmulTiled packs 32 weight rows at a time (transposed, converted to f32) and runs the
// 6×32 micro-kernel over all activation rows; panels are spread over the cores.
func matmulTiled(out, x []float32, w []byte, dt DType, m, n, k int) {
	const nr, mr = 32, 6
	panels := (n + nr - 1) / nr
	workers := min(runtime.GOMAXPROCS(0), panels)
	// Rows past the last multiple of 6 run on a zero-padded copy.
	mFull := m / mr * mr
	var xpad []float32
	if mFull < m {
		xpad = make([]float32, mr*k)
		copy(xpad, x[mFull*k:m*k])
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	es := dt.Size()
	for g := 0; g < workers; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			packed := make([]float32, k*nr)
			row := make([]float32, k)
			tile := make([]float32, mr*nr)
			for {
				pnl := int(next.Add(1) - 1)
				if pnl >= panels {
					return
				}
				j0 := pnl * nr
				cols := min(nr, n-j0)
				for jj := 0; jj < nr; jj++ {
					if jj >= cols {
						for p := 0; p < k; p++ {
							packed[p*nr+jj] = 0
						}
						continue
					}
					j := j0 + jj
					ToFloat32(row, w[j*k*es:(j+1)*k*es], dt)
					for p, v := range row {
						packed[p*nr+jj] = v
					}
				}
				for i0 := 0; i0 < m; i0 += mr {
					a := x[i0*k:]
					if i0 >= mFull {
						a = xpad
					}
					sgemm6x32(k, (*float32)(unsafe.Pointer(&a[0])), k, &packed[0], &tile[0])
					for i := 0; i < mr && i0+i < m; i++ {
						copy(out[(i0+i)*n+j0:(i0+i)*n+j0+cols], tile[i*nr:i*nr+cols])
					}
				}
			}
		}()
	}
	wg.Wait()
}
