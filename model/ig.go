package model

import (
	"context"
	"fmt"
	"math"

	"github.com/nlpodyssey/spago/ag"
	"github.com/nlpodyssey/spago/mat"
)

// IntegratedGradients attributes the logit of token target at the last position of ids to
// the FFN activations a = act(gate) of one layer at that position: IG_j = a_j · mean over
// α ∈ {1/s, …, 1} of ∂logit/∂a_j at α·a (baseline 0, Riemann right sum with `steps` points).
// Earlier positions are held fixed (their keys and values come from the forward pass), as
// knowledge-neuron attribution does. The backward pass is spago's autodiff over a float64 copy
// of the layers downstream, the costly baseline Pan et al. compare their score against.
// It also returns the graph's logit at α = 1 and at α = 0 (IG's completeness: Σ IG ≈ their
// difference).
func (m *Model) IntegratedGradients(ctx context.Context, ids []int32, site Site, target int32, steps int) (ig []float64, full, zero float64, err error) {
	return m.IntegratedGradientsInput(ctx, Input{Tokens: ids}, site, target, steps)
}

// IntegratedGradientsInput is IntegratedGradients of a prompt given as an Input (media,
// embedding spans): the encoders run once, in the forward pass that fills the caches.
func (m *Model) IntegratedGradientsInput(ctx context.Context, x Input, site Site, target int32, steps int) (ig []float64, full, zero float64, err error) {
	cfg := m.cfg
	ids := x.Tokens
	if site.Module != "llm" || site.Layer < 0 || site.Layer >= cfg.Layers {
		return nil, 0, 0, errorf("integrated gradients: no site %s/%d", site.Module, site.Layer)
	}
	if steps < 1 || len(ids) == 0 || target < 0 || int(target) >= cfg.Vocab {
		return nil, 0, 0, errorf("integrated gradients: bad arguments")
	}
	if cfg.Act != "silu" && cfg.Act != "swish" {
		return nil, 0, 0, errorf("integrated gradients: activation %s not supported", cfg.Act)
	}
	T, d, N := len(ids), cfg.Hidden, cfg.Intermediate
	last := T - 1
	// One forward pass: caches, and the layer's a, u and residual at the last position.
	capt := &igCapture{layer: site.Layer, last: last}
	in, err := m.prepareInputs(ctx, []Input{x}, ForwardOptions{})
	if err != nil {
		return nil, 0, 0, err
	}
	st := m.newState(T)
	if _, _, err := m.step(ctx, []*seqState{st}, [][]int32{ids}, in, []Tap{capt}, nil, false, nil); err != nil {
		return nil, 0, 0, err
	}
	if capt.a == nil {
		return nil, 0, 0, fmt.Errorf("integrated gradients: layer %d was not observed", site.Layer)
	}
	down := m.decoder.layers[site.Layer].mlp.down.w
	// x_mid = residual after the layer − down(a ⊙ u): the input the FFN adds to.
	h := make([]float32, N)
	for j := range h {
		h[j] = capt.a[j] * capt.u[j]
	}
	y := make([]float32, d)
	matmul(y, h, &down, 1, m.decoder.layers[site.Layer].mlp.down.b)
	xmid := make([]float64, d)
	for i := range xmid {
		xmid[i] = float64(capt.res[i] - y[i])
	}
	g := newIGGraph(m, st, site.Layer, last)
	logitAt := func(alpha float64, wantGrad bool) (float64, []float64) {
		av := make([]float64, N)
		for j := range av {
			av[j] = alpha * float64(capt.a[j])
		}
		a := mat.NewDense[float64](mat.WithShape(N, 1), mat.WithBacking(av), mat.WithGrad(wantGrad))
		logit := g.logit(a, capt.u, xmid, target)
		v := logit.Value().Item().F64()
		if !wantGrad {
			return v, nil
		}
		if err := ag.Backward(logit); err != nil {
			return v, nil
		}
		return v, a.Grad().Data().F64()
	}
	ig = make([]float64, N)
	for k := 1; k <= steps; k++ {
		if err := ctx.Err(); err != nil {
			return nil, 0, 0, err
		}
		_, grad := logitAt(float64(k)/float64(steps), true)
		for j := range ig {
			ig[j] += grad[j] / float64(steps)
		}
	}
	for j := range ig {
		ig[j] *= float64(capt.a[j])
	}
	full, _ = logitAt(1, false)
	zero, _ = logitAt(0, false)
	return ig, full, zero, nil
}

