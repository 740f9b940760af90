package model

import (
	"math"

	"github.com/nlpodyssey/spago/ag"
	"github.com/nlpodyssey/spago/mat"
)

// The spago (float64, autodiff) form of the layer types, for integrated gradients: each layer
// type builds its own nodes from its own bound weights and configuration, next to its Forward,
// so the gradients come from the decoder the runtime runs, not from a second implementation of
// it. A graph runs one row (the attributed position); earlier positions enter as constants
// from the runtime's KV cache.

// graph caches the float64 copies of the weights the nodes use, converted once per
// attribution and shared by its Riemann steps.
type graph struct {
	dense map[*weight]mat.Tensor
}

func newGraph() *graph { return &graph{dense: map[*weight]mat.Tensor{}} }

// weight returns w as a rows × cols float64 constant.
func (g *graph) weight(w *weight) mat.Tensor {
	if t, ok := g.dense[w]; ok {
		return t
	}
	row := make([]float32, w.cols)
	data := make([]float64, w.rows*w.cols)
	for r := 0; r < w.rows; r++ {
		w.row(row, r)
		for c, v := range row {
			data[r*w.cols+c] = float64(v)
		}
	}
	t := mat.NewDense[float64](mat.WithShape(w.rows, w.cols), mat.WithBacking(data))
	g.dense[w] = t
	return t
}

// vec is v as a float64 column constant.
func vec(v []float32) mat.Tensor {
	d := make([]float64, len(v))
	for i := range v {
		d[i] = float64(v[i])
	}
	return column(d)
}

// column is v (not copied) as a column constant.
func column(v []float64) mat.Tensor {
	return mat.NewDense[float64](mat.WithShape(len(v), 1), mat.WithBacking(v))
}

// graph is W·x (+ b).
func (l *Linear) graph(g *graph, x mat.Tensor) mat.Tensor {
	y := ag.Mul(g.weight(&l.w), x)
	if l.b != nil {
		y = ag.Add(y, vec(l.b))
	}
	return y
}

// graph is x / rms(x) · w.
func (n *RMSNorm) graph(x mat.Tensor) mat.Tensor {
	ms := ag.ReduceMean(ag.Square(x))
	inv := ag.Reciprocal(ag.Sqrt(ag.AddScalar(ms, mat.Scalar(float64(n.eps)))))
	return ag.Prod(ag.ProdScalar(x, inv), vec(n.w))
}

// graph is down(act(gate x) ⊙ up x).
func (f *GatedMLP) graph(g *graph, x mat.Tensor) (mat.Tensor, error) {
	gate, err := activationGraph(f.gate.graph(g, x), f.act)
	if err != nil {
		return nil, err
	}
	return f.graphDown(g, gate, f.up.graph(g, x)), nil
}

// graphDown is down(a ⊙ u): the FFN from its activations a on, u the up products.
func (f *GatedMLP) graphDown(g *graph, a, u mat.Tensor) mat.Tensor {
	return f.down.graph(g, ag.Prod(a, u))
}

// graphRope rotates each of heads heads of x (rotate_half, as rope) by one rotary table row.
func (a *Attention) graphRope(x mat.Tensor, heads int, cos, sin []float64) mat.Tensor {
	half := a.hd / 2
	var parts []mat.Tensor
	for h := 0; h < heads; h++ {
		x1 := ag.Slice(x, h*a.hd, 0, h*a.hd+half, 1)
		x2 := ag.Slice(x, h*a.hd+half, 0, (h+1)*a.hd, 1)
		c, s := column(append([]float64(nil), cos...)), column(append([]float64(nil), sin...))
		parts = append(parts, ag.Sub(ag.Prod(x1, c), ag.Prod(x2, s)), ag.Add(ag.Prod(x2, c), ag.Prod(x1, s)))
	}
	return ag.Concat(parts...)
}

