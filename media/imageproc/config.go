package imageproc

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"strings"
)

// OpenAI CLIP's normalisation, transformers' OPENAI_CLIP_MEAN / OPENAI_CLIP_STD: the default of the
// CLIP, BLIP, LLaVA and Qwen2-VL processors when a config leaves image_mean / image_std out.
var (
	OpenAICLIPMean = [3]float64{0.48145466, 0.4578275, 0.40821073}
	OpenAICLIPStd  = [3]float64{0.26862954, 0.26130258, 0.27577711}
)

// maxConfigBytes bounds a preprocessor_config.json; real ones are under 2 KB.
const maxConfigBytes = 1 << 20

// Normalize is the pixel arithmetic every processor ends with, in transformers' dtypes: rescale as
// float64(v) * factor cast to float32 (image_transforms.rescale), then (x - mean) / std with mean and std
// cast to float32 and the arithmetic in float32 (image_transforms.normalize).
type Normalize struct {
	DoRescale     bool
	RescaleFactor float64
	DoNormalize   bool
	Mean, Std     [3]float64
}

// lut tabulates the normalised value of every uint8 level per channel: the arithmetic is per (channel,
// value), so a table gives the same float32 bits at a fraction of the cost.
func (n Normalize) lut() [3][256]float32 {
	var t [3][256]float32
	for c := 0; c < 3; c++ {
		mean, std := float32(n.Mean[c]), float32(n.Std[c])
		for v := 0; v < 256; v++ {
			x := float32(v)
			if n.DoRescale {
				x = float32(float64(v) * n.RescaleFactor)
			}
			if n.DoNormalize {
				x = (x - mean) / std
			}
			t[c][v] = x
		}
	}
	return t
}

// CHW returns the picture normalised, channel-first: out[(c*H+y)*W+x].
func (n Normalize) CHW(m *RGB) []float32 {
	t := n.lut()
	out := make([]float32, 3*m.W*m.H)
	plane := m.W * m.H
	for i := 0; i < plane; i++ {
		out[i] = t[0][m.Pix[i*3]]
		out[plane+i] = t[1][m.Pix[i*3+1]]
		out[2*plane+i] = t[2][m.Pix[i*3+2]]
	}
	return out
}

// rawConfig reads a preprocessor_config.json key by key, with transformers' rule that a missing key or a
// null takes the class default.
type rawConfig struct {
	path string
	m    map[string]json.RawMessage
}

func readConfigFile(path string) (*rawConfig, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if st.Size() > maxConfigBytes {
		return nil, fmt.Errorf("%s: %d bytes is too large for a preprocessor config (limit %d)", path, st.Size(), maxConfigBytes)
	}
	data := make([]byte, st.Size())
	if _, err := f.ReadAt(data, 0); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return parseRawConfig(data, path)
}

func parseRawConfig(data []byte, path string) (*rawConfig, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("%s: not a JSON object: %w", path, err)
	}
	return &rawConfig{path: path, m: m}, nil
}

func (c *rawConfig) has(key string) bool {
	v, ok := c.m[key]
	return ok && string(v) != "null"
}

func (c *rawConfig) errf(key, format string, a ...any) error {
	return fmt.Errorf("%s: %s: %s", c.path, key, fmt.Sprintf(format, a...))
}

func (c *rawConfig) boolean(key string, def bool) (bool, error) {
	if !c.has(key) {
		return def, nil
	}
	var b bool
	if err := json.Unmarshal(c.m[key], &b); err != nil {
		return false, c.errf(key, "want true or false, got %s", c.m[key])
	}
	return b, nil
}

func (c *rawConfig) float(key string, def float64) (float64, error) {
	if !c.has(key) {
		return def, nil
	}
	var f float64
	if err := json.Unmarshal(c.m[key], &f); err != nil {
		return 0, c.errf(key, "want a number, got %s", c.m[key])
	}
	return f, nil
}

// integer accepts JSON numbers with an integral value (Python writes 3136, a hand edit may write 3136.0).
func intValue(raw json.RawMessage) (int, bool) {
	var f float64
	if err := json.Unmarshal(raw, &f); err != nil || f != math.Trunc(f) || math.Abs(f) > 1<<53 {
		return 0, false
	}
	return int(f), true
}

