package model

import (
	"context"
	"fmt"
	"math"
	"slices"

	"github.com/neurosurg/neurosurg/model/kernels"
)

func errorf(format string, a ...any) error { return fmt.Errorf("model: "+format, a...) }

// seqState is one sequence's KV cache.
type seqState struct {
	pos  int
	k, v [][]float32 // per layer: positions × kvHeads·headDim
	// ropeDelta is added to pos for the rotary position of the next row: given positions
	// (M-RoPE's, Qwen2-VL's rope_deltas) continue from their largest + 1, not from the row count.
	ropeDelta int
}

func (m *Model) newState(capacity int) *seqState {
	kv := m.cfg.KVHeads * m.cfg.HeadDim
	s := &seqState{k: make([][]float32, m.cfg.Layers), v: make([][]float32, m.cfg.Layers)}
	for l := range s.k {
		s.k[l] = make([]float32, 0, capacity*kv)
		s.v[l] = make([]float32, 0, capacity*kv)
	}
	return s
}

// ForwardOptions select taps, a mask and which logits to return.
type ForwardOptions struct {
	Taps      []Tap
	Mask      *Mask
	AllLogits bool // logits at every position; otherwise at the last one only
}

// ForwardResult holds logits per sequence: Rows × vocab (Rows = 1 unless AllLogits).
type ForwardResult struct {
	Logits [][]float32
	Rows   []int
}

// Forward runs the sequences of batch (of any lengths) from position 0.
func (m *Model) Forward(ctx context.Context, batch [][]int32, opts ForwardOptions) (*ForwardResult, error) {
	in := make([]Input, len(batch))
	for i, b := range batch {
		in[i].Tokens = b
	}
	return m.ForwardInputs(ctx, in, opts)
}

// ForwardInputs runs the inputs (tokens, with embedding spans and positions where given)
// from position 0.
func (m *Model) ForwardInputs(ctx context.Context, in []Input, opts ForwardOptions) (*ForwardResult, error) {
	if err := opts.Mask.validate(m); err != nil {
		return nil, err
	}
	in, err := m.prepareInputs(ctx, in, opts)
	if err != nil {
		return nil, err
	}
	states := make([]*seqState, len(in))
	batch := make([][]int32, len(in))
	limit := m.cfg.PositionLimit()
	for i, x := range in {
		b := x.Tokens
		if len(b) == 0 {
			return nil, errorf("sequence %d is empty", i)
		}
		if limit > 0 && len(b) > limit {
			return nil, tooLong(fmt.Sprintf("sequence %d", i), len(b), limit)
		}
		states[i] = m.newState(len(b))
		batch[i] = b
	}
	logits, rows, err := m.step(ctx, states, batch, in, opts.Taps, opts.Mask, opts.AllLogits, nil)
	if err != nil {
		return nil, err
	}
	return &ForwardResult{Logits: logits, Rows: rows}, nil
}

