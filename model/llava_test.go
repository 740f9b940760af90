package model

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
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
	"github.com/neurosurg/neurosurg/media/imageproc"
	"github.com/neurosurg/neurosurg/model/kernels"
	"github.com/neurosurg/neurosurg/model/synth"
	"github.com/neurosurg/neurosurg/model/tokenizer"
)

// The shrunk configs: the real llava-1.5-7b-hf config.json and the reconstructed
// llava-v1.6-vicuna-7b-hf one with small sizes (vision 16 wide, 3 layers, 16×16 pictures of
// 4×4 patches; text 32 wide, 2 layers) and the real token ids (vocab 32064, <image> 32000).
const (
	llavaTinyConfig     = "../testdata/configs/llava-tiny"
	llavaNextTinyConfig = "../testdata/configs/llava-next-tiny"
)

// llavaTiny synthesises a shrunk LLaVA checkpoint from cfg in dt (sharded when shard > 0).
func llavaTiny(t *testing.T, cfg string, dt safetensors.DType, shard int64, set map[string]any) (*Model, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "llava")
	if err := synth.Generate(cfg, dir, synth.Options{DType: dt, Seed: 11, Std: 0.3, ShardSize: shard, Set: set}); err != nil {
		t.Fatal(err)
	}
	m, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m, dir
}

// llavaRef is an independent float64 port of transformers' LLaVA forward (modeling_clip,
// modeling_llava, modeling_llava_next, modeling_llama) on a checkpoint's weights: from the
// processor's pixel values to the logits.
type llavaRef struct {
	t   *testing.T
	c   *hfdir.Checkpoint
	cfg map[string]any
	// acts, when not nil, collects every FFN site's activations (rows in forward order), as a
	// forward hook on the activation module would.
	acts map[Site][][]float64
}

func (r *llavaRef) record(s Site, rows [][]float64) {
	if r.acts != nil {
		for _, row := range rows {
			r.acts[s] = append(r.acts[s], slices.Clone(row))
		}
	}
}

func (r *llavaRef) get(name string) []float64 {
	info, b, err := r.c.Tensor(name)
	if err != nil {
		r.t.Fatal(err)
	}
	v := make([]float32, info.NumElements())
	dtype.ToFloat32(v, b, info.DType)
	out := make([]float64, len(v))
	for i := range v {
		out[i] = float64(v[i])
	}
	return out
}

func (r *llavaRef) num(sub, key string, def float64) int {
	m := r.cfg
	if sub != "" {
		m, _ = r.cfg[sub].(map[string]any)
	}
	if v, ok := m[key].(float64); ok {
		return int(v)
	}
	return int(def)
}

// linear is y = x Wᵀ + b over rows of x (b may be absent).
func (r *llavaRef) linear(x [][]float64, name string, bias bool) [][]float64 {
	w := r.get(name + ".weight")
	var b []float64
	if bias {
		b = r.get(name + ".bias")
	}
	in := len(x[0])
	out := len(w) / in
	y := make([][]float64, len(x))
	for i, row := range x {
		y[i] = make([]float64, out)
		for o := 0; o < out; o++ {
			var s float64
			for k := 0; k < in; k++ {
				s += w[o*in+k] * row[k]
			}
			if b != nil {
				s += b[o]
			}
			y[i][o] = s
		}
	}
	return y
}

func (r *llavaRef) layerNorm(x [][]float64, name string) [][]float64 {
	w, b := r.get(name+".weight"), r.get(name+".bias")
	y := make([][]float64, len(x))
	for i, row := range x {
		var mean, v float64
		for _, a := range row {
			mean += a
		}
		mean /= float64(len(row))
		for _, a := range row {
			v += (a - mean) * (a - mean)
		}
		v /= float64(len(row))
		y[i] = make([]float64, len(row))
		for k, a := range row {
			y[i][k] = (a-mean)/math.Sqrt(v+1e-5)*w[k] + b[k]
		}
	}
	return y
}

// attention is softmax(q kᵀ / sqrt(hd)) v per head, causal or not.
func attention(q, k, v [][]float64, heads, kvHeads int, causal bool) [][]float64 {
	d := len(q[0])
	hd := d / heads
	out := make([][]float64, len(q))
	for i := range q {
		out[i] = make([]float64, d)
		for h := 0; h < heads; h++ {
			g := h / (heads / kvHeads)
			n := len(k)
			if causal {
				n = i + 1
			}
			w := make([]float64, n)
			mx := math.Inf(-1)
			for j := 0; j < n; j++ {
				for e := 0; e < hd; e++ {
					w[j] += q[i][h*hd+e] * k[j][g*hd+e]
				}
				w[j] /= math.Sqrt(float64(hd))
				mx = math.Max(mx, w[j])
			}
			var z float64
			for j := range w {
				w[j] = math.Exp(w[j] - mx)
				z += w[j]
			}
			for j := range w {
				for e := 0; e < hd; e++ {
					out[i][h*hd+e] += w[j] / z * v[j][g*hd+e]
				}
			}
		}
	}
	return out
}

