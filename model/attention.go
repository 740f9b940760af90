package model

import (
	"math"
	"unsafe"

	"github.com/neurosurg/neurosurg/model/kernels"
)

// attnRowBlock is how many query rows per head one pass of attentionGEMM scores at once; it
// bounds the score buffer to heads-per-group × attnRowBlock × keys.
const attnRowBlock = 128

// attnScoresBudget bounds the score buffer (floats) of bidirectional attention, which takes
// as many rows per pass as fit: a vision tower's whole span (577 × 577 for CLIP, 1024 × 1024
// for a Qwen2-VL frame) in one pass packs each head's keys and values once instead of once per
// 128 rows, and gives the GEMMs more row panels per packed block. Causal attention keeps
// attnRowBlock: its later blocks score more keys, a single block would score the masked half.
const attnScoresBudget = 1 << 21

// attentionGEMM is attention for a prefill of n rows: per KV head, the query rows of all heads
// sharing it are stacked into one matrix, scored against the keys with one MatMul, softmaxed
// under the causal (and sliding-window) mask, and multiplied with the transposed values with
// a second MatMul. Same result as attention's per-row loop up to summation order; ~20× faster
// at 512 rows, where the loop spends its time in calls of 64-element dot products.
//
// kv is the dtype keys and values go into the two MatMuls as "weights": kernels.BF16 rounds
// them (and, in MatMul, q and the probabilities) to bf16, F32 keeps attention f32; the caller
// takes it from kvDType.
func (a *Attention) attentionGEMM(sc *scratch, out, q, keys, vals []float32, pos0, n int, kv kernels.DType) {
	a.attentionBlocks(sc, out, q, keys, vals, pos0, n, kv, true)
}

// attentionBlocks is attentionGEMM, causal or not: without the causal mask (an encoder's span,
// pos0 = 0) every row block scores all n keys, so the values are transposed once per KV head.
func (a *Attention) attentionBlocks(sc *scratch, out, q, keys, vals []float32, pos0, n int, kv kernels.DType, causal bool) {
	hd, kvDim, qDim := a.hd, a.kvHeads*a.hd, a.heads*a.hd
	group := a.heads / a.kvHeads
	T := pos0 + n
	scale := float32(1 / math.Sqrt(float64(hd)))
	defer sc.reuseFrom(sc.next) // the next head group, layer or sequence takes the same buffers
	wdt, khW, vtW := kernels.F32, f32bytes, f32bytes
	if kv == kernels.BF16 {
		kb, vb := sc.get((T*hd+1)/2), sc.get((hd*T+1)/2)
		wdt = kernels.BF16
		khW = func(v []float32) []byte { return bf16bytes(f32bytes(kb), v) }
		vtW = func(v []float32) []byte { return bf16bytes(f32bytes(vb), v) }
	}
	kh := sc.get(T * hd)
	vt := sc.get(hd * T)
	rb := min(attnRowBlock, n)
	if !causal {
		rb = min(n, max(attnRowBlock, attnScoresBudget/(group*T)))
	}
	qs := sc.get(group * rb * hd)
	os := sc.get(group * rb * hd)
	scores := sc.get(group * rb * T)
	for kvh := 0; kvh < a.kvHeads; kvh++ {
		a.headKeys(kh, keys, kvh, T)
		transposeV := func(keysUsed int) {
			parallelSpan(keysUsed, func(t0, t1 int) {
				for t := t0; t < t1; t++ {
					for i, v := range vals[t*kvDim+kvh*hd : t*kvDim+(kvh+1)*hd] {
						vt[i*keysUsed+t] = v
					}
				}
			})
		}
		var khBytes, vtBytes []byte
		if !causal {
			transposeV(T)
			khBytes, vtBytes = khW(kh[:T*hd]), vtW(vt[:hd*T])
		}
		for r0 := 0; r0 < n; r0 += rb {
			rows := min(rb, n-r0)
			keysUsed := T
			if causal {
				keysUsed = pos0 + r0 + rows // later keys get zero weight
				transposeV(keysUsed)
			}
			a.headQueries(qs, q, kvh, r0, rows, scale)
			sc := scores[:group*rows*keysUsed]
			if causal {
				khBytes = khW(kh[:keysUsed*hd])
			}
			kernels.MatMul(sc, qs[:group*rows*hd], khBytes, wdt, group*rows, keysUsed, hd)
			parallelSpan(group*rows, func(i0, i1 int) {
				for i := i0; i < i1; i++ {
					if !causal {
						kernels.Softmax(sc[i*keysUsed : (i+1)*keysUsed])
						continue
					}
					p := pos0 + r0 + i%rows
					lo := 0
					if a.window > 0 && p-a.window+1 > 0 {
						lo = p - a.window + 1
					}
					row := sc[i*keysUsed : (i+1)*keysUsed]
					kernels.Softmax(row[lo : p+1])
					clear(row[:lo])
					clear(row[p+1:])
				}
			})
			if causal {
				vtBytes = vtW(vt[:hd*keysUsed])
			}
			kernels.MatMul(os[:group*rows*hd], sc, vtBytes, wdt, group*rows, hd, keysUsed)
			parallelSpan(group*rows, func(j0, j1 int) {
				for j := j0; j < j1; j++ {
					g, r := j/rows, j%rows
					h := kvh*group + g
					copy(out[(r0+r)*qDim+h*hd:(r0+r)*qDim+(h+1)*hd], os[j*hd:(j+1)*hd])
				}
			})
		}
	}
}

