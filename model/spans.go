package model

import (
	"math"
	"runtime"

	"github.com/neurosurg/neurosurg/model/kernels"
)

// The row loops of a step run as pooled kernels.Tasks rather than closures, so a decoded token
// allocates nothing: a closure handed to the worker pool is a heap object per call, and these
// loops run for every layer of every token.

// spanChunk splits n rows into one contiguous span per core, or one span when n is small
// (decode's single row stays on the calling goroutine).
func spanChunk(n int) int {
	workers := min(runtime.GOMAXPROCS(0), n)
	if workers <= 1 || n < 4 {
		return max(n, 1)
	}
	return (n + workers - 1) / workers
}

// parallelSpan runs f over [0, n) in spanChunk spans (for loops that do not run per token).
func parallelSpan(n int, f func(i0, i1 int)) { kernels.Parallel(n, spanChunk(n), f) }

type rowOp uint8

const (
	rowRMSNorm   rowOp = iota // y = RMSNorm(x)·w
	rowAdd                    // x += y, chunk by chunk of width
	rowAddBias                // x += y (the bias) on every row
	rowActivate               // x = act(x)
	rowMul                    // x *= y
	rowLayerNorm              // y = LayerNorm(x)·w + b
)

// rowTask applies op to rows [r0, r1) of width elements.
type rowTask struct {
	op    rowOp
	x, y  []float32
	w, b  []float32
	eps   float32
	width int
	act   string
}

var rowTasks kernels.TaskPool[rowTask, *rowTask]

func (t *rowTask) Run(r0, r1 int) {
	d := t.width
	switch t.op {
	case rowRMSNorm:
		for r := r0; r < r1; r++ {
			kernels.RMSNorm(t.y[r*d:(r+1)*d], t.x[r*d:(r+1)*d], t.w, t.eps)
		}
	case rowAdd:
		lo, hi := r0*d, min(r1*d, len(t.y))
		kernels.Axpy(1, t.y[lo:hi], t.x[lo:hi])
	case rowAddBias:
		for r := r0; r < r1; r++ {
			kernels.Axpy(1, t.y, t.x[r*d:(r+1)*d])
		}
	case rowActivate:
		activate(t.x[r0*d:r1*d], t.act)
	case rowMul:
		kernels.Mul(t.x[r0*d:r1*d], t.y[r0*d:r1*d])
	case rowLayerNorm:
		for r := r0; r < r1; r++ {
			kernels.LayerNorm(t.y[r*d:(r+1)*d], t.x[r*d:(r+1)*d], t.w, t.b, t.eps)
		}
	}
}

// ropeTableTask fills the RoPE cosines and sines (scaled) of rows [r0, r1) of one sequence,
// row r at position pos0+r, or pos[r] when positions are given, or for M-RoPE (pos3 set) at
// the temporal, height or width position pos3[a][r] by the section a frequency j falls in.
type ropeTableTask struct {
	cos, sin []float32
	invFreq  []float64
	scale    float64
	pos0     int
	pos      []int32
	pos3     [3][]int32
	section  [3]int
}

var ropeTableTasks kernels.TaskPool[ropeTableTask, *ropeTableTask]

func (t *ropeTableTask) Run(r0, r1 int) {
	half := len(t.invFreq)
	for r := r0; r < r1; r++ {
		p := float64(t.pos0 + r)
		if t.pos != nil {
			p = float64(t.pos[r])
		}
		for j, f := range t.invFreq {
			if t.pos3[0] != nil {
				p = float64(t.pos3[mropeAxis(j, t.section)][r])
			}
			ang := p * f
			t.cos[r*half+j] = float32(math.Cos(ang) * t.scale)
			t.sin[r*half+j] = float32(math.Sin(ang) * t.scale)
		}
	}
}

// ropeTask rotates the q and k heads of rows [r0, r1) of one sequence by their table rows.
type ropeTask struct {
	q, k, cos, sin     []float32
	heads, kvHeads, hd int
}

var ropeTasks kernels.TaskPool[ropeTask, *ropeTask]

func (t *ropeTask) Run(r0, r1 int) {
	half, qDim, kvDim := t.hd/2, t.heads*t.hd, t.kvHeads*t.hd
	for r := r0; r < r1; r++ {
		c, s := t.cos[r*half:(r+1)*half], t.sin[r*half:(r+1)*half]
		rope(t.q[r*qDim:(r+1)*qDim], t.heads, t.hd, c, s)
		rope(t.k[r*kvDim:(r+1)*kvDim], t.kvHeads, t.hd, c, s)
	}
}

// mropeAxis is the position axis (0 temporal, 1 height, 2 width) frequency j of a half
// rotary table takes under M-RoPE's section sizes: transformers' apply_multimodal_rotary_pos_emb
// splits the doubled table into chunks [s0, s1, s2, s0, s1, s2] and takes chunk i from axis i%3,
// so frequency j < s0 is temporal, j < s0+s1 height, the rest width.
func mropeAxis(j int, section [3]int) int {
	switch {
	case j < section[0]:
		return 0
	case j < section[0]+section[1]:
		return 1
	}
	return 2
}