// image is get_image_features + pack_image_features for one picture: tiles are pixel values
// [3, S, S] (NeXT: the base image first), size its (height, width).
func (r *llavaRef) image(tiles [][]float64, size [2]int, next bool) [][]float64 {
	const vp = "vision_tower.vision_model."
	D := r.num("vision_config", "hidden_size", 768)
	S, p := r.num("vision_config", "image_size", 224), r.num("vision_config", "patch_size", 32)
	L, heads := r.num("vision_config", "num_hidden_layers", 12), r.num("vision_config", "num_attention_heads", 12)
	g := S / p
	fl := r.num("", "vision_feature_layer", -2)
	if fl < 0 {
		fl += L + 1
	}
	full := r.cfg["vision_feature_select_strategy"] == "full"
	conv, cls, pos := r.get(vp+"embeddings.patch_embedding.weight"), r.get(vp+"embeddings.class_embedding"), r.get(vp+"embeddings.position_embedding.weight")
	var feats [][][]float64
	for _, px := range tiles {
		// CLIPVisionEmbeddings: Conv2d(3, D, p, stride p, no bias), flatten, class token first,
		// plus position_embedding(arange).
		x := [][]float64{slices.Clone(cls)}
		for py := 0; py < g; py++ {
			for pxx := 0; pxx < g; pxx++ {
				e := make([]float64, D)
				for o := 0; o < D; o++ {
					for c := 0; c < 3; c++ {
						for ky := 0; ky < p; ky++ {
							for kx := 0; kx < p; kx++ {
								e[o] += conv[((o*3+c)*p+ky)*p+kx] * px[c*S*S+(py*p+ky)*S+pxx*p+kx]
							}
						}
					}
				}
				x = append(x, e)
			}
		}
		for i := range x {
			for k := range x[i] {
				x[i][k] += pos[i*D+k]
			}
		}
		x = r.layerNorm(x, vp+"pre_layrnorm")
		hidden := [][][]float64{x} // hidden_states: before each layer, then the last output
		for l := 0; l < L; l++ {
			pre := fmt.Sprintf("%sencoder.layers.%d.", vp, l)
			xn := r.layerNorm(x, pre+"layer_norm1")
			a := attention(r.linear(xn, pre+"self_attn.q_proj", true), r.linear(xn, pre+"self_attn.k_proj", true), r.linear(xn, pre+"self_attn.v_proj", true), heads, heads, false)
			o := r.linear(a, pre+"self_attn.out_proj", true)
			y := make([][]float64, len(x))
			for i := range x {
				y[i] = make([]float64, D)
				for k := range y[i] {
					y[i][k] = x[i][k] + o[i][k]
				}
			}
			h := r.linear(r.layerNorm(y, pre+"layer_norm2"), pre+"mlp.fc1", true)
			for i := range h {
				for k, v := range h[i] {
					h[i][k] = v / (1 + math.Exp(-1.702*v)) // quick_gelu
				}
			}
			r.record(Site{"vision", l}, h)
			o = r.linear(h, pre+"mlp.fc2", true)
			for i := range y {
				for k := range y[i] {
					y[i][k] += o[i][k]
				}
			}
			x = y
			hidden = append(hidden, x)
		}
		sel := hidden[fl]
		if !full {
			sel = sel[1:]
		}
		h := r.linear(sel, "multi_modal_projector.linear_1", true)
		for i := range h {
			for k, v := range h[i] {
				h[i][k] = 0.5 * v * (1 + math.Erf(v/math.Sqrt2)) // gelu
			}
		}
		r.record(Site{"projector", 0}, h)
		feats = append(feats, r.linear(h, "multi_modal_projector.linear_2", true))
	}
	if !next {
		return feats[0]
	}
	// pack_image_features: view(nph, npw, g, g, -1).permute(4, 0, 2, 1, 3) → [d, nph·g, npw·g],
	// unpad_image, a newline column, flatten(1, 2).transpose(0, 1); the base tile first.
	var pins [][2]int
	raw, _ := json.Marshal(r.cfg["image_grid_pinpoints"])
	var pp [][]int
	json.Unmarshal(raw, &pp)
	for _, e := range pp {
		pins = append(pins, [2]int{e[0], e[1]})
	}
	best := imageproc.SelectBestResolution(size[0], size[1], pins)
	nph, npw := best[0]/S, best[1]/S
	H, W := nph*g, npw*g
	at := func(R, C int) []float64 { return feats[1+(R/g)*npw+C/g][(R%g)*g+C%g] }
	r0, r1, c0, c1 := 0, H, 0, W
	origAR, curAR := float64(size[1])/float64(size[0]), float64(W)/float64(H)
	round7 := func(x float64) int { return int(math.Round(x*1e7) / 1e7) }
	if origAR > curAR {
		newH := round7(float64(size[0]) * (float64(W) / float64(size[1])))
		pad := (H - newH) / 2
		r0, r1 = pad, H-pad
	} else {
		newW := round7(float64(size[1]) * (float64(H) / float64(size[0])))
		pad := (W - newW) / 2
		c0, c1 = pad, W-pad
	}
	newline := r.get("image_newline")
	out := slices.Clone(feats[0])
	for R := r0; R < r1; R++ {
		for C := c0; C < c1; C++ {
			out = append(out, at(R, C))
		}
		out = append(out, newline)
	}
	return out
}

