package dtype_test

import (
	"math"
	"testing"

	"github.com/neurosurg/neurosurg/dtype"
)

func TestFloatConversions(t *testing.T) {
	cases := []struct {
		f    float32
		bf16 uint16
		f16  uint16
	}{
		{0, 0, 0},
		{1, 0x3f80, 0x3c00},
		{-2, 0xc000, 0xc000},
		{65504, 0x4780, 0x7bff},                 // f16 max
		{1e6, 0x4974, 0x7c00},                   // f16 overflow -> Inf
		{float32(math.Inf(-1)), 0xff80, 0xfc00}, // -Inf
		{5.960464477539063e-08, 0x3380, 0x0001}, // smallest f16 subnormal
		{1.00390625, 0x3f80, 0x3c04},            // bf16 tie rounds to even (down)
		{1.01171875, 0x3f82, 0x3c0c},            // bf16 tie rounds to even (up)
	}
	for _, c := range cases {
		if got := dtype.Float32ToBF16(c.f); got != c.bf16 {
			t.Errorf("bf16(%g) = %#04x, want %#04x", c.f, got, c.bf16)
		}
		if got := dtype.Float32ToF16(c.f); got != c.f16 {
			t.Errorf("f16(%g) = %#04x, want %#04x", c.f, got, c.f16)
		}
	}
	// Every f16 value round-trips exactly.
	for h := 0; h < 1<<16; h++ {
		f := dtype.F16ToFloat32(uint16(h))
		if f != f { // NaN
			continue
		}
		if back := dtype.Float32ToF16(f); back != uint16(h) {
			t.Fatalf("f16 %#04x -> %g -> %#04x", h, f, back)
		}
	}
	if nan := dtype.Float32ToBF16(float32(math.NaN())); nan&0x7f80 != 0x7f80 || nan&0x7f == 0 {
		t.Errorf("bf16(NaN) = %#04x", nan)
	}
}
