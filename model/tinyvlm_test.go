package model

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"image"
	"image/color"
	"image/png"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/neurosurg/neurosurg/dtype"
	"github.com/neurosurg/neurosurg/formats/hfdir"
	"github.com/neurosurg/neurosurg/formats/safetensors"
	"github.com/neurosurg/neurosurg/model/kernels"
	"github.com/neurosurg/neurosurg/model/synth"
)

const tinyVLMConfig = "../testdata/configs/tiny-vlm"

// tinyVLM synthesises the test family's checkpoint in dt and opens it.
func tinyVLM(t *testing.T, dt safetensors.DType) (*Model, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "vlm")
	if err := synth.Generate(tinyVLMConfig, dir, synth.Options{DType: dt, Seed: 5, Std: 0.3}); err != nil {
		t.Fatal(err)
	}
	m, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m, dir
}

// tinyVLMInput is a prompt with one image of 6 feature rows: its placeholder (token 3)
// expanded to the 6 rows the projector gives.
func tinyVLMInput() Input {
	toks := []int32{1, 9, 3, 3, 3, 3, 3, 3, 17, 40, 22}
	f := make([]float32, 6*12)
	for i := range f {
		f[i] = float32(math.Sin(float64(i)*0.7)) * 1.5
	}
	return Input{Tokens: toks, Media: []Media{{Kind: "image", Rows: 6, Features: f}}}
}

// siteTap counts FFN events per module and keeps the sites.
type siteTap struct{ sites map[Site]int }

func (s *siteTap) FFN(e *FFNEvent) { s.sites[e.Site] += e.Rows }

func TestTinyVLM(t *testing.T) {
	prev := kernels.Use(exactVariantInternal())
	defer kernels.Use(prev)
	ctx := context.Background()
	for _, dt := range []safetensors.DType{safetensors.F32, safetensors.BF16} {
		m, _ := tinyVLM(t, dt)
		if !m.Accepts("image") || m.Accepts("audio") {
			t.Errorf("%s: accepts image %v, audio %v", dt, m.Accepts("image"), m.Accepts("audio"))
		}
		tap := &siteTap{sites: map[Site]int{}}
		r, err := m.ForwardInputs(ctx, []Input{tinyVLMInput()}, ForwardOptions{Taps: []Tap{tap}})
		if err != nil {
			t.Fatalf("%s: %v", dt, err)
		}
		if len(r.Logits[0]) != 64 {
			t.Fatalf("%s: %d logits", dt, len(r.Logits[0]))
		}
		want := map[Site]int{{"vision", 0}: 6, {"vision", 1}: 6, {"projector", 0}: 6, {"llm", 0}: 11, {"llm", 1}: 11}
		if !maps.Equal(tap.sites, want) {
			t.Errorf("%s: tap saw %v, want %v", dt, tap.sites, want)
		}
		if got := len(m.FFNSites()); got != 5 {
			t.Errorf("%s: %d FFN sites, want 5 (vision 2, projector 1, llm 2)", dt, got)
		}
	}
	// Wrong placeholder counts and media are errors naming the sequence.
	m, _ := tinyVLM(t, safetensors.F32)
	if got := m.TopTokensOfNeuron(Site{"vision", 0}, 1, 3); got != nil {
		t.Errorf("a vision neuron's top tokens: %v, want none", got)
	}
	if got := m.TopTokensOfNeuron(Site{"llm", 0}, 1, 3); len(got) != 3 {
		t.Errorf("an llm neuron's top tokens: %v", got)
	}
	in := tinyVLMInput()
	in.Tokens = slices.Delete(slices.Clone(in.Tokens), 2, 3)
	if _, err := m.ForwardInputs(ctx, []Input{in}, ForwardOptions{}); err == nil || !strings.Contains(err.Error(), "placeholder run at 2 has 5") {
		t.Errorf("5 placeholders for 6 rows: %v", err)
	}
	in = tinyVLMInput()
	in.Media = nil
	if _, err := m.ForwardInputs(ctx, []Input{in}, ForwardOptions{}); err == nil || !strings.Contains(err.Error(), "1 runs of the image placeholder token 3 and 0 image inputs") {
		t.Errorf("placeholders without an image: %v", err)
	}
	in = tinyVLMInput()
	in.Media[0].Kind = "audio"
	if _, err := m.ForwardInputs(ctx, []Input{in}, ForwardOptions{}); err == nil || !strings.Contains(err.Error(), "sequence 0 has audio input") {
		t.Errorf("audio to a vision model: %v", err)
	}
}

