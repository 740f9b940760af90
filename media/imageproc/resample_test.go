package imageproc

import (
	"bytes"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// refWeights computes one output position's taps straight from the definition of Pillow's antialiased
// convolution, written independently of precomputeCoeffs: the kernel is stretched by the downscale
// factor, centred on the output pixel's centre mapped into the input, evaluated at every input pixel
// centre within its support, normalised to sum 1, and quantised to 22 fractional bits rounding halves
// away from zero.
func refWeights(inSize, outSize, pos int, kernel func(float64) float64, support float64) (first int, w []int64) {
	scale := float64(inSize) / float64(outSize)
	stretch := math.Max(scale, 1)
	center := (float64(pos) + 0.5) * scale
	radius := support * stretch
	// Taps: input pixels whose centre (j + 0.5) lies within the support, Pillow's "+0.5 then
	// truncate" bounds being round-half-up of center ± radius, clipped to the picture.
	lo := int(math.Floor(center - radius + 0.5))
	hi := int(math.Floor(center + radius + 0.5))
	lo, hi = max(lo, 0), min(hi, inSize)
	var fw []float64
	sum := 0.0
	for j := lo; j < hi; j++ {
		v := kernel((float64(j) + 0.5 - center) / stretch)
		fw = append(fw, v)
		sum += v
	}
	for _, v := range fw {
		if sum != 0 {
			v /= sum
		}
		q := math.Round(v * (1 << 22)) // half away from zero, as Pillow's ±0.5 then truncate
		w = append(w, int64(q))
	}
	return lo, w
}

// refResize is a slow reference of Image.resize: a horizontal pass over every row, then a vertical pass,
// each accumulating in integers from half a unit and clamping the 22-bit shift to 0..255. Unchanged
// axes are skipped.
func refResize(src *RGB, w, h int, kernel func(float64) float64, support float64) *RGB {
	cur := src
	if w != src.W {
		tmp := NewRGB(w, src.H)
		for x := 0; x < w; x++ {
			first, ws := refWeights(src.W, w, x, kernel, support)
			for y := 0; y < src.H; y++ {
				for c := 0; c < 3; c++ {
					acc := int64(1) << 21
					for i, k := range ws {
						acc += int64(src.Pix[(y*src.W+first+i)*3+c]) * k
					}
					tmp.Pix[(y*w+x)*3+c] = uint8(min(max(acc>>22, 0), 255))
				}
			}
		}
		cur = tmp
	}
	if h == cur.H {
		return cur.Clone()
	}
	out := NewRGB(cur.W, h)
	for y := 0; y < h; y++ {
		first, ws := refWeights(cur.H, h, y, kernel, support)
		for x := 0; x < cur.W; x++ {
			for c := 0; c < 3; c++ {
				acc := int64(1) << 21
				for i, k := range ws {
					acc += int64(cur.Pix[((first+i)*cur.W+x)*3+c]) * k
				}
				out.Pix[(y*cur.W+x)*3+c] = uint8(min(max(acc>>22, 0), 255))
			}
		}
	}
	return out
}

// keysCubic is Keys' cubic convolution kernel with a = -0.5, written from the textbook formula.
func keysCubic(x float64) float64 {
	x = math.Abs(x)
	switch {
	case x < 1:
		return 1.5*x*x*x - 2.5*x*x + 1
	case x < 2:
		return -0.5*x*x*x + 2.5*x*x - 4*x + 2
	}
	return 0
}

func randomRGB(r *rand.Rand, w, h int) *RGB {
	m := NewRGB(w, h)
	for i := range m.Pix {
		m.Pix[i] = uint8(r.IntN(256))
	}
	return m
}

func TestResizeMatchesSlowReference(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	cases := []struct{ sw, sh, dw, dh int }{
		{5, 3, 7, 2},     // up horizontally, down vertically
		{3, 5, 2, 7},     // the other way
		{1, 1, 4, 3},     // one pixel
		{4, 3, 1, 1},     // to one pixel
		{6, 6, 6, 6},     // unchanged: a copy
		{9, 4, 9, 11},    // vertical pass only
		{9, 4, 2, 4},     // horizontal pass only
		{97, 61, 84, 56}, // the Qwen2-VL golden's shape
		{17, 13, 40, 3},  // strong downscale on one axis (wide support)
		{2, 50, 3, 7},
		{700, 400, 650, 390}, // big enough to be split over the CPUs
	}
	for _, c := range cases {
		src := randomRGB(r, c.sw, c.sh)
		got, err := Resize(src, c.dw, c.dh, Bicubic)
		if err != nil {
			t.Fatalf("%v: %v", c, err)
		}
		want := refResize(src, c.dw, c.dh, keysCubic, 2)
		if got.W != c.dw || got.H != c.dh || !bytes.Equal(got.Pix, want.Pix) {
			t.Errorf("%dx%d -> %dx%d: port and reference differ", c.sw, c.sh, c.dw, c.dh)
		}
	}
	// The other convolution filters, against the same reference with their textbook kernels.
	tri := func(x float64) float64 { return math.Max(0, 1-math.Abs(x)) }
	box := func(x float64) float64 {
		if x > -0.5 && x <= 0.5 {
			return 1
		}
		return 0
	}
	for _, c := range cases {
		src := randomRGB(r, c.sw, c.sh)
		for _, f := range []struct {
			f       Filter
			k       func(float64) float64
			support float64
		}{{Bilinear, tri, 1}, {Box, box, 0.5}} {
			got, err := Resize(src, c.dw, c.dh, f.f)
			if err != nil {
				t.Fatal(err)
			}
			if want := refResize(src, c.dw, c.dh, f.k, f.support); !bytes.Equal(got.Pix, want.Pix) {
				t.Errorf("%v %dx%d -> %dx%d: port and reference differ", f.f, c.sw, c.sh, c.dw, c.dh)
			}
		}
	}
}

func TestResizeHandComputed(t *testing.T) {
	// [0, 255] stretched to 4 pixels. Output x=1 has centre 0.75 and taps at distances 0.25 and 0.75:
	// K(0.25) = 0.8671875, K(0.75) = 0.2265625, so 255 * 0.2265625 / 1.09375 = 52.8 -> 53. Outputs 0 and
	// 3 overshoot (K(1.25) = -0.0703125) and clip; output 2 mirrors output 1: 255 - 53.
	src := &RGB{W: 2, H: 1, Pix: []uint8{0, 0, 0, 255, 255, 255}}
	got, err := Resize(src, 4, 1, Bicubic)
	if err != nil {
		t.Fatal(err)
	}
	want := []uint8{0, 0, 0, 53, 53, 53, 202, 202, 202, 255, 255, 255}
	if !bytes.Equal(got.Pix, want) {
		t.Fatalf("got %v, want %v", got.Pix, want)
	}
}

func TestResizeInvariants(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	// A flat picture stays flat at any size: the quantised weights of every output sum to 1 within
	// half a level.
	for _, sz := range [][4]int{{1, 1, 5, 9}, {13, 7, 3, 2}, {64, 64, 9, 200}, {300, 2, 7, 5}} {
		src := NewRGB(sz[0], sz[1])
		for i := range src.Pix {
			src.Pix[i] = []uint8{0, 77, 255}[i%3]
		}
		for _, f := range []Filter{Bicubic, Bilinear, Lanczos, Box, Hamming} {
			got, err := Resize(src, sz[2], sz[3], f)
			if err != nil {
				t.Fatal(err)
			}
			for i, v := range got.Pix {
				if v != []uint8{0, 77, 255}[i%3] {
					t.Fatalf("%v %v: flat picture became %d at byte %d", f, sz, v, i)
				}
			}
		}
	}
	// Same size: an identical copy, not the same slice.
	src := randomRGB(r, 5, 4)
	got, _ := Resize(src, 5, 4, Bicubic)
	if !bytes.Equal(got.Pix, src.Pix) || &got.Pix[0] == &src.Pix[0] {
		t.Fatal("same-size resize must be a copy")
	}
}

func TestResizeErrors(t *testing.T) {
	src := NewRGB(3, 3)
	for _, c := range []struct {
		w, h int
		f    Filter
		want string
	}{
		{0, 3, Bicubic, "must be positive"},
		{3, -1, Bicubic, "must be positive"},
		{3, 3, 0, "nearest"},
		{3, 3, 9, "not a Pillow resampling filter"},
		{100000, 100000, Bicubic, "over the limit"},
	} {
		_, err := Resize(src, c.w, c.h, c.f)
		if err == nil || !bytes.Contains([]byte(err.Error()), []byte(c.want)) {
			t.Errorf("Resize(%d, %d, %v) = %v, want an error with %q", c.w, c.h, c.f, err, c.want)
		}
	}
	if _, err := Resize(&RGB{W: 2, H: 2, Pix: make([]uint8, 5)}, 3, 3, Bicubic); err == nil {
		t.Error("a malformed source must be refused")
	}
}

// TestKernelsMatchPillowArithmetic checks the kernel against Pillow's expression evaluated one rounded
// operation at a time (float64(...) forbids Go from fusing a*b+c into an FMA, as it may on arm64).
func TestKernelsMatchPillowArithmetic(t *testing.T) {
	for _, x := range []float64{0.1, 0.3, 0.7, 1.1, 1.3, 1.7, 0.123456789, 1.987654321} {
		a := -0.5
		var want float64
		if x < 1 {
			t1 := float64((a + 2.0) * x)
			t2 := t1 - (a + 3.0)
			t3 := float64(float64(t2*x) * x)
			want = t3 + 1
		} else {
			t2 := float64((x - 5) * x)
			t4 := float64((t2 + 8) * x)
			want = (t4 - 4) * a
		}
		if got := bicubicKernel(x); got != want {
			t.Errorf("bicubic(%v) = %v, want %v", x, got, want)
		}
	}
	if s := fmt.Sprint(Bicubic, Lanczos, Filter(0), Filter(7)); s != "bicubic lanczos nearest filter(7)" {
		t.Errorf("filter names: %s", s)
	}
}

func BenchmarkResize(b *testing.B) {
	src := randomRGB(rand.New(rand.NewPCG(7, 8)), 1920, 1080)
	for _, sz := range [][2]int{{1316, 728}, {1932, 1092}, {597, 336}} {
		b.Run(fmt.Sprintf("1920x1080-to-%dx%d", sz[0], sz[1]), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				if _, err := Resize(src, sz[0], sz[1], Bicubic); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
