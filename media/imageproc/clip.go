package imageproc

import (
	"fmt"
)

// CLIPConfig is the resize / centre-crop / normalise pipeline of CLIPImageProcessor, which LLaVA-1.5
// uses, and of BlipImageProcessor (InstructBLIP), which resizes to a fixed size and does not crop.
type CLIPConfig struct {
	DoResize bool
	// ShortestEdge > 0 resizes the shorter side to it, keeping the aspect ratio; otherwise the picture is
	// resized to exactly ResizeH × ResizeW.
	ShortestEdge     int
	ResizeH, ResizeW int
	DoCenterCrop     bool
	CropH, CropW     int
	Filter           Filter
	Normalize
}

// LoadCLIPConfig reads the preprocessor_config.json of a CLIPImageProcessor, a BlipImageProcessor or a
// LlavaNextImageProcessor (whose per-tile pipeline is CLIP's), with that class's defaults.
func LoadCLIPConfig(path string) (CLIPConfig, error) {
	rc, err := readConfigFile(path)
	if err != nil {
		return CLIPConfig{}, err
	}
	return clipFromRaw(rc)
}

// ParseCLIPConfig is LoadCLIPConfig on bytes; name is used in errors.
func ParseCLIPConfig(data []byte, name string) (CLIPConfig, error) {
	rc, err := parseRawConfig(data, name)
	if err != nil {
		return CLIPConfig{}, err
	}
	return clipFromRaw(rc)
}

func clipFromRaw(rc *rawConfig) (CLIPConfig, error) {
	c := CLIPConfig{DoResize: true, ShortestEdge: 224, DoCenterCrop: true, CropH: 224, CropW: 224, Filter: Bicubic}
	if err := rc.checkType("CLIP-style", "CLIPImageProcessor", "BlipImageProcessor", "LlavaNextImageProcessor"); err != nil {
		return c, err
	}
	blip := len(rc.str("image_processor_type")) >= 4 && rc.str("image_processor_type")[:4] == "Blip"
	if blip {
		// BlipImageProcessor: size {height: 384, width: 384}, an int size means a square, no crop.
		c.ShortestEdge, c.ResizeH, c.ResizeW, c.DoCenterCrop = 0, 384, 384, false
	}
	var err error
	if c.DoResize, err = rc.boolean("do_resize", true); err != nil {
		return c, err
	}
	size, err := rc.sizeDict("size")
	if err != nil {
		return c, err
	}
	switch {
	case size == nil:
	case size["shortest_edge"] > 0:
		c.ShortestEdge = size["shortest_edge"]
	case size["height"] > 0 && size["width"] > 0:
		c.ShortestEdge, c.ResizeH, c.ResizeW = 0, size["height"], size["width"]
	case size["int"] > 0 && blip:
		c.ShortestEdge, c.ResizeH, c.ResizeW = 0, size["int"], size["int"]
	case size["int"] > 0:
		// get_size_dict(int, default_to_square=False) gives {"shortest_edge": n}.
		c.ShortestEdge = size["int"]
	default:
		return c, rc.errf("size", "want shortest_edge or height and width, all positive")
	}
	if !blip {
		if c.DoCenterCrop, err = rc.boolean("do_center_crop", true); err != nil {
			return c, err
		}
		crop, err := rc.sizeDict("crop_size")
		if err != nil {
			return c, err
		}
		switch {
		case crop == nil:
		case crop["height"] > 0 && crop["width"] > 0:
			c.CropH, c.CropW = crop["height"], crop["width"]
		case crop["int"] > 0:
			c.CropH, c.CropW = crop["int"], crop["int"]
		default:
			return c, rc.errf("crop_size", "want height and width, both positive")
		}
	}
	if max(c.ShortestEdge, c.ResizeH, c.ResizeW, c.CropH, c.CropW) > 1<<14 {
		return c, rc.errf("size", "sizes over %d are out of any model's range", 1<<14)
	}
	if c.Filter, err = rc.filter(); err != nil {
		return c, err
	}
	c.Normalize, err = rc.normalize(OpenAICLIPMean, OpenAICLIPStd)
	return c, err
}

// ShortestEdgeSize is transformers' get_resize_output_image_size(size, default_to_square=False): the
// shorter side becomes size, the longer int(size * long / short) (truncated). It returns (height, width).
func ShortestEdgeSize(height, width, size int) (int, int) {
	short, long := height, width
	if width <= height {
		short, long = width, height
	}
	newLong := int(float64(size*long) / float64(short))
	if width <= height {
		return newLong, size
	}
	return size, newLong
}

// ResizeSize is the (height, width) the resize step produces for a picture of the given size.
func (c CLIPConfig) ResizeSize(height, width int) (int, int) {
	if !c.DoResize {
		return height, width
	}
	if c.ShortestEdge > 0 {
		return ShortestEdgeSize(height, width, c.ShortestEdge)
	}
	return c.ResizeH, c.ResizeW
}

// Prepare runs the uint8 steps: resize, then centre crop.
func (c CLIPConfig) Prepare(img *RGB) (*RGB, error) {
	h, w := c.ResizeSize(img.H, img.W)
	out := img
	if c.DoResize {
		var err error
		if out, err = Resize(img, w, h, c.Filter); err != nil {
			return nil, err
		}
	}
	if c.DoCenterCrop {
		return CenterCrop(out, c.CropH, c.CropW)
	}
	return out, nil
}

// Preprocess returns pixel_values for one picture, channel-first [3, H, W], and its H and W.
func (c CLIPConfig) Preprocess(img *RGB) ([]float32, int, int, error) {
	m, err := c.Prepare(img)
	if err != nil {
		return nil, 0, 0, err
	}
	return c.Normalize.CHW(m), m.H, m.W, nil
}

// floorDiv is Python's // on ints.
func floorDiv(a, b int) int {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}

// CenterCrop is transformers' image_transforms.center_crop: top = (H - h) // 2, left = (W - w) // 2,
// and a picture smaller than the crop is first padded with zeros, centred with the odd pixel after
// (ceil) the picture.
func CenterCrop(img *RGB, h, w int) (*RGB, error) {
	if h <= 0 || w <= 0 {
		return nil, fmt.Errorf("center crop: size %dx%d must be positive", w, h)
	}
	if int64(h)*int64(w) > maxWorkPixels {
		return nil, fmt.Errorf("center crop: %dx%d is over the limit of %d pixels", w, h, maxWorkPixels)
	}
	top, left := floorDiv(img.H-h, 2), floorDiv(img.W-w, 2)
	src := img
	if top < 0 || left < 0 {
		nh, nw := max(h, img.H), max(w, img.W)
		topPad, leftPad := (nh-img.H+1)/2, (nw-img.W+1)/2
		padded := NewRGB(nw, nh)
		for y := 0; y < img.H; y++ {
			copy(padded.Pix[((y+topPad)*nw+leftPad)*3:], img.Pix[y*img.W*3:(y+1)*img.W*3])
		}
		src, top, left = padded, top+topPad, left+leftPad
	}
	if top == 0 && left == 0 && src.H == h && src.W == w {
		return src, nil
	}
	return SubImage(src, top, left, h, w), nil
}

// SubImage copies the h×w window at (top, left), clipped to the picture (as a numpy slice clips).
func SubImage(img *RGB, top, left, h, w int) *RGB {
	h = min(h, img.H-top)
	w = min(w, img.W-left)
	out := NewRGB(w, h)
	for y := 0; y < h; y++ {
		copy(out.Pix[y*w*3:(y+1)*w*3], img.Pix[((top+y)*img.W+left)*3:((top+y)*img.W+left+w)*3])
	}
	return out
}
