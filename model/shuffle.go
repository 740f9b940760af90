package model

import (
	"fmt"
	"math/rand/v2"
)

// ShuffleMedia is Pan et al.'s patch-order control (algorithms.md §4.7) as an input transform:
// every medium of kind in x has its encoder input rows (an image's patches) permuted by a
// permutation drawn from seed, the k-th medium's from (seed, k). Row i of the result is row
// perm[k][i] of the given medium. The caller's input is not modified; the tokens, spans and
// positions are kept, and so is everything of a medium but the order of its rows.
//
// The official code permutes the visual tokens after the projector, in front of the language
// model; this permutes the encoder's input, so an encoder with learned or rotary positions
// sees its patches at other positions too. For an encoder without positions (the test family)
// the two agree up to summation order: its output rows are the input's permutation.
func ShuffleMedia(x Input, kind string, seed uint64) (Input, [][]int, error) {
	out := x
	out.Media = append([]Media(nil), x.Media...)
	var perms [][]int
	for k, md := range out.Media {
		if md.Kind != kind {
			continue
		}
		if md.Rows <= 0 || len(md.Features)%md.Rows != 0 {
			return Input{}, nil, fmt.Errorf("%w: %s %d: %d features do not fill %d rows", ErrMedia, md.Kind, k, len(md.Features), md.Rows)
		}
		perm := RowPermutation(md.Rows, seed, uint64(k))
		w := len(md.Features) / md.Rows
		f := make([]float32, len(md.Features))
		for i, src := range perm {
			copy(f[i*w:(i+1)*w], md.Features[src*w:(src+1)*w])
		}
		md.Features = f // Grid, Size, Text and Valid stay: the encoder still needs them
		out.Media[k] = md
		perms = append(perms, perm)
	}
	return out, perms, nil
}

// RowPermutation is the permutation of n rows ShuffleMedia draws for stream (a medium's index)
// under seed: the same seed gives the same permutation on every machine (PCG, math/rand/v2).
func RowPermutation(n int, seed, stream uint64) []int {
	return rand.New(rand.NewPCG(seed, 0x9a7c4+stream)).Perm(n)
}

// Placeholder is the token id whose runs the encoder of kind fills, and whether the model has
// such an encoder.
func (m *Model) Placeholder(kind string) (int32, bool) {
	if e := m.encoder(kind); e != nil {
		return e.placeholder(), true
	}
	return 0, false
}
