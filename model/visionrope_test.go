package model

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/neurosurg/neurosurg/model/kernels"
)

// f32weight is a dense F32 weight of rows × cols for tests.
func f32weight(name string, v []float32, rows, cols int) weight {
	return weight{name: name, b: f32bytes(slices.Clone(v)), dt: kernels.F32, rows: rows, cols: cols}
}

// refVisionPositions is rot_pos_emb's order written out as transformers computes it: hpos[h][w]
// = h and wpos[h][w] = w reshaped to (h/m, m, w/m, m), permuted (0, 2, 1, 3), flattened,
// stacked and repeated t times.
func refVisionPositions(grid [][3]int, m int) [][2]int32 {
	var out [][2]int32
	for _, g := range grid {
		t, h, w := g[0], g[1], g[2]
		var frame [][2]int32
		// After the permute the flat index walks (a, c, b, d) with a in h/m, c in w/m, b, d in m;
		// element (a, b, c, d) of the reshape is hpos[a·m+b][c·m+d].
		for a := 0; a < h/m; a++ {
			for c := 0; c < w/m; c++ {
				for b := 0; b < m; b++ {
					for d := 0; d < m; d++ {
						frame = append(frame, [2]int32{int32(a*m + b), int32(c*m + d)})
					}
				}
			}
		}
		for range t {
			out = append(out, frame...)
		}
	}
	return out
}

func TestVisionPositions(t *testing.T) {
	// Grid (1, 4, 6), merge 2, spelled out: 2×3 merge blocks, each 2×2 patches row-major.
	want146 := [][2]int32{
		{0, 0}, {0, 1}, {1, 0}, {1, 1}, {0, 2}, {0, 3}, {1, 2}, {1, 3}, {0, 4}, {0, 5}, {1, 4}, {1, 5},
		{2, 0}, {2, 1}, {3, 0}, {3, 1}, {2, 2}, {2, 3}, {3, 2}, {3, 3}, {2, 4}, {2, 5}, {3, 4}, {3, 5},
	}
	got, err := visionPositions([][3]int{{1, 4, 6}}, 2)
	if err != nil || !slices.Equal(got, want146) {
		t.Fatalf("visionPositions((1,4,6), 2) = %v, %v\nwant %v", got, err, want146)
	}
	if ref := refVisionPositions([][3]int{{1, 4, 6}}, 2); !slices.Equal(ref, want146) {
		t.Fatalf("the reference disagrees with the spelled-out order: %v", ref)
	}
	for _, c := range []struct {
		grid  [][3]int
		merge int
	}{
		{[][3]int{{1, 4, 6}, {2, 2, 4}}, 2},
		{[][3]int{{1, 6, 3}}, 3},
		{[][3]int{{3, 2, 5}}, 1},
		{[][3]int{{1, 8, 4}, {1, 4, 8}}, 4},
	} {
		got, err := visionPositions(c.grid, c.merge)
		if want := refVisionPositions(c.grid, c.merge); err != nil || !slices.Equal(got, want) {
			t.Errorf("visionPositions(%v, %d) = %v, %v\nwant %v", c.grid, c.merge, got, err, want)
		}
	}
	for _, c := range []struct {
		grid  [][3]int
		merge int
		want  string
	}{
		{[][3]int{{1, 4, 5}}, 2, "multiples of spatial_merge_size 2"},
		{[][3]int{{0, 4, 4}}, 2, "t, h, w ≥ 1"},
		{[][3]int{{1, 4, 4}}, 0, "spatial_merge_size 0"},
		{[][3]int{{1 << 20, 1 << 20, 1 << 20}}, 1, "over"},
		{[][3]int{{1, 1 << 11, 1 << 11}, {1, 1 << 11, 1 << 11}}, 1, "image 1"},
	} {
		if _, err := visionPositions(c.grid, c.merge); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("visionPositions(%v, %d) = %v, want an error with %q", c.grid, c.merge, err, c.want)
		}
	}
	if _, _, _, err := visionRotaryTable([][3]int{{1, 2, 2}}, 2, 6, 10000); err == nil || !strings.Contains(err.Error(), "head_dim 6") {
		t.Errorf("head_dim 6: %v", err)
	}
}

// refVisionRotate is apply_rotary_pos_emb_vision on one head vector x (hd) at position p, in
// float64: freqs = concat(h·inv_freq, w·inv_freq) with inv_freq_i = 1/θ^(2i/dim), dim = hd/2;
// emb = cat(freqs, freqs); x·cos(emb) + rotate_half(x)·sin(emb), rotate_half(x) = cat(−x2, x1).
func refVisionRotate(x []float64, p [2]int32, theta float64) []float64 {
	hd := len(x)
	dim := hd / 2
	var freqs []float64
	for axis := range 2 {
		for i := 0; i < dim; i += 2 {
			freqs = append(freqs, float64(p[axis])/math.Pow(theta, float64(i)/float64(dim)))
		}
	}
	emb := append(slices.Clone(freqs), freqs...)
	rot := make([]float64, hd)
	for i := range hd / 2 {
		rot[i] = -x[i+hd/2]
		rot[i+hd/2] = x[i]
	}
	out := make([]float64, hd)
	for i := range hd {
		out[i] = x[i]*math.Cos(emb[i]) + rot[i]*math.Sin(emb[i])
	}
	return out
}

func f64s(v []float32) []float64 {
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = float64(x)
	}
	return out
}

