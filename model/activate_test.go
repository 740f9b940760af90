package model

import (
	"math"
	"testing"
)

// BenchmarkActivate is one FFN row group's activation (a vision MLP's width), per activation.
func BenchmarkActivate(b *testing.B) {
	x := make([]float32, 4096)
	for _, act := range []string{"gelu", "gelu_pytorch_tanh", "quick_gelu"} {
		b.Run(act, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				for j := range x {
					x[j] = float32(j%97) * 0.01
				}
				activate(x, act)
			}
		})
	}
}

// The activation runs on every FFN row group of every module, in decode too: it must not
// allocate (building its functions per call once cost 1–2 allocations).
func TestActivateAllocatesNothing(t *testing.T) {
	x := make([]float32, 256)
	for act := range activations {
		if n := testing.AllocsPerRun(20, func() { activate(x, act) }); n != 0 {
			t.Errorf("%s: %v allocations per call", act, n)
		}
	}
}

// The vector activations agree with the float64 definitions: quick-GELU and GELU within 5e-6
// relative (plus 1e-25 absolute: the float64 GELU underflows to 0 below −11) from −30 to 30, and the sign (firing) is the definition's.
func TestVectorActivationsMatchFloat64(t *testing.T) {
	for _, act := range []string{"quick_gelu", "gelu"} {
		f, _, _ := activation(act)
		var xs []float32
		for v := -30.0; v <= 30; v += 0.00731 {
			xs = append(xs, float32(v))
		}
		xs = append(xs, 0, float32(math.Copysign(0, -1)), 1e-30, -1e-30, 88, -88, 1e4, -1e4)
		got := append([]float32(nil), xs...)
		activate(got, act)
		for i, v := range xs {
			want := f(float64(v))
			if d := math.Abs(float64(got[i]) - want); d > 5e-6*math.Abs(want)+1e-25 {
				t.Fatalf("%s(%g) = %g, want %g", act, v, got[i], want)
			}
			if (got[i] > 0) != (want > 0) {
				t.Fatalf("%s(%g) = %g: fires differently from %g", act, v, got[i], want)
			}
		}
	}
}
