package imageproc

import (
	"errors"
	"fmt"
	"math"
)

// Qwen2VLConfig is Qwen2VLImageProcessor's preprocessor_config.json.
type Qwen2VLConfig struct {
	// MinPixels and MaxPixels bound the resized area (size.shortest_edge / size.longest_edge in newer
	// configs, min_pixels / max_pixels in older ones; the latter win when both are there).
	MinPixels, MaxPixels int
	PatchSize            int // spatial patch of the vision encoder (14)
	TemporalPatchSize    int // frames per temporal patch (2)
	MergeSize            int // patches merged per side into one LLM token (2)
	DoResize             bool
	Filter               Filter
	Normalize
}

// DefaultQwen2VLConfig is Qwen2VLImageProcessor() with no arguments.
func DefaultQwen2VLConfig() Qwen2VLConfig {
	return Qwen2VLConfig{
		MinPixels: 56 * 56, MaxPixels: 28 * 28 * 1280,
		PatchSize: 14, TemporalPatchSize: 2, MergeSize: 2,
		DoResize: true, Filter: Bicubic,
		Normalize: Normalize{DoRescale: true, RescaleFactor: 1.0 / 255, DoNormalize: true,
			Mean: OpenAICLIPMean, Std: OpenAICLIPStd},
	}
}

// LoadQwen2VLConfig reads a Qwen2-VL (or Qwen2.5-VL) preprocessor_config.json.
func LoadQwen2VLConfig(path string) (Qwen2VLConfig, error) {
	rc, err := readConfigFile(path)
	if err != nil {
		return Qwen2VLConfig{}, err
	}
	return qwen2VLFromRaw(rc)
}

// ParseQwen2VLConfig is LoadQwen2VLConfig on bytes; name is used in errors.
func ParseQwen2VLConfig(data []byte, name string) (Qwen2VLConfig, error) {
	rc, err := parseRawConfig(data, name)
	if err != nil {
		return Qwen2VLConfig{}, err
	}
	return qwen2VLFromRaw(rc)
}

func qwen2VLFromRaw(rc *rawConfig) (Qwen2VLConfig, error) {
	c := DefaultQwen2VLConfig()
	if err := rc.checkType("Qwen2-VL", "Qwen2VLImageProcessor", "Qwen2_5_VLImageProcessor"); err != nil {
		return c, err
	}
	// transformers: size defaults to {shortest_edge: 56*56, longest_edge: 28*28*1280}; top-level
	// min_pixels / max_pixels override it; a size without both keys is an error.
	size, err := rc.sizeDict("size")
	if err != nil {
		return c, err
	}
	if size == nil {
		size = map[string]int{"shortest_edge": c.MinPixels, "longest_edge": c.MaxPixels}
	}
	if rc.has("min_pixels") {
		if size["shortest_edge"], err = rc.integer("min_pixels", 0); err != nil {
			return c, err
		}
	}
	if rc.has("max_pixels") {
		if size["longest_edge"], err = rc.integer("max_pixels", 0); err != nil {
			return c, err
		}
	}
	minP, okMin := size["shortest_edge"]
	maxP, okMax := size["longest_edge"]
	if !okMin || !okMax {
		return c, rc.errf("size", "must have shortest_edge and longest_edge (or the config min_pixels and max_pixels)")
	}
	if minP <= 0 || maxP <= 0 {
		return c, rc.errf("size", "min pixels %d and max pixels %d must be positive", minP, maxP)
	}
	c.MinPixels, c.MaxPixels = minP, maxP
	if c.PatchSize, err = rc.positive("patch_size", c.PatchSize); err != nil {
		return c, err
	}
	if c.TemporalPatchSize, err = rc.positive("temporal_patch_size", c.TemporalPatchSize); err != nil {
		return c, err
	}
	if c.MergeSize, err = rc.positive("merge_size", c.MergeSize); err != nil {
		return c, err
	}
	if c.PatchSize > 4096 || c.MergeSize > 64 || c.TemporalPatchSize > 64 {
		return c, rc.errf("patch_size", "patch %d, merge %d, temporal %d are out of any model's range", c.PatchSize, c.MergeSize, c.TemporalPatchSize)
	}
	if c.DoResize, err = rc.boolean("do_resize", true); err != nil {
		return c, err
	}
	if c.Filter, err = rc.filter(); err != nil {
		return c, err
	}
	c.Normalize, err = rc.normalize(OpenAICLIPMean, OpenAICLIPStd)
	return c, err
}

