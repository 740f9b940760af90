//go:build !purego && !noasm

package kernels

import (
	"math"
	"runtime"
	"sync/atomic"
	"unsafe"

	"github.com/neurosurg/neurosurg/dtype"
)

//go:generate go run ./gen -out gemm_amd64.s

// gemmF32 computes a tileM×tileN block C (+)= Σ_p a[p][i]·b[p][j] over kc steps, with a packed
// [kc][tileM] f32 and b packed [kc][tileN] f32; C has row stride ldc. Requires AVX-512F.
//
//go:noescape
func gemmF32(kc int, a, b unsafe.Pointer, c *float32, ldc int, accumulate int)

// gemmF32AVX2 is the AVX2/FMA micro-kernel: a 6×16 tile, a packed [kc][6], b packed [kc][16].
//
//go:noescape
func gemmF32AVX2(kc int, a, b unsafe.Pointer, c *float32, ldc int, accumulate int)

// gemmBF16 is gemmF32 over kc k-pairs with VDPBF16PS: a packed [kc][tileM] and b packed
// [kc][tileN] words of two bf16 each (even k in the low half). Requires AVX512_BF16.
//
//go:noescape
func gemmBF16(kc int, a, b unsafe.Pointer, c *float32, ldc int, accumulate int)

// gemvBF16DotRows computes out[r] = Σ_q x[q]·w[4·kp·r + 4q:] (kp words of bf16 pairs) for
// r < rows: rows stored back to back, kp a positive multiple of 16. Requires AVX512_BF16.
//
//go:noescape
func gemvBF16DotRows(x unsafe.Pointer, w *byte, kp int, rows int, out *float32)

// transpose16 moves word c of row r (rows rowBytes apart from src) to dst[c*32 + r] for
// r < 16 and blocks × 16 words c, one 16×16 block in registers at a time. Requires AVX-512F.
//
//go:noescape
func transpose16(dst *uint32, src *byte, rowBytes int, blocks int)

// packA12F32 writes 12 rows of f32 (ldx bytes apart) as [16·blocks][12] words. AVX-512F.
//
//go:noescape
func packA12F32(dst *uint32, x unsafe.Pointer, ldx int, blocks int)

// packA12BF16 rounds 12 rows of 32·blocks f32 (ldx bytes apart) to bf16 pairs, written as
// [16·blocks][12] words. Requires AVX512_BF16.
//
//go:noescape
func packA12BF16(dst *uint32, x unsafe.Pointer, ldx int, blocks int)

// dpbf16Peak runs iters × 12 VDPBF16PS (768 flops per iteration) on registers only.
//
//go:noescape
func dpbf16Peak(iters int)

// A tiling is one micro-kernel shape with its kernels: mr activation rows × nr weight rows.
type tiling struct {
	mr, nr    int
	f32, bf16 func(kc int, a, b unsafe.Pointer, c *float32, ldc int, accumulate int) // bf16: VDPBF16PS
	avx512    bool                                                                   // the AVX-512 packers apply (mr 12, nr 32)
}

var (
	tiles512 = tiling{mr: tileM, nr: tileN, f32: gemmF32, bf16: gemmBF16, avx512: true}
	tiles256 = tiling{mr: 6, nr: 16, f32: gemmF32AVX2}
)

const (
	tileM = 12 // activation rows per micro-kernel call (2·tileM of the 32 zmm registers accumulate)
	tileN = 32 // weight rows (output columns) per micro-kernel call: two zmm wide
	// blockK is the k depth of one packed B micro-panel, in 4-byte words (f32 steps or bf16
	// pairs): 256 × 32 × 4 B = 32 KiB stays in the 48 KiB L1d while every row panel of A passes.
	blockK = 256
	// groupWords bounds the A block one sweep over a packed B panel reads per k block (384 KiB
	// of a 1–2 MiB L2): at 1024 rows A alone (1 MiB) evicted the panel.
	groupWords = 96 << 10
	// segWords bounds the packed part of a B panel (128 KiB): a whole-k f32 panel at k = 4864
	// (608 KiB) and the A group did not fit in L2 together.
	segWords = 32 << 10
)

