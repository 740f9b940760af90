package kernels

import (
	"os"
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
		return previous
	}
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
