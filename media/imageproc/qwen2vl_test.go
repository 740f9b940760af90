package imageproc

import (
	"errors"
	"strings"
	"testing"
)

// The expected sizes were evaluated with transformers' smart_resize formula in Python (float division,
// round half to even, floor / ceil of the same division chain).
func TestSmartResize(t *testing.T) {
	const big, def = 12845056, 1003520 // Qwen2-VL-2B-Instruct's max_pixels, the class default
	for _, c := range []struct {
		h, w, min, max int
		wh, ww         int
	}{
		{61, 97, 3136, big, 56, 84},          // the golden
		{1080, 1920, 3136, big, 1092, 1932},  // rounded, within bounds
		{1080, 1920, 3136, def, 728, 1316},   // over max: scaled down, floored
		{4000, 3000, 3136, def, 1148, 840},   // portrait over max
		{3000, 4000, 3136, big, 2996, 4004},  // 107.14 -> 107, 142.86 -> 143
		{10, 10, 3136, def, 56, 56},          // under min: scaled up, ceiled
		{1, 1, 3136, def, 56, 56},            // one pixel
		{7, 9, 3136, def, 56, 84},            // under the factor on both sides
		{42, 70, 3136, def, 56, 56},          // 1.5 -> 2 and 2.5 -> 2: Python rounds halves to even
		{98, 98, 3136, def, 112, 112},        // 3.5 -> 4
		{224, 224, 3136, def, 224, 224},      // already a multiple
		{100, 100, 200704, 200704, 448, 448}, // min = max
		{10, 2000, 3136, def, 28, 812},       // aspect ratio exactly 200 is allowed
		{1, 200, 3136, def, 28, 812},
		{37, 1111, 3136, def, 28, 1120},
		{28, 5600, 3136, 3136, 28, 784}, // the short side would floor to 0: max(factor, ...) keeps 28
		{5000, 5000, 3136, big, 3556, 3556},
	} {
		h, w, err := SmartResize(c.h, c.w, 28, c.min, c.max)
		if err != nil || h != c.wh || w != c.ww {
			t.Errorf("smart_resize(%d, %d, min %d, max %d) = %d, %d, %v; want %d, %d", c.h, c.w, c.min, c.max, h, w, err, c.wh, c.ww)
		}
	}
	for _, c := range [][2]int{{10, 2001}, {2001, 10}, {1, 201}} {
		if _, _, err := SmartResize(c[0], c[1], 28, 3136, def); !errors.Is(err, ErrAspectRatio) {
			t.Errorf("smart_resize(%d, %d): %v, want the aspect ratio error", c[0], c[1], err)
		}
	}
	if _, _, err := SmartResize(0, 5, 28, 3136, def); err == nil {
		t.Error("a zero side must be refused")
	}
}

func TestQwen2VLConfig(t *testing.T) {
	awq, err := LoadQwen2VLConfig("testdata/configs/Qwen2-VL-2B-Instruct-AWQ.preprocessor_config.json")
	if err != nil {
		t.Fatal(err)
	}
	if awq.MinPixels != 3136 || awq.MaxPixels != 1003520 || awq.Filter != Bicubic || awq.RescaleFactor != 1.0/255 {
		t.Errorf("AWQ config: %+v", awq)
	}
	base, err := LoadQwen2VLConfig("testdata/configs/Qwen2-VL-2B-Instruct.preprocessor_config.json")
	if err != nil {
		t.Fatal(err)
	}
	if base.MaxPixels != 12845056 || base.PatchSize != 14 || base.MergeSize != 2 || base.TemporalPatchSize != 2 || !base.DoResize {
		t.Errorf("2B config: %+v", base)
	}

	for _, c := range []struct {
		json     string
		min, max int
	}{
		{`{}`, 3136, 1003520}, // class defaults
		{`{"size": {"shortest_edge": 100, "longest_edge": 200}}`, 100, 200},                    // newer form
		{`{"size": {"shortest_edge": 100, "longest_edge": 200}, "max_pixels": 300}`, 100, 300}, // top-level wins
		{`{"min_pixels": 5, "max_pixels": null}`, 5, 1003520},
		{`{"min_pixels": 784.0}`, 784, 1003520},
	} {
		cfg, err := ParseQwen2VLConfig([]byte(c.json), "p.json")
		if err != nil || cfg.MinPixels != c.min || cfg.MaxPixels != c.max {
			t.Errorf("%s: min %d max %d %v; want %d %d", c.json, cfg.MinPixels, cfg.MaxPixels, err, c.min, c.max)
		}
	}
	for _, c := range []struct{ json, want string }{
		{`{"size": {"min_pixels": 1, "max_pixels": 2}}`, "size: must have shortest_edge"},
		{`{"patch_size": 0}`, "patch_size: want a positive integer"},
		{`{"patch_size": "14"}`, "patch_size: want an integer"},
		{`{"min_pixels": 1.5}`, "min_pixels: want an integer"},
		{`{"image_mean": [0.5, 0.5]}`, "image_mean: want a number or a list of 3"},
		{`{"image_std": [1, 0, 1]}`, "image_std: channel 1"},
		{`{"resample": 0}`, "resample: resample=0 (nearest) is not supported"},
		{`{"do_resize": "yes"}`, "do_resize: want true or false"},
		{`{"image_processor_type": "CLIPImageProcessor"}`, `"CLIPImageProcessor" is not a Qwen2-VL image processor`},
		{`[1, 2]`, "not a JSON object"},
	} {
		_, err := ParseQwen2VLConfig([]byte(c.json), "p.json")
		if err == nil || !strings.HasPrefix(err.Error(), "p.json: ") || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error naming p.json with %q", c.json, err, c.want)
		}
	}
}