// headKeys copies the keys of KV head kvh at positions [0, T) into kh (T × hd, contiguous):
// the "weight" the scores' MatMul takes.
func (a *Attention) headKeys(kh, keys []float32, kvh, T int) {
	hd, kvDim := a.hd, a.kvHeads*a.hd
	parallelSpan(T, func(t0, t1 int) {
		for t := t0; t < t1; t++ {
			copy(kh[t*hd:(t+1)*hd], keys[t*kvDim+kvh*hd:t*kvDim+(kvh+1)*hd])
		}
	})
}

// headQueries stacks query rows [r0, r0+rows) of the heads sharing KV head kvh into qs
// (group × rows × hd, head by head), multiplied by scale (1/√hd: the scores come out scaled).
func (a *Attention) headQueries(qs, q []float32, kvh, r0, rows int, scale float32) {
	hd, qDim, group := a.hd, a.heads*a.hd, a.heads/a.kvHeads
	parallelSpan(group*rows, func(j0, j1 int) {
		for j := j0; j < j1; j++ {
			g, r := j/rows, j%rows
			h := kvh*group + g
			dst := qs[j*hd : (j+1)*hd]
			for i, v := range q[(r0+r)*qDim+h*hd : (r0+r)*qDim+(h+1)*hd] {
				dst[i] = v * scale
			}
		}
	})
}

// kvDType is the dtype the layer's prefill attention computes its keys and values in: BF16 only
// under a variant that rounds activations to bf16 where they meet BF16 weights
// (kernels.BF16Activations) and when the layer's k and v projections are BF16 — the keys and
// values of a PyTorch bf16 model are bf16 tensors. F32 and F16 checkpoints keep attention in
// f32 under every variant (the default one of an AVX512_BF16 CPU once rounded them regardless).
func (a *Attention) kvDType() kernels.DType {
	if kernels.BF16Activations() && a.k.w.dt == kernels.BF16 && a.v.w.dt == kernels.BF16 {
		return kernels.BF16
	}
	return kernels.F32
}

// f32bytes views f32s as the little-endian bytes MatMul takes for F32 weights.
func f32bytes(v []float32) []byte {
	if len(v) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&v[0])), 4*len(v))
}

// bf16bytes rounds v to bf16 into dst (as the GEMM packers round activations) and returns the
// bytes written.
func bf16bytes(dst []byte, v []float32) []byte {
	parallelSpan(len(v)/4096+1, func(c0, c1 int) {
		lo, hi := c0*4096, min(c1*4096, len(v))
		if lo < hi {
			kernels.RoundBF16(dst[2*lo:2*hi], v[lo:hi])
		}
	})
	return dst[:2*len(v)]
}

// Attention is multi-head attention with grouped key/value heads (GQA: heads/kvHeads query
// heads share one), q/k/v/o projections with optional biases, and for causal use an optional
// sliding window.
type Attention struct {
	q, k, v, o         Linear
	heads, kvHeads, hd int
	window             int // sliding window (causal only), 0 = none
	// visual are mPLUG-Owl2's k and v projections for visual rows (multiway index 1: the
	// stepBatch's visual ranges); nil for every other attention.
	visual *[2]Linear
}