// step appends toks[i] to sequence i (all at once: prefill, or one token: decode) and returns
// logits for the last row of each sequence (or all rows). A caller that steps repeatedly (a
// decode loop) passes its own scratch: the logits then live in it too, valid until the next
// step with it.
//
// in, when not nil, holds each sequence's embedding spans and positions (validated by
// prepareInputs); decode steps pass nil.
func (m *Model) step(ctx context.Context, states []*seqState, toks [][]int32, in []Input, taps []Tap, mask *Mask, all bool, own *scratch) ([][]float32, []int, error) {
	sc := own
	if sc == nil {
		// A forward reuses the last one's buffers (fresh ones cost page faults and, at GOGC 25,
		// collections that empty the kernels' pools: prefill 1×512 ran 5–10% slower), unless
		// they were too large to keep.
		sc = m.takeScratch()
		defer m.keepScratch(sc)
	}
	sc.next = 0
	cfg := &m.cfg
	d := cfg.Hidden
	// Rows of all sequences are stacked so each weight is one MatMul.
	T := 0
	off := grow(&sc.off, len(toks)+1)
	if limit := cfg.PositionLimit(); limit > 0 {
		for i, s := range states {
			if n := s.pos + len(toks[i]); n > limit {
				return nil, nil, tooLong(fmt.Sprintf("sequence %d", i), n, limit)
			}
		}
	}
	for i, t := range toks {
		for _, id := range t {
			if id < 0 || int(id) >= cfg.Vocab {
				return nil, nil, errorf("token id %d out of range [0,%d)", id, cfg.Vocab)
			}
		}
		T += len(t)
		off[i+1] = T
	}
	x := sc.get(T * d)
	for i, t := range toks {
		m.embed.Forward(x[off[i]*d:], t)
		if in != nil {
			for _, e := range in[i].Embeds {
				copy(x[(off[i]+e.Start)*d:(off[i]+e.Start+e.Rows)*d], e.Data)
			}
		}
	}
	b := &stepBatch{sc: sc, states: states, toks: toks, off: off, T: T}
	if m.decoder.multiway && in != nil {
		// mPLUG-Owl2's modality indicators: the rows of embedding spans (the image's features)
		// are visual, every token row (decode steps included) is text.
		for i := range toks {
			for _, e := range in[i].Embeds {
				b.visual = append(b.visual, [2]int{off[i] + e.Start, off[i] + e.Start + e.Rows})
			}
		}
	}
	b.splitTaps(taps)
	b.mask = mask
	// RoPE tables for the positions of this step: cos/sin of every row's rotation angles,
	// once per step (not per layer, q and k).
	maxPos := 0
	for i, s := range states {
		maxPos = max(maxPos, s.pos+s.ropeDelta+len(toks[i]))
		if in != nil && in[i].Positions != nil {
			maxPos = max(maxPos, int(slices.Max(in[i].Positions))+1)
		}
	}
	invFreq, ropeScale := cfg.ropeFrequencies(sc.invFreq[:0], maxPos)
	sc.invFreq = invFreq
	half := cfg.HeadDim / 2
	b.cos, b.sin = sc.get(T*half), sc.get(T*half)
	for i, s := range states {
		n := len(toks[i])
		t := ropeTableTask{cos: b.cos[off[i]*half:], sin: b.sin[off[i]*half:], invFreq: invFreq, scale: ropeScale, pos0: s.pos + s.ropeDelta}
		if in != nil && in[i].Positions != nil {
			p := in[i].Positions
			t.pos = p[:n]
			if len(p) == 3*n {
				t.pos3, t.section = [3][]int32{p[:n], p[n : 2*n], p[2*n:]}, cfg.mropeSection()
			}
			s.ropeDelta = int(slices.Max(p)) + 1 - (s.pos + n)
		}
		ropeTableTasks.Run(n, spanChunk(n), t)
	}
	if err := m.decoder.Forward(ctx, b, x); err != nil {
		return nil, nil, err
	}
	for i, s := range states {
		s.pos += len(toks[i])
	}
	// Final norm and logits for the rows asked for.
	sel := sc.sel[:0]
	var rows []int
	var out [][]float32
	if own != nil { // valid until the caller's next step
		rows, out = grow(&sc.rows, len(toks)), grow(&sc.logits, len(toks))
	} else { // the caller keeps them
		rows, out = make([]int, len(toks)), make([][]float32, len(toks))
	}
	for i := range toks {
		if all {
			for r := off[i]; r < off[i+1]; r++ {
				sel = append(sel, r)
			}
			rows[i] = len(toks[i])
		} else {
			sel = append(sel, off[i+1]-1)
			rows[i] = 1
		}
	}
	sc.sel = sel
	hn := sc.get(len(sel) * d)
	var flat []float32
	if own != nil {
		flat = sc.get(len(sel) * cfg.Vocab)
	} else {
		flat = make([]float32, len(sel)*cfg.Vocab)
	}
	m.head.Forward(flat, hn, x, sel)
	// NaN/Inf weights (or overflowing activations) make NaN/Inf logits, which argmax turns
	// into token 0 and metrics into NaN that a gate might not catch: refuse them here, where
	// every command's forward passes through (one dot product per row).
	if bad := m.firstBadRow(flat); bad >= 0 {
		seq, r := 0, bad
		for seq < len(rows)-1 && r >= rows[seq] {
			r -= rows[seq]
			seq++
		}
		pos := states[seq].pos - 1 // the last row
		if all {
			pos = states[seq].pos - len(toks[seq]) + r
		}
		return nil, nil, m.nonFiniteError(flat[bad*cfg.Vocab:(bad+1)*cfg.Vocab], seq, pos)
	}
	j := 0
	for i := range toks {
		out[i] = flat[j*cfg.Vocab : (j+rows[i])*cfg.Vocab]
		j += rows[i]
	}
	return out, rows, nil
}

