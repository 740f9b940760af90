//go:build !purego && !noasm

package kernels

import (
	"runtime"
	"sync/atomic"
	"unsafe"
)

// amxBF16 computes a 32×32 f32 block C (+)= A·B over kc k-pairs (kc a positive multiple of
// 16): A is 32 rows of bf16 pairs, lda bytes apart; B is packed [kc][32] words (the layout
// packB writes with dot set, which is AMX's VNNI layout for B); C has row stride ldc bytes.
// cfg is amxTileConfig. Requires AMX-BF16 and the process's permission for tile data.
//
//go:noescape
func amxBF16(cfg *byte, a unsafe.Pointer, lda int, b unsafe.Pointer, c *float32, ldc int, kc int, accumulate int)

// cvtBF16Pairs rounds 32·blocks f32 at src to bf16 (nearest even, as VCVTNE2PS2BF16 does:
// the rounding of the avx512bf16 packers) and stores them in order at dst: 16·blocks words of
// pairs. Requires AVX512_BF16.
//
//go:noescape
func cvtBF16Pairs(dst *uint32, src *float32, blocks int)

// amxPeak runs iters × 4 TDPBF16PS on tiles only (65536 flops per iteration).
//
//go:noescape
func amxPeak(cfg *byte, iters int)

// amxTileConfig is LDTILECFG's 64-byte operand: palette 1, eight tiles of 16 rows × 64 bytes
// (colsb at bytes 16+2t, rows at byte 48+t).
var amxTileConfig = func() (c [64]byte) {
	c[0] = 1
	for t := 0; t < 8; t++ {
		c[16+2*t] = 64
		c[48+t] = 16
	}
	return c
}()

const (
	amxM = 32 // activation rows per kernel call (two A tiles)
	amxN = 32 // weight rows (output columns) per kernel call (two B tiles)
	// amxKC is the k depth of one packed B block, in pairs: 256 × 32 × 4 B = 32 KiB stays in
	// L1d while every row panel of A passes over it.
	amxKC = 256
)

var amxTiling = tiling{mr: amxM, nr: amxN, avx512: true}

// gemmAMX is MatMul (m > smallM) of the AMX variant over BF16 weights sharing the activations:
// the rows of x are rounded to bf16 pairs once (as the avx512bf16 variant rounds them) into
// 32-row panels, padded with zeros to a multiple of 16 pairs; workers take 32-column panels of
// all the weights in turn, pack each 256 pairs deep in AMX's B layout and sweep all row panels
// with the tile kernel. Products are bf16 × bf16 accumulated in f32, as VDPBF16PS does, but
// the tiles sum in their own order: results differ from the avx512bf16 variant's in the last
// bits of the f32 sums (about 1e-7 relative), which is why this is a variant of its own.
func gemmAMX(x []float32, m, k int, ps ...Product) {
	pairs := (k + 1) / 2
	kpad := (pairs + 15) &^ 15
	mPanels := (m + amxM - 1) / amxM
	ap := words(mPanels * amxM * kpad)
	defer putWords(ap)
	apack := *ap
	forEach(mPanels, func(ip int) {
		for r := ip * amxM; r < (ip+1)*amxM; r++ {
			row := apack[r*kpad : (r+1)*kpad]
			if r >= m {
				clear(row)
				continue
			}
			xr := x[r*k : (r+1)*k]
			full := k / 32
			if full > 0 {
				cvtBF16Pairs(&row[0], &xr[0], full)
			}
			packA1(row[16*full:], xr[32*full:])
			clear(row[pairs:])
		}
	})
	first := make([]int, len(ps)+1)
	for i, p := range ps {
		first[i+1] = first[i] + (p.N+amxN-1)/amxN
	}
	nPanels := first[len(ps)]
	var next atomic.Int64
	Parallel(min(runtime.GOMAXPROCS(0), nPanels), 1, func(_, _ int) {
		bp := words(amxKC * amxN)
		defer putWords(bp)
		bpack := *bp
		edge := make([]float32, amxM*amxN)
		var cols []float32 // a whole column panel when it is narrower than amxN
		pi := 0
		for {
			jp := int(next.Add(1) - 1)
			if jp >= nPanels {
				return
			}
			for jp >= first[pi+1] {
				pi++
			}
			out, w, n := ps[pi].Out, ps[pi].W, ps[pi].N
			j0 := (jp - first[pi]) * amxN
			width := min(amxN, n-j0)
			if width < amxN && cols == nil {
				cols = make([]float32, mPanels*amxM*amxN)
			}
			for s0 := 0; s0 < kpad; s0 += amxKC {
				s1 := min(s0+amxKC, kpad)
				// packB writes the weight's pairs up to k and zeros past it (a narrow panel
				// is cleared first); the pad rows up to kpad are cleared here.
				real := min(s1, pairs)
				if real > s0 {
					packB(&amxTiling, bpack, w, BF16, j0, width, k, s0, real, true)
				}
				clear(bpack[(max(real, s0)-s0)*amxN : (s1-s0)*amxN])
				acc := 0
				if s0 > 0 {
					acc = 1
				}
				for ip := 0; ip < mPanels; ip++ {
					c, ldc := (*float32)(nil), n
					switch {
					case width < amxN:
						c, ldc = &cols[ip*amxM*amxN], amxN
					case ip*amxM+amxM > m:
						c, ldc = &edge[0], amxN
					default:
						c = &out[ip*amxM*n+j0]
					}
					amxBF16(&amxTileConfig[0], unsafe.Pointer(&apack[ip*amxM*kpad+s0]), 4*kpad, unsafe.Pointer(&bpack[0]), c, 4*ldc, s1-s0, acc)
				}
			}
			copyEdges(out, cols, edge, m, n, j0, width, amxM, amxN)
		}
	})
}