// ErrAspectRatio is wrapped by SmartResize for pictures more than 200 times longer than wide.
var ErrAspectRatio = errors.New("absolute aspect ratio must be smaller than 200")

// SmartResize is transformers' qwen2_vl smart_resize: the (height, width) nearest the picture's, both
// multiples of factor, with the area inside [minPixels, maxPixels]. The arithmetic is Python's: float64
// division, round() rounding halves to even, floor/ceil after the same chain of divisions.
//
// Older transformers releases (before the max(factor, ...) guard) also refused pictures with a side
// under factor; newer ones scale them up, as this does.
func SmartResize(height, width, factor, minPixels, maxPixels int) (int, int, error) {
	if height <= 0 || width <= 0 || factor <= 0 {
		return 0, 0, fmt.Errorf("smart_resize: height %d, width %d and factor %d must be positive", height, width, factor)
	}
	h, w := float64(height), float64(width)
	if math.Max(h, w)/math.Min(h, w) > 200 {
		return 0, 0, fmt.Errorf("smart_resize: %dx%d: %w, got %v", height, width, ErrAspectRatio, math.Max(h, w)/math.Min(h, w))
	}
	f := float64(factor)
	hBar := int(math.RoundToEven(h/f)) * factor
	wBar := int(math.RoundToEven(w/f)) * factor
	if hBar*wBar > maxPixels {
		beta := math.Sqrt(float64(height*width) / float64(maxPixels))
		hBar = max(factor, int(math.Floor(h/beta/f))*factor)
		wBar = max(factor, int(math.Floor(w/beta/f))*factor)
	} else if hBar*wBar < minPixels {
		beta := math.Sqrt(float64(minPixels) / float64(height*width))
		hBar = int(math.Ceil(h*beta/f)) * factor
		wBar = int(math.Ceil(w*beta/f)) * factor
	}
	return hBar, wBar, nil
}

// TargetSize is the (height, width) a picture of the given size is resized to.
func (c Qwen2VLConfig) TargetSize(height, width int) (int, int, error) {
	if !c.DoResize {
		return height, width, nil
	}
	h, w, err := SmartResize(height, width, c.PatchSize*c.MergeSize, c.MinPixels, c.MaxPixels)
	if err != nil {
		return 0, 0, err
	}
	if int64(h)*int64(w) > maxWorkPixels {
		return 0, 0, fmt.Errorf("smart_resize: %dx%d -> %dx%d is over the limit of %d pixels (min_pixels %d, max_pixels %d)",
			height, width, h, w, maxWorkPixels, c.MinPixels, c.MaxPixels)
	}
	return h, w, nil
}

// Qwen2VLPixels is the processor's output for one image or one video.
type Qwen2VLPixels struct {
	// Values is pixel_values, row-major [Rows, Cols]. Rows run over (t block, h block, w block,
	// merge row, merge column), columns over (channel, frame in the temporal patch, patch row, patch
	// column).
	Values     []float32
	Rows, Cols int
	// GridTHW is image_grid_thw (or video_grid_thw): temporal, height and width in patches.
	GridTHW [3]int
}

// Tokens is the number of <|image_pad|> (or <|video_pad|>) tokens the LLM sees for this input.
func (p *Qwen2VLPixels) Tokens(mergeSize int) int {
	return p.GridTHW[0] * p.GridTHW[1] * p.GridTHW[2] / (mergeSize * mergeSize)
}

