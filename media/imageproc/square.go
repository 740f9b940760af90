package imageproc

// ExpandToSquare is mPLUG-Owl2's (and LLaVA's) expand2square: a non-square picture pasted
// into a square of its longer side filled with fill, centred along the shorter side with the
// odd pixel after it (offset (long − short) // 2, as PIL's paste at that box). A square
// picture is returned as a copy.
func ExpandToSquare(img *RGB, fill [3]uint8) *RGB {
	if img.W == img.H {
		return img.Clone()
	}
	side := max(img.W, img.H)
	out := NewRGB(side, side)
	for i := 0; i < len(out.Pix); i += 3 {
		copy(out.Pix[i:i+3], fill[:])
	}
	top, left := (side-img.H)/2, (side-img.W)/2
	for y := range img.H {
		copy(out.Pix[((top+y)*side+left)*3:], img.Pix[y*img.W*3:(y+1)*img.W*3])
	}
	return out
}

// TruncatedColour is a processor's normalisation mean as mPLUG-Owl2's process_images turns
// it into expand2square's fill: tuple(int(x*255) for x in image_mean), truncated (the OpenAI
// CLIP mean gives (122, 116, 104)), not rounded as MeanColour does.
func TruncatedColour(mean [3]float64) [3]uint8 {
	var c [3]uint8
	for i, m := range mean {
		c[i] = uint8(min(255, max(0, m*255)))
	}
	return c
}
