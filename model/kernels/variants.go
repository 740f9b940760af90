package kernels

import (
	"math"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
)

// A variant is one set of SIMD routines. A nil routine falls back to the generic Go (gonum)
// one; the active variant is read once per call, so switching is safe between calls.
type variant struct {
	name string
	// roundsBF16 is set when the variant rounds activations to bf16 before multiplying them
	// with BF16 weights (VDPBF16PS); results then differ from the f32-exact path by about 2⁻⁹
	// relative per product.
	roundsBF16 bool
	matmul     func(out, x []float32, w []byte, dt DType, m, n, k int) // m > 1
	shared     func(x []float32, m, k int, ps []Product) bool          // m > 1; false: not handled
	gemvBF16   func(out, x []float32, w []byte, m, n, k int)           // BF16 weights, m ≤ smallM
	dot        func(a, b []float32) float32
	axpy       func(alpha float32, x, y []float32)
	silu       func(x []float32)
	gelu       func(x []float32) // GELU (erf)
	layerNorm  func(y, x, w, b []float32, eps float32)
	expSubSum  func(x []float32, max float32) float32 // x[i] = e^(x[i]−max); returns Σ
	rows       *rowKernels
}

// rowKernels are the element-wise routines of softmax, RMSNorm and SiLU·up (len(x) > 0).
type rowKernels struct {
	max     func(x []float32) float32
	mul     func(x, y []float32)                 // x[i] *= y[i]
	scale   func(x []float32, s float32)         // x[i] *= s
	normMul func(out, x, w []float32, s float32) // out[i] = x[i]·s·w[i]
}

var (
	variants []*variant
	active   atomic.Pointer[variant]
)

// register adds a variant; NEUROSURG_KERNELS=<name> selects it whatever prefer says.
func register(v *variant, prefer bool) {
	variants = append(variants, v)
	env := os.Getenv("NEUROSURG_KERNELS")
	if env == v.name || prefer && env == "" {
		active.Store(v)
	}
}

// BF16Activations reports whether the active variant rounds activations to bf16 when it
// multiplies them with BF16 weights; Use("avx512") selects the f32-exact path.
func BF16Activations() bool {
	v := active.Load()
	return v != nil && v.roundsBF16
}

// Variants lists the kernel variants this CPU can run ("generic" always).
func Variants() []string {
	out := []string{"generic"}
	for _, v := range variants {
		out = append(out, v.name)
	}
	return out
}

// Active names the variant in use.
func Active() string {
	if v := active.Load(); v != nil {
		return v.name
	}
	return "generic"
}

// Use selects a variant by name for the rest of the process (tests and benchmarks loop over
// them); it returns the previous one. NEUROSURG_KERNELS=generic forces the generic path,
// NEUROSURG_KERNELS=avx512 the f32-exact AVX-512 path, =avx2 the AVX2 one.
func Use(name string) (previous string) {
	previous = Active()
	if name == "generic" {
		active.Store(nil)
		return previous
	}
	for _, v := range variants {
		if v.name == name {
			active.Store(v)
		}
	}
	return previous
}

// smallM is the most activation rows MatMul streams BF16 weights for, row by row, instead of
// packing them: decode, the last rows of a batch against the lm_head.
const smallM = 16

func bf16(b []byte) float32 { return math.Float32frombits(uint32(b[0])<<16 | uint32(b[1])<<24) }

// rowChunk is how many weight rows one core takes at a time in the row-streaming (m ≤ smallM)
// paths.
const rowChunk = 256

// peakLoop is the register-only FMA loop of the widest SIMD tier (nil without one), doing
// peakFlops flops per iteration.
var (
	peakLoop  func(iters int)
	peakFlops int
)

// dotPeakLoop is the register-only VDPBF16PS loop (nil without AVX512_BF16).
var dotPeakLoop func(iters int)

// BF16DotPeak measures the VDPBF16PS throughput of all cores in GFLOP/s (two flops per bf16
// product; 0 without AVX512_BF16): the ceiling of a variant that rounds activations to bf16.
func BF16DotPeak() float64 {
	if dotPeakLoop == nil {
		return 0
	}
	return runPeak(dotPeakLoop, 12*64)
}

// amxPeakLoop is the register-only TDPBF16PS loop (nil without the AMX variant).
var amxPeakLoop func(iters int)

// AMXPeak measures the AMX-BF16 tile throughput of all cores in GFLOP/s (0 without the AMX
// variant): the ceiling of the amx variant's GEMMs.
func AMXPeak() float64 {
	if amxPeakLoop == nil {
		return 0
	}
	return runPeakIters(amxPeakLoop, 65536, 200_000)
}

// FMAPeak measures the f32 FMA throughput of all cores in GFLOP/s (0 without a SIMD variant).
func FMAPeak() float64 {
	if peakLoop == nil {
		return 0
	}
	return runPeak(peakLoop, peakFlops)
}

// runPeak runs loop on every core and returns GFLOP/s for flops per iteration: the best of
// five runs, since a shared machine's other tenants only ever make a run slower.
func runPeak(loop func(int), flops int) float64 { return runPeakIters(loop, flops, 20_000_000) }

func runPeakIters(loop func(int), flops, iters int) float64 {
	workers := runtime.GOMAXPROCS(0)
	best := 0.0
	for rep := 0; rep < 5; rep++ {
		var wg sync.WaitGroup
		t0 := nowSeconds()
		for g := 0; g < workers; g++ {
			wg.Add(1)
			go func() { defer wg.Done(); loop(iters) }()
		}
		wg.Wait()
		best = max(best, float64(workers)*float64(iters)*float64(flops)/(nowSeconds()-t0)/1e9)
	}
	return best
}
