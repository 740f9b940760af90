package model

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

// refConv1D is a 1-D convolution from the definition, in float64: y[t][o] = b[o] +
// Σ_c Σ_j W[o][c][j]·x[t·stride − pad + j][c], x zero outside [0, n), then gelu (erf) if asked.
func refConv1D(x, w, b []float32, n, in, out, k, stride, pad int, gelu bool) [][]float64 {
	var y [][]float64
	for t := 0; t*stride-pad+k <= n+pad; t++ {
		row := make([]float64, out)
		for o := range out {
			s := float64(b[o])
			for c := range in {
				for j := range k {
					if src := t*stride - pad + j; src >= 0 && src < n {
						s += float64(w[(o*in+c)*k+j]) * float64(x[src*in+c])
					}
				}
			}
			if gelu {
				s = 0.5 * s * (1 + math.Erf(s/math.Sqrt2))
			}
			row[o] = s
		}
		y = append(y, row)
	}
	return y
}

func TestConv1D(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 3))
	for _, c := range []struct {
		n, in, out, k, stride, pad int
		act                        string
		wantLen                    int
	}{
		{7, 5, 6, 3, 1, 1, "", 7},
		{8, 5, 6, 3, 1, 1, "gelu", 8},
		{7, 4, 3, 3, 2, 1, "gelu", 4},
		{8, 4, 3, 3, 2, 1, "", 4},
		{1, 3, 2, 3, 2, 1, "", 1},
		{2, 3, 2, 3, 2, 1, "", 1},
		{9, 2, 5, 3, 2, 0, "", 4},
		{10, 3, 4, 5, 3, 2, "gelu", 4},
	} {
		t.Run(fmt.Sprintf("%+v", c), func(t *testing.T) {
			w, b := randn(rng, c.out*c.in*c.k), randn(rng, c.out)
			conv := &Conv1D{w: f32weight("conv", w, c.out, c.in*c.k), b: b, in: c.in, k: c.k, stride: c.stride, pad: c.pad, act: c.act}
			if got := conv.OutLen(c.n); got != c.wantLen || got != (c.n+2*c.pad-c.k)/c.stride+1 {
				t.Fatalf("OutLen(%d) = %d, want %d", c.n, got, c.wantLen)
			}
			x := randn(rng, c.n*c.in)
			want := refConv1D(x, w, b, c.n, c.in, c.out, c.k, c.stride, c.pad, c.act == "gelu")
			if len(want) != c.wantLen {
				t.Fatalf("reference has %d frames, want %d", len(want), c.wantLen)
			}
			out := make([]float32, c.wantLen*c.out)
			m, err := conv.Forward(new(scratch), out, x, c.n)
			if err != nil || m != c.wantLen {
				t.Fatalf("Forward = %d, %v", m, err)
			}
			for tt := range want {
				for o := range c.out {
					if d := math.Abs(float64(out[tt*c.out+o]) - want[tt][o]); d > 1e-4*(1+math.Abs(want[tt][o])) {
						t.Fatalf("out[%d][%d] = %g, want %g", tt, o, out[tt*c.out+o], want[tt][o])
					}
				}
			}
		})
	}
}

// Whisper's front end: conv1 (k 3, pad 1) → GELU → conv2 (k 3, stride 2, pad 1) → GELU halves
// the frames (rounding up) and equals the two reference convolutions in a row.
func TestConv1DFrontEnd(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 4))
	const mels, dm = 6, 8
	w1, b1, w2, b2 := randn(rng, dm*mels*3), randn(rng, dm), randn(rng, dm*dm*3), randn(rng, dm)
	conv1 := &Conv1D{w: f32weight("conv1", w1, dm, mels*3), b: b1, in: mels, k: 3, stride: 1, pad: 1, act: "gelu"}
	conv2 := &Conv1D{w: f32weight("conv2", w2, dm, dm*3), b: b2, in: dm, k: 3, stride: 2, pad: 1, act: "gelu"}
	for _, n := range []int{10, 11} {
		x := randn(rng, n*mels)
		h := make([]float32, n*dm)
		sc := new(scratch)
		if m, err := conv1.Forward(sc, h, x, n); err != nil || m != n {
			t.Fatalf("conv1: %d, %v", m, err)
		}
		y := make([]float32, conv2.OutLen(n)*dm)
		m, err := conv2.Forward(sc, y, h, n)
		if err != nil || m != (n+1)/2 {
			t.Fatalf("conv2: %d frames, %v; want %d", m, err, (n+1)/2)
		}
		ref1 := refConv1D(x, w1, b1, n, mels, dm, 3, 1, 1, true)
		h64 := make([]float32, 0, n*dm)
		for _, r := range ref1 {
			for _, v := range r {
				h64 = append(h64, float32(v))
			}
		}
		ref2 := refConv1D(h64, w2, b2, n, dm, dm, 3, 2, 1, true)
		for tt := range ref2 {
			for o := range dm {
				if d := math.Abs(float64(y[tt*dm+o]) - ref2[tt][o]); d > 1e-3*(1+math.Abs(ref2[tt][o])) {
					t.Fatalf("n %d: out[%d][%d] = %g, want %g", n, tt, o, y[tt*dm+o], ref2[tt][o])
				}
			}
		}
	}
}

func TestConv1DErrors(t *testing.T) {
	conv := &Conv1D{w: f32weight("audio_tower.conv1.weight", make([]float32, 2*3*3), 2, 9), in: 3, k: 3, stride: 1, pad: 1}
	if _, err := conv.Forward(new(scratch), make([]float32, 8), make([]float32, 11), 4); err == nil || !strings.Contains(err.Error(), "input holds 11") {
		t.Errorf("short input: %v", err)
	}
	if _, err := conv.Forward(new(scratch), make([]float32, 7), make([]float32, 12), 4); err == nil || !strings.Contains(err.Error(), "audio_tower.conv1.weight: output holds 7") {
		t.Errorf("short output: %v", err)
	}
	short := &Conv1D{in: 1, k: 5, stride: 1, pad: 1}
	if got := short.OutLen(2); got != 0 {
		t.Errorf("OutLen of an input shorter than the kernel = %d, want 0", got)
	}
}
