package imageproc

import (
	"fmt"
	"math"
	"runtime"
	"sync"
)

// Filter is a Pillow resampling filter. The values are Pillow's `Image.Resampling` numbers, the ones a
// preprocessor_config.json gives as "resample".
type Filter int

// Pillow's numbering (PIL.Image.Resampling). NEAREST (0) takes another code path in Pillow and is not
// ported.
const (
	Lanczos  Filter = 1
	Bilinear Filter = 2
	Bicubic  Filter = 3
	Box      Filter = 4
	Hamming  Filter = 5
)

func (f Filter) String() string {
	switch f {
	case Lanczos:
		return "lanczos"
	case Bilinear:
		return "bilinear"
	case Bicubic:
		return "bicubic"
	case Box:
		return "box"
	case Hamming:
		return "hamming"
	case 0:
		return "nearest"
	}
	return fmt.Sprintf("filter(%d)", int(f))
}

// FilterFromPIL maps a config's "resample" number onto a Filter, refusing the ones not ported.
func FilterFromPIL(n int) (Filter, error) {
	switch f := Filter(n); f {
	case Lanczos, Bilinear, Bicubic, Box, Hamming:
		return f, nil
	case 0:
		return 0, fmt.Errorf("resample=0 (nearest) is not supported (Pillow resizes it on another code path)")
	}
	return 0, fmt.Errorf("resample=%d is not a Pillow resampling filter (1 lanczos, 2 bilinear, 3 bicubic, 4 box, 5 hamming)", n)
}

// The kernels are written with explicit float64 conversions around every product that is followed by an
// addition: Go may fuse x*y+z into one FMA instruction (it does on arm64), and Pillow's wheels for x86-64
// round each operation. A conversion forces the rounding, so the weights are bit-identical everywhere.

func boxKernel(x float64) float64 {
	if x > -0.5 && x <= 0.5 {
		return 1
	}
	return 0
}

func bilinearKernel(x float64) float64 {
	if x < 0 {
		x = -x
	}
	if x < 1 {
		return 1 - x
	}
	return 0
}

func hammingKernel(x float64) float64 {
	if x < 0 {
		x = -x
	}
	if x == 0 {
		return 1
	}
	if x >= 1 {
		return 0
	}
	x = float64(x * math.Pi)
	// Pillow writes the constants as C floats (0.54f, 0.46f): float32 values promoted to double.
	return math.Sin(x) / x * (float64(float32(0.54)) + float64(float64(float32(0.46))*math.Cos(x)))
}

// bicubicKernel is Pillow's bicubic_filter with a = -0.5 (Keys' cubic convolution).
func bicubicKernel(x float64) float64 {
	const a = -0.5
	if x < 0 {
		x = -x
	}
	if x < 1 {
		return float64(float64(float64((a+2.0)*x)-(a+3.0))*x*x) + 1
	}
	if x < 2 {
		return float64(float64(float64(float64(x-5)*x)+8)*x-4) * a
	}
	return 0
}

func sinc(x float64) float64 {
	if x == 0 {
		return 1
	}
	x = float64(x * math.Pi)
	return math.Sin(x) / x
}

func lanczosKernel(x float64) float64 {
	if -3 <= x && x < 3 {
		return sinc(x) * sinc(x/3)
	}
	return 0
}

type filterDef struct {
	kernel  func(float64) float64
	support float64
}

func (f Filter) def() (filterDef, error) {
	switch f {
	case Box:
		return filterDef{boxKernel, 0.5}, nil
	case Bilinear:
		return filterDef{bilinearKernel, 1}, nil
	case Hamming:
		return filterDef{hammingKernel, 1}, nil
	case Bicubic:
		return filterDef{bicubicKernel, 2}, nil
	case Lanczos:
		return filterDef{lanczosKernel, 3}, nil
	}
	_, err := FilterFromPIL(int(f))
	return filterDef{}, err
}

