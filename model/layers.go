package model

import (
	"context"

	"github.com/neurosurg/neurosurg/model/kernels"
)

// The layer types a family composes: each holds its weights and has one Forward over a block
// of stacked rows. They live in package model, not a package of their own, because they share
// the step's scratch buffers, the pooled row tasks and the weight type with the loader; a
// separate package would have to export all three for no caller but this one.

// Linear is y = x·Wᵀ (+ b). Weights sharing an input are multiplied together (linearShared)
// so x is packed once (q/k/v, gate/up).
type Linear struct {
	w weight
	b []float32 // nil when absent
}

// Forward computes out = x·Wᵀ (+ b) for rows rows.
func (l *Linear) Forward(out, x []float32, rows int) { matmul(out, x, &l.w, rows, l.b) }

// RMSNorm is y = x / rms(x) · w.
type RMSNorm struct {
	w   []float32
	eps float32
}

// Forward normalises rows rows of x into out, spread over the cores.
func (n *RMSNorm) Forward(out, x []float32, rows int) {
	rmsNormRows(out, x, n.w, n.eps, rows, len(n.w))
}

// LayerNorm is y = (x − mean) / sqrt(var + eps) · w + b.
type LayerNorm struct {
	w, b []float32
	eps  float32
}

// Forward normalises rows rows of x into out, spread over the cores.
func (n *LayerNorm) Forward(out, x []float32, rows int) {
	rowTasks.Run(rows, spanChunk(rows), rowTask{op: rowLayerNorm, x: x, y: out, w: n.w, b: n.b, eps: n.eps, width: len(n.w)})
}

// Embedding maps token ids to rows of its table.
type Embedding struct{ w weight }

// Forward writes the embedding of each id into consecutive rows of x.
func (e *Embedding) Forward(x []float32, ids []int32) {
	d := e.w.cols
	for r, id := range ids {
		e.w.row(x[r*d:], int(id))
	}
}

// ffnCall is what an FFN layer needs besides its input: where its activations go (taps, a
// mask) and which sequences its rows belong to, for the events.
type ffnCall struct {
	site Site
	taps []Tap
	mask *Mask
	seqs []ffnSeq // the sequences of the block, in row order
}

// ffnSeq is one sequence's rows within an FFN block.
type ffnSeq struct {
	seq, pos0, rows int
	tokens          []int32
}

// event calls the taps for the sequences of a block whose activations (and up products) are
// act and up, rows × neurons.
func (c *ffnCall) event(act, up []float32, neurons int) {
	if len(c.taps) == 0 {
		return
	}
	r := 0
	for _, s := range c.seqs {
		e := FFNEvent{Site: c.site, Seq: s.seq, Pos0: s.pos0, Tokens: s.tokens, Rows: s.rows, Neurons: neurons,
			Act: act[r*neurons : (r+s.rows)*neurons]}
		if up != nil {
			e.Up = up[r*neurons : (r+s.rows)*neurons]
		}
		for _, tp := range c.taps {
			tp.FFN(&e)
		}
		r += s.rows
	}
}

// GatedMLP is down(act(gate x) ⊙ up x). Taps see a = act(gate x) and the mask edits it, before
// the product with up: zeroing a_j is zeroing column j of down.
type GatedMLP struct {
	gate, up, down Linear
	act            string
	neurons        int
}

// Forward computes out = MLP(x) for rows rows; g and u are rows × neurons work buffers.
func (f *GatedMLP) Forward(out, x, g, u []float32, rows int, c *ffnCall) {
	n := f.neurons
	g, u = g[:rows*n], u[:rows*n]
	matmulShared(x, rows, [][]float32{g, u}, []*weight{&f.gate.w, &f.up.w}, [][]float32{f.gate.b, f.up.b})
	rowTasks.Run(rows, spanChunk(rows), rowTask{op: rowActivate, x: g, width: n, act: f.act})
	c.event(g, u, n)
	c.mask.apply(c.site, g, rows, n)
	rowTasks.Run(rows, spanChunk(rows), rowTask{op: rowMul, x: g, y: u, width: n})
	f.down.Forward(out, g, rows)
}

// MLP is fc2(act(fc1 x + b1)) + b2. Taps see a = act(fc1 x + b1) and the mask edits it, before
// fc2: zeroing a_j is zeroing column j of fc2.
type MLP struct {
	fc1, fc2 Linear
	act      string
	neurons  int
}