// coordFrame encodes each pixel's position in its values: R = y, G = x, B = frame.
func coordFrame(w, h, frame int) *RGB {
	m := NewRGB(w, h)
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			m.Pix[(y*w+x)*3], m.Pix[(y*w+x)*3+1], m.Pix[(y*w+x)*3+2] = uint8(y), uint8(x), uint8(frame)
		}
	}
	return m
}

// TestQwen2VLPatchOrder checks every value of pixel_values against the layout written as index
// arithmetic: row = (((t*GH/M + bh)*GW/M + bw)*M + mh)*M + mw, column = ((c*T + tp)*P + py)*P + px,
// reading channel c of frame t*T+tp at y = (bh*M+mh)*P+py, x = (bw*M+mw)*P+px.
func TestQwen2VLPatchOrder(t *testing.T) {
	cfg := DefaultQwen2VLConfig()
	cfg.PatchSize, cfg.MergeSize, cfg.TemporalPatchSize = 3, 2, 2
	cfg.DoResize, cfg.DoRescale, cfg.DoNormalize = false, false, false
	const W, H = 12, 18 // 4 x 6 patches of 3 pixels
	for _, nFrames := range []int{1, 2, 3, 4} {
		frames := make([]*RGB, nFrames)
		for i := range frames {
			frames[i] = coordFrame(W, H, i)
		}
		px, err := cfg.Video(frames)
		if err != nil {
			t.Fatal(err)
		}
		P, M, T := 3, 2, 2
		gt := (nFrames + 1) / 2
		if px.GridTHW != [3]int{gt, H / P, W / P} || px.Rows != gt*(H/P)*(W/P) || px.Cols != 3*T*P*P {
			t.Fatalf("%d frames: grid %v, shape [%d %d]", nFrames, px.GridTHW, px.Rows, px.Cols)
		}
		gh, gw := H/P, W/P
		for r := 0; r < px.Rows; r++ {
			mw := r % M
			mh := r / M % M
			bw := r / (M * M) % (gw / M)
			bh := r / (M * M) / (gw / M) % (gh / M)
			tb := r / (M * M) / (gw / M) / (gh / M)
			for col := 0; col < px.Cols; col++ {
				pxx := col % P
				py := col / P % P
				tp := col / (P * P) % T
				ch := col / (P * P * T)
				frame := min(tb*T+tp, nFrames-1) // a missing last frame repeats the previous one
				want := []int{(bh*M+mh)*P + py, (bw*M+mw)*P + pxx, frame}[ch]
				if got := px.Values[r*px.Cols+col]; got != float32(want) {
					t.Fatalf("%d frames: [%d, %d] = %v, want %d", nFrames, r, col, got, want)
				}
			}
		}
	}

	// Temporal patch of 3: 4 frames pad to 6, 5 frames cannot (transformers repeats the last frame
	// temporal_patch_size-1 times and then fails to reshape).
	cfg.TemporalPatchSize = 3
	four := []*RGB{coordFrame(W, H, 0), coordFrame(W, H, 1), coordFrame(W, H, 2), coordFrame(W, H, 3)}
	if px, err := cfg.Video(four); err != nil || px.GridTHW[0] != 2 {
		t.Errorf("4 frames, T=3: %v", err)
	}
	if _, err := cfg.Video(append(four, coordFrame(W, H, 4))); err == nil {
		t.Error("5 frames, T=3: padded when transformers cannot")
	}
	if len(four) != 4 {
		t.Error("Video must not grow the caller's slice")
	}
	// Without resizing, the picture must already be a multiple of patch*merge.
	if _, err := cfg.Image(coordFrame(13, 18, 0)); err == nil || !strings.Contains(err.Error(), "multiple") {
		t.Errorf("13x18 with do_resize=false: %v", err)
	}
	if _, err := cfg.Video([]*RGB{coordFrame(12, 18, 0), coordFrame(6, 18, 1)}); err == nil {
		t.Error("frames of different sizes must be refused when not resized")
	}
}

// TestQwen2VLVideoResizesToFirstFrame: every frame is resized to smart_resize of the first frame's size.
func TestQwen2VLVideoResizesToFirstFrame(t *testing.T) {
	cfg := DefaultQwen2VLConfig()
	a, b := NewRGB(97, 61), NewRGB(50, 50)
	px, err := cfg.Video([]*RGB{a, b, a})
	if err != nil {
		t.Fatal(err)
	}
	if px.GridTHW != [3]int{2, 4, 6} || px.Tokens(cfg.MergeSize) != 12 {
		t.Errorf("grid %v, tokens %d", px.GridTHW, px.Tokens(cfg.MergeSize))
	}
	// Normalised black is -mean/std for every value.
	for i, v := range px.Values[:3] {
		if want := float32(-float32(OpenAICLIPMean[0]) / float32(OpenAICLIPStd[0])); v != want {
			t.Fatalf("value %d = %v, want %v", i, v, want)
		}
	}
	if _, err := cfg.Video(nil); err == nil {
		t.Error("no frames must be refused")
	}
}
