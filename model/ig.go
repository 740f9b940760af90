package model

import (
	"context"
	"fmt"

	"github.com/nlpodyssey/spago/ag"
	"github.com/nlpodyssey/spago/mat"
)

// IntegratedGradients attributes the logit of token target at the last position of ids to
// the FFN activations a = act(gate) of one layer at that position: IG_j = a_j · mean over
// α ∈ {1/s, …, 1} of ∂logit/∂a_j at α·a (baseline 0, Riemann right sum with `steps` points).
// Earlier positions are held fixed (their keys and values come from the forward pass), as
// knowledge-neuron attribution does. The backward pass is spago's autodiff over the graphs the
// decoder's own layer types build downstream (graph.go: float64 copies of their bound
// weights), the costly baseline Pan et al. compare their score against.
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
	// Refused before the forward pass rather than at the first graph.
	for l := site.Layer + 1; l < len(m.decoder.layers); l++ {
		if act := m.decoder.layers[l].mlp.act; !hasGradient(act) {
			return nil, 0, 0, errorf("integrated gradients: layer %d: activation %q has no gradient", l, act)
		}
	}
	mlp := &m.decoder.layers[site.Layer].mlp
	T, d, N := len(ids), mlp.down.w.rows, mlp.neurons
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
	// x_mid = residual after the layer − down(a ⊙ u): the input the FFN adds to.
	h := make([]float32, N)
	for j := range h {
		h[j] = capt.a[j] * capt.u[j]
	}
	y := make([]float32, d)
	mlp.down.Forward(y, h, 1)
	xmid := make([]float64, d)
	for i := range xmid {
		xmid[i] = float64(capt.res[i] - y[i])
	}
	g := newIGGraph(m, st, site.Layer, last)
	logitAt := func(alpha float64, wantGrad bool) (float64, []float64, error) {
		av := make([]float64, N)
		for j := range av {
			av[j] = alpha * float64(capt.a[j])
		}
		a := mat.NewDense[float64](mat.WithShape(N, 1), mat.WithBacking(av), mat.WithGrad(wantGrad))
		logit, err := g.logit(a, capt.u, xmid, target)
		if err != nil {
			return 0, nil, fmt.Errorf("integrated gradients: %w", err)
		}
		v := logit.Value().Item().F64()
		if !wantGrad {
			return v, nil, nil
		}
		if err := ag.Backward(logit); err != nil {
			return 0, nil, fmt.Errorf("integrated gradients: backward: %w", err)
		}
		return v, a.Grad().Data().F64(), nil
	}
	ig = make([]float64, N)
	for k := 1; k <= steps; k++ {
		if err := ctx.Err(); err != nil {
			return nil, 0, 0, err
		}
		_, grad, err := logitAt(float64(k)/float64(steps), true)
		if err != nil {
			return nil, 0, 0, err
		}
		for j := range ig {
			ig[j] += grad[j] / float64(steps)
		}
	}
	for j := range ig {
		ig[j] *= float64(capt.a[j])
	}
	if full, _, err = logitAt(1, false); err != nil {
		return nil, 0, 0, err
	}
	if zero, _, err = logitAt(0, false); err != nil {
		return nil, 0, 0, err
	}
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

// igGraph composes the layer types' graphs (graph.go) downstream of the attributed layer at
// one position.
type igGraph struct {
	m        *Model
	g        *graph
	layer    int
	pos      int
	st       *seqState
	cos, sin []float64
}

func newIGGraph(m *Model, st *seqState, layer, pos int) *igGraph {
	// The rotary table row of pos, by the builder the step uses (IG runs text: no given positions).
	inv, scale := m.cfg.ropeFrequencies(nil, pos+st.ropeDelta+1)
	half := len(inv)
	c32, s32 := make([]float32, half), make([]float32, half)
	t := ropeTableTask{cos: c32, sin: s32, invFreq: inv, scale: scale, pos0: pos + st.ropeDelta}
	t.Run(0, 1)
	g := &igGraph{m: m, g: newGraph(), layer: layer, pos: pos, st: st, cos: make([]float64, half), sin: make([]float64, half)}
	for j := range c32 {
		g.cos[j], g.sin[j] = float64(c32[j]), float64(s32[j])
	}
	return g
}

// logit builds x_mid + down(a ⊙ u) → the remaining decoder layers at the position → the
// head's logit of target.
func (g *igGraph) logit(a mat.Tensor, u []float32, xmid []float64, target int32) (mat.Tensor, error) {
	dec := &g.m.decoder
	x := ag.Add(column(append([]float64(nil), xmid...)), dec.layers[g.layer].mlp.graphDown(g.g, a, vec(u)))
	for l := g.layer + 1; l < len(dec.layers); l++ {
		var err error
		if x, err = dec.layers[l].graph(g.g, x, g.pos, g.st.k[l], g.st.v[l], g.cos, g.sin); err != nil {
			return nil, err
		}
	}
	return g.m.head.graphLogit(x, target), nil
}