// stepBatch is one step of a decoder over stacked sequences: sequence i holds rows
// off[i]..off[i+1]-1, at positions states[i].pos onward, with rotary table rows cos/sin.
type stepBatch struct {
	sc       *scratch
	states   []*seqState
	toks     [][]int32
	off      []int
	T        int
	cos, sin []float32
	ffnTaps  []Tap
	attnTaps []AttnTap
	resTaps  []ResidualTap
	mask     *Mask
	// visual are the row ranges a modality-adaptive decoder (mPLUG-Owl2) runs through its
	// visual weights (multiway index 1); nil for every other decoder.
	visual [][2]int
}

// splitTaps sorts taps by what they observe.
func (b *stepBatch) splitTaps(taps []Tap) {
	b.ffnTaps = taps
	for _, tp := range taps {
		if at, ok := tp.(AttnTap); ok {
			b.attnTaps = append(b.attnTaps, at)
		}
		if rt, ok := tp.(ResidualTap); ok {
			b.resTaps = append(b.resTaps, rt)
		}
	}
}

// Decoder is a stack of pre-norm decoder layers (RMSNorm, causal attention, RMSNorm, gated
// MLP) of one module.
type Decoder struct {
	module string
	layers []DecoderLayer
	// multiway: the layers have visual weights (DecoderLayer.visual) for the rows of the step's
	// embedding spans (mPLUG-Owl2's modality-adaptive module).
	multiway bool
}

// DecoderLayer is one block of a Decoder.
type DecoderLayer struct {
	inNorm   RMSNorm
	attn     Attention
	postNorm RMSNorm
	mlp      GatedMLP
	// visual are mPLUG-Owl2's norms for visual rows (multiway index 1; the attention's k/v
	// are in attn.visual); nil for every other decoder.
	visual *[2]RMSNorm
}

// normRows normalises x into xn with n, then the rows of the visual ranges with the visual
// norm alt (when not nil): MultiwayNetwork's per-row choice.
func normRows(n *RMSNorm, alt *RMSNorm, xn, x []float32, T int, visual [][2]int) {
	n.Forward(xn, x, T)
	if alt == nil {
		return
	}
	d := len(n.w)
	for _, r := range visual {
		alt.Forward(xn[r[0]*d:r[1]*d], x[r[0]*d:r[1]*d], r[1]-r[0])
	}
}

// Forward runs every layer over the residual stream x (b.T rows).
func (dec *Decoder) Forward(ctx context.Context, b *stepBatch, x []float32) error {
	if len(dec.layers) == 0 {
		return nil
	}
	sc, T, off := b.sc, b.T, b.off
	a0 := &dec.layers[0].attn
	d, kvDim, qDim, inter := len(dec.layers[0].inNorm.w), a0.kvHeads*a0.hd, a0.heads*a0.hd, dec.layers[0].mlp.neurons
	xn := sc.get(T * d)
	q := sc.get(T * qDim)
	k := sc.get(T * kvDim)
	v := sc.get(T * kvDim)
	att := sc.get(T * qDim)
	o := sc.get(T * d)
	// The FFN runs over groups of whole sequences of ≤ ffnRows rows: its buffers (2 × rows
	// × intermediate) are the largest of a step, and a big batch need not hold them all.
	chunks := ffnChunks(sc.chunks[:0], off, ffnRows)
	sc.chunks = chunks
	maxRows := 0
	for _, ch := range chunks {
		maxRows = max(maxRows, off[ch[1]]-off[ch[0]])
	}
	g := sc.get(maxRows * inter)
	u := sc.get(maxRows * inter)
	var call ffnCall
	call.taps, call.mask = b.ffnTaps, b.mask
	for l := range dec.layers {
		if err := ctx.Err(); err != nil {
			return err
		}
		ly := &dec.layers[l]
		site := Site{Module: dec.module, Layer: l}
		var vin, vpost *RMSNorm
		if ly.visual != nil {
			vin, vpost = &ly.visual[0], &ly.visual[1]
		}
		normRows(&ly.inNorm, vin, xn, x, T, b.visual)
		ly.attn.forwardCausal(b, l, site, o, xn, q, k, v, att)
		addInto(x, o[:T*d])
		normRows(&ly.postNorm, vpost, xn, x, T, b.visual)
		call.site = site
		for _, ch := range chunks {
			r0, r1 := off[ch[0]], off[ch[1]]
			if len(call.taps) > 0 {
				call.seqs = sc.ffnSeqs[:0]
				for i := ch[0]; i < ch[1]; i++ {
					call.seqs = append(call.seqs, ffnSeq{seq: i, pos0: b.states[i].pos, rows: len(b.toks[i]), tokens: b.toks[i]})
				}
				sc.ffnSeqs = call.seqs
			}
			ly.mlp.Forward(o[r0*d:r1*d], xn[r0*d:r1*d], g, u, r1-r0, &call)
		}
		addInto(x, o[:T*d])
		if len(b.resTaps) > 0 {
			for i, s := range b.states {
				e := ResidualEvent{Site: site, Seq: i, Pos0: s.pos, Rows: len(b.toks[i]), Hidden: x[off[i]*d : off[i+1]*d]}
				for _, rt := range b.resTaps {
					rt.Residual(&e)
				}
			}
		}
	}
	return nil
}

