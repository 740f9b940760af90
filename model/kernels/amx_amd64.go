//go:build !purego && !noasm

package kernels

import (
	"runtime"
	"sync/atomic"
	"unsafe"
)

// amxBF16 computes 32×32 f32 blocks C (+)= A·B over kc k-pairs (kc a positive multiple of
// 16) for `panels` row panels of A against one packed B block: A's tiles are 16 rows of bf16
// pairs lda bytes apart (the second tile 16·lda after the first), a k-step of 16 pairs moves A
// by aStep bytes, a row panel by aPanel; B is packed [kc][32] words (the layout packB writes
// with dot set, which is AMX's VNNI layout for B). C is loaded from cIn (row stride ldcIn bytes,
// panels cInPanel bytes apart) when accumulate is set, zeros otherwise, and stored to cOut
// (ldcOut, cOutPanel). cfg is amxTileConfig, or an amxEdgeConfigs entry for a last row panel of
// fewer than 32 rows. Requires AMX-BF16 and the process's permission for tile data.
//
//go:noescape
func amxBF16(cfg *byte, a unsafe.Pointer, lda, aStep, aPanel int, b unsafe.Pointer, cIn *float32, ldcIn, cInPanel int, cOut *float32, ldcOut, cOutPanel int, kc int, accumulate int, panels int)

// cvtBF16Pairs rounds 32·blocks f32 at src to bf16 (nearest even, as VCVTNE2PS2BF16 does:
// the rounding of the avx512bf16 packers) and stores each block's 16 words of pairs at dst,
// dstStride bytes after the previous block's. Requires AVX512_BF16.
//
//go:noescape
func cvtBF16Pairs(dst *uint32, src *float32, blocks int, dstStride int)

// amxPeak runs iters × 4 TDPBF16PS on tiles only (65536 flops per iteration).
//
//go:noescape
func amxPeak(cfg *byte, iters int)

// amxTileConfig is LDTILECFG's 64-byte operand: palette 1, eight tiles of 16 rows × 64 bytes
// (colsb at bytes 16+2t, rows at byte 48+t).
var amxTileConfig = amxConfig(amxM)

// amxEdgeConfigs[r] is the configuration for a last row panel of r < 32 rows: C's and A's
// upper tiles (TMM0, 1, 4) of min(r, 16) rows, the lower ones (TMM2, 3, 5) of r − 16 (at least
// one: the kernel always runs them; the row computed past m is padding). TDPBF16PS takes time
// in proportion to its rows, so the one-row tail of a 257- or 577-row tower costs a sixteenth
// of a full panel instead of a whole one.
var amxEdgeConfigs = func() (c [amxM][64]byte) {
	for r := 1; r < amxM; r++ {
		c[r] = amxConfig(r)
	}
	return c
}()

func amxConfig(rows int) (c [64]byte) {
	c[0] = 1
	upper, lower := byte(min(rows, 16)), byte(max(rows-16, 1))
	for t := 0; t < 8; t++ {
		c[16+2*t] = 64
		c[48+t] = 16
	}
	for _, t := range []int{0, 1, 4} {
		c[48+t] = upper
	}
	for _, t := range []int{2, 3, 5} {
		c[48+t] = lower
	}
	return c
}

const (
	amxM = 32 // activation rows per block (two A tiles)
	amxN = 32 // weight rows (output columns) per block (two B tiles)
	// amxKC is the k depth of one packed B block, in pairs: 256 × 32 × 4 B = 32 KiB stays in
	// L1d while every row panel of A passes over it.
	amxKC = 256
	// amxTileWords is one 32-row panel's k-step: two 16 × 16-word tiles, 2 KiB.
	amxTileWords = amxM * 16
	// amxGroup is how many column panels a worker sweeps chunk by chunk when the packed A is
	// larger than amxGroupAbove bytes (see gemmAMX): 577×4096 went from 780 to 1120 GFLOP/s
	// (best of 40 on 2 cores); A of 1.2 MB (577×1024) stays in L2 and was as fast or
	// slightly faster one panel at a time.
	amxGroup = 8
)

var amxGroupAbove = 3 << 19 // a variable for the test that takes the grouped path on small shapes

var amxTiling = tiling{mr: amxM, nr: amxN, avx512: true}

