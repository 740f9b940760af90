package model

import (
	"context"
	"math"
	"sort"
)

// LensEntry is the logit lens at one layer and position: the residual stream after the layer,
// through the final norm and the unembedding.
type LensEntry struct {
	Layer    int       `json:"layer"`
	Position int       `json:"position"`
	TopIDs   []int32   `json:"top_ids"`
	TopProbs []float64 `json:"top_probs"`
	Entropy  float64   `json:"entropy"` // nats
}

type residualTap struct {
	positions map[int]bool
	hidden    map[[2]int][]float32 // (layer, position) -> hidden
	d         int
}

func (r *residualTap) FFN(*FFNEvent) {}

func (r *residualTap) Residual(e *ResidualEvent) {
	for t := 0; t < e.Rows; t++ {
		if p := e.Pos0 + t; r.positions[p] {
			r.hidden[[2]int{e.Site.Layer, p}] = append([]float32(nil), e.Hidden[t*r.d:(t+1)*r.d]...)
		}
	}
}

// LogitLens returns, for every layer and each requested position (negative counts from the
// end), the top-k tokens and the entropy of the lens distribution (MMNeuron §3.7).
func (m *Model) LogitLens(ctx context.Context, ids []int32, positions []int, k int) ([]LensEntry, error) {
	return m.LogitLensInput(ctx, Input{Tokens: ids}, positions, k)
}

// LogitLensInput is LogitLens of a prompt given as an Input (media, embedding spans, 3-D
// positions): positions index the expanded token list.
func (m *Model) LogitLensInput(ctx context.Context, x Input, positions []int, k int) ([]LensEntry, error) {
	ids := x.Tokens
	if err := ValidateTop(k); err != nil {
		return nil, err
	}
	tap := &residualTap{positions: map[int]bool{}, hidden: map[[2]int][]float32{}, d: m.cfg.Hidden}
	var pos []int
	for _, p := range positions {
		if p < 0 {
			p += len(ids)
		}
		if p < 0 || p >= len(ids) {
			return nil, errorf("lens position %d outside the %d-token prompt", p, len(ids))
		}
		tap.positions[p] = true
		pos = append(pos, p)
	}
	if _, err := m.ForwardInputs(ctx, []Input{x}, ForwardOptions{Taps: []Tap{tap}}); err != nil {
		return nil, err
	}
	var out []LensEntry
	for l := 0; l < m.cfg.Layers; l++ {
		for _, p := range pos {
			lp := LogSoftmax(m.LensLogits(tap.hidden[[2]int{l, p}]))
			e := LensEntry{Layer: l, Position: p}
			idx := make([]int, len(lp))
			for i := range idx {
				idx[i] = i
				e.Entropy -= math.Exp(lp[i]) * lp[i]
			}
			sort.SliceStable(idx, func(a, b int) bool { return lp[idx[a]] > lp[idx[b]] })
			for _, i := range idx[:min(k, len(idx))] {
				e.TopIDs = append(e.TopIDs, int32(i))
				e.TopProbs = append(e.TopProbs, math.Exp(lp[i]))
			}
			out = append(out, e)
		}
	}
	return out, nil
}

// TopTokensOfNeuron ranks tokens by Φ[w] = ⟨down_proj[:, j], unembed[w]⟩: what the neuron
// writes when it fires (Pan et al. keep the top 10 for interpretation).
// Out-of-range neurons, and neurons of modules other than the language model (whose outputs
// are not in its residual stream), have no tokens.
func (m *Model) TopTokensOfNeuron(site Site, j, k int) []int32 {
	if site.Module != m.decoder.module || site.Layer < 0 || site.Layer >= len(m.decoder.layers) || j < 0 || j >= m.decoder.layers[site.Layer].mlp.down.w.cols {
		return nil
	}
	v := m.DownColumn(site, j)
	phi := make([]float32, m.cfg.Vocab)
	m.matmulHead(phi, v)
	idx := make([]int, len(phi))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return phi[idx[a]] > phi[idx[b]] })
	out := make([]int32, max(0, min(k, len(idx))))
	for i := range out {
		out[i] = int32(idx[i])
	}
	return out
}

func (m *Model) matmulHead(out, v []float32) { matmul(out, v, &m.head.unembed, 1, nil) }