type igCapture struct {
	layer, last int
	a, u, res   []float32
}

func (c *igCapture) WantsUp() bool { return true }

func (c *igCapture) FFN(e *FFNEvent) {
	if e.Site.Layer == c.layer {
		r := c.last - e.Pos0
		c.a = append([]float32(nil), e.Act[r*e.Neurons:(r+1)*e.Neurons]...)
		c.u = append([]float32(nil), e.Up[r*e.Neurons:(r+1)*e.Neurons]...)
	}
}

func (c *igCapture) Residual(e *ResidualEvent) {
	if e.Site.Layer == c.layer {
		d := len(e.Hidden) / e.Rows
		r := c.last - e.Pos0
		c.res = append([]float32(nil), e.Hidden[r*d:(r+1)*d]...)
	}
}

// igGraph holds float64 copies of the weights downstream of the attributed layer.
type igGraph struct {
	m     *Model
	layer int
	pos   int
	st    *seqState
	dense map[string]mat.Tensor
	cos   []float64
	sin   []float64
}

func newIGGraph(m *Model, st *seqState, layer, pos int) *igGraph {
	g := &igGraph{m: m, layer: layer, pos: pos, st: st, dense: map[string]mat.Tensor{}}
	inv, scale := m.cfg.ropeFrequencies(nil, pos+1)
	for _, f := range inv {
		g.cos = append(g.cos, math.Cos(float64(pos)*f)*scale)
		g.sin = append(g.sin, math.Sin(float64(pos)*f)*scale)
	}
	return g
}

