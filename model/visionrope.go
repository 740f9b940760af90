package model

import (
	"fmt"
	"math"
)

// Qwen2-VL's vision tower rotates q and k by 2-D positions: each patch has a (row, column)
// position in its frame, listed in the order the patch embeddings come in — merge-block order,
// spatial_merge_size² neighbouring patches after one another (transformers' rot_pos_emb). With
// inv_freq_i = 1/θ^(2i/dim), dim = head_dim/2, a patch's angles are concat(h·inv_freq,
// w·inv_freq), head_dim/2 of them, and apply_rotary_pos_emb_vision rotates by cos/sin of those
// angles repeated twice under the rotate_half convention. That is exactly the decoder's 1-D
// rotary table shape (head_dim/2 angles per row, rotate_half), so the table feeds
// Attention.forwardBidirectional's caller-given cos/sin unchanged.

// maxVisionRows bounds the patches of one vision table (t·h·w summed over the images), so a
// bad grid is an error rather than an unbounded allocation.
const maxVisionRows = 1 << 22

// visionPositions returns the (h, w) position of each patch of the images grid ([t, h, w] per
// image, in patches) in rot_pos_emb's order: per image, per frame, merge blocks row-major over
// the (h/merge, w/merge) block grid, the merge×merge patches of a block row-major.
func visionPositions(grid [][3]int, merge int) ([][2]int32, error) {
	if merge < 1 {
		return nil, fmt.Errorf("vision rotary: spatial_merge_size %d, want ≥ 1", merge)
	}
	total := 0
	for i, g := range grid {
		t, h, w := g[0], g[1], g[2]
		if t < 1 || h < 1 || w < 1 || h%merge != 0 || w%merge != 0 {
			return nil, fmt.Errorf("vision rotary: image %d: grid %v, want t, h, w ≥ 1 with h and w multiples of spatial_merge_size %d", i, g, merge)
		}
		if t > maxVisionRows || h > maxVisionRows || w > maxVisionRows || t*h*w > maxVisionRows-total {
			return nil, fmt.Errorf("vision rotary: image %d: grid %v takes the patches over %d", i, g, maxVisionRows)
		}
		total += t * h * w
	}
	pos := make([][2]int32, 0, total)
	for _, g := range grid {
		t, h, w := g[0], g[1], g[2]
		for range t {
			for bh := 0; bh < h/merge; bh++ {
				for bw := 0; bw < w/merge; bw++ {
					for ih := range merge {
						for iw := range merge {
							pos = append(pos, [2]int32{int32(bh*merge + ih), int32(bw*merge + iw)})
						}
					}
				}
			}
		}
	}
	return pos, nil
}

// visionRotaryTable is the rotary table of the images grid for heads of hd dims (hd a multiple
// of 4): cos and sin, hd/2 per patch (h angles first, then w angles), and the [start, end) row
// spans attention stays within — one per frame, transformers' cu_seqlens.
func visionRotaryTable(grid [][3]int, merge, hd int, theta float64) (cos, sin []float32, spans [][2]int, err error) {
	if hd < 4 || hd%4 != 0 {
		return nil, nil, nil, fmt.Errorf("vision rotary: head_dim %d, want a positive multiple of 4", hd)
	}
	pos, err := visionPositions(grid, merge)
	if err != nil {
		return nil, nil, nil, err
	}
	dim, quarter, half := hd/2, hd/4, hd/2
	inv := make([]float64, quarter)
	for i := range inv {
		inv[i] = 1 / math.Pow(theta, float64(2*i)/float64(dim))
	}
	cos, sin = make([]float32, len(pos)*half), make([]float32, len(pos)*half)
	for r, p := range pos {
		for axis := range 2 {
			for i, f := range inv {
				ang := float64(p[axis]) * f
				cos[r*half+axis*quarter+i] = float32(math.Cos(ang))
				sin[r*half+axis*quarter+i] = float32(math.Sin(ang))
			}
		}
	}
	start := 0
	for _, g := range grid {
		for range g[0] {
			spans = append(spans, [2]int{start, start + g[1]*g[2]})
			start += g[1] * g[2]
		}
	}
	return cos, sin, spans, nil
}
