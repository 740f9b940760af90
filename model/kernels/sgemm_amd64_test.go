//go:build !purego && !noasm

package kernels

import (
	"math"
	"math/rand/v2"
	"testing"

	"golang.org/x/sys/cpu"
)

// The assembly micro-kernels against their Go twins, with guard values after the output.
func TestAssemblyTwins(t *testing.T) {
	if !cpu.X86.HasAVX512F {
		t.Skip("no AVX-512 on this CPU: the generic path is the only one")
	}
	rng := rand.New(rand.NewPCG(3, 3))
	for _, k := range []int{1, 3, 17, 64, 255} {
		lda := k + 3
		a := make([]float32, 6*lda)
		b := make([]float32, k*32)
		for i := range a {
			a[i] = rng.Float32() - 0.5
		}
		for i := range b {
			b[i] = rng.Float32() - 0.5
		}
		got := make([]float32, 6*32+1)
		got[6*32] = 777
		want := make([]float32, 6*32)
		sgemm6x32(k, &a[0], lda, &b[0], &got[0])
		sgemm6x32Generic(k, a, lda, b, want)
		if got[6*32] != 777 {
			t.Fatal("sgemm6x32 wrote past its tile")
		}
		for i := range want {
			if math.Abs(float64(got[i]-want[i])) > 1e-5*float64(k) {
				t.Fatalf("k=%d: c[%d] = %g, want %g", k, i, got[i], want[i])
			}
		}
	}
	for _, n := range []int{16, 48, 64} {
		a, b, y := make([]float32, n), make([]float32, n), make([]float32, n+1)
		var want float64
		for i := range a {
			a[i], b[i], y[i] = rng.Float32()-.5, rng.Float32()-.5, rng.Float32()
			want += float64(a[i]) * float64(b[i])
		}
		if got := dotF32(&a[0], &b[0], n); math.Abs(float64(got)-want) > 1e-5 {
			t.Errorf("dotF32 n=%d: %g, want %g", n, got, want)
		}
		y[n] = 777
		ref := append([]float32(nil), y...)
		axpyF32(0.5, &a[0], &y[0], n)
		for i := 0; i < n; i++ {
			if d := y[i] - (ref[i] + 0.5*a[i]); d > 1e-6 || d < -1e-6 || y[n] != 777 {
				t.Fatalf("axpyF32 n=%d at %d: %g, want %g", n, i, y[i], ref[i]+0.5*a[i])
			}
		}
	}
	for _, k := range []int{16, 48, 896} {
		x := make([]float32, k)
		w := make([]byte, 4*2*k)
		for p := range x {
			x[p] = rng.Float32() - 0.5
		}
		for i := 0; i < len(w); i += 2 {
			w[i], w[i+1] = byte(rng.IntN(256)), byte(0x3c+rng.IntN(4))
		}
		var out [5]float32
		out[4] = 777
		dotBF16x4(&x[0], &w[0], 2*k, k, &out[0])
		for r := 0; r < 4; r++ {
			var want float64
			for p := 0; p < k; p++ {
				want += float64(x[p]) * float64(bf16(w[r*2*k+2*p:]))
			}
			if math.Abs(float64(out[r])-want) > 1e-5 || out[4] != 777 {
				t.Errorf("dotBF16x4 k=%d row %d: %g, want %g", k, r, out[r], want)
			}
		}
	}
	for _, k := range []int{32, 64, 896} {
		x := make([]float32, k)
		w := make([]byte, 2*k)
		var want float64
		for p := range x {
			x[p] = rng.Float32() - 0.5
			w[2*p+1] = byte(0x3c + rng.IntN(4)) // bf16 values in [2^-7, 2^-3)
			w[2*p] = byte(rng.IntN(256))
			want += float64(x[p]) * float64(bf16(w[2*p:]))
		}
		if got := dotBF16(&x[0], &w[0], k); math.Abs(float64(got)-want) > 1e-5 {
			t.Errorf("dotBF16 k=%d: %g, want %g", k, got, want)
		}
	}
}
