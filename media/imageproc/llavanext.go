package imageproc

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// LlavaNextConfig is LlavaNextImageProcessor's preprocessor_config.json: CLIP's per-tile pipeline plus
// the "anyres" grid of candidate resolutions.
type LlavaNextConfig struct {
	CLIPConfig
	// Pinpoints are image_grid_pinpoints, each (height, width) as transformers reads them.
	Pinpoints [][2]int
}

// defaultPinpoints is LlavaNextImageProcessor's default image_grid_pinpoints.
var defaultPinpoints = [][2]int{{336, 672}, {672, 336}, {672, 672}, {1008, 336}, {336, 1008}}

// LoadLlavaNextConfig reads a LLaVA-NeXT preprocessor_config.json.
func LoadLlavaNextConfig(path string) (LlavaNextConfig, error) {
	rc, err := readConfigFile(path)
	if err != nil {
		return LlavaNextConfig{}, err
	}
	return llavaNextFromRaw(rc)
}

// ParseLlavaNextConfig is LoadLlavaNextConfig on bytes; name is used in errors.
func ParseLlavaNextConfig(data []byte, name string) (LlavaNextConfig, error) {
	rc, err := parseRawConfig(data, name)
	if err != nil {
		return LlavaNextConfig{}, err
	}
	return llavaNextFromRaw(rc)
}

func llavaNextFromRaw(rc *rawConfig) (LlavaNextConfig, error) {
	var c LlavaNextConfig
	if err := rc.checkType("LLaVA-NeXT", "LlavaNextImageProcessor"); err != nil {
		return c, err
	}
	var err error
	if c.CLIPConfig, err = clipFromRaw(rc); err != nil {
		return c, err
	}
	c.Pinpoints = defaultPinpoints
	if rc.has("image_grid_pinpoints") {
		var pp [][]int
		if err := json.Unmarshal(rc.m["image_grid_pinpoints"], &pp); err != nil || len(pp) == 0 {
			return c, rc.errf("image_grid_pinpoints", "want a non-empty list of [height, width] pairs")
		}
		c.Pinpoints = make([][2]int, len(pp))
		for i, p := range pp {
			if len(p) != 2 || p[0] <= 0 || p[1] <= 0 || p[0] > 1<<14 || p[1] > 1<<14 {
				return c, rc.errf("image_grid_pinpoints", "entry %d: want [height, width], positive, at most %d", i, 1<<14)
			}
			c.Pinpoints[i] = [2]int{p[0], p[1]}
		}
	}
	return c, nil
}

// SelectBestResolution is transformers' select_best_resolution: the candidate (height, width) that keeps
// the most of the picture's pixels when it is scaled to fit, ties going to the one wasting the least
// area, then to the earlier one.
func SelectBestResolution(height, width int, candidates [][2]int) [2]int {
	var best [2]int
	maxEffective, minWasted := 0, math.MaxInt
	for _, c := range candidates {
		scale := math.Min(float64(c[1])/float64(width), float64(c[0])/float64(height))
		dw, dh := int(float64(width)*scale), int(float64(height)*scale)
		effective := min(dw*dh, width*height)
		wasted := c[0]*c[1] - effective
		if effective > maxEffective || (effective == maxEffective && wasted < minWasted) {
			maxEffective, minWasted, best = effective, wasted, c
		}
	}
	return best
}

// PatchOutputSize is transformers' get_patch_output_size: the (height, width) the picture is resized to
// inside the target before it is padded, the scaled side rounded up and capped at the target.
func PatchOutputSize(height, width int, target [2]int) (int, int) {
	scaleW := float64(target[1]) / float64(width)
	scaleH := float64(target[0]) / float64(height)
	if scaleW < scaleH {
		return min(int(math.Ceil(float64(height)*scaleW)), target[0]), target[1]
	}
	return target[0], min(int(math.Ceil(float64(width)*scaleH)), target[1])
}

// LlavaNextPixels is the processor's output for one picture.
type LlavaNextPixels struct {
	// Values is pixel_values for this picture: [Tiles, 3, H, W], the resized whole picture first, then
	// the tiles of the padded high-resolution canvas in row-major order.
	Values      []float32
	Tiles, H, W int
	// ImageSize is image_sizes: the original (height, width).
	ImageSize [2]int
	// Best is the chosen grid pinpoint (height, width).
	Best [2]int
}

// tileSize is the (height, width) of every processed tile (pixel_values[0][0].shape[-2:]).
func (c LlavaNextConfig) tileSize() (int, int) {
	if c.DoCenterCrop {
		return c.CropH, c.CropW
	}
	if c.ShortestEdge > 0 {
		return c.ShortestEdge, c.ShortestEdge
	}
	return c.ResizeH, c.ResizeW
}

