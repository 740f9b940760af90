package kernels

import (
	"math"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
)

// A variant is one implementation of MatMul's prefill path (m > 1).
type variant struct {
	name string
	fn   func(out, x []float32, w []byte, dt DType, m, n, k int)
}

var (
	variants []variant
	active   atomic.Pointer[variant]
	useGemv  = os.Getenv("NEUROSURG_KERNELS") != "generic"
)

func register(name string, prefer bool, fn func(out, x []float32, w []byte, dt DType, m, n, k int)) {
	v := &variant{name, fn}
	variants = append(variants, *v)
	if prefer && os.Getenv("NEUROSURG_KERNELS") != "generic" {
		active.Store(v)
	}
}

// Variants lists the MatMul implementations this CPU can run ("generic" always).
func Variants() []string {
	out := []string{"generic"}
	for _, v := range variants {
		out = append(out, v.name)
	}
	return out
}

// Use selects a variant by name for the rest of the process (tests and benchmarks loop over
// them); it returns the previous one. NEUROSURG_KERNELS=generic forces the generic path.
func Use(name string) (previous string) {
	previous = "generic"
	if v := active.Load(); v != nil {
		previous = v.name
	}
	if name == "generic" {
		active.Store(nil)
		useGemv = false
		return previous
	}
	useGemv = true
	for i := range variants {
		if variants[i].name == name {
			active.Store(&variants[i])
		}
	}
	return previous
}

// sgemm6x32Generic is the reference of the assembly micro-kernel.
func sgemm6x32Generic(k int, a []float32, lda int, b []float32, c []float32) {
	for i := 0; i < 6; i++ {
		for j := 0; j < 32; j++ {
			var s float32
			for p := 0; p < k; p++ {
				s += a[i*lda+p] * b[p*32+j]
			}
			c[i*32+j] = s
		}
	}
}

// gemvBF16, when set by a SIMD variant, replaces the m = 1 path for BF16 weights.
var gemvBF16 func(out, x []float32, w []byte, n, k int)

func bf16(b []byte) float32 { return math.Float32frombits(uint32(b[0])<<16 | uint32(b[1])<<24) }

// parallelRows splits [0, n) over the cores in chunks.
func parallelRows(n int, f func(j0, j1 int)) {
	workers := runtime.GOMAXPROCS(0)
	if n < 256 || workers == 1 {
		f(0, n)
		return
	}
	const chunk = 256
	var next atomic.Int64
	var wg sync.WaitGroup
	for g := 0; g < workers; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				j0 := int(next.Add(chunk)) - chunk
				if j0 >= n {
					return
				}
				f(j0, min(j0+chunk, n))
			}
		}()
	}
	wg.Wait()
}

// vecDot and vecAxpy, when set by a SIMD variant, replace Dot's and Axpy's loops.
var (
	vecDot  func(a, b []float32) float32
	vecAxpy func(alpha float32, x, y []float32)
)

// peakLoop is the register-only FMA loop of a SIMD variant (nil without one).
var peakLoop func(iters int)

// FMAPeak measures the f32 FMA throughput of all cores in GFLOP/s (0 without a SIMD variant).
func FMAPeak() float64 {
	if peakLoop == nil {
		return 0
	}
	const iters = 20_000_000
	workers := runtime.GOMAXPROCS(0)
	var wg sync.WaitGroup
	t0 := nowSeconds()
	for g := 0; g < workers; g++ {
		wg.Add(1)
		go func() { defer wg.Done(); peakLoop(iters) }()
	}
	wg.Wait()
	return float64(workers) * iters * 12 * 32 / (nowSeconds() - t0) / 1e9
}
