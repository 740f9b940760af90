package imageproc

import (
	"bytes"
	"slices"
	"strings"
	"testing"
)

func TestShortestEdgeSize(t *testing.T) {
	for _, c := range []struct{ h, w, size, wh, ww int }{
		{61, 97, 336, 336, 534},   // int(336 * 97 / 61) = int(534.29)
		{97, 61, 336, 534, 336},   // portrait
		{100, 100, 224, 224, 224}, // square
		{300, 200, 224, 336, 224},
		{3, 7, 10, 10, 23}, // int(23.33): truncated, not rounded
		{3, 5, 10, 10, 16}, // int(16.67): truncated, not rounded
	} {
		if h, w := ShortestEdgeSize(c.h, c.w, c.size); h != c.wh || w != c.ww {
			t.Errorf("ShortestEdgeSize(%d, %d, %d) = %d, %d; want %d, %d", c.h, c.w, c.size, h, w, c.wh, c.ww)
		}
	}
}

func TestCenterCrop(t *testing.T) {
	ids := func(w, h int) *RGB {
		m := NewRGB(w, h)
		for i := 0; i < w*h; i++ {
			m.Pix[i*3] = uint8(i + 1)
		}
		return m
	}
	reds := func(m *RGB) []uint8 {
		var r []uint8
		for i := 0; i < len(m.Pix); i += 3 {
			r = append(r, m.Pix[i])
		}
		return r
	}
	for _, c := range []struct {
		w, h, cw, ch int
		want         []uint8
	}{
		// 5 wide, 4 tall, crop 2x2: top = (4-2)//2 = 1, left = (5-2)//2 = 1.
		{5, 4, 2, 2, []uint8{7, 8, 12, 13}},
		// 4x4 to 3x3: top = left = (4-3)//2 = 0.
		{4, 4, 3, 3, []uint8{1, 2, 3, 5, 6, 7, 9, 10, 11}},
		// 2x2 to 3 wide, 4 tall: padded with zeros, the picture at ceil((4-2)/2) = 1, ceil((3-2)/2) = 1.
		{2, 2, 3, 4, []uint8{0, 0, 0, 0, 1, 2, 0, 3, 4, 0, 0, 0}},
		// 3 wide 1 tall to 1 wide 3 tall: crop the width, pad the height.
		{3, 1, 1, 3, []uint8{0, 2, 0}},
	} {
		got, err := CenterCrop(ids(c.w, c.h), c.ch, c.cw)
		if err != nil {
			t.Fatal(err)
		}
		if got.W != c.cw || got.H != c.ch || !bytes.Equal(reds(got), c.want) {
			t.Errorf("crop %dx%d to %dx%d: %dx%d %v, want %v", c.w, c.h, c.cw, c.ch, got.W, got.H, reds(got), c.want)
		}
	}
	if _, err := CenterCrop(ids(2, 2), 0, 1); err == nil {
		t.Error("an empty crop must be refused")
	}
}