// precisionBits is Pillow's PRECISION_BITS: 32 bits minus 8 for the pixel value minus 2 for the filter's
// overshoot (negative lobes, sums above 1) and the sign.
const precisionBits = 32 - 8 - 2

// coeffs holds one pass's fixed-point weights: for output position i the taps are input positions
// bounds[2i] .. bounds[2i]+bounds[2i+1]-1 with weights k[i*ksize:].
type coeffs struct {
	ksize  int
	bounds []int
	k      []int32
}

// precomputeCoeffs is Pillow's precompute_coeffs followed by normalize_coeffs_8bpc, for the whole
// input range (box = 0..inSize, as Image.resize passes it).
func precomputeCoeffs(inSize, outSize int, fd filterDef) coeffs {
	scale := float64(inSize) / float64(outSize)
	filterscale := scale
	if filterscale < 1 {
		filterscale = 1
	}
	// The filter widens when downscaling: this is what makes the resize antialiased.
	support := fd.support * filterscale
	ksize := int(math.Ceil(support))*2 + 1

	bounds := make([]int, outSize*2)
	kk := make([]float64, outSize*ksize)
	for xx := 0; xx < outSize; xx++ {
		center := 0 + float64(float64(float64(xx)+0.5)*scale)
		ww := 0.0
		ss := 1.0 / filterscale
		// C's (int) truncates toward zero, as Go's conversion does.
		xmin := int(center - support + 0.5)
		if xmin < 0 {
			xmin = 0
		}
		xmax := int(center + support + 0.5)
		if xmax > inSize {
			xmax = inSize
		}
		xmax -= xmin
		k := kk[xx*ksize : (xx+1)*ksize]
		for x := 0; x < xmax; x++ {
			w := fd.kernel((float64(x+xmin) - center + 0.5) * ss)
			k[x] = w
			ww += w
		}
		for x := 0; x < xmax; x++ {
			if ww != 0 {
				k[x] /= ww
			}
		}
		bounds[xx*2] = xmin
		bounds[xx*2+1] = xmax
	}

	k32 := make([]int32, len(kk))
	for i, v := range kk {
		if v < 0 {
			k32[i] = int32(-0.5 + float64(v*(1<<precisionBits)))
		} else {
			k32[i] = int32(0.5 + float64(v*(1<<precisionBits)))
		}
	}
	return coeffs{ksize: ksize, bounds: bounds, k: k32}
}

// clip8 is Pillow's clip8: drop the fraction bits (arithmetic shift, so negatives stay negative) and
// clamp to 0..255. The accumulator starts at half a unit, so the shift rounds to nearest.
func clip8(ss int64) uint8 {
	v := ss >> precisionBits
	if v < 0 {
		return 0
	}
	if v > 255 {
		return 255
	}
	return uint8(v)
}

// parallelRows runs fn over [0, rows) in contiguous chunks, one per CPU, for pictures large enough to be
// worth it. Every output row depends only on the input, so the result does not depend on the split.
func parallelRows(rows, work int, fn func(lo, hi int)) {
	n := runtime.GOMAXPROCS(0)
	if work < 1<<18 || n < 2 || rows < 2*n {
		fn(0, rows)
		return
	}
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		lo, hi := rows*i/n, rows*(i+1)/n
		wg.Add(1)
		go func() {
			defer wg.Done()
			fn(lo, hi)
		}()
	}
	wg.Wait()
}

// resampleHorizontal is ImagingResampleHorizontal_8bpc for 3 bands: output row yy reads input row
// yy+offset.
func resampleHorizontal(dst, src *RGB, offset int, c coeffs) {
	parallelRows(dst.H, dst.W*dst.H*c.ksize, func(lo, hi int) { resampleHorizontalRows(dst, src, offset, c, lo, hi) })
}