// Image preprocesses one picture: smart resize, rescale, normalise, repeat to the temporal patch size,
// flatten into patches.
func (c Qwen2VLConfig) Image(img *RGB) (*Qwen2VLPixels, error) {
	return c.Video([]*RGB{img})
}

// Video preprocesses a clip: every frame is resized to the size smart_resize gives the first one (as
// transformers does), the frame count is padded to a multiple of the temporal patch size by repeating
// the last frame, and the frames are flattened into patches.
func (c Qwen2VLConfig) Video(frames []*RGB) (*Qwen2VLPixels, error) {
	if len(frames) == 0 {
		return nil, errors.New("qwen2-vl: no frames")
	}
	h, w, err := c.TargetSize(frames[0].H, frames[0].W)
	if err != nil {
		return nil, err
	}
	resized := make([]*RGB, len(frames))
	for i, f := range frames {
		if resized[i], err = Resize(f, w, h, c.Filter); err != nil {
			return nil, fmt.Errorf("qwen2-vl: frame %d: %w", i, err)
		}
	}
	return c.Patchify(resized)
}

// Patchify rescales, normalises and flattens frames that already have their final size.
func (c Qwen2VLConfig) Patchify(frames []*RGB) (*Qwen2VLPixels, error) {
	if len(frames) == 0 {
		return nil, errors.New("qwen2-vl: no frames")
	}
	H, W := frames[0].H, frames[0].W
	for i, f := range frames {
		if f.H != H || f.W != W {
			return nil, fmt.Errorf("qwen2-vl: frame %d is %dx%d, frame 0 is %dx%d", i, f.W, f.H, W, H)
		}
	}
	P, M, T := c.PatchSize, c.MergeSize, c.TemporalPatchSize
	if H%(P*M) != 0 || W%(P*M) != 0 {
		return nil, fmt.Errorf("qwen2-vl: %dx%d is not a multiple of patch_size*merge_size = %d (do_resize=false needs pictures of that shape)", W, H, P*M)
	}
	// transformers pads an incomplete temporal patch with temporal_patch_size-1 copies of the last
	// frame; with a count it still cannot reshape, it fails, and so do we.
	if len(frames)%T != 0 {
		last := frames[len(frames)-1]
		for i := 0; i < T-1; i++ {
			frames = append(frames[:len(frames):len(frames)], last)
		}
		if len(frames)%T != 0 {
			return nil, fmt.Errorf("qwen2-vl: %d frames cannot be padded to a multiple of temporal_patch_size %d the way transformers pads", len(frames)-(T-1), T)
		}
	}
	gt, gh, gw := len(frames)/T, H/P, W/P
	rows, cols := gt*gh*gw, 3*T*P*P
	if int64(rows)*int64(cols) > 4*int64(maxWorkPixels) {
		return nil, fmt.Errorf("qwen2-vl: %d frames of %dx%d make %d values, over the limit", len(frames), W, H, int64(rows)*int64(cols))
	}
	lut := c.Normalize.lut()
	out := make([]float32, rows*cols)
	row := 0
	for t := 0; t < gt; t++ {
		for bh := 0; bh < gh/M; bh++ {
			for bw := 0; bw < gw/M; bw++ {
				for mh := 0; mh < M; mh++ {
					for mw := 0; mw < M; mw++ {
						y0, x0 := (bh*M+mh)*P, (bw*M+mw)*P
						dst := out[row*cols : (row+1)*cols]
						i := 0
						for ch := 0; ch < 3; ch++ {
							for tp := 0; tp < T; tp++ {
								pix := frames[t*T+tp].Pix
								for py := 0; py < P; py++ {
									src := ((y0+py)*W + x0) * 3
									for px := 0; px < P; px++ {
										dst[i] = lut[ch][pix[src+px*3+ch]]
										i++
									}
								}
							}
						}
						row++
					}
				}
			}
		}
	}
	return &Qwen2VLPixels{Values: out, Rows: rows, Cols: cols, GridTHW: [3]int{gt, gh, gw}}, nil
}
