package model

import "fmt"

// Conv1D is a 1-D convolution over time with zero padding at both ends, then an optional
// activation: Whisper's and Qwen2-Audio's conv front end (conv1: n_mels → d_model, kernel 3,
// padding 1; conv2: kernel 3, stride 2, padding 1; GELU after each). Its weight is the
// checkpoint's [out, in, k] tensor read as out rows of in·k columns, so one output frame is a
// row of the im2col matrix (the k input frames of its window, channel-major) times Wᵀ and the
// whole layer is one MatMul.
type Conv1D struct {
	w                  weight    // out × in·k, row o = weight[o, :, :] flattened
	b                  []float32 // out, nil when absent
	in, k, stride, pad int
	act                string // "" for none; else an activation name as in Config.Act
}

// OutLen is the number of output frames for n input frames: ⌊(n + 2·pad − k)/stride⌋ + 1,
// 0 when the padded input is shorter than the kernel.
func (c *Conv1D) OutLen(n int) int {
	if n+2*c.pad < c.k {
		return 0
	}
	return (n+2*c.pad-c.k)/c.stride + 1
}

// Forward convolves x (n frames × in channels, row-major) into out (OutLen(n) frames × out
// channels) and returns the output frame count; sc lends the im2col buffer.
func (c *Conv1D) Forward(sc *scratch, out, x []float32, n int) (int, error) {
	if len(x) < n*c.in {
		return 0, fmt.Errorf("conv1d %s: input holds %d values, want %d frames × %d channels", c.w.name, len(x), n, c.in)
	}
	m := c.OutLen(n)
	if m == 0 {
		return 0, nil
	}
	if len(out) < m*c.w.rows {
		return 0, fmt.Errorf("conv1d %s: output holds %d values, want %d frames × %d channels", c.w.name, len(out), m, c.w.rows)
	}
	width := c.in * c.k
	mark := sc.next
	defer sc.reuseFrom(mark)
	col := sc.get(m * width)
	parallelSpan(m, func(t0, t1 int) {
		for t := t0; t < t1; t++ {
			row := col[t*width : (t+1)*width]
			for j := 0; j < c.k; j++ {
				src := t*c.stride - c.pad + j
				for ci := 0; ci < c.in; ci++ {
					if src < 0 || src >= n {
						row[ci*c.k+j] = 0
					} else {
						row[ci*c.k+j] = x[src*c.in+ci]
					}
				}
			}
		}
	})
	matmul(out, col, &c.w, m, c.b)
	if c.act != "" {
		rowTasks.Run(m, spanChunk(m), rowTask{op: rowActivate, x: out, width: c.w.rows, act: c.act})
	}
	return m, nil
}