// gemmBlocked is MatMul for m > 1 with one weight; see gemmShared.
func gemmBlocked(t *tiling, out, x []float32, w []byte, dt DType, m, n, k int, dot bool) {
	gemmShared(t, x, m, k, dot, Product{Out: out, W: w, DType: dt, N: n})
}

// gemmShared is MatMul for m > 1 over one or more weights sharing the activations: A is packed
// once into tileM-row panels; workers take tileN-column panels of all the weights in turn,
// pack each (converted to f32, or kept as bf16 pairs when dot is set; ≤ 32·k words,
// L2-resident) and, blockK deep at a time (an L1-resident micro-panel), sweep all of A's row
// panels with the micro-kernel, accumulating into the product's output.
func gemmShared(t *tiling, x []float32, m, k int, dot bool, ps ...Product) {
	tileM, tileN := t.mr, t.nr
	steps := k
	if dot {
		steps = (k + 1) / 2
	}
	kBlocks := (steps + blockK - 1) / blockK
	kc := ((steps+kBlocks-1)/kBlocks + 15) &^ 15 // whole 16-step transposes per block
	kBlocks = (steps + kc - 1) / kc
	mPanels := (m + tileM - 1) / tileM
	groupPanels := max(1, groupWords/(tileM*kc))
	segSteps := max(1, segWords/tileN/kc) * kc
	first := panelStarts(ps, tileN)
	nPanels := first[len(ps)]
	workers := runtime.GOMAXPROCS(0)

	ap := words(kBlocks * mPanels * kc * tileM)
	defer putWords(ap)
	apack := *ap
	// A is laid out k-block-major: block (kb, ip) holds steps [kb·kc, (kb+1)·kc) of row panel ip,
	// so the blocks a group of row panels sweeps per k block sit side by side.
	forEach(mPanels, func(ip int) {
		for kb := 0; kb < kBlocks; kb++ {
			s0, s1 := kb*kc, min((kb+1)*kc, steps)
			base := (kb*mPanels + ip) * kc * tileM
			packA(t, apack[base:base+(s1-s0)*tileM], x, ip*tileM, m, k, s0, s1, dot)
		}
	})

	kern := t.f32
	if dot {
		kern = t.bf16
	}
	var next atomic.Int64
	// Each chunk is one worker's loop over the panels (the pool's workers and the caller).
	Parallel(min(workers, nPanels), 1, func(_, _ int) {
		// Pooled: a fresh 300 KiB buffer per call costs page faults on its first writes.
		bp := words(min(steps, segSteps) * tileN)
		defer putWords(bp)
		bpack := *bp
		edge := make([]float32, tileM*tileN)
		var cols []float32 // a whole column panel when it is narrower than tileN
		pi := 0
		for {
			jp := int(next.Add(1) - 1)
			if jp >= nPanels {
				return
			}
			for jp >= first[pi+1] {
				pi++
			}
			out, w, dt, n := ps[pi].Out, ps[pi].W, ps[pi].DType, ps[pi].N
			j0 := (jp - first[pi]) * tileN
			width := min(tileN, n-j0)
			if width < tileN && cols == nil {
				cols = make([]float32, mPanels*tileM*tileN)
			}
			// The panel is packed segSteps at a time (≤ 128 KiB: all of k for most shapes);
			// row panels go in groups whose A block (group × blockK words) stays in L2 beside
			// it, and every group reuses the packed segment.
			for seg0 := 0; seg0 < steps; seg0 += segSteps {
				seg1 := min(seg0+segSteps, steps)
				packB(t, bpack, w, dt, j0, width, k, seg0, seg1, dot)
				for g0 := 0; g0 < mPanels; g0 += groupPanels {
					for s0 := seg0; s0 < seg1; s0 += kc {
						s1 := min(s0+kc, seg1)
						acc := 0
						if s0 > 0 {
							acc = 1
						}
						for ip := g0; ip < min(g0+groupPanels, mPanels); ip++ {
							a := unsafe.Pointer(&apack[(s0/kc*mPanels+ip)*kc*tileM])
							c, ldc := (*float32)(nil), n
							switch {
							case width < tileN:
								c, ldc = &cols[ip*tileM*tileN], tileN
							case ip*tileM+tileM > m:
								c, ldc = &edge[0], tileN
							default:
								c = &out[ip*tileM*n+j0]
							}
							kern(s1-s0, a, unsafe.Pointer(&bpack[(s0-seg0)*tileN]), c, ldc, acc)
						}
					}
				}
			}
			copyEdges(out, cols, edge, m, n, j0, width, tileM, tileN)
		}
	})
}

