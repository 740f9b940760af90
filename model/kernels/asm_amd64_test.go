//go:build !purego && !noasm

package kernels

import (
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"testing"
	"unsafe"

	"golang.org/x/sys/cpu"
)

// The assembly micro-kernels against their Go twins, with guard values after the output.
func TestAssemblyTwins(t *testing.T) {
	if !cpu.X86.HasAVX512F {
		t.Skip("no AVX-512 on this CPU: the generic path is the only one")
	}
	rng := rand.New(rand.NewPCG(3, 3))
	// The micro-kernels: C (+)= A·B on a tile inside a wider C (ldc > tileN), guard values
	// beside the tile, for both the write and the accumulate path.
	for _, dot := range []bool{false, true} {
		if dot && !cpu.X86.HasAVX512BF16 {
			continue
		}
		for _, kc := range []int{1, 3, 17, 256} {
			a := make([]uint32, kc*tileM)
			b := make([]uint32, kc*tileN)
			af := make([]float64, 2*kc*tileM) // decoded: [step][i][half]
			bf := make([]float64, 2*kc*tileN)
			for i := range a {
				if dot {
					lo, hi := bf16bits(rng.Float32()-.5), bf16bits(rng.Float32()-.5)
					a[i] = uint32(lo) | uint32(hi)<<16
					af[2*i], af[2*i+1] = float64(bf16(u16le(lo))), float64(bf16(u16le(hi)))
				} else {
					v := rng.Float32() - .5
					a[i], af[2*i] = math.Float32bits(v), float64(v)
				}
			}
			for i := range b {
				if dot {
					lo, hi := bf16bits(rng.Float32()-.5), bf16bits(rng.Float32()-.5)
					b[i] = uint32(lo) | uint32(hi)<<16
					bf[2*i], bf[2*i+1] = float64(bf16(u16le(lo))), float64(bf16(u16le(hi)))
				} else {
					v := rng.Float32() - .5
					b[i], bf[2*i] = math.Float32bits(v), float64(v)
				}
			}
			const ldc = tileN + 5
			for _, acc := range []int{0, 1} {
				c := make([]float32, tileM*ldc)
				for i := range c {
					c[i] = 777
				}
				kern := gemmF32
				if dot {
					kern = gemmBF16
				}
				kern(kc, unsafe.Pointer(&a[0]), unsafe.Pointer(&b[0]), &c[0], ldc, acc)
				for i := 0; i < tileM; i++ {
					for j := 0; j < ldc; j++ {
						want := 777.0
						if j < tileN {
							want = 777 * float64(acc)
							for p := 0; p < kc; p++ {
								for h := 0; h < 2; h++ {
									want += af[2*(p*tileM+i)+h] * bf[2*(p*tileN+j)+h]
								}
							}
						}
						if math.Abs(float64(c[i*ldc+j])-want) > 1e-4*float64(kc)+1e-3*float64(acc) {
							t.Fatalf("dot=%v kc=%d acc=%d: c[%d][%d] = %g, want %g", dot, kc, acc, i, j, c[i*ldc+j], want)
						}
					}
				}
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
	if cpu.X86.HasAVX512BF16 {
		// Below, at and past the kernel's four-register unroll (64 pairs), plus its tail loop.
		for _, kp := range []int{16, 48, 64, 80, 448} {
			x := make([]uint32, kp)
			w := make([]byte, 4*kp+4)
			var want float64
			for q := range x {
				lo, hi := bf16bits(rng.Float32()-.5), bf16bits(rng.Float32()-.5)
				x[q] = uint32(lo) | uint32(hi)<<16
				for h, xv := range []uint16{lo, hi} {
					w[4*q+2*h], w[4*q+2*h+1] = byte(rng.IntN(256)), byte(0x3c+rng.IntN(4))
					want += float64(bf16(u16le(xv))) * float64(bf16(w[4*q+2*h:]))
				}
			}
			w[4*kp+1] = 0x7f // NaN guard just past the row: must not be read
			var got [2]float32
			got[1] = 777
			if gemvBF16DotRows(unsafe.Pointer(&x[0]), &w[0], kp, 1, &got[0]); math.Abs(float64(got[0])-want) > 1e-5 || got[1] != 777 {
				t.Errorf("gemvBF16DotRows kp=%d: %g, want %g", kp, got[0], want)
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

func bf16bits(v float32) uint16 { return uint16(math.Float32bits(v) >> 16) }

// u16le is a bf16 value as the two little-endian bytes bf16() reads.
func u16le(h uint16) []byte { return []byte{byte(h), byte(h >> 8)} }

// The AMX ceiling is measured where the CPU has the variant, and is well above the VDPBF16PS
// one (16× the products per instruction at a lower issue rate).
func TestAMXPeak(t *testing.T) {
	if !slices.Contains(Variants(), "amx") {
		t.Skip("no AMX-BF16 (or no permission for tile data)")
	}
	// TDPBF16PS does 16× VDPBF16PS's products per instruction; ~9× its throughput measured
	// here: a loop that did no tile work would not clear the bar.
	if p, dot := AMXPeak(), BF16DotPeak(); !(p > 2*dot) {
		t.Fatalf("AMX peak %g GFLOP/s, VDPBF16PS peak %g: want more than twice", p, dot)
	}
}

// The AMX GEMM's grouped path (column panels swept chunk by chunk, taken when A exceeds L2)
// and its panel-at-a-time path agree with a float64 reference over the same bf16-rounded
// activations: several k-chunks, a partial last row panel, a narrow last column panel, and
// two products sharing the activations with a group straddling them.
func TestAMXGroupedGEMM(t *testing.T) {
	if !slices.Contains(Variants(), "amx") {
		t.Skip("no AMX-BF16 (or no permission for tile data)")
	}
	prev := Use("amx")
	defer Use(prev)
	defer func(v int) { amxGroupAbove = v }(amxGroupAbove)
	// The group is nPanels / GOMAXPROCS (at most amxGroup): 10 panels on 2 procs make groups of
	// 5; on 16 procs every group would be one panel and the grouped path would go untested.
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(2))
	rng := rand.New(rand.NewPCG(7, 7))
	m, k := 70, 1100 // 3 row panels (the last of 6 rows), 550 pairs: 3 chunks
	ns := []int{200, 72}
	x := make([]float32, m*k)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	xr := make([]float32, len(x)) // x as the packer rounds it (nearest even)
	for i, v := range x {
		b := math.Float32bits(v)
		xr[i] = math.Float32frombits((b + 0x7fff + (b >> 16 & 1)) &^ 0xffff)
	}
	ws := make([][]byte, len(ns))
	for i, n := range ns {
		ws[i] = make([]byte, 2*n*k)
		for j := 0; j < n*k; j++ {
			h := bf16bits(float32(rng.NormFloat64()))
			ws[i][2*j], ws[i][2*j+1] = byte(h), byte(h>>8)
		}
	}
	for _, above := range []int{1 << 40, 0} {
		amxGroupAbove = above
		var ps []Product
		for i, n := range ns {
			ps = append(ps, Product{Out: make([]float32, m*n), W: ws[i], DType: BF16, N: n})
		}
		gemmAMX(x, m, k, ps...)
		for pi, p := range ps {
			for r := 0; r < m; r++ {
				for j := 0; j < p.N; j++ {
					var want float64
					for q := 0; q < k; q++ {
						want += float64(xr[r*k+q]) * float64(bf16(ws[pi][2*(j*k+q):]))
					}
					if got := float64(p.Out[r*p.N+j]); math.Abs(got-want) > 1e-4*(1+math.Abs(want)) {
						t.Fatalf("grouped=%v product %d [%d,%d] = %g, want %g", above == 0, pi, r, j, got, want)
					}
				}
			}
		}
	}
}