// graphCausal is the attention of the row xn at position pos (rotated by cos, sin) over the
// cached keys and values of positions < pos (constants) and its own, under the sliding window.
func (a *Attention) graphCausal(g *graph, xn mat.Tensor, pos int, keys, vals []float32, cos, sin []float64) mat.Tensor {
	hd, kvDim, group := a.hd, a.kvHeads*a.hd, a.heads/a.kvHeads
	q := a.graphRope(a.q.graph(g, xn), a.heads, cos, sin)
	k := a.graphRope(a.k.graph(g, xn), a.kvHeads, cos, sin)
	v := a.v.graph(g, xn)
	lo := 0
	if a.window > 0 && pos-a.window+1 > 0 {
		lo = pos - a.window + 1
	}
	n := pos - lo
	heads := make([]mat.Tensor, a.heads)
	for h := range heads {
		kvh := h / group
		qh := ag.Slice(q, h*hd, 0, (h+1)*hd, 1)
		kh := ag.Slice(k, kvh*hd, 0, (kvh+1)*hd, 1)
		vh := ag.Slice(v, kvh*hd, 0, (kvh+1)*hd, 1)
		var scores []mat.Tensor
		var vt mat.Tensor
		if n > 0 {
			kc, vc := make([]float64, n*hd), make([]float64, hd*n)
			for t := lo; t < pos; t++ {
				for i := 0; i < hd; i++ {
					kc[(t-lo)*hd+i] = float64(keys[t*kvDim+kvh*hd+i])
					vc[i*n+(t-lo)] = float64(vals[t*kvDim+kvh*hd+i])
				}
			}
			scores = append(scores, ag.Mul(mat.NewDense[float64](mat.WithShape(n, hd), mat.WithBacking(kc)), qh))
			vt = mat.NewDense[float64](mat.WithShape(hd, n), mat.WithBacking(vc))
		}
		scores = append(scores, ag.Dot(kh, qh))
		p := ag.Softmax(ag.ProdScalar(ag.Concat(scores...), mat.Scalar(1/math.Sqrt(float64(hd)))))
		out := ag.ProdScalar(vh, ag.Slice(p, n, 0, n+1, 1))
		if n > 0 {
			out = ag.Add(out, ag.Mul(vt, ag.Slice(p, 0, 0, n, 1)))
		}
		heads[h] = out
	}
	return a.o.graph(g, ag.Concat(heads...))
}

// graph is the layer at position pos over the residual row x; keys and values are the layer's
// cache of the earlier positions.
func (ly *DecoderLayer) graph(g *graph, x mat.Tensor, pos int, keys, vals []float32, cos, sin []float64) (mat.Tensor, error) {
	x = ag.Add(x, ly.attn.graphCausal(g, ly.inNorm.graph(x), pos, keys, vals, cos, sin))
	y, err := ly.mlp.graph(g, ly.postNorm.graph(x))
	if err != nil {
		return nil, err
	}
	return ag.Add(x, y), nil
}

// graphLogit is the logit of token id: ⟨unembed[id], norm(x)⟩.
func (h *Head) graphLogit(x mat.Tensor, id int32) mat.Tensor {
	row := make([]float32, h.unembed.cols)
	h.unembed.row(row, int(id))
	return ag.Dot(vec(row), h.norm.graph(x))
}

// activationGraph applies the FFN activation act as one node with its derivative, the same
// function activate computes.
func activationGraph(x mat.Tensor, act string) (mat.Tensor, error) {
	f, df, ok := activation(act)
	if !ok {
		return nil, errorf("activation %q has no gradient", act)
	}
	return ag.NewOperator(&elementwise{x: x, f: f, df: df}).Run(), nil
}

// hasGradient reports whether activationGraph can differentiate act.
func hasGradient(act string) bool {
	_, _, ok := activation(act)
	return ok
}

// elementwise is y = f(x) element by element, ∂y/∂x = df(x).
type elementwise struct {
	x     mat.Tensor
	f, df func(float64) float64
}

func (e *elementwise) Operands() []mat.Tensor { return []mat.Tensor{e.x} }

func (e *elementwise) Forward() (mat.Tensor, error) {
	return e.x.Value().(mat.Matrix).Apply(func(_, _ int, v float64) float64 { return e.f(v) }), nil
}

func (e *elementwise) Backward(gy mat.Tensor) error {
	if !e.x.RequiresGrad() {
		return nil
	}
	gx := e.x.Value().(mat.Matrix).Apply(func(_, _ int, v float64) float64 { return e.df(v) })
	gx.ProdInPlace(gy.(mat.Matrix))
	e.x.AccGrad(gx)
	return nil
}