// gemvBF16DotAVX512 is the decode path (m ≤ smallM rows) of the bf16-rounding variant: x is
// rounded to bf16 pairs once and every weight row is streamed with VDPBF16PS, one row after
// another (a single sequential stream per core reads ~1.5× faster than four interleaved rows,
// measured), against each activation row while it sits in L1. Packing W for a few rows would
// cost more than the products: the 8 last rows of a batch against a 151936-row lm_head did.
func gemvBF16DotAVX512(out, x []float32, w []byte, m, n, k int) {
	kp := (k + 1) / 2
	xp := words(m * kp)
	defer putWords(xp)
	pairs := *xp
	for i := 0; i < m; i++ {
		packA1(pairs[i*kp:(i+1)*kp], x[i*k:(i+1)*k])
	}
	body := k / 32 * 16 // pairs the kernel takes; the tail runs in Go on the same rounded x
	if m == 1 && k%32 == 0 {
		// Decode: a chunk of rows is one call and one stream.
		dotRowsTasks.Run(n, rowChunk, dotRowsTask{pairs: pairs, w: w, out: out, k: k})
		return
	}
	dotRowsTasks.Run(n, rowChunk, dotRowsTask{pairs: pairs, w: w, out: out, m: m, n: n, k: k, body: body})
}

// dotRowsTask is gemvBF16DotAVX512's loop over weight rows: with m = 0, one activation row
// against contiguous rows (one stream); otherwise m rows against each weight row in turn, the
// k mod 32 tail in Go.
type dotRowsTask struct {
	pairs         []uint32
	w             []byte
	out           []float32
	m, n, k, body int
}

var dotRowsTasks TaskPool[dotRowsTask, *dotRowsTask]

func (t *dotRowsTask) Run(j0, j1 int) {
	pairs, w, out, m, n, k, body := t.pairs, t.w, t.out, t.m, t.n, t.k, t.body
	kp := (k + 1) / 2
	if m == 0 {
		gemvBF16DotRows(unsafe.Pointer(&pairs[0]), &w[j0*k*2], kp, j1-j0, &out[j0])
		return
	}
	for j := j0; j < j1; j++ {
		for i := 0; i < m; i++ {
			xi := pairs[i*kp : (i+1)*kp]
			if body == 0 {
				out[i*n+j] = dotPairsTail(xi, w[j*k*2:(j+1)*k*2], 0)
				continue
			}
			var s float32
			gemvBF16DotRows(unsafe.Pointer(&xi[0]), &w[j*k*2], body, 1, &s)
			out[i*n+j] = s + dotPairsTail(xi, w[j*k*2:(j+1)*k*2], 2*body)
		}
	}
}

// dotPairsTail is Σ over p ≥ from of row's bf16 element p times element p of the bf16 pairs
// xi: the part of a row the kernel leaves (k mod 32).
func dotPairsTail(xi []uint32, row []byte, from int) float32 {
	var s float32
	for p := from; p < len(row)/2; p++ {
		s += bf16(row[2*p:]) * math.Float32frombits(xi[p/2]<<(16*(1-p%2))&0xffff0000)
	}
	return s
}

