package imageproc

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"math"
	"os"
	"testing"
)

// The goldens in testdata/ come from /work/shared/models/media-golden (see its README): transformers'
// PIL-backed processors on img.png, a 97x61 RGB picture.

type goldenJSON struct {
	InputHW          [2]int `json:"input_hw"`
	SmartResizeHW    [2]int `json:"smart_resize_hw"`
	ImageGridTHW     [3]int `json:"image_grid_thw"`
	PixelValuesShape []int  `json:"pixel_values_shape"`
	SHA256           string `json:"sha256_f32"`
	ResizeHW         [2]int `json:"resize_hw"`
	CropHW           [2]int `json:"crop_hw"`
	CropTopLeft      [2]int `json:"crop_top_left"`
}

func readGolden(t *testing.T, name string) goldenJSON {
	t.Helper()
	data, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	var g goldenJSON
	if err := json.Unmarshal(data, &g); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return g
}

func f32Bytes(v []float32) []byte {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[i*4:], math.Float32bits(x))
	}
	return b
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func decodeTestPNG(t *testing.T) *RGB {
	t.Helper()
	img, err := DecodeFile("testdata/img.png", DecodeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func TestGoldenQwen2VL(t *testing.T) {
	g := readGolden(t, "qwen2vl_img.json")
	cfg, err := LoadQwen2VLConfig("testdata/configs/Qwen2-VL-2B-Instruct.preprocessor_config.json")
	if err != nil {
		t.Fatal(err)
	}
	img := decodeTestPNG(t)
	if img.H != g.InputHW[0] || img.W != g.InputHW[1] {
		t.Fatalf("decoded %dx%d, golden input is h=%d w=%d", img.W, img.H, g.InputHW[0], g.InputHW[1])
	}
	h, w, err := cfg.TargetSize(img.H, img.W)
	if err != nil {
		t.Fatal(err)
	}
	if [2]int{h, w} != g.SmartResizeHW {
		t.Fatalf("smart_resize = %dx%d, golden %v", h, w, g.SmartResizeHW)
	}

	// The resampler alone: the resized uint8 picture, byte for byte.
	resized, err := Resize(img, w, h, cfg.Filter)
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile("testdata/qwen2vl_img.resized_u8_hwc.bin")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(resized.Pix, want) {
		diff, maxd := 0, 0
		for i := range want {
			if d := int(resized.Pix[i]) - int(want[i]); d != 0 {
				diff++
				maxd = max(maxd, d, -d)
			}
		}
		t.Fatalf("resized picture differs from Pillow's in %d of %d bytes (max %d levels)", diff, len(want), maxd)
	}

	px, err := cfg.Image(img)
	if err != nil {
		t.Fatal(err)
	}
	if px.GridTHW != g.ImageGridTHW || px.GridTHW != [3]int{1, 4, 6} {
		t.Fatalf("grid_thw = %v, golden %v", px.GridTHW, g.ImageGridTHW)
	}
	if []int{px.Rows, px.Cols}[0] != g.PixelValuesShape[0] || px.Cols != g.PixelValuesShape[1] {
		t.Fatalf("pixel_values shape [%d %d], golden %v", px.Rows, px.Cols, g.PixelValuesShape)
	}
	got := f32Bytes(px.Values)
	if s := sha(got); s != g.SHA256 {
		ref, _ := os.ReadFile("testdata/qwen2vl_img.f32.bin")
		first, maxd := -1, 0.0
		for i := 0; i+4 <= len(ref) && i+4 <= len(got); i += 4 {
			a := math.Float32frombits(binary.LittleEndian.Uint32(got[i:]))
			b := math.Float32frombits(binary.LittleEndian.Uint32(ref[i:]))
			if a != b {
				if first < 0 {
					first = i / 4
				}
				maxd = math.Max(maxd, math.Abs(float64(a-b)))
			}
		}
		t.Fatalf("pixel_values sha256 %s, golden %s (first differing value %d, max abs diff %g)", s, g.SHA256, first, maxd)
	}
	if px.Tokens(cfg.MergeSize) != 6 {
		t.Errorf("tokens = %d, want 1*4*6/4 = 6", px.Tokens(cfg.MergeSize))
	}
}

func TestGoldenCLIP(t *testing.T) {
	g := readGolden(t, "clip_img.json")
	cfg, err := LoadCLIPConfig("testdata/configs/llava-1.5-7b-hf.preprocessor_config.json")
	if err != nil {
		t.Fatal(err)
	}
	img := decodeTestPNG(t)
	if h, w := cfg.ResizeSize(img.H, img.W); [2]int{h, w} != g.ResizeHW {
		t.Fatalf("resize to %dx%d, golden %v", h, w, g.ResizeHW)
	}
	if top, left := floorDiv(g.ResizeHW[0]-cfg.CropH, 2), floorDiv(g.ResizeHW[1]-cfg.CropW, 2); [2]int{top, left} != g.CropTopLeft {
		t.Fatalf("crop offset (%d, %d), golden %v", top, left, g.CropTopLeft)
	}
	v, h, w, err := cfg.Preprocess(img)
	if err != nil {
		t.Fatal(err)
	}
	if [2]int{h, w} != g.CropHW || len(v) != 3*h*w {
		t.Fatalf("pixel_values [3 %d %d] (%d values), golden crop %v", h, w, len(v), g.CropHW)
	}
	if s := sha(f32Bytes(v)); s != g.SHA256 {
		t.Fatalf("pixel_values sha256 %s, golden %s", s, g.SHA256)
	}
}