func (g *igGraph) weight(key string, w *weight) mat.Tensor {
	if t, ok := g.dense[key]; ok {
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
	g.dense[key] = t
	return t
}

func vec(v []float32) mat.Tensor {
	d := make([]float64, len(v))
	for i := range v {
		d[i] = float64(v[i])
	}
	return mat.NewDense[float64](mat.WithShape(len(d), 1), mat.WithBacking(d))
}

func (g *igGraph) linear(key string, w *weight, bias []float32, x mat.Tensor) mat.Tensor {
	y := ag.Mul(g.weight(key, w), x)
	if bias != nil {
		y = ag.Add(y, vec(bias))
	}
	return y
}

func (g *igGraph) rms(x mat.Tensor, w []float32) mat.Tensor {
	ms := ag.ReduceMean(ag.Square(x))
	inv := ag.Reciprocal(ag.Sqrt(ag.AddScalar(ms, mat.Scalar(float64(g.m.cfg.Eps)))))
	return ag.Prod(ag.ProdScalar(x, inv), vec(w))
}

// rope rotates each head (rotate_half convention) at the graph's position.
func (g *igGraph) rope(x mat.Tensor, heads int) mat.Tensor {
	hd := g.m.cfg.HeadDim
	half := hd / 2
	var parts []mat.Tensor
	for h := 0; h < heads; h++ {
		a := ag.Slice(x, h*hd, 0, h*hd+half, 1)
		b := ag.Slice(x, h*hd+half, 0, (h+1)*hd, 1)
		c := mat.NewDense[float64](mat.WithShape(half, 1), mat.WithBacking(append([]float64(nil), g.cos...)))
		s := mat.NewDense[float64](mat.WithShape(half, 1), mat.WithBacking(append([]float64(nil), g.sin...)))
		parts = append(parts, ag.Sub(ag.Prod(a, c), ag.Prod(b, s)), ag.Add(ag.Prod(b, c), ag.Prod(a, s)))
	}
	return ag.Concat(parts...)
}

// logit builds x_mid + down(a ⊙ u) → remaining layers at the last position → final norm →
// the target's unembedding row.
func (g *igGraph) logit(a mat.Tensor, u []float32, xmid []float64, target int32) mat.Tensor {
	m, cfg := g.m, g.m.cfg
	ly := &m.decoder.layers[g.layer]
	x := ag.Add(mat.NewDense[float64](mat.WithShape(len(xmid), 1), mat.WithBacking(append([]float64(nil), xmid...))),
		g.linear(fmt.Sprint("down", g.layer), &ly.mlp.down.w, ly.mlp.down.b, ag.Prod(a, vec(u))))
	hd, kvDim := cfg.HeadDim, cfg.KVHeads*cfg.HeadDim
	group := cfg.Heads / cfg.KVHeads
	for l := g.layer + 1; l < cfg.Layers; l++ {
		ly := &m.decoder.layers[l]
		key := func(s string) string { return fmt.Sprint(s, l) }
		xn := g.rms(x, ly.inNorm.w)
		q := g.rope(g.linear(key("q"), &ly.attn.q.w, ly.attn.q.b, xn), cfg.Heads)
		k := g.rope(g.linear(key("k"), &ly.attn.k.w, ly.attn.k.b, xn), cfg.KVHeads)
		v := g.linear(key("v"), &ly.attn.v.w, ly.attn.v.b, xn)
		var heads []mat.Tensor
		for h := 0; h < cfg.Heads; h++ {
			kvh := h / group
			qh := ag.Slice(q, h*hd, 0, (h+1)*hd, 1)
			kh := ag.Slice(k, kvh*hd, 0, (kvh+1)*hd, 1)
			vh := ag.Slice(v, kvh*hd, 0, (kvh+1)*hd, 1)
			// Cached keys and values of the earlier positions are constants.
			P := g.pos
			lo := 0
			if cfg.SlidingWindow > 0 && P-cfg.SlidingWindow+1 > 0 {
				lo = P - cfg.SlidingWindow + 1
			}
			n := P - lo
			scores := []mat.Tensor{}
			var Vt mat.Tensor
			if n > 0 {
				kc := make([]float64, n*hd)
				vt := make([]float64, hd*n)
				for t := lo; t < P; t++ {
					for i := 0; i < hd; i++ {
						kc[(t-lo)*hd+i] = float64(g.st.k[l][t*kvDim+kvh*hd+i])
						vt[i*n+(t-lo)] = float64(g.st.v[l][t*kvDim+kvh*hd+i])
					}
				}
				scores = append(scores, ag.Mul(mat.NewDense[float64](mat.WithShape(n, hd), mat.WithBacking(kc)), qh))
				Vt = mat.NewDense[float64](mat.WithShape(hd, n), mat.WithBacking(vt))
			}
			scores = append(scores, ag.Dot(kh, qh))
			s := ag.ProdScalar(ag.Concat(scores...), mat.Scalar(1/math.Sqrt(float64(hd))))
			p := ag.Softmax(s)
			out := ag.ProdScalar(vh, ag.Slice(p, n, 0, n+1, 1))
			if n > 0 {
				out = ag.Add(out, ag.Mul(Vt, ag.Slice(p, 0, 0, n, 1)))
			}
			heads = append(heads, out)
		}
		x = ag.Add(x, g.linear(key("o"), &ly.attn.o.w, ly.attn.o.b, ag.Concat(heads...)))
		xn2 := g.rms(x, ly.postNorm.w)
		gate := ag.SiLU(g.linear(key("gate"), &ly.mlp.gate.w, ly.mlp.gate.b, xn2))
		up := g.linear(key("up"), &ly.mlp.up.w, ly.mlp.up.b, xn2)
		x = ag.Add(x, g.linear(key("down"), &ly.mlp.down.w, ly.mlp.down.b, ag.Prod(gate, up)))
	}
	xn := g.rms(x, m.head.norm.w)
	return ag.Dot(vec(m.UnembedRow(target)), xn)
}