// gemvSharedBF16Dot is decode's MatMulShared: x rounded once, and the rows of all the
// products (q, k and v; gate and up) spread over the cores as one range, so a 128-row k_proj
// does not run alone between two fan-outs. It declines (false) unless every weight is BF16 and
// k a multiple of 32.
func gemvSharedBF16Dot(x []float32, k int, ps []Product) bool {
	if k%32 != 0 || len(ps) > maxProducts {
		return false
	}
	t := sharedDotTask{k: k, np: len(ps)}
	for i, p := range ps {
		if p.DType != BF16 {
			return false
		}
		t.ps[i] = p
		t.first[i+1] = t.first[i] + p.N
	}
	xp := words(k / 2)
	defer putWords(xp)
	t.pairs = *xp
	packA1(t.pairs, x[:k])
	sharedDotTasks.Run(t.first[len(ps)], rowChunk, t)
	return true
}

// sharedDotTask is gemvSharedBF16Dot's loop: rows [j0, j1) of the products' rows laid end to
// end. The products are copied in, so the caller's slice of them stays on its stack.
type sharedDotTask struct {
	pairs []uint32
	k, np int
	ps    [maxProducts]Product
	first [maxProducts + 1]int
}

var sharedDotTasks TaskPool[sharedDotTask, *sharedDotTask]

func (t *sharedDotTask) Run(j0, j1 int) {
	for i, p := range t.ps[:t.np] {
		lo, hi := max(j0, t.first[i]), min(j1, t.first[i+1])
		if lo < hi {
			r0 := lo - t.first[i]
			gemvBF16DotRows(unsafe.Pointer(&t.pairs[0]), &p.W[r0*t.k*2], t.k/2, hi-lo, &p.Out[r0])
		}
	}
}

// packA1 rounds one activation row to bf16 pairs (even k in the low half).
func packA1(dst []uint32, x []float32) {
	k := len(x)
	for p := 0; p+1 < k; p += 2 {
		dst[p/2] = uint32(dtype.Float32ToBF16(x[p])) | uint32(dtype.Float32ToBF16(x[p+1]))<<16
	}
	if k%2 == 1 {
		dst[k/2] = uint32(dtype.Float32ToBF16(x[k-1]))
	}
}

// packA writes rows [i0, i0+tileM) of x, steps [s0, s1), as [s1-s0][tileM] words, zero past
// row m (and past k). Full panels go through the generated register transposes (with
// VCVTNE2PS2BF16 rounding when dot is set and the CPU has it) 16 steps at a time; the rest
// runs in Go.
func packA(t *tiling, dst []uint32, x []float32, i0, m, k, s0, s1 int, dot bool) {
	tileM := t.mr
	first := s0 // the first step Go packs
	if t.avx512 && i0+tileM <= m {
		if blocks := (s1 - s0) / 16; !dot && blocks > 0 {
			packA12F32(&dst[0], unsafe.Pointer(&x[i0*k+s0]), 4*k, blocks)
			first += 16 * blocks
		} else if blocks := (min(s1, k/2) - s0) / 16; dot && blocks > 0 {
			packA12BF16(&dst[0], unsafe.Pointer(&x[i0*k+2*s0]), 4*k, blocks)
			first += 16 * blocks
		}
	}
	clear(dst[(first-s0)*tileM : (s1-s0)*tileM])
	for i := 0; i < tileM && i0+i < m; i++ {
		row := x[(i0+i)*k : (i0+i+1)*k]
		if !dot {
			for p := first; p < s1; p++ {
				dst[(p-s0)*tileM+i] = math.Float32bits(row[p])
			}
			continue
		}
		for q := first; q < s1; q++ {
			p := 2 * q
			w := uint32(dtype.Float32ToBF16(row[p]))
			if p+1 < k {
				w |= uint32(dtype.Float32ToBF16(row[p+1])) << 16
			}
			dst[(q-s0)*tileM+i] = w
		}
	}
}