// gemmAMX is MatMul (m > smallM) of the AMX variant over BF16 weights sharing the activations.
// The rows of x are rounded to bf16 pairs once (as the avx512bf16 variant rounds them) into
// 32-row panels of k-steps, each k-step's two 16-row tiles 1 KiB apiece and contiguous (AMX
// loads a tile row by row: contiguous tiles stream through the prefetchers), padded with zeros
// to a multiple of 16 pairs. Workers take 32-column panels of all the weights in turn, pack
// each 256 pairs deep in AMX's B layout and sweep all row panels with the tile kernel; partial
// sums over k live in a contiguous per-worker buffer and the last k-chunk stores the tiles
// straight into the output (reloading and restoring them at the output's row stride cost as
// much as the products: the rows of a 32-column panel are n·4 bytes apart, the same L1 set for
// n a multiple of 1024). Products are bf16 × bf16 accumulated in f32, as VDPBF16PS does, but
// the tiles sum in their own order: results differ from the avx512bf16 variant's in the last
// bits of the f32 sums (about 1e-7 relative), which is why this is a variant of its own.
func gemmAMX(x []float32, m, k int, ps ...Product) {
	pairs := (k + 1) / 2
	kpad := (pairs + 15) &^ 15
	steps := kpad / 16
	mPanels := (m + amxM - 1) / amxM
	ap := words(mPanels * amxM * kpad)
	defer putWords(ap)
	apack := *ap
	forEach(mPanels, func(ip int) {
		panel := apack[ip*amxM*kpad : (ip+1)*amxM*kpad]
		for r := 0; r < amxM; r++ {
			row := ip*amxM + r
			if row >= m {
				for s := 0; s < steps; s++ {
					clear(panel[s*amxTileWords+r*16 : s*amxTileWords+r*16+16])
				}
				continue
			}
			// k-step s of this row: words r·16 … r·16+15 of the panel's tile block s.
			xr := x[row*k : (row+1)*k]
			full := k / 32
			if full > 0 {
				cvtBF16Pairs(&panel[r*16], &xr[0], full, 4*amxTileWords)
			}
			if full < steps {
				var tail [16]uint32
				packA1(tail[:], xr[32*full:])
				copy(panel[full*amxTileWords+r*16:], tail[:])
				for s := full + 1; s < steps; s++ {
					clear(panel[s*amxTileWords+r*16 : s*amxTileWords+r*16+16])
				}
			}
		}
	})
	first := panelStarts(ps, amxN)
	nPanels := first[len(ps)]
	fullPanels, edgeRows := m/amxM, m%amxM
	chunks := (kpad + amxKC - 1) / amxKC
	// A worker takes `group` column panels at a time and runs the k-chunks outermost over
	// them, so that one chunk of A (all rows × 256 pairs: 590 KiB at 577 rows) is read from L2
	// `group` times before the next is fetched; with the column panel outermost, an A larger
	// than L2 (577 × 4096, 4.7 MB) came from L3 once per 32 output columns. The group shrinks
	// to keep every worker busy.
	group := 1
	if chunks > 1 && 4*len(apack) > amxGroupAbove {
		group = max(1, min(amxGroup, nPanels/runtime.GOMAXPROCS(0)))
	}
	var next atomic.Int64
	Parallel(min(runtime.GOMAXPROCS(0), (nPanels+group-1)/group), 1, func(_, _ int) {
		bp := words(amxKC * amxN)
		defer putWords(bp)
		bpack := *bp
		// sums holds each panel of the group's partial sums over k, all row panels; edge the
		// last partial row panel's (or a narrow column panel's) results.
		// Pooled, not zeroed: the first chunk's tiles start from zero, and only rows < m of
		// edge are read.
		var sums, edge []float32
		if chunks > 1 {
			sp := floats(group * mPanels * amxM * amxN)
			defer putFloats(sp)
			sums = *sp
		}
		for {
			g0 := int(next.Add(int64(group)) - int64(group))
			if g0 >= nPanels {
				return
			}
			g1 := min(g0+group, nPanels)
			for c := 0; c < chunks; c++ {
				s0 := c * amxKC
				s1 := min(s0+amxKC, kpad)
				pi := 0
				for jp := g0; jp < g1; jp++ {
					for jp >= first[pi+1] {
						pi++
					}
					out, w, n := ps[pi].Out, ps[pi].W, ps[pi].N
					j0 := (jp - first[pi]) * amxN
					width := min(amxN, n-j0)
					// packB writes the weight's pairs up to k and zeros past it (a narrow panel
					// is cleared first); the pad rows up to kpad are cleared here.
					real := min(s1, pairs)
					if real > s0 {
						packB(&amxTiling, bpack, w, BF16, j0, width, k, s0, real, true)
					}
					clear(bpack[(max(real, s0)-s0)*amxN : (s1-s0)*amxN])
					acc := 0
					if c > 0 {
						acc = 1
					}
					var part []float32 // this panel's partial sums
					if sums != nil {
						part = sums[(jp-g0)*mPanels*amxM*amxN : (jp-g0+1)*mPanels*amxM*amxN]
					}
					kern := func(ip0, panels int, cOut *float32, ldcOut int) {
						var cIn *float32 // not read when acc is 0
						if part != nil {
							cIn = &part[ip0*amxM*amxN]
						}
						cfg := &amxTileConfig
						if ip0 == fullPanels && edgeRows > 0 {
							cfg = &amxEdgeConfigs[edgeRows]
						}
						amxBF16(&cfg[0], unsafe.Pointer(&apack[ip0*amxM*kpad+s0*amxM]), 64, 4*amxTileWords, 4*amxM*kpad,
							unsafe.Pointer(&bpack[0]), cIn, 4*amxN, 4*amxM*amxN, cOut, 4*ldcOut, 4*amxM*ldcOut, s1-s0, acc, panels)
					}
					if c < chunks-1 {
						if fullPanels > 0 {
							kern(0, fullPanels, &part[0], amxN)
						}
						if edgeRows > 0 {
							kern(fullPanels, 1, &part[fullPanels*amxM*amxN], amxN)
						}
						continue
					}
					direct := fullPanels // row panels whose last chunk stores into out
					if width < amxN {
						direct = 0
					}
					if direct > 0 {
						kern(0, direct, &out[j0], n)
					}
					if direct < mPanels {
						if edge == nil {
							ep := floats(mPanels * amxM * amxN)
							defer putFloats(ep)
							edge = *ep
						}
						if direct < fullPanels { // a narrow column panel: its full row panels first
							kern(direct, fullPanels-direct, &edge[direct*amxM*amxN], amxN)
						}
						if edgeRows > 0 {
							kern(fullPanels, 1, &edge[fullPanels*amxM*amxN], amxN)
						}
						for i := direct * amxM; i < m; i++ {
							copy(out[i*n+j0:i*n+j0+width], edge[i*amxN:i*amxN+width])
						}
					}
				}
			}
		}
	})
}
