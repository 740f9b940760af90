package model

import "testing"

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
