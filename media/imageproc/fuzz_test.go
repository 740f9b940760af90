package imageproc

import (
	"bytes"
	"image"
	"image/color"
	"image/jpeg"
	"os"
	"testing"

	"golang.org/x/image/bmp"
	"golang.org/x/image/tiff"
)

// fuzzMaxPixels keeps every accepted picture small, so the fuzzer's memory stays bounded whatever
// header it invents.
const fuzzMaxPixels = 1 << 16

func FuzzDecode(f *testing.F) {
	if png, err := os.ReadFile("testdata/img.png"); err == nil {
		f.Add(png)
	}
	small := image.NewNRGBA(image.Rect(0, 0, 5, 3))
	for i := range small.Pix {
		small.Pix[i] = uint8(i * 7)
	}
	var b bytes.Buffer
	_ = jpeg.Encode(&b, small, nil)
	f.Add(append([]byte(nil), b.Bytes()...))
	b.Reset()
	_ = bmp.Encode(&b, small)
	f.Add(append([]byte(nil), b.Bytes()...))
	b.Reset()
	_ = tiff.Encode(&b, small, nil)
	f.Add(append([]byte(nil), b.Bytes()...))
	gray := image.NewGray16(image.Rect(0, 0, 2, 2))
	gray.SetGray16(0, 0, color.Gray16{Y: 999})
	b.Reset()
	_ = tiff.Encode(&b, gray, nil)
	f.Add(append([]byte(nil), b.Bytes()...))
	f.Add([]byte("RIFF\x1a\x00\x00\x00WEBPVP8L\x0d\x00\x00\x00\x2f\x00\x00\x00\x10\x07\x10\x11\x11\x88\x88\xfe\x07\x00"))
	f.Add(append([]byte("II*\x00\x08\x00\x00\x00"), tiffWithOrientation(6)[8:]...))

	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Decode(bytes.NewReader(data), int64(len(data)), DecodeOptions{MaxPixels: fuzzMaxPixels})
		if err != nil {
			return
		}
		if m.W <= 0 || m.H <= 0 || m.W*m.H > fuzzMaxPixels || len(m.Pix) != m.W*m.H*3 {
			t.Fatalf("decoded %dx%d with %d bytes", m.W, m.H, len(m.Pix))
		}
	})
}

// FuzzOrientation feeds arbitrary bytes to the metadata walkers of every format.
func FuzzOrientation(f *testing.F) {
	f.Add(append([]byte("Exif\x00\x00"), tiffWithOrientation(6)...))
	f.Add(append([]byte("\x89PNG\r\n\x1a\n\x00\x00\x00\x1aeXIf"), tiffWithOrientation(3)...))
	f.Add([]byte("\xff\xd8\xff\xe1\x00\x08Exif\x00\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, ft := range []format{formatJPEG, formatPNG, formatWebP} {
			if o := readOrientation(ft, bytes.NewReader(data), int64(len(data))); o < 1 || o > 8 {
				t.Fatalf("%v: orientation %d", ft, o)
			}
		}
	})
}

// FuzzConfig feeds arbitrary JSON to the three config parsers; an accepted config must be usable.
func FuzzConfig(f *testing.F) {
	for _, name := range []string{
		"Qwen2-VL-2B-Instruct", "Qwen2-VL-2B-Instruct-AWQ", "llava-1.5-7b-hf",
		"llava-v1.6-vicuna-7b-hf-RECONSTRUCTED", "instructblip-vicuna-7b-RECONSTRUCTED",
	} {
		if data, err := os.ReadFile("testdata/configs/" + name + ".preprocessor_config.json"); err == nil {
			f.Add(data)
		}
	}
	f.Add([]byte(`{"size": 3, "crop_size": {"height": 1, "width": 1}, "image_grid_pinpoints": [[14, 28]], "patch_size": 1, "merge_size": 1}`))
	img := NewRGB(3, 2)
	f.Fuzz(func(t *testing.T, data []byte) {
		if q, err := ParseQwen2VLConfig(data, "f.json"); err == nil {
			if h, w, err := q.TargetSize(2, 3); err == nil && int64(h)*int64(w) <= 1<<16 && q.PatchSize*q.MergeSize <= 64 {
				if _, err := q.Image(img); err != nil && q.DoResize {
					t.Fatalf("accepted Qwen2-VL config cannot process a 3x2 picture: %v", err)
				}
			}
		}
		if c, err := ParseCLIPConfig(data, "f.json"); err == nil && max(c.ShortestEdge, c.ResizeH, c.ResizeW, c.CropH, c.CropW) <= 64 {
			if _, _, _, err := c.Preprocess(img); err != nil {
				t.Fatalf("accepted CLIP config cannot process a 3x2 picture: %v", err)
			}
		}
		if l, err := ParseLlavaNextConfig(data, "f.json"); err == nil {
			if _, err := l.ImageTokens(2, 3, LlavaNextTokenParams{PatchSize: 1}); err != nil {
				t.Fatalf("accepted LLaVA-NeXT config cannot count tokens: %v", err)
			}
		}
	})
}