// matmul computes out = x·Wᵀ (+ bias) for m rows.
func matmul(out, x []float32, w *weight, m int, bias []float32) {
	matmulShared(x, m, [][]float32{out}, []*weight{w}, [][]float32{bias})
}

// matmulShared computes outs[i] = x·ws[i]ᵀ (+ biases[i]) for weights with the same input
// width, packing x once (q/k/v, gate/up).
func matmulShared(x []float32, m int, outs [][]float32, ws []*weight, biases [][]float32) {
	var buf [3]kernels.Product // on the stack: kernels copy what they keep
	ps := buf[:0]
	for i, w := range ws {
		ps = append(ps, kernels.Product{Out: outs[i][:m*w.rows], W: w.b, DType: w.dt, N: w.rows})
	}
	kernels.MatMulShared(x[:m*ws[0].cols], m, ws[0].cols, ps...)
	for i, w := range ws {
		if bias := biases[i]; bias != nil {
			rowTasks.Run(m, spanChunk(m), rowTask{op: rowAddBias, x: outs[i], y: bias, width: w.rows})
		}
	}
}

// ffnRows bounds the rows of one FFN chunk (unless a single sequence is longer).
const ffnRows = 512

// ffnChunks groups consecutive sequences (row offsets off) into [first, end) ranges of at
// most maxRows rows each, appended to out; a longer sequence is a chunk of its own.
func ffnChunks(out [][2]int, off []int, maxRows int) [][2]int {
	first := 0
	for i := 1; i < len(off); i++ {
		if off[i]-off[first] > maxRows && i-1 > first {
			out = append(out, [2]int{first, i - 1})
			first = i - 1
		}
	}
	return append(out, [2]int{first, len(off) - 1})
}

// rmsNormRows normalises the T rows of x (width d) into xn, rows spread over the cores.
func rmsNormRows(xn, x, weight []float32, eps float32, T, d int) {
	rowTasks.Run(T, spanChunk(T), rowTask{op: rowRMSNorm, x: x, y: xn, w: weight, eps: eps, width: d})
}

// addInto computes x += y (the residual stream), spread over the cores; x and y have one length.
func addInto(x, y []float32) {
	if len(x) != len(y) { // a caller's slicing bug: the tasks would add past len(x) into its capacity
		panic(fmt.Sprintf("model: addInto of %d values into %d", len(y), len(x)))
	}
	const chunk = 1 << 14
	n := (len(y) + chunk - 1) / chunk
	rowTasks.Run(n, spanChunk(n), rowTask{op: rowAdd, x: x, y: y, width: chunk})
}

// rope rotates each head of vec (heads × hd) by the angles whose (scaled) cosines and sines
// are given, HF rotate_half convention.
func rope(vec []float32, heads, hd int, cos, sin []float32) {
	half := hd / 2
	for h := 0; h < heads; h++ {
		x := vec[h*hd : (h+1)*hd]
		for i, c := range cos[:half] {
			s := sin[i]
			a, b := x[i], x[i+half]
			x[i] = a*c - b*s
			x[i+half] = b*c + a*s
		}
	}
}

// attention computes causal attention for n new rows starting at position pos0; keys and
// values hold positions 0..pos0+n-1 (bidir: attention over all n rows, pos0 = 0). Its (row,
// head) pairs are spread over the cores once there is enough of them times keys to pay for
// the hand-off.
func (a *Attention) attention(sc *scratch, out, q, keys, vals []float32, pos0, n int) {
	a.attentionRows(sc, out, q, keys, vals, pos0, n, false)
}

func (a *Attention) attentionRows(sc *scratch, out, q, keys, vals []float32, pos0, n int, bidir bool) {
	items := n * a.heads
	chunk := items
	if items*(pos0+n) >= attnSpanWork {
		chunk = spanChunk(items)
	}
	defer sc.reuseFrom(sc.next)
	scores := sc.get((items + chunk - 1) / chunk * (pos0 + n)) // one row per chunk
	attnTasks.Run(items, chunk, attnTask{a: a, out: out, q: q, keys: keys, vals: vals, scores: scores, pos0: pos0, cols: pos0 + n, chunk: chunk, bidir: bidir})
}

