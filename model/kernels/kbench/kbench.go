// Package kbench measures the machine's ceilings (FMA peak, memory bandwidth) and the kernels
// at the shapes of real models, for `neurosurg bench gemm`.
package kbench

import (
	"math"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/neurosurg/neurosurg/dtype"
	"github.com/neurosurg/neurosurg/formats/safetensors"
	"github.com/neurosurg/neurosurg/model/kernels"
)

// Result is one GEMM measurement.
type Result struct {
	DType   string  `json:"dtype"`
	M, K, N int     `json:"-"`
	Shape   string  `json:"shape"`
	Variant string  `json:"variant"`
	GFLOPS  float64 `json:"gflops"`
	GBps    float64 `json:"weight_gb_per_s"`
	// OfPeak is GB/s / bandwidth for m = 1; for m > 1 GFLOP/s over the FMA peak, or over the
	// bf16 dot peak when the variant rounds activations to bf16 for BF16 weights.
	OfPeak float64 `json:"of_peak"`
	OfRead float64 `json:"of_read_bandwidth,omitempty"` // m = 1: GB/s / read bandwidth measured beside it (median of paired rounds)
}

// Ceilings are the machine's measured limits.
type Ceilings struct {
	FMAPeakGFLOPS float64 `json:"fma_peak_gflops"`
	DotPeakGFLOPS float64 `json:"bf16_dot_peak_gflops"`           // VDPBF16PS; 0 without AVX512_BF16
	AMXPeakGFLOPS float64 `json:"amx_bf16_peak_gflops,omitempty"` // TDPBF16PS; 0 without the amx variant
	TriadGBps     float64 `json:"triad_gb_per_s"`
	// ReadGBps streams 768 MiB through a dot product on all cores: the ceiling of a kernel that
	// only reads, like decode's GEMV (triad also writes).
	ReadGBps float64 `json:"read_gb_per_s"`
}

// Measure runs the ceilings and the GEMM shapes (m×k×n).
func Measure(shapes [][3]int) (Ceilings, []Result) {
	readBuf := make([]float32, readFloats)
	for i := range readBuf {
		readBuf[i] = 1
	}
	c := Ceilings{FMAPeakGFLOPS: kernels.FMAPeak(), DotPeakGFLOPS: kernels.BF16DotPeak(), AMXPeakGFLOPS: kernels.AMXPeak(), TriadGBps: triad(), ReadGBps: readBandwidth(readBuf)}
	var out []Result
	for _, s := range shapes {
		m, k, n := s[0], s[1], s[2]
		x := make([]float32, m*k)
		for i := range x {
			x[i] = float32(i%13) * 0.01
		}
		o := make([]float32, m*n)
		for _, dt := range []kernels.DType{kernels.F32, kernels.BF16} {
			// Realistic weights: arbitrary bytes would hold denormals and NaNs, which slow FMAs.
			wf := make([]float32, n*k)
			for i := range wf {
				wf[i] = float32((i*7919)%2001-1000) * 2e-5
			}
			w := make([]byte, n*k*dt.Size())
			sd := map[kernels.DType]safetensors.DType{kernels.F32: safetensors.F32, kernels.BF16: safetensors.BF16}[dt]
			dtype.FromFloat32(w, wf, sd)
			if m == 1 {
				out = append(out, gemvPaired(c, o, x, w, dt, n, k, readBuf)...)
				continue
			}
			for _, v := range kernels.Variants() {
				prev := kernels.Use(v)
				kernels.MatMul(o, x, w, dt, m, n, k) // warm
				reps := 0
				t0 := time.Now()
				for time.Since(t0) < 500*time.Millisecond || reps < 2 {
					kernels.MatMul(o, x, w, dt, m, n, k)
					reps++
				}
				sec := time.Since(t0).Seconds() / float64(reps)
				peak := c.FMAPeakGFLOPS
				if dt == kernels.BF16 && kernels.BF16Activations() {
					peak = c.DotPeakGFLOPS
					if v == "amx" {
						peak = c.AMXPeakGFLOPS
					}
				}
				kernels.Use(prev)
				r := Result{DType: strings.ToLower(string(dt)), M: m, K: k, N: n, Shape: shape(m, k, n), Variant: v,
					GFLOPS: 2 * float64(m*n*k) / sec / 1e9, GBps: float64(len(w)) / sec / 1e9}
				if peak > 0 {
					r.OfPeak = r.GFLOPS / peak
				}
				out = append(out, r)
			}
		}
	}
	return c, out
}

