package imageproc

import (
	"errors"
	"fmt"
	"image"
	"image/png"
	"io"
	"math"
)

// MaskOutside returns a copy of img with every pixel outside box filled with fill: the
// picture restricted to a region (Pan et al.'s region invariance). box is [x0, y0, x1, y1] in
// pixels; a pixel is inside when its centre (x+½, y+½) is, x0 ≤ x+½ < x1 and y0 ≤ y+½ < y1. A
// box reaching past the picture is clipped; one that holds no pixel's centre is an error.
func MaskOutside(img *RGB, box [4]float64, fill [3]uint8) (*RGB, error) {
	for _, v := range box {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, fmt.Errorf("region %v: not finite", box)
		}
	}
	// The first and one-past-last pixel whose centre is in [lo, hi).
	span := func(lo, hi float64, n int) (int, int) {
		a := max(0, int(math.Ceil(lo-0.5)))
		b := min(n, int(math.Ceil(hi-0.5)))
		return a, b
	}
	x0, x1 := span(box[0], box[2], img.W)
	y0, y1 := span(box[1], box[3], img.H)
	if x0 >= x1 || y0 >= y1 {
		return nil, fmt.Errorf("region %v holds no pixel of the %d×%d picture", box, img.W, img.H)
	}
	out := img.Clone()
	for y := range img.H {
		for x := range img.W {
			if x >= x0 && x < x1 && y >= y0 && y < y1 {
				continue
			}
			copy(out.Pix[3*(y*img.W+x):], fill[:])
		}
	}
	return out, nil
}

// MeanColour is a processor's normalisation mean as the 8-bit colour that normalises to
// (nearly) zero: round(255·mean) per channel.
func MeanColour(mean [3]float64) [3]uint8 {
	var c [3]uint8
	for i, m := range mean {
		c[i] = uint8(math.Round(255 * min(1, max(0, m))))
	}
	return c
}

// WritePNG encodes img as an 8-bit RGB PNG.
func WritePNG(w io.Writer, img *RGB) error {
	if img.W <= 0 || img.H <= 0 || len(img.Pix) != 3*img.W*img.H {
		return errors.New("imageproc: WritePNG: a picture without pixels")
	}
	n := image.NewNRGBA(image.Rect(0, 0, img.W, img.H))
	for i := 0; i < img.W*img.H; i++ {
		copy(n.Pix[4*i:4*i+3], img.Pix[3*i:3*i+3])
		n.Pix[4*i+3] = 255
	}
	return png.Encode(w, n)
}