// logits runs the Llama decoder (language_model.*) over ids whose image-token rows are
// replaced by feats, in order.
func (r *llavaRef) logits(ids []int32, feats [][]float64) [][]float64 {
	const lp = "language_model."
	d, L := r.num("text_config", "hidden_size", 4096), r.num("text_config", "num_hidden_layers", 32)
	H := r.num("text_config", "num_attention_heads", 32)
	KV := r.num("text_config", "num_key_value_heads", float64(H))
	hd := d / H
	eps := 1e-6
	if tc, _ := r.cfg["text_config"].(map[string]any); tc != nil {
		if e, ok := tc["rms_norm_eps"].(float64); ok {
			eps = e
		}
	}
	imgTok := int32(r.num("", "image_token_index", 32000))
	emb := r.get(lp + "model.embed_tokens.weight")
	x := make([][]float64, len(ids))
	k := 0
	for i, id := range ids {
		if id == imgTok {
			x[i] = slices.Clone(feats[k])
			k++
			continue
		}
		x[i] = slices.Clone(emb[int(id)*d : (int(id)+1)*d])
	}
	if k != len(feats) {
		r.t.Fatalf("%d image tokens for %d features", k, len(feats))
	}
	rms := func(x [][]float64, name string) [][]float64 {
		w := r.get(name)
		y := make([][]float64, len(x))
		for i, row := range x {
			var s float64
			for _, v := range row {
				s += v * v
			}
			inv := 1 / math.Sqrt(s/float64(len(row))+eps)
			y[i] = make([]float64, len(row))
			for j := range row {
				y[i][j] = row[j] * inv * w[j]
			}
		}
		return y
	}
	rope := func(v [][]float64, heads int) {
		for t, row := range v {
			for h := 0; h < heads; h++ {
				for i := 0; i < hd/2; i++ {
					f := float64(t) / math.Pow(10000, float64(2*i)/float64(hd))
					a, b := row[h*hd+i], row[h*hd+i+hd/2]
					row[h*hd+i] = a*math.Cos(f) - b*math.Sin(f)
					row[h*hd+i+hd/2] = b*math.Cos(f) + a*math.Sin(f)
				}
			}
		}
	}
	for l := 0; l < L; l++ {
		p := fmt.Sprintf("%smodel.layers.%d.", lp, l)
		xn := rms(x, p+"input_layernorm.weight")
		q, kk, v := r.linear(xn, p+"self_attn.q_proj", false), r.linear(xn, p+"self_attn.k_proj", false), r.linear(xn, p+"self_attn.v_proj", false)
		rope(q, H)
		rope(kk, KV)
		o := r.linear(attention(q, kk, v, H, KV, true), p+"self_attn.o_proj", false)
		for i := range x {
			for j := range x[i] {
				x[i][j] += o[i][j]
			}
		}
		xn = rms(x, p+"post_attention_layernorm.weight")
		gt, up := r.linear(xn, p+"mlp.gate_proj", false), r.linear(xn, p+"mlp.up_proj", false)
		for i := range gt {
			for j, a := range gt[i] {
				gt[i][j] = a / (1 + math.Exp(-a))
			}
		}
		r.record(Site{"llm", l}, gt)
		for i := range gt {
			for j := range gt[i] {
				gt[i][j] *= up[i][j]
			}
		}
		o = r.linear(gt, p+"mlp.down_proj", false)
		for i := range x {
			for j := range x[i] {
				x[i][j] += o[i][j]
			}
		}
	}
	return r.linear(rms(x, lp+"model.norm.weight"), lp+"lm_head", false)
}