// forwardCausal is a decoder's attention for the stacked rows of b at layer l: project xn to
// q, k, v (one packing of xn), rotate q and k by b's rotary table, append k and v to each
// sequence's cache, attend causally (the GEMM form for a prefill of ≥ 16 rows, the per-row
// loop otherwise) into att, and project att into out.
func (a *Attention) forwardCausal(b *stepBatch, l int, site Site, out, xn, q, k, v, att []float32) {
	T, off := b.T, b.off
	qDim, kvDim, half := a.heads*a.hd, a.kvHeads*a.hd, a.hd/2
	matmulShared(xn, T, [][]float32{q, k, v}, []*weight{&a.q.w, &a.k.w, &a.v.w}, [][]float32{a.q.b, a.k.b, a.v.b})
	if a.visual != nil {
		d := a.q.w.cols
		for _, r := range b.visual {
			kw, vw := &a.visual[0], &a.visual[1]
			matmulShared(xn[r[0]*d:r[1]*d], r[1]-r[0], [][]float32{k[r[0]*kvDim : r[1]*kvDim], v[r[0]*kvDim : r[1]*kvDim]},
				[]*weight{&kw.w, &vw.w}, [][]float32{kw.b, vw.b})
		}
	}
	for i, s := range b.states {
		n := len(b.toks[i])
		ropeTasks.Run(n, spanChunk(n), ropeTask{q: q[off[i]*qDim:], k: k[off[i]*kvDim:], cos: b.cos[off[i]*half:], sin: b.sin[off[i]*half:],
			heads: a.heads, kvHeads: a.kvHeads, hd: a.hd})
		s.k[l] = append(s.k[l], k[off[i]*kvDim:off[i+1]*kvDim]...)
		s.v[l] = append(s.v[l], v[off[i]*kvDim:off[i+1]*kvDim]...)
	}
	for i, s := range b.states {
		n := len(b.toks[i])
		qi, ai := q[off[i]*qDim:off[i+1]*qDim], att[off[i]*qDim:off[i+1]*qDim]
		if n >= 16 {
			a.attentionGEMM(b.sc, ai, qi, s.k[l], s.v[l], s.pos, n, a.kvDType())
		} else {
			a.attention(b.sc, ai, qi, s.k[l], s.v[l], s.pos, n)
		}
		if len(b.attnTaps) > 0 {
			a.attentionTaps(b.sc, b.attnTaps, site, i, s.pos, n, qi, s.k[l])
		}
	}
	a.o.Forward(out, att, T)
}

// forwardBidirectional is an encoder's attention: every row of a span (one image's patches,
// one clip's frames: [start, end) row ranges of xn) attends to every row of the same span —
// in the GEMM form of the decoder's prefill (attentionBlocks without the mask) from 16 rows,
// the per-row loop below that. Keys and values round to bf16 where the decoder's do (kvDType).
// cos and sin, when not nil, are a rotary table the caller built (one row of hd/2 per row of
// xn: 2-D for vision); nil leaves q and k unrotated (absolute position embeddings).
func (a *Attention) forwardBidirectional(sc *scratch, out, xn []float32, rows int, spans [][2]int, cos, sin []float32) {
	qDim, kvDim := a.heads*a.hd, a.kvHeads*a.hd
	q, k, v, att := sc.get(rows*qDim), sc.get(rows*kvDim), sc.get(rows*kvDim), sc.get(rows*qDim)
	matmulShared(xn, rows, [][]float32{q, k, v}, []*weight{&a.q.w, &a.k.w, &a.v.w}, [][]float32{a.q.b, a.k.b, a.v.b})
	if cos != nil {
		ropeTasks.Run(rows, spanChunk(rows), ropeTask{q: q, k: k, cos: cos, sin: sin, heads: a.heads, kvHeads: a.kvHeads, hd: a.hd})
	}
	for _, sp := range spans {
		n := sp[1] - sp[0]
		qs, ks, vs, as := q[sp[0]*qDim:sp[1]*qDim], k[sp[0]*kvDim:sp[1]*kvDim], v[sp[0]*kvDim:sp[1]*kvDim], att[sp[0]*qDim:sp[1]*qDim]
		if n >= 16 {
			a.attentionBlocks(sc, as, qs, ks, vs, 0, n, a.kvDType(), false)
		} else {
			a.attentionRows(sc, as, qs, ks, vs, 0, n, true)
		}
	}
	a.o.Forward(out, att, rows)
}