func (c *rawConfig) integer(key string, def int) (int, error) {
	if !c.has(key) {
		return def, nil
	}
	v, ok := intValue(c.m[key])
	if !ok {
		return 0, c.errf(key, "want an integer, got %s", c.m[key])
	}
	return v, nil
}

func (c *rawConfig) positive(key string, def int) (int, error) {
	v, err := c.integer(key, def)
	if err == nil && v <= 0 {
		err = c.errf(key, "want a positive integer, got %d", v)
	}
	return v, err
}

// triple reads image_mean / image_std: one number for all channels or a list of three.
func (c *rawConfig) triple(key string, def [3]float64) ([3]float64, error) {
	if !c.has(key) {
		return def, nil
	}
	var f float64
	if err := json.Unmarshal(c.m[key], &f); err == nil {
		return [3]float64{f, f, f}, nil
	}
	var l []float64
	if err := json.Unmarshal(c.m[key], &l); err != nil || len(l) != 3 {
		return def, c.errf(key, "want a number or a list of 3 numbers (R, G, B), got %s", c.m[key])
	}
	return [3]float64{l[0], l[1], l[2]}, nil
}

// sizeDict reads a size-like key: a JSON object of integers (null members dropped, as transformers
// drops them), or a bare integer returned under the key "int".
func (c *rawConfig) sizeDict(key string) (map[string]int, error) {
	if !c.has(key) {
		return nil, nil
	}
	if v, ok := intValue(c.m[key]); ok {
		return map[string]int{"int": v}, nil
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(c.m[key], &raw); err != nil {
		return nil, c.errf(key, "want an object of integers or an integer, got %s", c.m[key])
	}
	out := map[string]int{}
	for k, v := range raw {
		if string(v) == "null" {
			continue
		}
		n, ok := intValue(v)
		if !ok {
			return nil, c.errf(key+"."+k, "want an integer, got %s", v)
		}
		out[k] = n
	}
	return out, nil
}

func (c *rawConfig) str(key string) string {
	var s string
	if c.has(key) {
		_ = json.Unmarshal(c.m[key], &s)
	}
	return s
}

// checkType refuses a config written for another processor family; a config without
// image_processor_type is taken at its word.
func (c *rawConfig) checkType(family string, prefixes ...string) error {
	t := c.str("image_processor_type")
	if t == "" {
		return nil
	}
	for _, p := range prefixes {
		if strings.HasPrefix(t, p) {
			return nil
		}
	}
	return c.errf("image_processor_type", "%q is not a %s image processor (want %s)", t, family, strings.Join(prefixes, ", "))
}

// filter reads "resample" (Pillow's number), default bicubic as in every processor here.
func (c *rawConfig) filter() (Filter, error) {
	n, err := c.integer("resample", int(Bicubic))
	if err != nil {
		return 0, err
	}
	f, err := FilterFromPIL(n)
	if err != nil {
		return 0, c.errf("resample", "%v", err)
	}
	return f, nil
}

// normalize reads do_rescale, rescale_factor, do_normalize, image_mean, image_std with transformers'
// defaults (True, 1/255, True, and the given mean and std).
func (c *rawConfig) normalize(mean, std [3]float64) (Normalize, error) {
	var n Normalize
	var err error
	if n.DoRescale, err = c.boolean("do_rescale", true); err != nil {
		return n, err
	}
	if n.RescaleFactor, err = c.float("rescale_factor", 1.0/255); err != nil {
		return n, err
	}
	if n.DoNormalize, err = c.boolean("do_normalize", true); err != nil {
		return n, err
	}
	if n.Mean, err = c.triple("image_mean", mean); err != nil {
		return n, err
	}
	if n.Std, err = c.triple("image_std", std); err != nil {
		return n, err
	}
	if math.IsNaN(n.RescaleFactor) || math.IsInf(n.RescaleFactor, 0) {
		return n, c.errf("rescale_factor", "not a finite number")
	}
	for i := 0; i < 3; i++ {
		if n.Std[i] == 0 || math.IsNaN(n.Std[i]) || math.IsInf(n.Std[i], 0) || math.IsNaN(n.Mean[i]) || math.IsInf(n.Mean[i], 0) {
			return n, c.errf("image_std", "channel %d: mean %v / std %v would not give finite values", i, n.Mean[i], n.Std[i])
		}
	}
	// do_convert_rgb is not read: every picture is decoded to RGB, which is what do_convert_rgb=false
	// also gives for the RGB files it works on (transformers fails on the others).
	return n, nil
}