// packB writes weight rows [j0, j0+width) for steps [s0, s1) as [s1-s0][tileN] words: f32
// values, or the bf16 pairs as stored when dot is set (a little-endian bf16 row read as uint32
// words is already pairs with the even k in the low half). Columns past width are zero. Rows
// are read through word views (amd64 loads need no alignment): this loop runs n·k times per
// MatMul, so it must cost far less than the m multiply-adds each element meets.
func packB(t *tiling, dst []uint32, w []byte, dt DType, j0, width, k, s0, s1 int, dot bool) {
	tileN := t.nr
	if width < tileN {
		clear(dst[:(s1-s0)*tileN])
	}
	es := dt.Size()
	if dot || dt == F32 {
		// Words (bf16 pairs or f32) move as they are: full panels go through the register
		// transpose 16 rows × 16 words at a time; the rest (narrow panels, odd tails) in Go.
		full := s1
		if dot {
			full = min(s1, k/2)
		}
		p1 := s0
		if t.avx512 && width == tileN {
			blocks := (full - s0) / 16
			if blocks > 0 {
				for half := 0; half < 2; half++ {
					transpose16(&dst[16*half], &w[(j0+16*half)*k*es+4*s0], k*es, blocks)
				}
			}
			p1 = s0 + 16*blocks
		}
		for jj := 0; jj < width; jj++ {
			row := w[(j0+jj)*k*es:]
			for p := p1; p < full; p++ {
				dst[(p-s0)*tileN+jj] = uint32(row[4*p]) | uint32(row[4*p+1])<<8 | uint32(row[4*p+2])<<16 | uint32(row[4*p+3])<<24
			}
			if dot && full < s1 { // odd k: the last pair has one element
				dst[(full-s0)*tileN+jj] = uint32(row[4*full]) | uint32(row[4*full+1])<<8
			}
		}
		return
	}
	// BF16 or F16 widened to f32.
	for jj := 0; jj < width; jj++ {
		row := unsafe.Pointer(&w[(j0+jj)*k*es])
		col := dst[jj:]
		if dt == BF16 {
			src := unsafe.Slice((*uint16)(row), s1)[s0:]
			for p, v := range src {
				col[p*tileN] = uint32(v) << 16
			}
		} else {
			src := unsafe.Slice((*uint16)(row), s1)[s0:]
			for p, v := range src {
				col[p*tileN] = math.Float32bits(F16ToF32(v))
			}
		}
	}
}

// panelStarts numbers the nr-column panels of the products end to end (the unit gemmShared's
// and gemmAMX's workers take): product i's are [first[i], first[i+1]).
func panelStarts(ps []Product, nr int) (first []int) {
	first = make([]int, len(ps)+1)
	for i, p := range ps {
		first[i+1] = first[i] + (p.N+nr-1)/nr
	}
	return first
}

// copyEdges moves a column panel's results that the micro-kernel wrote aside into out (m × n):
// a panel narrower than tileN (cols, all rows at stride tileN), or else the last, partial row
// panel (edge, at stride tileN).
func copyEdges(out, cols, edge []float32, m, n, j0, width, tileM, tileN int) {
	switch {
	case width < tileN:
		for i := 0; i < m; i++ {
			copy(out[i*n+j0:i*n+j0+width], cols[i*tileN:i*tileN+width])
		}
	case m%tileM != 0:
		i0 := m / tileM * tileM
		for i := i0; i < m; i++ {
			copy(out[i*n+j0:i*n+j0+tileN], edge[(i-i0)*tileN:(i-i0+1)*tileN])
		}
	}
}

// forEach runs f(0..n-1) over the cores.
func forEach(n int, f func(i int)) {
	Parallel(n, 1, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			f(i)
		}
	})
}