func resampleHorizontalRows(dst, src *RGB, offset int, c coeffs, lo, hi int) {
	for yy := lo; yy < hi; yy++ {
		in := src.Pix[(yy+offset)*src.W*3 : (yy+offset+1)*src.W*3]
		out := dst.Pix[yy*dst.W*3 : (yy+1)*dst.W*3]
		for xx := 0; xx < dst.W; xx++ {
			xmin, xmax := c.bounds[xx*2], c.bounds[xx*2+1]
			k := c.k[xx*c.ksize : xx*c.ksize+xmax]
			ss0, ss1, ss2 := int64(1)<<(precisionBits-1), int64(1)<<(precisionBits-1), int64(1)<<(precisionBits-1)
			p := in[xmin*3 : (xmin+xmax)*3]
			for x, w := range k {
				ss0 += int64(p[x*3]) * int64(w)
				ss1 += int64(p[x*3+1]) * int64(w)
				ss2 += int64(p[x*3+2]) * int64(w)
			}
			out[xx*3], out[xx*3+1], out[xx*3+2] = clip8(ss0), clip8(ss1), clip8(ss2)
		}
	}
}

// resampleVertical is ImagingResampleVertical_8bpc for 3 bands. It walks the taps outside and the row
// inside, accumulating a whole output row at once: the same integer sums as Pillow's per-pixel loop
// (integer addition does not care about order), read along rows instead of down columns.
func resampleVertical(dst, src *RGB, c coeffs) {
	parallelRows(dst.H, dst.W*dst.H*c.ksize, func(lo, hi int) { resampleVerticalRows(dst, src, c, lo, hi) })
}

func resampleVerticalRows(dst, src *RGB, c coeffs, lo, hi int) {
	rowLen := src.W * 3
	acc := make([]int32, rowLen)
	for yy := lo; yy < hi; yy++ {
		ymin, ymax := c.bounds[yy*2], c.bounds[yy*2+1]
		k := c.k[yy*c.ksize : yy*c.ksize+ymax]
		for i := range acc {
			acc[i] = 1 << (precisionBits - 1)
		}
		for y, w := range k {
			row := src.Pix[(ymin+y)*rowLen : (ymin+y+1)*rowLen]
			for i, v := range row {
				acc[i] += int32(v) * w
			}
		}
		out := dst.Pix[yy*rowLen : (yy+1)*rowLen]
		for i, ss := range acc {
			out[i] = clip8(int64(ss))
		}
	}
}

// Resize is Pillow's Image.resize((w, h), filter) on an RGB image: the separable convolution of
// ImagingResampleInner, horizontal pass first, each pass rounding and clipping to uint8. A pass whose
// size is unchanged is skipped, as Pillow skips it; when both are, the result is a copy.
func Resize(src *RGB, w, h int, f Filter) (*RGB, error) {
	fd, err := f.def()
	if err != nil {
		return nil, err
	}
	if src == nil || src.W <= 0 || src.H <= 0 || len(src.Pix) != src.W*src.H*3 {
		return nil, fmt.Errorf("resize: malformed source image")
	}
	if w <= 0 || h <= 0 {
		return nil, fmt.Errorf("resize: target size %dx%d must be positive", w, h)
	}
	if int64(w)*int64(h) > maxWorkPixels || int64(w)*int64(src.H) > maxWorkPixels {
		return nil, fmt.Errorf("resize: target size %dx%d is over the limit of %d pixels", w, h, maxWorkPixels)
	}
	needH := w != src.W
	needV := h != src.H
	if !needH && !needV {
		return src.Clone(), nil
	}

	vert := precomputeCoeffs(src.H, h, fd)
	// Only the input rows the vertical pass reads go through the horizontal pass.
	yFirst := vert.bounds[0]
	yLast := vert.bounds[h*2-2] + vert.bounds[h*2-1]

	cur := src
	if needH {
		horiz := precomputeCoeffs(src.W, w, fd)
		for i := 0; i < h; i++ {
			vert.bounds[i*2] -= yFirst
		}
		tmp := NewRGB(w, yLast-yFirst)
		resampleHorizontal(tmp, src, yFirst, horiz)
		cur = tmp
	}
	if !needV {
		return cur, nil
	}
	out := NewRGB(cur.W, h)
	resampleVertical(out, cur, vert)
	return out, nil
}
