package imageproc

import (
	"slices"
	"testing"
)

// TestExpandToSquare checks expand2square on small pictures by hand: a 3×2 picture (wider)
// goes into a 3×3 square at row (3−2)//2 = 0, a 2×5 one (taller) at column (5−2)//2 = 1.
func TestExpandToSquare(t *testing.T) {
	fill := [3]uint8{122, 116, 104}
	F := []uint8{122, 116, 104}
	px := func(v uint8) []uint8 { return []uint8{v, v + 1, v + 2} }
	wide := &RGB{W: 3, H: 2, Pix: slices.Concat(px(10), px(20), px(30), px(40), px(50), px(60))}
	got := ExpandToSquare(wide, fill)
	want := slices.Concat(px(10), px(20), px(30), px(40), px(50), px(60), F, F, F)
	if got.W != 3 || got.H != 3 || !slices.Equal(got.Pix, want) {
		t.Errorf("wide: %dx%d %v, want 3x3 %v", got.W, got.H, got.Pix, want)
	}
	tall := &RGB{W: 2, H: 5, Pix: slices.Concat(px(1), px(2), px(3), px(4), px(5), px(6), px(7), px(8), px(9), px(10))}
	got = ExpandToSquare(tall, fill)
	var w []uint8
	for y := range 5 {
		w = slices.Concat(w, F, px(uint8(2*y+1)), px(uint8(2*y+2)), F, F)
	}
	if got.W != 5 || got.H != 5 || !slices.Equal(got.Pix, w) {
		t.Errorf("tall: %dx%d %v, want 5x5 %v", got.W, got.H, got.Pix, w)
	}
	sq := &RGB{W: 1, H: 1, Pix: px(7)}
	if got := ExpandToSquare(sq, fill); got == sq || !slices.Equal(got.Pix, sq.Pix) {
		t.Errorf("square: want an equal copy")
	}
	if c := TruncatedColour([3]float64{0.48145466, 0.4578275, 0.40821073}); c != fill {
		t.Errorf("TruncatedColour(OpenAI CLIP mean) = %v, want %v (conversation.py's background)", c, fill)
	}
}