// llavaPixels is the processor's pixel values for a picture, from media/imageproc directly:
// the tiles [3, S, S] as float64.
func llavaPixels(t *testing.T, dir, pic string, next bool) ([][]float64, [2]int) {
	t.Helper()
	img, err := imageproc.DecodeFile(pic, imageproc.DecodeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var vals []float32
	tiles := 1
	if next {
		c, err := imageproc.LoadLlavaNextConfig(filepath.Join(dir, "preprocessor_config.json"))
		if err != nil {
			t.Fatal(err)
		}
		px, err := c.Preprocess(img)
		if err != nil {
			t.Fatal(err)
		}
		vals, tiles = px.Values, px.Tiles
	} else {
		c, err := imageproc.LoadCLIPConfig(filepath.Join(dir, "preprocessor_config.json"))
		if err != nil {
			t.Fatal(err)
		}
		if vals, _, _, err = c.Preprocess(img); err != nil {
			t.Fatal(err)
		}
	}
	n := len(vals) / tiles
	out := make([][]float64, tiles)
	for i := range out {
		out[i] = make([]float64, n)
		for k := range out[i] {
			out[i][k] = float64(vals[i*n+k])
		}
	}
	return out, [2]int{img.H, img.W}
}

func maxDiff(a []float32, b []float64) float64 {
	worst := 0.0
	for i := range b {
		worst = max(worst, math.Abs(float64(a[i])-b[i]))
	}
	return worst
}

// The whole forward — processor, CLIP tower, feature layer, projector, NeXT packing, decoder —
// agrees with the float64 port of transformers to 1e-4 on the logits under the f32-exact
// kernels, for LLaVA-1.5 and LLaVA-NeXT, on F32 sharded, F16 and BF16 checkpoints (the
// reference reads the same stored weights), and on pictures of several aspect ratios (NeXT: each picks another grid and unpads other rows or columns).
func TestLlavaMatchesReference(t *testing.T) {
	prev := kernels.Use(exactVariantInternal())
	defer kernels.Use(prev)
	ctx := context.Background()
	type pic struct{ w, h int }
	for _, c := range []struct {
		name string
		cfg  string
		next bool
		dt   safetensors.DType
		pics []pic
		tol  float64
	}{
		{"1.5 F32 sharded", llavaTinyConfig, false, safetensors.F32, []pic{{23, 17}}, 1e-4},
		{"1.5 F16", llavaTinyConfig, false, safetensors.F16, []pic{{17, 30}}, 1e-4},
		{"1.5 BF16", llavaTinyConfig, false, safetensors.BF16, []pic{{20, 20}}, 1e-4},
		{"NeXT F32 sharded", llavaNextTinyConfig, true, safetensors.F32, []pic{{40, 20}, {20, 41}, {30, 30}, {50, 17}, {13, 47}}, 1e-4},
		{"NeXT F16", llavaNextTinyConfig, true, safetensors.F16, []pic{{37, 22}}, 1e-4},
		{"NeXT BF16", llavaNextTinyConfig, true, safetensors.BF16, []pic{{22, 37}}, 1e-4},
	} {
		t.Run(c.name, func(t *testing.T) {
			shard := int64(0)
			if c.dt == safetensors.F32 {
				shard = 1 << 20
			}
			m, dir := llavaTiny(t, c.cfg, c.dt, shard, nil)
			if shard > 0 && len(m.Checkpoint().Shards) < 2 {
				t.Fatalf("%d shards, want several", len(m.Checkpoint().Shards))
			}
			ck := m.Checkpoint()
			var cfg map[string]any
			json.Unmarshal(ck.ConfigJSON, &cfg)
			ref := &llavaRef{t: t, c: ck, cfg: cfg}
			for i, p := range c.pics {
				path := filepath.Join(t.TempDir(), fmt.Sprintf("p%d.png", i))
				writePNG(t, path, p.w, p.h, 7*i)
				in, err := m.BuildInput("sample x", Prompt{Text: "a cat", Media: []Medium{{Kind: "image", Paths: []string{path}}}})
				if err != nil {
					t.Fatal(err)
				}
				tiles, size := llavaPixels(t, dir, path, c.next)
				feats := ref.image(tiles, size, c.next)
				got, err := m.encoders[0].encode(ctx, 0, in.Media[0], nil, nil)
				if err != nil {
					t.Fatal(err)
				}
				d := m.cfg.Hidden
				if len(got) != len(feats)*d {
					t.Fatalf("%dx%d: %d image rows, the reference %d", p.w, p.h, len(got)/d, len(feats))
				}
				flat := slices.Concat(feats...)
				if w := maxDiff(got, flat); w > c.tol {
					t.Errorf("%dx%d: image features differ from the reference by %g", p.w, p.h, w)
				}
				res, err := m.ForwardInputs(ctx, []Input{in}, ForwardOptions{AllLogits: true})
				if err != nil {
					t.Fatal(err)
				}
				want := ref.logits(in.Tokens, feats)
				w := maxDiff(res.Logits[0], slices.Concat(want...))
				if w > c.tol {
					t.Errorf("%dx%d: logits differ from the reference by %g", p.w, p.h, w)
				}
				scale := 0.0
				for _, v := range flat {
					scale = max(scale, math.Abs(v))
				}
				if scale < 0.1 {
					t.Errorf("%dx%d: image features at most %g: too small to tell", p.w, p.h, scale)
				}
				t.Logf("%dx%d: %d tokens (%d image rows, |feature| ≤ %.2g), logits within %.2g of the float64 reference", p.w, p.h, len(in.Tokens), len(feats), scale, w)
			}
		})
	}
}

// vision_feature_layer (a positive index, the last layer) and the "full" strategy (the CLS row
// kept) select what the reference selects.
func TestLlavaFeatureLayerAndStrategy(t *testing.T) {
	prev := kernels.Use(exactVariantInternal())
	defer kernels.Use(prev)
	for _, set := range []map[string]any{
		{"vision_feature_layer": 1, "vision_feature_select_strategy": "full"},
		{"vision_feature_layer": 3},
		{"vision_feature_layer": 0},
	} {
		m, dir := llavaTiny(t, llavaTinyConfig, safetensors.F32, 0, set)
		var cfg map[string]any
		json.Unmarshal(m.Checkpoint().ConfigJSON, &cfg)
		ref := &llavaRef{t: t, c: m.Checkpoint(), cfg: cfg}
		path := filepath.Join(dir, "p.png")
		writePNG(t, path, 19, 26, 3)
		in, err := m.BuildInput("s", Prompt{Text: "hi", Media: []Medium{{Kind: "image", Paths: []string{path}}}})
		if err != nil {
			t.Fatal(err)
		}
		tiles, size := llavaPixels(t, dir, path, false)
		feats := ref.image(tiles, size, false)
		wantRows := 16
		if set["vision_feature_select_strategy"] == "full" {
			wantRows = 17
		}
		if len(feats) != wantRows || in.Media[0].Rows != 16 {
			t.Fatalf("%v: %d reference rows, %d patch rows", set, len(feats), in.Media[0].Rows)
		}
		got, err := m.encoders[0].encode(context.Background(), 0, in.Media[0], nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		if w := maxDiff(got, slices.Concat(feats...)); len(got) != wantRows*m.cfg.Hidden || w > 1e-4 {
			t.Errorf("%v: %d rows, %g from the reference", set, len(got)/m.cfg.Hidden, w)
		}
		res, err := m.ForwardInputs(context.Background(), []Input{in}, ForwardOptions{AllLogits: true})
		if err != nil {
			t.Fatal(err)
		}
		if w := maxDiff(res.Logits[0], slices.Concat(ref.logits(in.Tokens, feats)...)); w > 1e-4 {
			t.Errorf("%v: logits %g from the reference", set, w)
		}
	}
}

// Image token counts equal the processor's: 576 for LLaVA-1.5 at its real 336×336 (577 with
// "full"), and for LLaVA-NeXT at real size base + unpadded tiles + newlines on several aspect
// ratios — the rows pack gives are the count LlavaNextProcessor expands <image> to.
func TestLlavaImageTokenCounts(t *testing.T) {
	dir := t.TempDir()
	real15 := &llavaImage{m: &Model{dir: "../testdata/configs/llava-1.5-7b-hf"}, imageSize: 336, patchSide: 14, grid: 24}
	path := filepath.Join(dir, "p.png")
	writePNG(t, path, 500, 375, 1)
	md, n, err := real15.prepare(path)
	if err != nil {
		t.Fatal(err)
	}
	if n != 576 || md.Rows != 576 || len(md.Features) != 576*3*14*14 {
		t.Errorf("LLaVA-1.5: %d tokens, %d rows, %d features; want 576", n, md.Rows, len(md.Features))
	}
	full := &llavaImage{m: real15.m, imageSize: 336, patchSide: 14, grid: 24, keepCLS: true}
	if _, n, _ := full.prepare(path); n != 577 {
		t.Errorf("LLaVA-1.5 full: %d tokens, want 577", n)
	}
	pp, _ := pinpoints(nil, 336)
	real16 := &llavaImage{m: &Model{dir: "../testdata/configs/llava-v1.6-vicuna-7b-hf-RECONSTRUCTED"}, next: true, imageSize: 336, patchSide: 14, grid: 24, textHidden: 1, newline: []float32{0}, pinpoints: pp}
	for _, s := range []struct{ w, h, want int }{
		// base 576 + the unpadded grid + one newline per row, worked out by hand: 640×480
		// picks 672×672 (a 48×48 grid), whose 48·480/640 = 36 picture rows are kept; 336×336
		// picks 336×672 (24×48) and keeps 24 columns; 1000×300 picks 336×1008 (24×72) and keeps
		// 24 − 2·((24 − 21) // 2) = 22 rows.
		{640, 480, 576 + 36*(48+1)},
		{480, 640, 576 + 48*(36+1)},
		{336, 336, 576 + 24*(24+1)},
		{1000, 300, 576 + 22*(72+1)},
		{300, 1000, 576 + 72*(22+1)},
		{800, 600, 576 + 36*(48+1)},
	} {
		p := filepath.Join(dir, fmt.Sprintf("%dx%d.png", s.w, s.h))
		writePNG(t, p, s.w, s.h, 2)
		md, n, err := real16.prepare(p)
		if err != nil {
			t.Fatal(err)
		}
		cfg, _ := imageproc.LoadLlavaNextConfig("../testdata/configs/llava-v1.6-vicuna-7b-hf-RECONSTRUCTED/preprocessor_config.json")
		want, _ := cfg.ImageTokens(s.h, s.w, imageproc.LlavaNextTokenParams{PatchSize: 14, NumAdditionalImageTokens: 1, DropCLS: true})
		best := imageproc.SelectBestResolution(s.h, s.w, pp)
		gh, gw := best[0]/336, best[1]/336
		packed := real16.pack(make([]float32, md.Rows), md.Size, gh, gw)
		if n != want || len(packed) != want || md.Rows != (1+gh*gw)*576 {
			t.Errorf("NeXT %dx%d: processor count %d, ImageTokens %d, packed rows %d, patch rows %d", s.w, s.h, n, want, len(packed), md.Rows)
		}
		if n != s.want {
			t.Errorf("NeXT %dx%d: %d tokens, want %d", s.w, s.h, n, s.want)
		}
	}
}

// Zeroing neuron j of a vision layer or of the projector with a runtime mask gives the logits of
// the checkpoint whose fc2 / linear_2 column j is zero (F32 and F16). A mask on the layer past
// vision_feature_layer changes nothing (its output is not used) but is a valid site.
func TestLlavaMaskEqualsWeightEdit(t *testing.T) {
	ctx := context.Background()
	for _, dt := range []safetensors.DType{safetensors.F32, safetensors.F16} {
		m, dir := llavaTiny(t, llavaNextTinyConfig, dt, 0, nil)
		path := filepath.Join(dir, "p.png")
		writePNG(t, path, 30, 21, 5)
		in, err := m.BuildInput("s", Prompt{Text: "what is it", Media: []Medium{{Kind: "image", Paths: []string{path}}}})
		if err != nil {
			t.Fatal(err)
		}
		plain, err := m.ForwardInputs(ctx, []Input{in}, ForwardOptions{AllLogits: true})
		if err != nil {
			t.Fatal(err)
		}
		const vp = "vision_tower.vision_model.encoder.layers."
		for _, c := range []struct {
			site    Site
			j       int
			tensor  string
			neurons int
			effect  bool
		}{
			{Site{"vision", 1}, 7, vp + "1.mlp.fc2.weight", 40, true},
			{Site{"vision", 0}, 39, vp + "0.mlp.fc2.weight", 40, true},
			{Site{"vision", 2}, 3, vp + "2.mlp.fc2.weight", 40, false},
			{Site{"projector", 0}, 5, "multi_modal_projector.linear_2.weight", 32, true},
		} {
			mask := NewMask()
			mask.Set(c.site, c.j, 0)
			masked, err := m.ForwardInputs(ctx, []Input{in}, ForwardOptions{Mask: mask, AllLogits: true})
			if err != nil {
				t.Fatal(err)
			}
			ck, err := hfdir.Open(dir)
			if err != nil {
				t.Fatal(err)
			}
			info, b, _ := ck.Tensor(c.tensor)
			edited := slices.Clone(b)
			es := info.DType.Size()
			for r := 0; r < int(info.Shape[0]); r++ {
				clear(edited[(r*c.neurons+c.j)*es : (r*c.neurons+c.j+1)*es])
			}
			me, err := Load(ck.ConfigJSON, overlay{ck, map[string][]byte{c.tensor: edited}})
			if err != nil {
				t.Fatal(err)
			}
			me.dir = dir
			me.Tokenizer = m.Tokenizer
			edit, err := me.ForwardInputs(ctx, []Input{in}, ForwardOptions{AllLogits: true})
			if err != nil {
				t.Fatal(err)
			}
			worst := 0.0
			for i := range edit.Logits[0] {
				worst = max(worst, math.Abs(float64(edit.Logits[0][i]-masked.Logits[0][i])))
			}
			if worst > 1e-6 {
				t.Errorf("%s %v neuron %d: mask and weight edit differ by %g", dt, c.site, c.j, worst)
			}
			if changed := !slices.Equal(masked.Logits[0], plain.Logits[0]); changed != c.effect {
				t.Errorf("%s %v neuron %d: the mask changed the logits: %v, want %v", dt, c.site, c.j, changed, c.effect)
			}
			ck.Close()
		}
	}
}

// Taps see every vision layer (the one past the feature layer included, as transformers' hooks
// do) over all tiles' rows with their class tokens, the projector over the selected rows and
// the decoder over the tokens; tapping changes no logit.
func TestLlavaTaps(t *testing.T) {
	ctx := context.Background()
	m, dir := llavaTiny(t, llavaNextTinyConfig, safetensors.F32, 0, nil)
	path := filepath.Join(dir, "p.png")
	writePNG(t, path, 40, 20, 1) // 16×32 grid pinpoint: the base image and 2 tiles
	in, err := m.BuildInput("s", Prompt{Text: "hi", Media: []Medium{{Kind: "image", Paths: []string{path}}}})
	if err != nil {
		t.Fatal(err)
	}
	tap := &siteTap{sites: map[Site]int{}}
	tapped, err := m.ForwardInputs(ctx, []Input{in}, ForwardOptions{Taps: []Tap{tap}, AllLogits: true})
	if err != nil {
		t.Fatal(err)
	}
	plain, err := m.ForwardInputs(ctx, []Input{in}, ForwardOptions{AllLogits: true})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(tapped.Logits[0], plain.Logits[0]) {
		t.Error("taps changed the logits")
	}
	n := len(in.Tokens)
	want := map[Site]int{{"vision", 0}: 3 * 17, {"vision", 1}: 3 * 17, {"vision", 2}: 3 * 17, {"projector", 0}: 3 * 16, {"llm", 0}: n, {"llm", 1}: n}
	if !maps.Equal(tap.sites, want) {
		t.Errorf("tap saw %v, want %v", tap.sites, want)
	}
	if got := len(m.FFNSites()); got != 6 {
		t.Errorf("%d FFN sites, want 6 (vision 3, projector 1, llm 2)", got)
	}
}

// The prompt layouts: without Chat "<image>\n" + text after BOS; with Chat the checkpoint's
// template ("USER: <image>\n… ASSISTANT:"), BOS added by the tokenizer; <image> expanded to the
// processor's count; the same picture through PromptInput (the samples paths' builder) gives
// the same media.
func TestLlavaPrompt(t *testing.T) {
	m, dir := llavaTiny(t, llavaTinyConfig, safetensors.F32, 0, nil)
	path := filepath.Join(dir, "p.png")
	writePNG(t, path, 30, 21, 5)
	tok := m.Tokenizer
	image := Medium{Kind: "image", Paths: []string{path}}
	expand := func(ids []int32) []int32 {
		var out []int32
		for _, id := range ids {
			if id == 32000 {
				out = append(out, slices.Repeat([]int32{32000}, 16)...)
				continue
			}
			out = append(out, id)
		}
		return out
	}
	s, err := tok.ApplyChatTemplate([]tokenizer.Message{{Role: "user", Parts: []tokenizer.Part{{Type: "image"}, {Type: "text", Text: "a cat"}}}}, true)
	if err != nil || s != "USER: <image>\na cat ASSISTANT:" {
		t.Fatalf("chat template: %q, %v", s, err)
	}
	for _, c := range []struct {
		p    Prompt
		text string
	}{
		{Prompt{Text: "a cat", Media: []Medium{image}}, "<image>\na cat"},
		{Prompt{Text: "a cat", Media: []Medium{image}, Chat: true}, "USER: <image>\na cat ASSISTANT:"},
		{Prompt{Text: "a cat", Media: []Medium{image, image}}, "<image>\n<image>\na cat"},
		{Prompt{Text: "a cat", Chat: true}, "USER: a cat ASSISTANT:"},
		{Prompt{Text: "a cat"}, "a cat"},
	} {
		in, err := m.BuildInput("s", c.p)
		if err != nil {
			t.Fatal(err)
		}
		ids, _ := tok.Encode(c.text, true)
		if want := expand(ids); !slices.Equal(in.Tokens, want) || ids[0] != 1 {
			t.Errorf("%+v: tokens %v, want %v (%q after BOS)", c.p, in.Tokens, want, c.text)
		}
		if len(in.Media) != len(c.p.Media) || in.Positions != nil {
			t.Errorf("%+v: %d media, positions %v", c.p, len(in.Media), in.Positions)
		}
		if _, err := m.ForwardInputs(context.Background(), []Input{in}, ForwardOptions{}); err != nil {
			t.Errorf("%+v: %v", c.p, err)
		}
	}
	bos := []int32{1}
	pi, err := m.PromptInput("s", append(bos, 9), []string{"image"}, []string{path})
	if err != nil || len(pi.Media) != 1 || pi.Media[0].Rows != 16 || len(pi.Tokens) != 18 {
		t.Fatalf("PromptInput: %+v, %v", pi.Tokens, err)
	}
	in, _ := m.BuildInput("s", Prompt{Text: "x", Media: []Medium{image}})
	if !slices.Equal(pi.Media[0].Features, in.Media[0].Features) {
		t.Error("PromptInput and BuildInput read the picture differently")
	}
	for _, c := range []struct {
		p   Prompt
		msg string
	}{
		{Prompt{Text: "two <image> here", Media: []Medium{image}}, "2 <image> tokens for 1 image inputs"},
		{Prompt{Text: "<image>", Media: []Medium{image}, Chat: true}, "2 <image> tokens for 1 image inputs"},
		{Prompt{Text: "x", Media: []Medium{{Kind: "image", Paths: []string{filepath.Join(dir, "none.png")}}}}, "none.png"},
		{Prompt{Text: "x", Media: []Medium{{Kind: "audio", Paths: []string{path}}}}, "has audio input"},
		{Prompt{Text: strings.Repeat("a b c ", 1500), Media: []Medium{image}}, "more than"},
	} {
		if _, err := m.BuildInput("sample s", c.p); err == nil || !strings.Contains(err.Error(), c.msg) || !strings.Contains(err.Error(), "sample s") {
			t.Errorf("%.40q: %v, want an error naming the sample and %q", c.p.Text, err, c.msg)
		}
	}
	// Without preprocessor_config.json there is no processor to read pictures with.
	os.Remove(filepath.Join(dir, "preprocessor_config.json"))
	m2, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer m2.Close()
	if _, err := m2.BuildInput("s", Prompt{Text: "x", Media: []Medium{image}}); !errors.Is(err, ErrMediaPath) {
		t.Errorf("no preprocessor_config.json: %v, want ErrMediaPath", err)
	}
}

// Config values the family cannot run are errors naming the key.
func TestLlavaBadConfigs(t *testing.T) {
	for _, c := range []struct {
		cfg string
		set map[string]any
		msg string
	}{
		{llavaNextTinyConfig, map[string]any{"vision_feature_select_strategy": "full"}, "vision_feature_select_strategy"},
		{llavaTinyConfig, map[string]any{"vision_feature_select_strategy": "cls"}, "vision_feature_select_strategy"},
		{llavaTinyConfig, map[string]any{"vision_feature_layer": []any{1, 2}}, "vision_feature_layer"},
		{llavaTinyConfig, map[string]any{"vision_feature_layer": 4}, "vision_feature_layer"},
		{llavaTinyConfig, map[string]any{"projector_hidden_act": "tanh"}, "projector_hidden_act"},
		{llavaTinyConfig, map[string]any{"image_token_index": 40000}, "image_token_index"},
		{llavaNextTinyConfig, map[string]any{"image_grid_pinpoints": []any{[]any{16, 20}}}, "image_grid_pinpoints"},
	} {
		dir := filepath.Join(t.TempDir(), "bad")
		if err := synth.Generate(c.cfg, dir, synth.Options{DType: safetensors.F32, Set: c.set}); err != nil {
			t.Fatal(err)
		}
		m, err := Open(dir)
		if err == nil {
			m.Close()
		}
		if err == nil || !strings.Contains(err.Error(), c.msg) || !errors.Is(err, ErrConfig) {
			t.Errorf("%v: %v, want ErrConfig naming %s", c.set, err, c.msg)
		}
	}
}

// BenchmarkLlavaVisionTower: the CLIP ViT-L/14-336 tower and projector of LLaVA-1.5 at real
// shapes (24 layers, 1024 wide, 577 positions), BF16, on one 336×336 picture; the language model
// is shrunk to one small layer (it does not run). 23 layers run (vision_feature_layer −2).
func BenchmarkLlavaVisionTower(b *testing.B) {
	raw, err := os.ReadFile("../testdata/configs/llava-1.5-7b-hf/config.json")
	if err != nil {
		b.Fatal(err)
	}
	var cfg map[string]any
	json.Unmarshal(raw, &cfg)
	cfg["text_config"].(map[string]any)["hidden_size"] = 4096
	cfg["text_config"].(map[string]any)["num_hidden_layers"] = 1
	cfg["text_config"].(map[string]any)["intermediate_size"] = 64
	src := b.TempDir()
	j, _ := json.Marshal(cfg)
	os.WriteFile(filepath.Join(src, "config.json"), j, 0o644)
	for _, f := range []string{"preprocessor_config.json", "processor_config.json"} {
		p, _ := os.ReadFile(filepath.Join("../testdata/configs/llava-1.5-7b-hf", f))
		os.WriteFile(filepath.Join(src, f), p, 0o644)
	}
	dir := filepath.Join(b.TempDir(), "llava")
	if err := synth.Generate(src, dir, synth.Options{DType: safetensors.BF16, Seed: 1}); err != nil {
		b.Fatal(err)
	}
	// synth copies only the definition's tag-along files from a directory: the processor's are.
	m, err := Open(dir)
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	pic := filepath.Join(dir, "p.png")
	writePNG(b, pic, 400, 300, 0)
	md, _, err := m.encoders[0].(*llavaImage).prepare(pic)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := m.encoders[0].encode(context.Background(), 0, md, nil, nil); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "images/s")
}

// FuzzLlavaPinpoints: image_grid_pinpoints from any JSON is refused with ErrConfig or gives
// positive multiples of image_size within bounds, never a panic.
func FuzzLlavaPinpoints(f *testing.F) {
	f.Add([]byte(`[[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]]`), 336)
	f.Add([]byte(`[[16, 20]]`), 16)
	f.Add([]byte(`[[1e300, 16], [16]]`), 16)
	f.Add([]byte(`null`), 14)
	f.Add([]byte(`[]`), 14)
	f.Fuzz(func(t *testing.T, data []byte, side int) {
		if side <= 0 || side > 1<<14 {
			return
		}
		var v any
		if json.Unmarshal(data, &v) != nil {
			return
		}
		pp, err := pinpoints(v, side)
		if err != nil {
			if !errors.Is(err, ErrConfig) {
				t.Fatalf("error without ErrConfig: %v", err)
			}
			return
		}
		if v == nil {
			return // the default list
		}
		for _, p := range pp {
			if p[0] < side || p[1] < side || p[0]%side != 0 || p[1]%side != 0 || p[0] > 1<<14 || p[1] > 1<<14 {
				t.Fatalf("accepted %v for image_size %d", p, side)
			}
		}
	})
}

// actTap keeps every FFN event's activations per site, in order.
type actTap struct{ acts map[Site][]float32 }

func (a *actTap) FFN(e *FFNEvent) { a.acts[e.Site] = append(a.acts[e.Site], e.Act...) }

// The activations every module's taps see — all vision layers over every tile's positions
// (class tokens included, the layer past the feature layer too), the projector over the
// selected rows, the decoder over the prompt — agree with the float64 port's to 1e-4, and the
// per-site statistics record keeps (firing probability, mean, max) agree: probability exactly.
func TestLlavaActivationsMatchReference(t *testing.T) {
	prev := kernels.Use(exactVariantInternal())
	defer kernels.Use(prev)
	m, dir := llavaTiny(t, llavaNextTinyConfig, safetensors.F16, 0, nil)
	var cfg map[string]any
	json.Unmarshal(m.Checkpoint().ConfigJSON, &cfg)
	ref := &llavaRef{t: t, c: m.Checkpoint(), cfg: cfg, acts: map[Site][][]float64{}}
	path := filepath.Join(dir, "p.png")
	writePNG(t, path, 44, 19, 4)
	in, err := m.BuildInput("s", Prompt{Text: "a dog", Media: []Medium{{Kind: "image", Paths: []string{path}}}, Chat: true})
	if err != nil {
		t.Fatal(err)
	}
	tiles, size := llavaPixels(t, dir, path, true)
	ref.logits(in.Tokens, ref.image(tiles, size, true))
	tap := &actTap{acts: map[Site][]float32{}}
	if _, err := m.ForwardInputs(context.Background(), []Input{in}, ForwardOptions{Taps: []Tap{tap}}); err != nil {
		t.Fatal(err)
	}
	if len(tap.acts) != 6 || len(ref.acts) != 6 {
		t.Fatalf("sites: %d tapped, %d in the reference", len(tap.acts), len(ref.acts))
	}
	for s, want := range ref.acts {
		got := tap.acts[s]
		flat := slices.Concat(want...)
		if len(got) != len(flat) {
			t.Errorf("%v: %d activations, the reference %d", s, len(got), len(flat))
			continue
		}
		if w := maxDiff(got, flat); w > 1e-4 {
			t.Errorf("%v: activations differ by %g", s, w)
		}
		n := len(want[0])
		for j := 0; j < n; j++ {
			var fg, fw int
			var sg, sw, mg, mw float64 = 0, 0, math.Inf(-1), math.Inf(-1)
			for r := range want {
				g, w := float64(got[r*n+j]), want[r][j]
				if g > 0 {
					fg++
				}
				if w > 0 {
					fw++
				}
				sg, sw, mg, mw = sg+g, sw+w, max(mg, g), max(mw, w)
			}
			rows := float64(len(want))
			if fg != fw || math.Abs(sg/rows-sw/rows) > 1e-4 || math.Abs(mg-mw) > 1e-4 {
				t.Errorf("%v neuron %d: firing %d/%d, mean %g/%g, max %g/%g", s, j, fg, fw, sg/rows, sw/rows, mg, mw)
				break
			}
		}
		t.Logf("%v: %d rows × %d neurons agree", s, len(want), n)
	}
}