func exactVariantInternal() string {
	if slices.Contains(kernels.Variants(), "avx512") {
		return "avx512"
	}
	return "generic"
}

// The encoder and projector agree with a float64 reading of their formulas (LayerNorm,
// bidirectional attention, quick-GELU MLP, GELU projector) to 1e-4, and the logits of the
// media run equal those of the same prompt given the reference rows as an embedding span.
func TestTinyVLMMatchesReference(t *testing.T) {
	prev := kernels.Use(exactVariantInternal())
	defer kernels.Use(prev)
	m, dir := tinyVLM(t, safetensors.F32)
	c, err := hfdir.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	get := func(name string) []float64 {
		info, b, err := c.Tensor(name)
		if err != nil {
			t.Fatal(err)
		}
		v := make([]float32, info.NumElements())
		dtype.ToFloat32(v, b, info.DType)
		out := make([]float64, len(v))
		for i := range v {
			out[i] = float64(v[i])
		}
		return out
	}
	linear := func(x []float64, rows int, name string) []float64 {
		w, b := get(name+".weight"), get(name+".bias")
		out := len(b)
		in := len(w) / out
		y := make([]float64, rows*out)
		for r := 0; r < rows; r++ {
			for o := 0; o < out; o++ {
				s := b[o]
				for i := 0; i < in; i++ {
					s += w[o*in+i] * x[r*in+i]
				}
				y[r*out+o] = s
			}
		}
		return y
	}
	layerNorm := func(x []float64, rows int, name string) []float64 {
		w, b := get(name+".weight"), get(name+".bias")
		d := len(w)
		y := make([]float64, len(x))
		for r := 0; r < rows; r++ {
			row := x[r*d : (r+1)*d]
			var mean, v float64
			for _, a := range row {
				mean += a
			}
			mean /= float64(d)
			for _, a := range row {
				v += (a - mean) * (a - mean)
			}
			v /= float64(d)
			for i, a := range row {
				y[r*d+i] = (a-mean)/math.Sqrt(v+1e-5)*w[i] + b[i]
			}
		}
		return y
	}
	in := tinyVLMInput()
	const rows, heads = 6, 2
	feat := make([]float64, len(in.Media[0].Features))
	for i, f := range in.Media[0].Features {
		feat[i] = float64(f)
	}
	x := linear(feat, rows, "vision_tower.patch_embed")
	d := len(x) / rows
	hd := d / heads
	for l := 0; l < 2; l++ {
		p := "vision_tower.layers." + string(rune('0'+l)) + "."
		xn := layerNorm(x, rows, p+"layer_norm1")
		q, k, v := linear(xn, rows, p+"self_attn.q_proj"), linear(xn, rows, p+"self_attn.k_proj"), linear(xn, rows, p+"self_attn.v_proj")
		att := make([]float64, rows*d)
		for h := 0; h < heads; h++ {
			for r := 0; r < rows; r++ {
				w := make([]float64, rows)
				var sum float64
				for s := 0; s < rows; s++ { // bidirectional: every row
					var dot float64
					for i := 0; i < hd; i++ {
						dot += q[r*d+h*hd+i] * k[s*d+h*hd+i]
					}
					w[s] = math.Exp(dot / math.Sqrt(float64(hd)))
					sum += w[s]
				}
				for s := 0; s < rows; s++ {
					for i := 0; i < hd; i++ {
						att[r*d+h*hd+i] += w[s] / sum * v[s*d+h*hd+i]
					}
				}
			}
		}
		o := linear(att, rows, p+"self_attn.out_proj")
		for i := range x {
			x[i] += o[i]
		}
		hid := linear(layerNorm(x, rows, p+"layer_norm2"), rows, p+"mlp.fc1")
		for i, a := range hid {
			hid[i] = a / (1 + math.Exp(-1.702*a)) // quick_gelu
		}
		o = linear(hid, rows, p+"mlp.fc2")
		for i := range x {
			x[i] += o[i]
		}
	}
	x = layerNorm(x, rows, "vision_tower.post_layernorm")
	hid := linear(x, rows, "multi_modal_projector.linear_1")
	for i, a := range hid {
		hid[i] = 0.5 * a * (1 + math.Erf(a/math.Sqrt2)) // gelu
	}
	ref := linear(hid, rows, "multi_modal_projector.linear_2")
	got, err := m.encoders[0].encode(context.Background(), 0, in.Media[0], nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	worst := 0.0
	for i := range ref {
		worst = max(worst, math.Abs(float64(got[i])-ref[i]))
	}
	if worst > 1e-4 {
		t.Errorf("projected rows differ from the reference by %g", worst)
	}
	t.Logf("projected rows within %.2g of the float64 reference", worst)
	span := make([]float32, len(ref))
	for i, v := range ref {
		span[i] = float32(v)
	}
	a, err := m.ForwardInputs(context.Background(), []Input{in}, ForwardOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := m.ForwardInputs(context.Background(), []Input{{Tokens: in.Tokens, Embeds: []EmbedSpan{{Start: 2, Rows: rows, Data: span}}}}, ForwardOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range a.Logits[0] {
		if math.Abs(float64(a.Logits[0][i]-b.Logits[0][i])) > 1e-4 {
			t.Fatalf("logit %d: media %g, reference span %g", i, a.Logits[0][i], b.Logits[0][i])
		}
	}
}

// overlay serves a checkpoint with some tensors replaced.
type overlay struct {
	*hfdir.Checkpoint
	edits map[string][]byte
}

func (o overlay) Tensor(name string) (safetensors.TensorInfo, []byte, error) {
	info, b, err := o.Checkpoint.Tensor(name)
	if e, ok := o.edits[name]; ok {
		b = e
	}
	return info, b, err
}

// Zeroing neuron j of an encoder layer (or of the projector) with a runtime mask gives the
// same logits as zeroing column j of that layer's fc2 weight.
func TestTinyVLMMaskEqualsWeightEdit(t *testing.T) {
	m, dir := tinyVLM(t, safetensors.F32)
	ctx := context.Background()
	for _, c := range []struct {
		site    Site
		j       int
		tensor  string
		neurons int
	}{
		{Site{"vision", 1}, 7, "vision_tower.layers.1.mlp.fc2.weight", 40},
		{Site{"vision", 0}, 0, "vision_tower.layers.0.mlp.fc2.weight", 40},
		{Site{"projector", 0}, 5, "multi_modal_projector.linear_2.weight", 32},
	} {
		mask := NewMask()
		mask.Set(c.site, c.j, 0)
		masked, err := m.ForwardInputs(ctx, []Input{tinyVLMInput()}, ForwardOptions{Mask: mask, AllLogits: true})
		if err != nil {
			t.Fatal(err)
		}
		plain, _ := m.ForwardInputs(ctx, []Input{tinyVLMInput()}, ForwardOptions{AllLogits: true})
		ck, err := hfdir.Open(dir)
		if err != nil {
			t.Fatal(err)
		}
		info, b, _ := ck.Tensor(c.tensor)
		edited := slices.Clone(b)
		rowsOut := int(info.Shape[0])
		for r := 0; r < rowsOut; r++ {
			clear(edited[(r*c.neurons+c.j)*4 : (r*c.neurons+c.j+1)*4])
		}
		me, err := Load(ck.ConfigJSON, overlay{ck, map[string][]byte{c.tensor: edited}})
		if err != nil {
			t.Fatal(err)
		}
		edit, err := me.ForwardInputs(ctx, []Input{tinyVLMInput()}, ForwardOptions{AllLogits: true})
		if err != nil {
			t.Fatal(err)
		}
		worst := 0.0
		for i := range edit.Logits[0] {
			worst = max(worst, math.Abs(float64(edit.Logits[0][i]-masked.Logits[0][i])))
		}
		if worst > 1e-6 {
			t.Errorf("%v neuron %d: mask and weight edit differ by %g", c.site, c.j, worst)
		}
		if slices.Equal(masked.Logits[0], plain.Logits[0]) {
			t.Errorf("%v neuron %d: the mask changed nothing", c.site, c.j)
		}
		ck.Close()
	}
	bad := NewMask()
	bad.Set(Site{"vision", 2}, 0, 0)
	if _, err := m.ForwardInputs(ctx, []Input{tinyVLMInput()}, ForwardOptions{Mask: bad}); err == nil || !strings.Contains(err.Error(), "module vision, layers 0..1") {
		t.Errorf("mask at vision layer 2: %v", err)
	}
}

// writePNG writes a w×h picture whose pixels are a gradient shifted by seed.
func writePNG(t testing.TB, path string, w, h, seed int) {
	t.Helper()
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			img.Set(x, y, color.NRGBA{uint8(40*x + seed), uint8(50*y + 3*seed), uint8(200 - 20*x - 10*y + seed), 255})
		}
	}
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// The samples paths' prompt builder: a sample with media is never run as text. A text-only
// model refuses it naming the sample (ErrMedia); the test family's processor reads the image
// into 4 rows of 2×2 RGB patches and its 4 placeholders go after BOS; a text prompt is kept.
func TestPromptInput(t *testing.T) {
	vlm, dir := tinyVLM(t, safetensors.F32)
	text, err := Open("../testdata/stories260K")
	if err != nil {
		t.Fatal(err)
	}
	defer text.Close()
	pic := filepath.Join(dir, "pic.png")
	writePNG(t, pic, 7, 5, 0)
	ids := []int32{1, 9, 17}
	for _, c := range []struct {
		m     *Model
		kinds []string
		paths []string
		is    error
		msg   string
	}{
		{text, []string{"image"}, []string{pic}, ErrMedia, "sample s1 has image input, but LlamaForCausalLM takes text only"},
		{vlm, []string{"audio"}, []string{"a.wav"}, ErrMedia, "sample s1 has audio input"},
		{vlm, []string{"image", "audio"}, []string{pic, "a.wav"}, ErrMedia, "audio"},
		{vlm, []string{"image"}, []string{filepath.Join(dir, "missing.png")}, os.ErrNotExist, "missing.png"},
		{vlm, []string{"image"}, []string{filepath.Join(dir, "config.json")}, nil, "config.json"},
	} {
		_, err := c.m.PromptInput("sample s1", ids, c.kinds, c.paths)
		if err == nil || c.is != nil && !errors.Is(err, c.is) || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%v %v: %v, want %v naming %q", c.kinds, c.paths, err, c.is, c.msg)
		}
	}
	for _, m := range []*Model{text, vlm} {
		in, err := m.PromptInput("sample s1", ids, nil, nil)
		if err != nil || !slices.Equal(in.Tokens, ids) || in.Media != nil {
			t.Errorf("text prompt: %+v, %v", in, err)
		}
	}
	in, err := vlm.PromptInput("sample s1", ids, []string{"image"}, []string{pic})
	if err != nil {
		t.Fatal(err)
	}
	if want := []int32{1, 3, 3, 3, 3, 9, 17}; !slices.Equal(in.Tokens, want) {
		t.Errorf("tokens %v, want %v", in.Tokens, want)
	}
	if len(in.Media) != 1 || in.Media[0].Rows != 4 || len(in.Media[0].Features) != 4*12 {
		t.Fatalf("media %+v", in.Media)
	}
	lo, hi := float32(1), float32(-1)
	for _, v := range in.Media[0].Features {
		lo, hi = min(lo, v), max(hi, v)
	}
	if lo < -1 || hi > 1 || hi-lo < 0.5 {
		t.Errorf("features span [%v, %v], want a spread within [-1, 1]", lo, hi)
	}
	// Without BOS the placeholders lead.
	if in, err := vlm.PromptInput("sample s1", []int32{9}, []string{"image"}, []string{pic}); err != nil || !slices.Equal(in.Tokens, []int32{3, 3, 3, 3, 9}) {
		t.Errorf("no BOS: %v, %v", in.Tokens, err)
	}
	if _, err := vlm.ForwardInputs(context.Background(), []Input{in}, ForwardOptions{}); err != nil {
		t.Errorf("forward of the built input: %v", err)
	}
	// An input width no p×p RGB patch fills has no processor.
	if _, _, err := (&tinyVLMImage{inWidth: 10}).prepare(pic); !errors.Is(err, ErrMediaPath) {
		t.Errorf("input width 10: %v, want ErrMediaPath", err)
	}
}

// The logit lens takes inputs with media: at the last layer it is the model's own output, so
// its top token at each position equals the argmax of ForwardInputs' logits there.
func TestLogitLensInputWithMedia(t *testing.T) {
	m, _ := tinyVLM(t, safetensors.F32)
	x := tinyVLMInput()
	res, err := m.ForwardInputs(context.Background(), []Input{x}, ForwardOptions{AllLogits: true})
	if err != nil {
		t.Fatal(err)
	}
	positions := []int{2, 7, len(x.Tokens) - 1} // inside the image run, its end, the last token
	lens, err := m.LogitLensInput(context.Background(), x, positions, 1)
	if err != nil {
		t.Fatal(err)
	}
	V, last := m.Config().Vocab, m.Config().Layers-1
	seen := 0
	for _, e := range lens {
		if e.Layer != last {
			continue
		}
		row := res.Logits[0][e.Position*V : (e.Position+1)*V]
		best := 0
		for i, v := range row {
			if v > row[best] {
				best = i
			}
		}
		if int(e.TopIDs[0]) != best {
			t.Errorf("position %d: lens top %d, logits argmax %d", e.Position, e.TopIDs[0], best)
		}
		seen++
	}
	if seen != len(positions) {
		t.Fatalf("%d last-layer entries, want %d", seen, len(positions))
	}
}

// A family's module config value that is not what Module.Int / Module.Eps take is an
// ErrConfig naming the config object, the key and the value, not a zero or a default Build
// goes on with.
func TestModuleConfigNamesTheKey(t *testing.T) {
	for _, c := range []struct {
		key  string
		v    any
		want string
	}{
		{"num_attention_heads", 2.5, "num_attention_heads is 2.5"},
		{"layer_norm_eps", 2.0, "vision_config.layer_norm_eps: 2, want a number in (0, 1)"},
		{"layer_norm_eps", "small", "vision_config.layer_norm_eps: small"},
	} {
		_, dir := tinyVLM(t, safetensors.F32)
		path := filepath.Join(dir, "config.json")
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var cfg map[string]any
		if err := json.Unmarshal(data, &cfg); err != nil {
			t.Fatal(err)
		}
		cfg["vision_config"].(map[string]any)[c.key] = c.v
		if data, err = json.Marshal(cfg); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		_, err = Open(dir)
		if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "vision_config") || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s %v: Open: %v, want ErrConfig naming vision_config and %q", c.key, c.v, err, c.want)
		}
	}
}

// An encoder output with NaN or ±Inf fails the forward pass with ErrNonFinite naming the
// sequence and the medium (prepareInputs checks every family's encoder); large finite
// features do not.
func TestEncoderOutputNonFinite(t *testing.T) {
	m, _ := tinyVLM(t, safetensors.F32)
	for _, c := range []struct {
		name string
		v    float32
		bad  bool
	}{
		{"NaN", float32(math.NaN()), true},
		{"+Inf", float32(math.Inf(1)), true},
		{"finite", 3, false},
	} {
		in := tinyVLMInput()
		in.Media[0].Features = slices.Clone(in.Media[0].Features)
		in.Media[0].Features[5] = c.v
		_, err := m.ForwardInputs(context.Background(), []Input{in}, ForwardOptions{})
		if c.bad != errors.Is(err, ErrNonFinite) || c.bad && !strings.Contains(err.Error(), "sequence 0, image 0") || !c.bad && err != nil {
			t.Errorf("%s: %v, want ErrNonFinite %v", c.name, err, c.bad)
		}
	}
}