func shape(m, k, n int) string {
	return itoa(m) + "×" + itoa(k) + "×" + itoa(n)
}

func itoa(i int) string {
	if i < 10 {
		return string(rune('0' + i))
	}
	return itoa(i/10) + string(rune('0'+i%10))
}

// triad is a STREAM-triad a = b + s·c over 3 × 256 MiB on all cores: bytes moved / second.
func triad() float64 {
	const n = 64 << 20
	a, b, c := make([]float32, n), make([]float32, n), make([]float32, n)
	for i := range b {
		b[i], c[i] = 1, 2
	}
	// copy + axpy move 2+3 arrays' worth; STREAM counts triad as 3.
	return bestSplit(n, 5*4*n, func(lo, hi int) {
		copy(a[lo:hi], b[lo:hi])
		kernels.Axpy(3, c[lo:hi], a[lo:hi])
	})
}

// readFloats is the read-bandwidth probe's buffer: 768 MiB, far past any cache.
const readFloats = 3 * 64 << 20

// readBandwidth streams Σ a[i]·a[i] over a on all cores: bytes read / second.
func readBandwidth(a []float32) float64 {
	return bestSplit(len(a), 4*len(a), func(lo, hi int) { kernels.Dot(a[lo:hi], a[lo:hi]) })
}

// gemvRounds is how many paired rounds gemvPaired runs.
const gemvRounds = 5

// gemvPaired measures decode's GEMV (one activation row) against the read bandwidth measured
// right beside it: on a shared VM the bandwidth drifts by ±30% within a minute, so a ratio to a
// ceiling taken at the start says little. Each round probes the read bandwidth, then times
// every variant (best of 3 passes); a variant's OfRead is the median of its rounds' ratios,
// its GB/s the best round's, and OfPeak is over the triad measured at the start.
func gemvPaired(c Ceilings, o, x []float32, w []byte, dt kernels.DType, n, k int, readBuf []float32) []Result {
	vs := kernels.Variants()
	ratios := make([][]float64, len(vs))
	best := make([]float64, len(vs))
	for round := 0; round < gemvRounds; round++ {
		read := readBandwidth(readBuf)
		for i, v := range vs {
			prev := kernels.Use(v)
			kernels.MatMul(o, x, w, dt, 1, n, k) // warm
			fastest := math.Inf(1)
			for rep := 0; rep < 3; rep++ {
				t0 := time.Now()
				kernels.MatMul(o, x, w, dt, 1, n, k)
				fastest = min(fastest, time.Since(t0).Seconds())
			}
			kernels.Use(prev)
			gbps := float64(len(w)) / fastest / 1e9
			best[i] = max(best[i], gbps)
			ratios[i] = append(ratios[i], gbps/read)
		}
	}
	var out []Result
	for i, v := range vs {
		sort.Float64s(ratios[i])
		r := Result{DType: strings.ToLower(string(dt)), M: 1, K: k, N: n, Shape: shape(1, k, n), Variant: v,
			GFLOPS: 2 * float64(n*k) * best[i] / float64(len(w)), GBps: best[i], OfRead: ratios[i][gemvRounds/2]}
		if c.TriadGBps > 0 {
			r.OfPeak = best[i] / c.TriadGBps
		}
		out = append(out, r)
	}
	return out
}

// bestSplit runs f over [0, n) split evenly across the cores, three times, and returns the
// best rate in GB/s for the given bytes per pass.
func bestSplit(n, bytes int, f func(lo, hi int)) float64 {
	workers := runtime.GOMAXPROCS(0)
	best := 0.0
	for rep := 0; rep < 3; rep++ {
		var wg sync.WaitGroup
		t0 := time.Now()
		chunk := n / workers
		for g := 0; g < workers; g++ {
			wg.Add(1)
			go func(lo, hi int) {
				defer wg.Done()
				f(lo, hi)
			}(g*chunk, (g+1)*chunk)
		}
		wg.Wait()
		best = max(best, float64(bytes)/time.Since(t0).Seconds()/1e9)
	}
	return best
}