// attnSpanWork is the (row, head) pairs × keys from which attention runs on all cores.
const attnSpanWork = 1024

// attnTask is attention over (row, head) pairs [i0, i1): i = row·heads + head.
type attnTask struct {
	a                  *Attention
	out, q, keys, vals []float32
	scores             []float32
	pos0, cols, chunk  int // cols = pos0 + rows: the length of a scores row
	bidir              bool
}

var attnTasks kernels.TaskPool[attnTask, *attnTask]

func (t *attnTask) Run(i0, i1 int) {
	a := t.a
	hd, kvDim, qDim := a.hd, a.kvHeads*a.hd, a.heads*a.hd
	group := a.heads / a.kvHeads
	scale := float32(1 / math.Sqrt(float64(hd)))
	scores := t.scores[i0/t.chunk*t.cols:]
	for i := i0; i < i1; i++ {
		r, h := i/a.heads, i%a.heads
		p := t.pos0 + r
		lo := 0
		if t.bidir {
			p = t.cols - 1
		} else if a.window > 0 && p-a.window+1 > 0 {
			lo = p - a.window + 1
		}
		kvh := h / group
		qh := t.q[r*qDim+h*hd : r*qDim+(h+1)*hd]
		sc := scores[:p+1-lo]
		for k := lo; k <= p; k++ {
			sc[k-lo] = kernels.Dot(qh, t.keys[k*kvDim+kvh*hd:k*kvDim+(kvh+1)*hd]) * scale
		}
		kernels.Softmax(sc)
		oh := t.out[r*qDim+h*hd : r*qDim+(h+1)*hd]
		clear(oh)
		for k := lo; k <= p; k++ {
			kernels.Axpy(sc[k-lo], t.vals[k*kvDim+kvh*hd:k*kvDim+(kvh+1)*hd], oh)
		}
	}
}

// attentionTaps computes attention probabilities for the taps that want them: the model's
// causal ones, and MINER's variant normalised over all keys of the sequence so far (no mask).
// Per KV head, the query rows of its heads are scored against the keys with one f32 MatMul a
// block of rows at a time (q pre-scaled by 1/√d, as attentionGEMM does), each row softmaxed on
// the cores and added to the mean over heads in head order; the per-head probabilities
// (heads × rows × cols) are materialised only for a tap that reads them (not an AttnMeanTap).
// The old per-(row, head) loop of 64-element dot products, with a fresh heads·T² slice per
// layer, cost MINER's record about 6× a plain forward at 1,600 tokens.
func (a *Attention) attentionTaps(sc *scratch, taps []AttnTap, site Site, seq, pos0, n int, q, keys []float32) {
	hd := a.hd
	group := a.heads / a.kvHeads
	scale := float32(1 / math.Sqrt(float64(hd)))
	inv := 1 / float32(a.heads)
	cols := pos0 + n
	for _, nonCausal := range []bool{false, true} {
		want, perHead := false, false
		for _, t := range taps {
			if c, nc := t.WantsAttention(); (nonCausal && nc) || (!nonCausal && c) {
				want = true
				mt, ok := t.(AttnMeanTap)
				perHead = perHead || !ok || !mt.MeanOnly()
			}
		}
		if !want {
			continue
		}
		mark := sc.next
		mean := sc.get(n * cols)
		clear(mean)
		var probs []float32
		if perHead {
			probs = make([]float32, a.heads*n*cols)
		}
		kh := sc.get(cols * hd)
		rb := min(attnRowBlock, n)
		qs := sc.get(group * rb * hd)
		block := sc.get(group * rb * cols)
		for kvh := 0; kvh < a.kvHeads; kvh++ {
			a.headKeys(kh, keys, kvh, cols)
			for r0 := 0; r0 < n; r0 += rb {
				rows := min(rb, n-r0)
				a.headQueries(qs, q, kvh, r0, rows, scale)
				bl := block[:group*rows*cols]
				kernels.MatMul(bl, qs[:group*rows*hd], f32bytes(kh[:cols*hd]), kernels.F32, group*rows, cols, hd)
				// A task owns whole rows of the mean and adds its heads in order, so the sum's
				// order does not depend on the split.
				parallelSpan(rows, func(i0, i1 int) {
					for r := i0; r < i1; r++ {
						last := cols - 1
						if !nonCausal {
							last = pos0 + r0 + r
						}
						m := mean[(r0+r)*cols : (r0+r)*cols+last+1]
						for g := 0; g < group; g++ {
							row := bl[(g*rows+r)*cols : (g*rows+r+1)*cols]
							kernels.Softmax(row[:last+1])
							kernels.Axpy(inv, row[:last+1], m)
							if probs != nil {
								h := kvh*group + g
								copy(probs[(h*n+r0+r)*cols:], row[:last+1])
							}
						}
					}
				})
			}
		}
		e := AttnEvent{Site: site, Seq: seq, Pos0: pos0, Heads: a.heads, Rows: n, Cols: cols, NonCausal: nonCausal, Probs: probs, Mean: mean}
		for _, t := range taps {
			c, nc := t.WantsAttention()
			if (nonCausal && nc) || (!nonCausal && c) {
				t.Attention(&e)
			}
		}
		sc.reuseFrom(mark)
	}
}

