package model

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/neurosurg/neurosurg/model/kernels"
)

// firstNonFinite against the definition (exponent bits all ones), for every dtype, every
// position of buffers around its 32-byte blocks, and the values next to the edge.
func TestFirstNonFinite(t *testing.T) {
	type dtCase struct {
		dt            kernels.DType
		bad, good     []uint32 // non-finite and finite bit patterns
		exponentMask  uint32
		elementsShown int
	}
	cases := []dtCase{
		{kernels.BF16, []uint32{0x7f80, 0xff80, 0x7fc0, 0x7f81, 0xffff}, []uint32{0x7f7f, 0xff7f, 0, 0x8000, 0x3f80, 0x0080}, 0x7f80, 0},
		{kernels.F16, []uint32{0x7c00, 0xfc00, 0x7e00, 0x7c01, 0xffff}, []uint32{0x7bff, 0xfbff, 0, 0x8000, 0x3c00, 0x0400}, 0x7c00, 0},
		{kernels.F32, []uint32{0x7f800000, 0xff800000, 0x7fc00000, 0x7f800001}, []uint32{0x7f7fffff, 0xff7fffff, 0, 0x80000000, 0x3f800000}, 0x7f800000, 0},
	}
	rng := rand.New(rand.NewPCG(1, 1))
	for _, c := range cases {
		es := c.dt.Size()
		put := func(b []byte, i int, v uint32) {
			if es == 2 {
				binary.LittleEndian.PutUint16(b[i*es:], uint16(v))
			} else {
				binary.LittleEndian.PutUint32(b[i*es:], v)
			}
		}
		for n := 0; n < 70; n++ {
			b := make([]byte, n*es)
			for i := 0; i < n; i++ {
				put(b, i, c.good[rng.IntN(len(c.good))])
			}
			if got := firstNonFinite(b, c.dt); got != -1 {
				t.Fatalf("%s: %d finite values: found %d", c.dt, n, got)
			}
			for at := 0; at < n; at++ {
				for _, bad := range c.bad {
					nb := append([]byte(nil), b...)
					put(nb, at, bad)
					if at+1 < n && rng.IntN(2) == 0 {
						put(nb, at+1+rng.IntN(n-at-1), c.bad[0]) // a later one does not matter
					}
					if got := firstNonFinite(nb, c.dt); got != at {
						t.Fatalf("%s: %#x at %d of %d: found %d", c.dt, bad, at, n, got)
					}
				}
			}
		}
		// Random words: the scan agrees with the element-wise definition.
		for trial := 0; trial < 2000; trial++ {
			b := make([]byte, (1+rng.IntN(40))*es)
			for i := range b {
				b[i] = byte(rng.Uint32())
			}
			want := -1
			for i := 0; i*es < len(b); i++ {
				var v uint32
				if es == 2 {
					v = uint32(binary.LittleEndian.Uint16(b[i*es:]))
				} else {
					v = binary.LittleEndian.Uint32(b[i*es:])
				}
				if v&c.exponentMask == c.exponentMask {
					want = i
					break
				}
			}
			if got := firstNonFinite(b, c.dt); got != want {
				t.Fatalf("%s: random %x: found %d, want %d", c.dt, b, got, want)
			}
		}
	}
}

func TestFiniteRow(t *testing.T) {
	row := make([]float32, 10000)
	for i := range row {
		row[i] = float32(i) - 5000
	}
	if !finiteRow(row) {
		t.Fatal("finite row reported non-finite")
	}
	for _, at := range []int{0, 4095, 4096, 9999} {
		for _, v := range []float32{float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1))} {
			r := append([]float32(nil), row...)
			r[at] = v
			if finiteRow(r) {
				t.Errorf("%v at %d not seen", v, at)
			}
		}
	}
}

// The weight scan reads at memory speed: on a BF16 Qwen2-0.5B (988 MB) it costs a fraction
// of what copying the weights into memory at load does.
func BenchmarkNonFiniteScan(b *testing.B) {
	buf := make([]byte, 64<<20)
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		if firstNonFinite(buf, kernels.BF16) != -1 {
			b.Fatal("zeros are finite")
		}
	}
}