// The table rotates q and k (through the runtime's rope tasks) as apply_rotary_pos_emb_vision.
func TestVisionRotaryRotation(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 1))
	grid := [][3]int{{1, 4, 6}, {2, 2, 4}}
	heads, kvHeads, hd := 3, 3, 16
	cos, sin, spans, err := visionRotaryTable(grid, 2, hd, 10000)
	if err != nil {
		t.Fatal(err)
	}
	if want := "[[0 24] [24 32] [32 40]]"; fmt.Sprint(spans) != want {
		t.Errorf("spans = %v, want %s (one per frame, cu_seqlens)", spans, want)
	}
	pos := refVisionPositions(grid, 2)
	rows := len(pos)
	q, k := randn(rng, rows*heads*hd), randn(rng, rows*kvHeads*hd)
	q0, k0 := slices.Clone(q), slices.Clone(k)
	ropeTasks.Run(rows, spanChunk(rows), ropeTask{q: q, k: k, cos: cos, sin: sin, heads: heads, kvHeads: kvHeads, hd: hd})
	for r := range rows {
		for h := range heads {
			for _, v := range []struct {
				name     string
				got, src []float32
			}{{"q", q, q0}, {"k", k, k0}} {
				off := (r*heads + h) * hd
				want := refVisionRotate(f64s(v.src[off:off+hd]), pos[r], 10000)
				for i := range hd {
					if d := math.Abs(float64(v.got[off+i]) - want[i]); d > 1e-5 {
						t.Fatalf("row %d (pos %v) head %d %s[%d] = %g, want %g", r, pos[r], h, v.name, i, v.got[off+i], want[i])
					}
				}
			}
		}
	}
}

// Bidirectional attention with the vision table equals softmax(q_rot·k_rotᵀ/√d)·v within each
// cu_seqlens span, in float64: two images in one sequence do not attend to each other.
func TestVisionBidirectionalAttention(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 2))
	grid := [][3]int{{1, 4, 6}, {1, 2, 4}}
	const heads, kvHeads, hd, d = 4, 2, 8, 12
	qDim, kvDim := heads*hd, kvHeads*hd
	cos, sin, spans, err := visionRotaryTable(grid, 2, hd, 10000)
	if err != nil {
		t.Fatal(err)
	}
	pos := refVisionPositions(grid, 2)
	rows := len(pos)
	wq, wk, wv, wo := randn(rng, qDim*d), randn(rng, kvDim*d), randn(rng, kvDim*d), randn(rng, d*qDim)
	bq, bk, bv, bo := randn(rng, qDim), randn(rng, kvDim), randn(rng, kvDim), randn(rng, d)
	a := &Attention{
		q: Linear{f32weight("q", wq, qDim, d), bq}, k: Linear{f32weight("k", wk, kvDim, d), bk},
		v: Linear{f32weight("v", wv, kvDim, d), bv}, o: Linear{f32weight("o", wo, d, qDim), bo},
		heads: heads, kvHeads: kvHeads, hd: hd,
	}
	x := randn(rng, rows*d)
	run := func(x []float32) []float32 {
		out := make([]float32, rows*d)
		a.forwardBidirectional(new(scratch), out, x, rows, spans, cos, sin)
		return out
	}
	got := run(x)

	proj := func(w, b []float32, n, r int) []float64 {
		y := make([]float64, n)
		for o := range n {
			s := float64(b[o])
			for c := range d {
				s += float64(w[o*d+c]) * float64(x[r*d+c])
			}
			y[o] = s
		}
		return y
	}
	q, k, v := make([][]float64, rows), make([][]float64, rows), make([][]float64, rows)
	for r := range rows {
		q[r], k[r], v[r] = proj(wq, bq, qDim, r), proj(wk, bk, kvDim, r), proj(wv, bv, kvDim, r)
		for h := range heads {
			copy(q[r][h*hd:], refVisionRotate(q[r][h*hd:(h+1)*hd], pos[r], 10000))
		}
		for h := range kvHeads {
			copy(k[r][h*hd:], refVisionRotate(k[r][h*hd:(h+1)*hd], pos[r], 10000))
		}
	}
	for _, sp := range [][2]int{{0, 24}, {24, 32}} {
		for r := sp[0]; r < sp[1]; r++ {
			att := make([]float64, qDim)
			for h := range heads {
				kh := h / (heads / kvHeads)
				scores := make([]float64, sp[1]-sp[0])
				mx := math.Inf(-1)
				for j := range scores {
					s := 0.0
					for i := range hd {
						s += q[r][h*hd+i] * k[sp[0]+j][kh*hd+i]
					}
					scores[j] = s / math.Sqrt(hd)
					mx = math.Max(mx, scores[j])
				}
				sum := 0.0
				for j := range scores {
					scores[j] = math.Exp(scores[j] - mx)
					sum += scores[j]
				}
				for j, p := range scores {
					for i := range hd {
						att[h*hd+i] += p / sum * v[sp[0]+j][kh*hd+i]
					}
				}
			}
			for o := range d {
				want := float64(bo[o])
				for c := range qDim {
					want += float64(wo[o*qDim+c]) * att[c]
				}
				if diff := math.Abs(float64(got[r*d+o]) - want); diff > 1e-3*(1+math.Abs(want)) {
					t.Fatalf("row %d out[%d] = %g, want %g", r, o, got[r*d+o], want)
				}
			}
		}
	}

	// Changing the second image leaves the first image's rows unchanged, and changes its own.
	x2 := slices.Clone(x)
	for i := 24 * d; i < rows*d; i++ {
		x2[i] += 1
	}
	got2 := run(x2)
	if !slices.Equal(got[:24*d], got2[:24*d]) {
		t.Error("the first image's rows depend on the second image")
	}
	if slices.Equal(got[24*d:], got2[24*d:]) {
		t.Error("the second image's rows ignore its own input")
	}
}