func TestCLIPConfigs(t *testing.T) {
	llava, err := LoadCLIPConfig("testdata/configs/llava-1.5-7b-hf.preprocessor_config.json")
	if err != nil {
		t.Fatal(err)
	}
	if llava.ShortestEdge != 336 || !llava.DoCenterCrop || llava.CropH != 336 || llava.CropW != 336 || llava.Filter != Bicubic {
		t.Errorf("llava-1.5: %+v", llava)
	}
	blip, err := LoadCLIPConfig("testdata/configs/instructblip-vicuna-7b-RECONSTRUCTED.preprocessor_config.json")
	if err != nil {
		t.Fatal(err)
	}
	if blip.ShortestEdge != 0 || blip.ResizeH != 224 || blip.ResizeW != 224 || blip.DoCenterCrop {
		t.Errorf("instructblip: %+v", blip)
	}
	img := decodeTestPNG(t)
	v, h, w, err := blip.Preprocess(img)
	if err != nil || h != 224 || w != 224 || len(v) != 3*224*224 {
		t.Fatalf("blip preprocess: %d x %d, %d values, %v", w, h, len(v), err)
	}

	for _, c := range []struct {
		json                  string
		short, rh, rw, ch, cw int
		crop                  bool
	}{
		{`{}`, 224, 0, 0, 224, 224, true}, // CLIPImageProcessor defaults
		{`{"size": 300, "crop_size": 256}`, 300, 0, 0, 256, 256, true},
		{`{"size": {"height": 20, "width": 30}, "do_center_crop": false}`, 0, 20, 30, 224, 224, false},
		{`{"image_processor_type": "BlipImageProcessor"}`, 0, 384, 384, 224, 224, false},
		{`{"image_processor_type": "BlipImageProcessor", "size": 100}`, 0, 100, 100, 224, 224, false},
	} {
		cfg, err := ParseCLIPConfig([]byte(c.json), "p.json")
		if err != nil {
			t.Errorf("%s: %v", c.json, err)
			continue
		}
		if cfg.ShortestEdge != c.short || cfg.ResizeH != c.rh || cfg.ResizeW != c.rw || cfg.CropH != c.ch || cfg.CropW != c.cw || cfg.DoCenterCrop != c.crop {
			t.Errorf("%s: %+v", c.json, cfg)
		}
	}
	for _, c := range []struct{ json, want string }{
		{`{"size": {"longest_edge": 5}}`, "size: want shortest_edge or height and width"},
		{`{"crop_size": {"height": 5}}`, "crop_size: want height and width"},
		{`{"size": {"shortest_edge": "x"}}`, "size.shortest_edge: want an integer"},
		{`{"size": 100000}`, "out of any model's range"},
		{`{"image_processor_type": "Qwen2VLImageProcessor"}`, "not a CLIP-style image processor"},
	} {
		if _, err := ParseCLIPConfig([]byte(c.json), "p.json"); err == nil || !strings.Contains(err.Error(), c.want) || !strings.HasPrefix(err.Error(), "p.json: ") {
			t.Errorf("%s: %v, want %q", c.json, err, c.want)
		}
	}
}