// Forward computes out = MLP(x) for rows rows; h is a rows × neurons work buffer.
func (f *MLP) Forward(out, x, h []float32, rows int, c *ffnCall) {
	n := f.neurons
	h = h[:rows*n]
	f.fc1.Forward(h, x, rows)
	rowTasks.Run(rows, spanChunk(rows), rowTask{op: rowActivate, x: h, width: n, act: f.act})
	c.event(h, nil, n)
	c.mask.apply(c.site, h, rows, n)
	f.fc2.Forward(out, h, rows)
}

// Head is the final norm and the unembedding (the embedding's own weight when tied).
type Head struct {
	norm    RMSNorm
	unembed weight
}

// Forward normalises the rows sel of x (width d) into hn and computes their logits into out.
func (h *Head) Forward(out, hn, x []float32, sel []int) {
	d := len(h.norm.w)
	for j, r := range sel {
		kernels.RMSNorm(hn[j*d:(j+1)*d], x[r*d:(r+1)*d], h.norm.w, h.norm.eps)
	}
	matmul(out, hn, &h.unembed, len(sel), nil)
}

// Encoder is a stack of pre-LN transformer blocks with bidirectional attention and a plain
// MLP (CLIP's and Whisper's encoder layers), then an optional final LayerNorm.
type Encoder struct {
	module string
	layers []EncoderLayer
	post   *LayerNorm
}

// EncoderLayer is x += Attn(LN1 x); x += MLP(LN2 x).
type EncoderLayer struct {
	ln1  LayerNorm
	attn Attention
	ln2  LayerNorm
	mlp  MLP
}

// Forward runs the encoder over x (rows × width, one medium of sequence seq) in place,
// bidirectional within the whole block; FFN taps see Site{module, layer} with no tokens.
func (e *Encoder) Forward(ctx context.Context, sc *scratch, x []float32, rows, seq int, taps []Tap, mask *Mask) error {
	if err := e.forwardLayers(ctx, sc, x, rows, seq, [][2]int{{0, rows}}, 0, len(e.layers), taps, mask); err != nil {
		return err
	}
	if e.post != nil && len(e.layers) > 0 {
		e.post.Forward(x, x, rows)
	}
	return nil
}

// forwardLayers runs layers [from, to) over x in place, each span of rows attending only within
// itself (the crops of one medium are encoded apart: LLaVA-NeXT's tiles); one FFN event per
// layer covers all rows.
func (e *Encoder) forwardLayers(ctx context.Context, sc *scratch, x []float32, rows, seq int, spans [][2]int, from, to int, taps []Tap, mask *Mask) error {
	return e.forwardRotary(ctx, sc, x, rows, seq, spans, nil, nil, from, to, taps, mask)
}

// forwardRotary is forwardLayers with q and k rotated by the table cos/sin (hd/2 per row; nil:
// no rotation) in every layer: Qwen2-VL's 2-D vision rotary, its spans one per frame
// (transformers' cu_seqlens).
func (e *Encoder) forwardRotary(ctx context.Context, sc *scratch, x []float32, rows, seq int, spans [][2]int, cos, sin []float32, from, to int, taps []Tap, mask *Mask) error {
	if from >= to {
		return nil
	}
	d := len(e.layers[0].ln1.w)
	xn, o := sc.get(rows*d), sc.get(rows*d)
	h := sc.get(rows * e.layers[0].mlp.neurons)
	call := ffnCall{taps: taps, mask: mask, seqs: []ffnSeq{{seq: seq, rows: rows}}}
	for l := from; l < to; l++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		ly := &e.layers[l]
		ly.ln1.Forward(xn, x, rows)
		mark := sc.next
		ly.attn.forwardBidirectional(sc, o, xn, rows, spans, cos, sin)
		sc.reuseFrom(mark)
		addInto(x, o[:rows*d])
		ly.ln2.Forward(xn, x, rows)
		call.site = Site{Module: e.module, Layer: l}
		ly.mlp.Forward(o, xn, h, rows, &call)
		addInto(x, o[:rows*d])
	}
	return nil
}

// splitRows cuts a fused projection (Qwen2-VL's attn.qkv, InstructBLIP's self_attn.qkv:
// [3·d, d] and its bias, nil when absent) into its three [d, d] parts, in place: the rows of
// q, then k, then v, as transformers' reshape(seq, 3, heads, hd) reads them.
func (l Linear) splitRows(d int) (q, k, v Linear) {
	parts := make([]Linear, 3)
	if l.w.rows != 3*d {
		return
	}
	es := l.w.dt.Size()
	for i := range parts {
		w := l.w
		w.b = l.w.b[i*d*l.w.cols*es : (i+1)*d*l.w.cols*es]
		w.rows = d
		parts[i].w = w
		if l.b != nil {
			parts[i].b = l.b[i*d : (i+1)*d]
		}
	}
	return parts[0], parts[1], parts[2]
}