// Preprocess is LlavaNextImageProcessor.preprocess for one picture: pick the best grid resolution,
// resize into it keeping the aspect ratio, pad with zeros (centred), cut into crop-size tiles, put the
// picture resized to a square first, then run every tile through the CLIP pipeline.
func (c LlavaNextConfig) Preprocess(img *RGB) (*LlavaNextPixels, error) {
	best := SelectBestResolution(img.H, img.W, c.Pinpoints)
	nh, nw := PatchOutputSize(img.H, img.W, best)
	resized, err := Resize(img, nw, nh, c.Filter)
	if err != nil {
		return nil, fmt.Errorf("llava-next: %w", err)
	}
	th, tw := best[0], best[1]
	if int64(th)*int64(tw) > maxWorkPixels {
		return nil, fmt.Errorf("llava-next: pinpoint %dx%d is over the limit", tw, th)
	}
	canvas := NewRGB(tw, th)
	padY, padX := (th-nh)/2, (tw-nw)/2
	for y := 0; y < nh; y++ {
		copy(canvas.Pix[((y+padY)*tw+padX)*3:], resized.Pix[y*nw*3:(y+1)*nw*3])
	}

	// The whole picture, squashed to shortest_edge × shortest_edge (or the smaller of height and width).
	side := c.ShortestEdge
	if side <= 0 {
		side = min(c.ResizeH, c.ResizeW)
	}
	base, err := Resize(img, side, side, c.Filter)
	if err != nil {
		return nil, fmt.Errorf("llava-next: %w", err)
	}
	patches := []*RGB{base}
	ps := c.CropH // divide_to_patches takes patch_size = crop_size["height"] for both sides
	for y := 0; y < th; y += ps {
		for x := 0; x < tw; x += ps {
			patches = append(patches, SubImage(canvas, y, x, ps, ps))
		}
	}

	oh, ow := c.tileSize()
	out := &LlavaNextPixels{Tiles: len(patches), H: oh, W: ow, ImageSize: [2]int{img.H, img.W}, Best: best}
	out.Values = make([]float32, 0, len(patches)*3*oh*ow)
	for i, p := range patches {
		v, h, w, err := c.CLIPConfig.Preprocess(p)
		if err != nil {
			return nil, fmt.Errorf("llava-next: tile %d: %w", i, err)
		}
		if h != oh || w != ow {
			return nil, fmt.Errorf("llava-next: tile %d is %dx%d after the CLIP steps, tile 0 %dx%d (transformers cannot stack them either)", i, w, h, ow, oh)
		}
		out.Values = append(out.Values, v...)
	}
	return out, nil
}

// LlavaNextTokenParams are the processor_config.json / config.json values the token count needs.
type LlavaNextTokenParams struct {
	PatchSize                int  // vision patch size (14)
	NumAdditionalImageTokens int  // 1 for CLIP's CLS token
	DropCLS                  bool // vision_feature_select_strategy == "default"
}

// ImageTokens is LlavaNextProcessor._get_number_of_features (minus one under the "default" feature
// strategy): the base tile's patches, plus the unpadded part of the high-resolution grid, plus one
// newline token per row of it. It is the number of <image> tokens one picture expands into.
func (c LlavaNextConfig) ImageTokens(origH, origW int, p LlavaNextTokenParams) (int, error) {
	if origH <= 0 || origW <= 0 || p.PatchSize <= 0 {
		return 0, errors.New("llava-next tokens: sizes and patch size must be positive")
	}
	th, tw := c.tileSize()
	best := SelectBestResolution(origH, origW, c.Pinpoints)
	scaleH, scaleW := best[0]/th, best[1]/tw
	ph, pw := th/p.PatchSize, tw/p.PatchSize
	unpadded, newlines := unpaddedFeatures(origH, origW, ph, pw, scaleH, scaleW)
	n := unpadded + newlines + ph*pw + p.NumAdditionalImageTokens
	if p.DropCLS {
		n--
	}
	return n, nil
}

// unpaddedFeatures is LlavaNextProcessor._get_unpadded_features (the count side of the model's
// unpad_image): the grid of patch features, less the rows or columns that only cover padding.
func unpaddedFeatures(height, width, patchesH, patchesW, scaleH, scaleW int) (int, int) {
	r0, r1, c0, c1 := UnpadGrid(height, width, patchesH*scaleH, patchesW*scaleW)
	return (r1 - r0) * (c1 - c0), r1 - r0
}

// UnpadGrid is LLaVA-NeXT's unpad_image on a gridH × gridW grid of patch features of a picture
// of height × width pixels padded to the grid's aspect ratio: the rows [rowLo, rowHi) and
// columns [colLo, colHi) that cover the picture. The model slices its features with it, the
// processor counts them.
func UnpadGrid(height, width, gridH, gridW int) (rowLo, rowHi, colLo, colHi int) {
	rowHi, colHi = gridH, gridW
	if float64(width)/float64(height) > float64(gridW)/float64(gridH) {
		newH := intRound7(float64(height) * (float64(gridW) / float64(width)))
		pad := floorDiv(gridH-newH, 2)
		return pad, gridH - pad, 0, gridW
	}
	newW := intRound7(float64(width) * (float64(gridH) / float64(height)))
	pad := floorDiv(gridW-newW, 2)
	return 0, gridH, pad, gridW - pad
}

// intRound7 is Python's int(round(x, 7)) for x >= 0: round to 7 decimals (exactly, halves to even),
// then truncate. transformers rounds first so that 23.999999999 counts as 24.
func intRound7(x float64) int {
	s := strconv.FormatFloat(x, 'f', 7, 64)
	if i := strings.IndexByte(s, '.'); i >= 0 {
		s = s[:i]
	}
	n, _ := strconv.Atoi(s)
	return n
}