func loadLlavaNext(t *testing.T) LlavaNextConfig {
	t.Helper()
	cfg, err := LoadLlavaNextConfig("testdata/configs/llava-v1.6-vicuna-7b-hf-RECONSTRUCTED.preprocessor_config.json")
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestLlavaNextGrid(t *testing.T) {
	cfg := loadLlavaNext(t)
	if !slices.Equal(cfg.Pinpoints, [][2]int{{336, 672}, {672, 336}, {672, 672}, {1008, 336}, {336, 1008}}) || cfg.CropH != 336 || cfg.ShortestEdge != 336 {
		t.Fatalf("config: %+v", cfg)
	}
	for _, c := range []struct {
		h, w     int
		best     [2]int
		nh, nw   int
		tokens   int
		reasoned string
	}{
		// Every candidate holds all 5917 pixels; (336, 672) and (672, 336) waste the same, the first
		// wins. 24x48 grid; 97/61 < 2, so columns are unpadded: int(97 * 24/61) = 38, padding 5 each
		// side, 24*38 + 24 newlines + 576 base = 1512.
		{61, 97, [2]int{336, 672}, 336, 535, 1512, "small landscape"},
		// Only (672, 672) holds all 250000 pixels. 48x48, nothing to unpad: 2304 + 48 + 576.
		{500, 500, [2]int{672, 672}, 672, 672, 2928, "square"},
		// (1008, 336) keeps min(302*1008, 300000) = 300000. 72x24; 0.3 < 1/3 so columns: int(21.6) =
		// 21, padding (24-21)//2 = 1 each side: 72*22 + 72 + 576.
		{1000, 300, [2]int{1008, 336}, 1008, 303, 2232, "tall"},
		// (336, 1008) keeps 200000. 24x72; 5 > 3 so rows: int(14.4) = 14, padding 5: 14*72 + 14 + 576.
		{200, 1000, [2]int{336, 1008}, 202, 1008, 1598, "wide"},
		// 24x48 grid, rows: 55 * (48/176) is 14.999999999999998 in floating point; transformers rounds
		// to 7 decimals first, so 15, padding (24-15)//2 = 4: 16*48 + 16 + 576 = 1360 (1262 without).
		{55, 176, [2]int{336, 672}, 210, 672, 1360, "rounding"},
	} {
		if best := SelectBestResolution(c.h, c.w, cfg.Pinpoints); best != c.best {
			t.Errorf("%s: best %v, want %v", c.reasoned, best, c.best)
		}
		if nh, nw := PatchOutputSize(c.h, c.w, c.best); nh != c.nh || nw != c.nw {
			t.Errorf("%s: patch output %dx%d, want %dx%d", c.reasoned, nh, nw, c.nh, c.nw)
		}
		p := LlavaNextTokenParams{PatchSize: 14, NumAdditionalImageTokens: 1, DropCLS: true}
		if n, err := cfg.ImageTokens(c.h, c.w, p); err != nil || n != c.tokens {
			t.Errorf("%s: %d tokens (%v), want %d", c.reasoned, n, err, c.tokens)
		}
		p.DropCLS = false
		if n, _ := cfg.ImageTokens(c.h, c.w, p); n != c.tokens+1 {
			t.Errorf("%s: %d tokens keeping CLS, want %d", c.reasoned, n, c.tokens+1)
		}
	}
	if _, err := cfg.ImageTokens(0, 5, LlavaNextTokenParams{PatchSize: 14}); err == nil {
		t.Error("a zero side must be refused")
	}
	if got := intRound7(14.999999999999998); got != 15 {
		t.Errorf("intRound7 = %d", got)
	}
	if got := intRound7(14.99999); got != 14 {
		t.Errorf("intRound7(14.99999) = %d", got)
	}
}

func TestLlavaNextPreprocess(t *testing.T) {
	cfg := loadLlavaNext(t)
	img := decodeTestPNG(t)
	px, err := cfg.Preprocess(img)
	if err != nil {
		t.Fatal(err)
	}
	if px.Tiles != 3 || px.H != 336 || px.W != 336 || px.Best != [2]int{336, 672} || px.ImageSize != [2]int{61, 97} || len(px.Values) != 3*3*336*336 {
		t.Fatalf("shape: %d tiles of %dx%d, best %v, size %v, %d values", px.Tiles, px.W, px.H, px.Best, px.ImageSize, len(px.Values))
	}
	tile := 3 * 336 * 336
	// Tile 0: the whole picture squashed to 336x336, then normalised.
	base, _ := Resize(img, 336, 336, Bicubic)
	if !slices.Equal(px.Values[:tile], cfg.Normalize.CHW(base)) {
		t.Error("base tile differs from the picture resized to 336x336")
	}
	// Tiles 1 and 2: the picture resized to 535x336 and centred on a 672x336 black canvas
	// (137 columns of padding: 68 left, 69 right), cut in two.
	hi, _ := Resize(img, 535, 336, Bicubic)
	canvas := NewRGB(672, 336)
	for y := 0; y < 336; y++ {
		copy(canvas.Pix[(y*672+68)*3:], hi.Pix[y*535*3:(y+1)*535*3])
	}
	for i, x0 := range []int{0, 336} {
		want := cfg.Normalize.CHW(SubImage(canvas, 0, x0, 336, 336))
		if !slices.Equal(px.Values[(i+1)*tile:(i+2)*tile], want) {
			t.Errorf("tile %d differs from the padded canvas", i+1)
		}
	}
	zero := cfg.Normalize.lut()[0][0]
	for y := 0; y < 336; y++ {
		if v := px.Values[tile+y*336+67]; v != zero {
			t.Fatalf("tile 1 column 67 row %d = %v, want padding %v", y, v, zero)
		}
	}
}
