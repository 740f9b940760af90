package imageproc

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// A hand-made 4×3 picture restricted to a box: the pixels whose centres lie in the box keep
// their colours, the others take the fill.
func TestMaskOutside(t *testing.T) {
	img := NewRGB(4, 3)
	for i := range img.Pix {
		img.Pix[i] = uint8(i + 1)
	}
	fill := [3]uint8{7, 8, 9}
	for _, c := range []struct {
		box    [4]float64
		inside [][2]int // (x, y) kept
	}{
		{[4]float64{1, 1, 3, 2}, [][2]int{{1, 1}, {2, 1}}},
		{[4]float64{0.5, 1, 1.6, 3}, [][2]int{{0, 1}, {1, 1}, {0, 2}, {1, 2}}}, // centres 0.5 and 1.5 are in [0.5, 1.6)
		{[4]float64{3, 2, 100, 100}, [][2]int{{3, 2}}},                         // clipped to the picture
		{[4]float64{0, 0, 4, 3}, nil},                                          // everything kept: checked below
	} {
		got, err := MaskOutside(img, c.box, fill)
		if err != nil {
			t.Fatalf("%v: %v", c.box, err)
		}
		for y := range 3 {
			for x := range 4 {
				px := got.Pix[3*(y*4+x) : 3*(y*4+x)+3]
				keep := c.inside == nil || slices.Contains(c.inside, [2]int{x, y})
				want := fill[:]
				if keep {
					want = img.Pix[3*(y*4+x) : 3*(y*4+x)+3]
				}
				if !slices.Equal(px, want) {
					t.Errorf("box %v: pixel (%d,%d) = %v, want %v", c.box, x, y, px, want)
				}
			}
		}
	}
	if img.Pix[0] != 1 {
		t.Error("MaskOutside changed its input")
	}
	for _, box := range [][4]float64{{1, 1, 1.4, 2}, {5, 0, 9, 3}, {0.6, 0, 1.5, 3}} { // the last: centre 1.5 is not < 1.5
		if _, err := MaskOutside(img, box, fill); err == nil {
			t.Errorf("box %v holds no pixel centre: want an error", box)
		}
	}
}

func TestMeanColourAndWritePNG(t *testing.T) {
	if got := MeanColour(OpenAICLIPMean); got != [3]uint8{123, 117, 104} {
		t.Errorf("CLIP mean colour %v, want [123 117 104]", got)
	}
	if got := MeanColour([3]float64{0.5, 0.5, 0.5}); got != [3]uint8{128, 128, 128} {
		t.Errorf("mean 0.5: %v", got)
	}
	img := NewRGB(3, 2)
	for i := range img.Pix {
		img.Pix[i] = uint8(40 * i)
	}
	var b bytes.Buffer
	if err := WritePNG(&b, img); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "x.png")
	os.WriteFile(p, b.Bytes(), 0o644)
	back, err := DecodeFile(p, DecodeOptions{})
	if err != nil || back.W != 3 || back.H != 2 || !slices.Equal(back.Pix, img.Pix) {
		t.Errorf("round trip: %+v, %v", back, err)
	}
	if err := WritePNG(&b, &RGB{}); err == nil {
		t.Error("an empty picture: want an error")
	}
}