// activate applies the FFN activation in place: SiLU, quick-GELU and GELU (erf) with the
// vector SiLU and exponential kernels, the others with the scalar functions of activation (the
// ones the IG graph differentiates). The encoders' activations are quick-GELU (CLIP, Qwen2-VL)
// and GELU (EVA, Whisper, projectors): scalar float64 exp/erf cost as much as the whole GEMM
// work of a vision tower under the amx kernels.
func activate(x []float32, act string) {
	switch act {
	case "silu", "swish":
		kernels.SiLU(x)
		return
	case "quick_gelu":
		// x·σ(1.702x) = silu(1.702x) / 1.702: two more f32 roundings (≤ 3 ulp), the sign kept.
		kernels.Scale(x, 1.702)
		kernels.SiLU(x)
		kernels.Scale(x, 1/1.702)
		return
	case "gelu":
		kernels.GELU(x)
		return
	}
	f, _, ok := activation(act)
	if !ok { // not reached: configs refuse other names
		f, _, _ = activation("gelu_pytorch_tanh")
	}
	for i, v := range x {
		x[i] = float32(f(float64(v)))
	}
}

// activation returns an FFN activation and its derivative by the config's name.
func activation(act string) (f, df func(float64) float64, ok bool) {
	p, ok := activations[act]
	return p.f, p.df, ok
}

// activations is built once: activate runs on every FFN row group, and building the functions
// per call allocated their closures each time (2 allocations per call for gelu_tanh).
var activations = map[string]struct{ f, df func(float64) float64 }{
	"silu":              {silu, dSilu},
	"swish":             {silu, dSilu},
	"relu":              {relu, dRelu},
	"quick_gelu":        {quickGelu, dQuickGelu},
	"gelu":              {gelu, dGelu},
	"gelu_pytorch_tanh": {geluTanh, dGeluTanh},
	"gelu_new":          {geluTanh, dGeluTanh},
}

func sigmoid(v float64) float64 { return 1 / (1 + math.Exp(-v)) }
func silu(v float64) float64    { return v / (1 + math.Exp(-v)) }
func dSilu(v float64) float64   { s := sigmoid(v); return s * (1 + v*(1-s)) }
func relu(v float64) float64    { return max(v, 0) }
func dRelu(v float64) float64 {
	if v > 0 {
		return 1
	}
	return 0
}
func quickGelu(v float64) float64  { return v / (1 + math.Exp(-1.702*v)) }
func dQuickGelu(v float64) float64 { s := sigmoid(1.702 * v); return s + 1.702*v*s*(1-s) }
func gelu(v float64) float64       { return 0.5 * v * math.Erfc(-v/math.Sqrt2) } // = ½x(1+erf(x/√2)), without its cancellation below 0
func dGelu(v float64) float64 {
	return 0.5*(1+math.Erf(v/math.Sqrt2)) + v*math.Exp(-v*v/2)/math.Sqrt(2*math.Pi)
}

// geluTanhC is √(2/π), GELU's tanh approximation's constant.
var geluTanhC = math.Sqrt(2 / math.Pi)

func geluTanh(v float64) float64 { return 0.5 * v * (1 + math.Tanh(geluTanhC*(v+0.044715*v*v*v))) }
func dGeluTanh(v float64) float64 {
	t := math.Tanh(geluTanhC * (v + 0.044715*v*v*v))
	return 0.5*(1+t) + 0.5*v*(1-t*t)*geluTanhC*(1+3*0.044715*v*v)
}
