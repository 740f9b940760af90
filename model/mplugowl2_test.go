package model

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/neurosurg/neurosurg/formats/hfdir"
	"github.com/neurosurg/neurosurg/formats/safetensors"
	"github.com/neurosurg/neurosurg/media/imageproc"
	"github.com/neurosurg/neurosurg/model/archdef"
	"github.com/neurosurg/neurosurg/model/kernels"
	"github.com/neurosurg/neurosurg/model/synth"
)

// The reconstructed mplug-owl2-llama2-7b config (see its SOURCES-RECONSTRUCTED.md) and its
// shrunk copy: vision 16 wide, 3 layers, 2 heads, 16×16 pictures of 4×4 patches (16 + CLS
// rows); abstractor 16 wide, 2 layers, 2 heads, 8 queries, grid 4; text 32 wide, 2 layers,
// 4 heads, the real vocabulary size.
const (
	owlConfig     = "../testdata/configs/mplug-owl2-llama2-7b-RECONSTRUCTED"
	owlTinyConfig = "../testdata/configs/mplug-owl2-tiny"
)

func owlTiny(t *testing.T, dt safetensors.DType, shard int64, set map[string]any) (*Model, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "owl")
	if err := synth.Generate(owlTinyConfig, dir, synth.Options{DType: dt, Seed: 5, Std: 0.3, ShardSize: shard, Set: set}); err != nil {
		t.Fatal(err)
	}
	m, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m, dir
}

// owlNames is the state dict of MPLUGOwl2LlamaForCausalLM as its modules make it, written out
// from the code (not from the definition): visual_encoder.py's MplugOwlVisionModel and
// MplugOwlVisualAbstractorModel (their registered q/k pos-embed buffers are persistent, so
// in the state dict), modeling_llama2.py's LlamaDecoderLayer with MultiwayNetwork(2) norms and
// k/v projections, LlamaForCausalLM's embed_tokens, norm and lm_head.
func owlNames(vd, vInter, vLayers, p, grid, ad, aInter, aLayers, nq, d, inter, L, vocab int) map[string][]int64 {
	n := map[string][]int64{}
	add := func(name string, shape ...int) {
		s := make([]int64, len(shape))
		for i, v := range shape {
			s[i] = int64(v)
		}
		n[name] = s
	}
	const ve = "model.vision_model.embeddings."
	add(ve+"cls_token", 1, 1, vd)
	add(ve+"patch_embed.weight", vd, 3, p, p)
	add(ve+"position_embedding", 1, grid*grid+1, vd)
	add(ve+"pre_layernorm.weight", vd)
	add(ve+"pre_layernorm.bias", vd)
	for i := range vLayers {
		l := fmt.Sprintf("model.vision_model.encoder.layers.%d.", i)
		for _, ln := range []string{"input_layernorm", "post_attention_layernorm"} {
			add(l+ln+".weight", vd)
			add(l+ln+".bias", vd)
		}
		add(l+"self_attn.query_key_value.weight", 3*vd, vd)
		add(l+"self_attn.query_key_value.bias", 3*vd)
		add(l+"self_attn.dense.weight", vd, vd)
		add(l+"self_attn.dense.bias", vd)
		add(l+"mlp.fc1.weight", vInter, vd)
		add(l+"mlp.fc1.bias", vInter)
		add(l+"mlp.fc2.weight", vd, vInter)
		add(l+"mlp.fc2.bias", vd)
	}
	add("model.vision_model.post_layernorm.weight", vd)
	add("model.vision_model.post_layernorm.bias", vd)
	add("model.visual_abstractor.query_embeds", 1, nq, ad)
	add("model.visual_abstractor.visual_fc.weight", d, ad)
	add("model.visual_abstractor.visual_fc.bias", d)
	add("model.visual_abstractor.vit_eos", 1, 1, d)
	for i := range aLayers {
		l := fmt.Sprintf("model.visual_abstractor.encoder.layers.%d.crossattention.", i)
		for _, lin := range []string{"attention.query", "attention.key", "attention.value", "output.out_proj"} {
			add(l+lin+".weight", ad, ad)
			add(l+lin+".bias", ad)
		}
		add(l+"attention.q_pos_embed", nq, ad)
		add(l+"attention.k_pos_embed", grid*grid+1, ad)
		for _, ln := range []string{"norm1", "normk", "output.norm2"} {
			add(l+ln+".weight", ad)
			add(l+ln+".bias", ad)
		}
		add(l+"output.mlp.w1.weight", aInter, ad)
		add(l+"output.mlp.w1.bias", aInter)
		add(l+"output.mlp.w3.weight", aInter, ad)
		add(l+"output.mlp.w3.bias", aInter)
		add(l+"output.mlp.w2.weight", ad, aInter)
		add(l+"output.mlp.w2.bias", ad)
		add(l+"output.mlp.ffn_ln.weight", aInter)
		add(l+"output.mlp.ffn_ln.bias", aInter)
	}
	add("model.embed_tokens.weight", vocab, d)
	for i := range L {
		l := fmt.Sprintf("model.layers.%d.", i)
		for w := range 2 {
			add(fmt.Sprintf("%sinput_layernorm.multiway.%d.weight", l, w), d)
			add(fmt.Sprintf("%spost_attention_layernorm.multiway.%d.weight", l, w), d)
			add(fmt.Sprintf("%sself_attn.k_proj.multiway.%d.weight", l, w), d, d)
			add(fmt.Sprintf("%sself_attn.v_proj.multiway.%d.weight", l, w), d, d)
		}
		add(l+"self_attn.q_proj.weight", d, d)
		add(l+"self_attn.o_proj.weight", d, d)
		add(l+"mlp.gate_proj.weight", inter, d)
		add(l+"mlp.up_proj.weight", inter, d)
		add(l+"mlp.down_proj.weight", d, inter)
	}
	add("model.norm.weight", d)
	add("lm_head.weight", vocab, d)
	return n
}

// The definition names exactly the state dict the modeling code builds, at the reconstructed
// config's sizes (862 tensors: vision 295, abstractor 145, visual_fc + vit_eos 3, Llama 419),
// and a config that leaves visual_config (or some of its keys) out gets the code's defaults.
func TestMPLUGOwl2TensorNames(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(owlConfig, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	want := owlNames(1024, 4096, 24, 14, 32, 1024, 2816, 6, 64, 4096, 11008, 32, 32000)
	if len(want) != 862 {
		t.Fatalf("the hand-written state dict has %d names, want 862", len(want))
	}
	var full map[string]any
	json.Unmarshal(raw, &full)
	noVisual := map[string]any{}
	for k, v := range full {
		if k != "visual_config" {
			noVisual[k] = v
		}
	}
	partial := map[string]any{}
	for k, v := range full {
		partial[k] = v
	}
	partial["visual_config"] = map[string]any{"visual_model": map[string]any{"hidden_act": "quick_gelu"}, "visual_abstractor": map[string]any{}}
	for name, cfg := range map[string]any{"reconstructed": full, "no visual_config": noVisual, "visual_config of one key": partial} {
		j, _ := json.Marshal(cfg)
		a, err := archdef.ForConfig(j)
		if err != nil {
			t.Fatal(err)
		}
		specs, err := a.Tensors()
		if err != nil {
			t.Fatal(err)
		}
		got := map[string][]int64{}
		for _, s := range specs {
			got[s.Name] = s.Shape
		}
		for n, s := range want {
			if g, ok := got[n]; !ok {
				t.Errorf("%s: %s missing", name, n)
			} else if !slices.Equal(g, s) {
				t.Errorf("%s: %s is %v, want %v", name, n, g, s)
			}
		}
		for n := range got {
			if _, ok := want[n]; !ok {
				t.Errorf("%s: %s is not in the state dict", name, n)
			}
		}
		ffn, err := a.FFN()
		if err != nil {
			t.Fatal(err)
		}
		geo := map[string][2]int{}
		for _, g := range ffn {
			geo[g.Module] = [2]int{g.Layers, g.Neurons}
		}
		if wantGeo := map[string][2]int{"vision": {24, 4096}, "abstractor": {6, 2816}, "llm": {32, 11008}}; !maps.Equal(geo, wantGeo) {
			t.Errorf("%s: FFN geometry %v, want %v", name, geo, wantGeo)
		}
	}
}

// owlRef is a float64 forward written from the formulas of the official code
// (visual_encoder.py, modeling_llama2.py, modeling_mplug_owl2.py), on a checkpoint's weights.
type owlRef struct {
	*llavaRef
	acts map[Site][][]float64
}

func (r *owlRef) rec(s Site, rows [][]float64) {
	if r.acts != nil {
		for _, row := range rows {
			r.acts[s] = append(r.acts[s], slices.Clone(row))
		}
	}
}

func (r *owlRef) sub(key string) map[string]any {
	vc, _ := r.cfg["visual_config"].(map[string]any)
	m, _ := vc[key].(map[string]any)
	return m
}

func numOf(m map[string]any, key string) int { v, _ := m[key].(float64); return int(v) }

// ln is nn.LayerNorm with eps over rows.
func (r *owlRef) ln(x [][]float64, name string, eps float64) [][]float64 {
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
			y[i][k] = (a-mean)/math.Sqrt(v+eps)*w[k] + b[k]
		}
	}
	return y
}

func addRows(x, y [][]float64) [][]float64 {
	out := make([][]float64, len(x))
	for i := range x {
		out[i] = make([]float64, len(x[i]))
		for j := range x[i] {
			out[i][j] = x[i][j] + y[i][j]
		}
	}
	return out
}

// rows views a flat tensor as rows of width w.
func rows(v []float64, w int) [][]float64 {
	out := make([][]float64, len(v)/w)
	for i := range out {
		out[i] = v[i*w : (i+1)*w]
	}
	return out
}

// vision is MplugOwlVisionModel.forward's last_hidden_state for pixel values [3, S, S]: the
// Conv2d written as a convolution, the class token, positions, pre_layernorm, the layers
// (query_key_value reshaped to (heads, 3, head_dim)), post_layernorm.
func (r *owlRef) vision(pix []float64) [][]float64 {
	vc := r.sub("visual_model")
	D, S, p, H, L := numOf(vc, "hidden_size"), numOf(vc, "image_size"), numOf(vc, "patch_size"), numOf(vc, "num_attention_heads"), numOf(vc, "num_hidden_layers")
	eps := vc["layer_norm_eps"].(float64)
	g := S / p
	kern := r.get("model.vision_model.embeddings.patch_embed.weight")
	x := [][]float64{slices.Clone(r.get("model.vision_model.embeddings.cls_token"))}
	for py := range g {
		for px := range g {
			row := make([]float64, D)
			for o := range D {
				for c := range 3 {
					for ky := range p {
						for kx := range p {
							row[o] += kern[((o*3+c)*p+ky)*p+kx] * pix[(c*S+py*p+ky)*S+px*p+kx]
						}
					}
				}
			}
			x = append(x, row)
		}
	}
	x = addRows(x, rows(r.get("model.vision_model.embeddings.position_embedding"), D)[:len(x)])
	x = r.ln(x, "model.vision_model.embeddings.pre_layernorm", eps)
	hd := D / H
	for l := range L {
		pre := fmt.Sprintf("model.vision_model.encoder.layers.%d.", l)
		xn := r.ln(x, pre+"input_layernorm", eps)
		qkv := r.linear(xn, pre+"self_attn.query_key_value", true)
		q, k, v := make([][]float64, len(x)), make([][]float64, len(x)), make([][]float64, len(x))
		for i, row := range qkv {
			q[i], k[i], v[i] = make([]float64, D), make([]float64, D), make([]float64, D)
			for h := range H {
				copy(q[i][h*hd:], row[(h*3+0)*hd:(h*3+1)*hd])
				copy(k[i][h*hd:], row[(h*3+1)*hd:(h*3+2)*hd])
				copy(v[i][h*hd:], row[(h*3+2)*hd:(h*3+3)*hd])
			}
		}
		x = addRows(x, r.linear(attention(q, k, v, H, H, false), pre+"self_attn.dense", true))
		h := r.linear(r.ln(x, pre+"post_attention_layernorm", eps), pre+"mlp.fc1", true)
		for _, row := range h {
			for j, a := range row {
				row[j] = a / (1 + math.Exp(-1.702*a))
			}
		}
		r.rec(Site{"vision", l}, h)
		x = addRows(x, r.linear(h, pre+"mlp.fc2", true))
	}
	return r.ln(x, "model.vision_model.post_layernorm", eps)
}

// abstractor is MplugOwlVisualAbstractorModel.forward over the vision rows: the query rows
// before visual_fc (Q × hidden).
func (r *owlRef) abstractor(img [][]float64) [][]float64 {
	ac := r.sub("visual_abstractor")
	A, H, L := numOf(ac, "hidden_size"), numOf(ac, "num_attention_heads"), numOf(ac, "num_hidden_layers")
	eps := ac["layer_norm_eps"].(float64)
	h := rows(slices.Clone(r.get("model.visual_abstractor.query_embeds")), A)
	for l := range L {
		pre := fmt.Sprintf("model.visual_abstractor.encoder.layers.%d.crossattention.", l)
		qPos, kPos := rows(r.get(pre+"attention.q_pos_embed"), A), rows(r.get(pre+"attention.k_pos_embed"), A)
		// MplugOwlVisualAbstractorAttention.forward: norm1 on q, normk on the image (nn.LayerNorm's eps 1e-5).
		hn := r.ln(h, pre+"norm1", 1e-5)
		kv := slices.Concat(hn, r.ln(img, pre+"normk", 1e-5))
		// MultiHeadAttention.forward: key(kv + [q_pos; k_pos]), value(kv), query(hn + q_pos).
		keys := r.linear(addRows(kv, slices.Concat(qPos, kPos)), pre+"attention.key", true)
		vals := r.linear(kv, pre+"attention.value", true)
		qs := r.linear(addRows(hn, qPos), pre+"attention.query", true)
		ctx := attention(qs, keys, vals, H, H, false)
		// CrossOutput: input + out_proj(ctx), then + mlp(norm2(·)); the input is norm1's output.
		x := addRows(hn, r.linear(ctx, pre+"output.out_proj", true))
		xn := r.ln(x, pre+"output.norm2", 1e-5)
		g, u := r.linear(xn, pre+"output.mlp.w1", true), r.linear(xn, pre+"output.mlp.w3", true)
		for i := range g {
			for j, a := range g[i] {
				g[i][j] = a / (1 + math.Exp(-a)) * u[i][j]
			}
		}
		g = r.ln(g, pre+"output.mlp.ffn_ln", eps)
		r.rec(Site{"abstractor", l}, g)
		h = addRows(x, r.linear(g, pre+"output.mlp.w2", true))
	}
	return h
}

// image is encode_images: visual_fc over the abstractor's rows, then vit_eos.
func (r *owlRef) image(pix []float64) [][]float64 {
	out := r.linear(r.abstractor(r.vision(pix)), "model.visual_abstractor.visual_fc", true)
	return append(out, slices.Clone(r.get("model.visual_abstractor.vit_eos")))
}

// logits is the modality-adaptive Llama over ids whose run of image token rows (0) is
// replaced by feats: those rows have modality indicator 1 and use multiway.1 norms and k/v.
func (r *owlRef) logits(ids []int32, feats [][]float64) [][]float64 {
	d, L, H := numOf(r.cfg, "hidden_size"), numOf(r.cfg, "num_hidden_layers"), numOf(r.cfg, "num_attention_heads")
	hd := d / H
	eps := r.cfg["rms_norm_eps"].(float64)
	emb := r.get("model.embed_tokens.weight")
	x := make([][]float64, len(ids))
	way := make([]int, len(ids))
	k := 0
	for i, id := range ids {
		if id == 0 && k < len(feats) {
			x[i], way[i] = slices.Clone(feats[k]), 1
			k++
			continue
		}
		x[i] = slices.Clone(emb[int(id)*d : (int(id)+1)*d])
	}
	if k != len(feats) {
		r.t.Fatalf("%d image rows in the prompt, %d features", k, len(feats))
	}
	rms := func(x [][]float64, name string) [][]float64 {
		y := make([][]float64, len(x))
		for i, row := range x {
			w := r.get(strings.ReplaceAll(name, "{w}", fmt.Sprint(way[i])))
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
	multiway := func(xn [][]float64, name string) [][]float64 {
		out := make([][]float64, len(xn))
		for i := range xn {
			out[i] = r.linear(xn[i:i+1], strings.ReplaceAll(name, "{w}", fmt.Sprint(way[i])), false)[0]
		}
		return out
	}
	rope := func(v [][]float64) {
		for t, row := range v {
			for h := 0; h < H; h++ {
				for i := 0; i < hd/2; i++ {
					f := float64(t) / math.Pow(10000, float64(2*i)/float64(hd))
					a, b := row[h*hd+i], row[h*hd+i+hd/2]
					row[h*hd+i] = a*math.Cos(f) - b*math.Sin(f)
					row[h*hd+i+hd/2] = b*math.Cos(f) + a*math.Sin(f)
				}
			}
		}
	}
	for l := range L {
		p := fmt.Sprintf("model.layers.%d.", l)
		xn := rms(x, p+"input_layernorm.multiway.{w}.weight")
		q := r.linear(xn, p+"self_attn.q_proj", false)
		kk, v := multiway(xn, p+"self_attn.k_proj.multiway.{w}"), multiway(xn, p+"self_attn.v_proj.multiway.{w}")
		rope(q)
		rope(kk)
		x = addRows(x, r.linear(attention(q, kk, v, H, H, true), p+"self_attn.o_proj", false))
		xn = rms(x, p+"post_attention_layernorm.multiway.{w}.weight")
		gt, up := r.linear(xn, p+"mlp.gate_proj", false), r.linear(xn, p+"mlp.up_proj", false)
		for i := range gt {
			for j, a := range gt[i] {
				gt[i][j] = a / (1 + math.Exp(-a))
			}
		}
		r.rec(Site{"llm", l}, gt)
		for i := range gt {
			for j := range gt[i] {
				gt[i][j] *= up[i][j]
			}
		}
		x = addRows(x, r.linear(gt, p+"mlp.down_proj", false))
	}
	return r.linear(rms(x, "model.norm.weight"), "lm_head", false)
}

// owlPixels is process_images' default ("resize") path from media/imageproc's parts: the
// picture resized to the square of its longer side (Pillow's bicubic), then the CLIP processor.
func owlPixels(t *testing.T, dir, path string) []float64 {
	t.Helper()
	pic, err := imageproc.DecodeFile(path, imageproc.DecodeOptions{IgnoreOrientation: true})
	if err != nil {
		t.Fatal(err)
	}
	n := max(pic.W, pic.H)
	sq, err := imageproc.Resize(pic, n, n, imageproc.Bicubic)
	if err != nil {
		t.Fatal(err)
	}
	c, err := imageproc.LoadCLIPConfig(filepath.Join(dir, "preprocessor_config.json"))
	if err != nil {
		t.Fatal(err)
	}
	v, _, _, err := c.Preprocess(sq)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]float64, len(v))
	for i := range v {
		out[i] = float64(v[i])
	}
	return out
}

// The whole forward — processor, vision tower, abstractor (position embeddings included),
// visual_fc and vit_eos, the modality-adaptive decoder — and every module's FFN activations
// agree with the float64 reference to 1e-4 under the f32-exact kernels, on F32 sharded, F16
// and BF16 checkpoints and pictures of several aspect ratios.
func TestMPLUGOwl2MatchesReference(t *testing.T) {
	prev := kernels.Use(exactVariantInternal())
	defer kernels.Use(prev)
	ctx := context.Background()
	for _, c := range []struct {
		name string
		dt   safetensors.DType
		w, h int
	}{
		{"F32 sharded", safetensors.F32, 23, 17},
		{"F16", safetensors.F16, 12, 30},
		{"BF16", safetensors.BF16, 20, 20},
	} {
		t.Run(c.name, func(t *testing.T) {
			shard := int64(0)
			if c.dt == safetensors.F32 {
				shard = 1 << 20
			}
			m, dir := owlTiny(t, c.dt, shard, nil)
			if shard > 0 && len(m.Checkpoint().Shards) < 2 {
				t.Fatalf("%d shards, want several", len(m.Checkpoint().Shards))
			}
			var cfg map[string]any
			json.Unmarshal(m.Checkpoint().ConfigJSON, &cfg)
			ref := &owlRef{llavaRef: &llavaRef{t: t, c: m.Checkpoint(), cfg: cfg}, acts: map[Site][][]float64{}}
			path := filepath.Join(t.TempDir(), "p.png")
			writePNG(t, path, c.w, c.h, 3)
			in, err := m.BuildInput("s", Prompt{Text: "a cat", Media: []Medium{{Kind: "image", Paths: []string{path}}}, Chat: true})
			if err != nil {
				t.Fatal(err)
			}
			start, n, ok := placeholderRun(in.Tokens, 0, 0)
			if !ok || n != 9 || in.Tokens[0] != 1 || start < 2 {
				t.Fatalf("tokens %v: want BOS, USER:, then a run of 9 image rows (8 queries + vit_eos)", in.Tokens)
			}
			if len(in.Media) != 1 || in.Media[0].Rows != 16 {
				t.Fatalf("media %+v, want one picture of 16 patch rows", in.Media)
			}
			pix := owlPixels(t, dir, path)
			feats := ref.image(pix)
			got, err := m.encoders[0].encode(ctx, 0, in.Media[0], nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			flat := slices.Concat(feats...)
			if len(got) != len(flat) {
				t.Fatalf("%d image values, the reference %d", len(got), len(flat))
			}
			if w := maxDiff(got, flat); w > 1e-4 {
				t.Errorf("image features differ from the reference by %g", w)
			}
			tap := &actTap{acts: map[Site][]float32{}}
			res, err := m.ForwardInputs(ctx, []Input{in}, ForwardOptions{AllLogits: true, Taps: []Tap{tap}})
			if err != nil {
				t.Fatal(err)
			}
			want := slices.Concat(ref.logits(in.Tokens, feats)...)
			w := maxDiff(res.Logits[0], want)
			if w > 1e-4 {
				t.Errorf("logits differ from the reference by %g", w)
			}
			for _, s := range []Site{{"vision", 0}, {"vision", 2}, {"abstractor", 0}, {"abstractor", 1}, {"llm", 0}, {"llm", 1}} {
				r := slices.Concat(ref.acts[s]...)
				if len(tap.acts[s]) != len(r) || len(r) == 0 {
					t.Errorf("%v: %d activations, the reference %d", s, len(tap.acts[s]), len(r))
					continue
				}
				if d := maxDiff(tap.acts[s], r); d > 1e-4 {
					t.Errorf("%v: activations differ from the reference by %g", s, d)
				}
			}
			// The test can fail: the visual weights matter (the same prompt through the
			// text weights only is far off).
			scale := 0.0
			for _, v := range flat {
				scale = max(scale, math.Abs(v))
			}
			t.Logf("%s %dx%d: %d tokens, |feature| ≤ %.2g, logits within %.2g of the reference", c.name, c.w, c.h, len(in.Tokens), scale, w)
		})
	}
}

// textView serves an mPLUG-Owl2 checkpoint as a LlamaForCausalLM: each Llama name reads the
// multiway.0 tensor (the text weights).
type textView struct{ *hfdir.Checkpoint }

func (v textView) name(n string) string {
	for _, s := range []string{"input_layernorm", "post_attention_layernorm", "self_attn.k_proj", "self_attn.v_proj"} {
		n = strings.Replace(n, s+".weight", s+".multiway.0.weight", 1)
	}
	return n
}
func (v textView) Tensor(n string) (safetensors.TensorInfo, []byte, error) {
	return v.Checkpoint.Tensor(v.name(n))
}
func (v textView) Has(n string) bool { return v.Checkpoint.Has(v.name(n)) }

// sameWays serves a checkpoint with every multiway.1 tensor replaced by its multiway.0 twin.
type sameWays struct{ *hfdir.Checkpoint }

func (s sameWays) Tensor(n string) (safetensors.TensorInfo, []byte, error) {
	return s.Checkpoint.Tensor(strings.Replace(n, ".multiway.1.", ".multiway.0.", 1))
}

// The multiway identity: with both ways' weights equal, the decoder over the image rows is a
// plain Llama given the same rows as an embedding span; with the real (different) visual
// weights it is not, and the modality indicators mark exactly the image rows.
func TestMPLUGOwl2MultiwayIdentity(t *testing.T) {
	ctx := context.Background()
	m, dir := owlTiny(t, safetensors.F32, 0, nil)
	path := filepath.Join(dir, "p.png")
	writePNG(t, path, 18, 11, 1)
	in, err := m.BuildInput("s", Prompt{Text: "two dogs", Media: []Medium{{Kind: "image", Paths: []string{path}}}})
	if err != nil {
		t.Fatal(err)
	}
	ck := m.Checkpoint()
	same, err := Load(ck.ConfigJSON, sameWays{ck})
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	json.Unmarshal(ck.ConfigJSON, &cfg)
	delete(cfg, "visual_config")
	cfg["architectures"], cfg["model_type"] = []string{"LlamaForCausalLM"}, "llama"
	lj, _ := json.Marshal(cfg)
	llama, err := Load(lj, textView{ck})
	if err != nil {
		t.Fatal(err)
	}
	rowsOf := func(mm *Model) Input {
		emb, err := mm.encoders[0].encode(ctx, 0, in.Media[0], nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		start, n, _ := placeholderRun(in.Tokens, 0, 0)
		return Input{Tokens: in.Tokens, Embeds: []EmbedSpan{{Start: start, Rows: n, Data: emb}}}
	}
	run := func(mm *Model, x Input) []float32 {
		res, err := mm.ForwardInputs(ctx, []Input{x}, ForwardOptions{AllLogits: true})
		if err != nil {
			t.Fatal(err)
		}
		return res.Logits[0]
	}
	spanSame := rowsOf(same)
	a, b := run(same, spanSame), run(llama, spanSame)
	if !slices.Equal(a, b) {
		t.Errorf("equal ways: the multiway decoder differs from Llama by %g", maxDiff(a, f64s(b)))
	}
	// The real checkpoint's visual weights differ: the logits move, from the first image row
	// on (rows before the image are text rows in both).
	span := rowsOf(m)
	real, plain := run(m, span), run(llama, span)
	V := m.cfg.Vocab
	start, _, _ := placeholderRun(in.Tokens, 0, 0)
	if !slices.Equal(real[:start*V], plain[:start*V]) {
		t.Errorf("the rows before the image differ between the multiway decoder and Llama")
	}
	if slices.Equal(real[start*V:(start+1)*V], plain[start*V:(start+1)*V]) {
		t.Errorf("the first image row does not use the visual weights")
	}
	// BuildInput's media path and the span path agree (the span rows are the visual ones).
	if got := run(m, in); maxDiff(got, f64s(real)) > 1e-6 {
		t.Errorf("media input and span input differ by %g", maxDiff(got, f64s(real)))
	}
}

// A runtime mask on a neuron of each module gives the logits of the checkpoint with that
// neuron's output column zeroed (the patch package's edit): fc2 for "vision", w2 for
// "abstractor" (whose neurons are ffn_ln's outputs), down_proj for "llm".
func TestMPLUGOwl2MaskEqualsWeightEdit(t *testing.T) {
	ctx := context.Background()
	for _, dt := range []safetensors.DType{safetensors.F32, safetensors.BF16} {
		m, dir := owlTiny(t, dt, 0, nil)
		path := filepath.Join(dir, "p.png")
		writePNG(t, path, 21, 16, 2)
		in, err := m.BuildInput("s", Prompt{Text: "what is it", Media: []Medium{{Kind: "image", Paths: []string{path}}}, Chat: true})
		if err != nil {
			t.Fatal(err)
		}
		plain, err := m.ForwardInputs(ctx, []Input{in}, ForwardOptions{AllLogits: true})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			site    Site
			j       int
			tensor  string
			neurons int
		}{
			{Site{"vision", 1}, 7, "model.vision_model.encoder.layers.1.mlp.fc2.weight", 40},
			{Site{"vision", 2}, 39, "model.vision_model.encoder.layers.2.mlp.fc2.weight", 40},
			{Site{"abstractor", 0}, 5, "model.visual_abstractor.encoder.layers.0.crossattention.output.mlp.w2.weight", 24},
			{Site{"abstractor", 1}, 23, "model.visual_abstractor.encoder.layers.1.crossattention.output.mlp.w2.weight", 24},
			{Site{"llm", 1}, 9, "model.layers.1.mlp.down_proj.weight", 64},
		} {
			mask := NewMask()
			mask.Set(c.site, c.j, 0)
			masked, err := m.ForwardInputs(ctx, []Input{in}, ForwardOptions{Mask: mask, AllLogits: true})
			if err != nil {
				t.Fatal(err)
			}
			ck := m.Checkpoint()
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
			edit, err := me.ForwardInputs(ctx, []Input{in}, ForwardOptions{AllLogits: true})
			if err != nil {
				t.Fatal(err)
			}
			if d := maxDiff(edit.Logits[0], f64s(masked.Logits[0])); d > 1e-6 {
				t.Errorf("%s %v neuron %d: mask and weight edit differ by %g", dt, c.site, c.j, d)
			}
			if slices.Equal(masked.Logits[0], plain.Logits[0]) {
				t.Errorf("%s %v neuron %d: the mask changed no logit", dt, c.site, c.j)
			}
		}
	}
}

// process_images on a small non-square picture, by hand: "pad" pastes a 16×8 picture into a
// 16×16 square filled with int(255·mean) = (122, 116, 104), rows 4..11 (the picture) and the
// rest the fill, which the CLIP processor (16: no resize, no crop) normalises; "resize" (the
// default) stretches it to 16×16 with Pillow's bicubic.
func TestMPLUGOwl2Processor(t *testing.T) {
	pic := imageproc.NewRGB(16, 8)
	for i := range pic.Pix {
		pic.Pix[i] = uint8(7*i + 3)
	}
	mean := [3]float64{0.48145466, 0.4578275, 0.40821073}
	std := [3]float64{0.26862954, 0.26130258, 0.27577711}
	norm := func(v uint8, c int) float32 {
		return (float32(float64(v)*(1/255.0)) - float32(mean[c])) / float32(std[c])
	}
	for _, aspect := range []string{"pad", "resize"} {
		m, _ := owlTiny(t, safetensors.F32, 0, map[string]any{"image_aspect_ratio": aspect})
		e := m.encoders[0].(*mplugOwl2Image)
		if err := e.processor(); err != nil {
			t.Fatal(err)
		}
		md, err := e.pixels(pic)
		if err != nil {
			t.Fatal(err)
		}
		// Patch row (py, px) holds [c][ky][kx] of the 4×4 patch: pixel (y, x) channel c is
		// at row (y/4)*4 + x/4, column c*16 + (y%4)*4 + x%4.
		at := func(y, x, c int) float32 { return md.Features[((y/4)*4+x/4)*48+c*16+(y%4)*4+x%4] }
		var want *imageproc.RGB
		if aspect == "pad" {
			want = imageproc.NewRGB(16, 16)
			for y := range 16 {
				for x := range 16 {
					for c := range 3 {
						v := []uint8{122, 116, 104}[c]
						if y >= 4 && y < 12 {
							v = pic.Pix[((y-4)*16+x)*3+c]
						}
						want.Pix[(y*16+x)*3+c] = v
					}
				}
			}
		} else {
			if want, err = imageproc.Resize(pic, 16, 16, imageproc.Bicubic); err != nil {
				t.Fatal(err)
			}
		}
		bad := 0
		for y := range 16 {
			for x := range 16 {
				for c := range 3 {
					if g, w := at(y, x, c), norm(want.Pix[(y*16+x)*3+c], c); g != w {
						bad++
					}
				}
			}
		}
		if bad > 0 || md.Rows != 16 {
			t.Errorf("%s: %d of 768 pixel values differ from the hand-made picture (%d rows)", aspect, bad, md.Rows)
		}
	}
}

// The prompt is tokenizer_image_token's: pieces between <|image|> markers are tokenized apart,
// the first one's BOS kept; the image becomes 9 rows of token 0.
func TestMPLUGOwl2Prompt(t *testing.T) {
	m, dir := owlTiny(t, safetensors.F32, 0, nil)
	path := filepath.Join(dir, "p.png")
	writePNG(t, path, 10, 12, 4)
	img := []Medium{{Kind: "image", Paths: []string{path}}}
	tok := m.Tokenizer
	enc := func(s string) []int32 {
		ids, err := tok.Encode(s, true)
		if err != nil {
			t.Fatal(err)
		}
		return ids
	}
	run := slices.Repeat([]int32{0}, 9)
	// Chat: "USER: " with BOS, the image, "a cat ASSISTANT:" without its BOS.
	in, err := m.BuildInput("s", Prompt{Text: "a cat", Media: img, Chat: true})
	if err != nil {
		t.Fatal(err)
	}
	if want := slices.Concat(enc("USER: "), run, enc("a cat ASSISTANT:")[1:]); !slices.Equal(in.Tokens, want) {
		t.Errorf("chat: %v, want %v", in.Tokens, want)
	}
	// Plain: the prompt starts with the marker, so the first piece is empty (offset 0) and the
	// text piece keeps its BOS: the code's layout, BOS after the image.
	in, err = m.BuildInput("s", Prompt{Text: "a cat", Media: img})
	if err != nil {
		t.Fatal(err)
	}
	if want := slices.Concat(run, enc("a cat")); !slices.Equal(in.Tokens, want) || want[9] != 1 {
		t.Errorf("plain: %v, want %v", in.Tokens, want)
	}
	// Text only: the tokenizer's ids.
	in, err = m.BuildInput("s", Prompt{Text: "a cat", Chat: true})
	if err != nil {
		t.Fatal(err)
	}
	if want := enc("USER: a cat ASSISTANT:"); !slices.Equal(in.Tokens, want) {
		t.Errorf("text: %v, want %v", in.Tokens, want)
	}
	for _, p := range []Prompt{
		{Text: "x", Media: append(slices.Clone(img), img...)},
		{Text: "see <|image|> here", Media: img},
	} {
		if _, err := m.BuildInput("s7", p); err == nil || !strings.Contains(err.Error(), "s7") {
			t.Errorf("%+v: %v, want an error naming the sample", p, err)
		}
	}
	if len(m.MediaTokens().Placeholders["image"]) != 1 || m.PlaceholderKind(0) != "image" {
		t.Errorf("MediaTokens %+v: want token 0 as the image placeholder", m.MediaTokens())
	}
}

// Configs the code cannot run (or this port does not) fail at load, naming the key.
func TestMPLUGOwl2ConfigErrors(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(owlTinyConfig, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		sub, key string
		v        any
		msg      string
	}{
		{"visual_abstractor", "encoder_hidden_size", 8, "encoder_hidden_size"},
		{"visual_abstractor", "grid_size", 3, "grid_size"},
		{"visual_abstractor", "add_v2t_pos_emb", true, "add_v2t_pos_emb"},
		{"visual_model", "use_cls_token", false, "use_cls_token"},
		{"visual_model", "num_attention_heads", 3, "num_attention_heads"},
		{"visual_model", "hidden_act", "tanh", "hidden_act"},
		{"", "image_aspect_ratio", 3, "image_aspect_ratio"},
	} {
		var cfg map[string]any
		json.Unmarshal(raw, &cfg)
		if c.sub == "" {
			cfg[c.key] = c.v
		} else {
			cfg["visual_config"].(map[string]any)[c.sub].(map[string]any)[c.key] = c.v
		}
		j, _ := json.Marshal(cfg)
		dir := filepath.Join(t.TempDir(), "bad")
		cp := filepath.Join(t.TempDir(), "config.json")
		if err := os.WriteFile(cp, j, 0o644); err != nil {
			t.Fatal(err)
		}
		err := synth.Generate(cp, dir, synth.Options{DType: safetensors.F32})
		if err == nil {
			var m *Model
			if m, err = Open(dir); err == nil {
				m.Close()
			}
		}
		if err == nil || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%s.%s = %v: %v, want an error naming %q", c.sub, c.key, c.v, err, c.msg)
		}
	}
}

// At the reconstructed config's abstractor defaults (64 learnable queries: the shrunk
// visual_config below leaves num_learnable_queries out), an image is 65 decoder rows, all of
// them visual: the forward takes a run of exactly 65 placeholders and refuses 64.
func TestMPLUGOwl2SixtyFiveRows(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "owl65")
	set := map[string]any{
		"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 4, "num_key_value_heads": 4,
		"visual_config": map[string]any{
			"visual_model": map[string]any{"hidden_size": 16, "num_attention_heads": 2, "intermediate_size": 16, "num_hidden_layers": 1,
				"image_size": 16, "patch_size": 4, "hidden_act": "quick_gelu"},
			"visual_abstractor": map[string]any{"hidden_size": 16, "encoder_hidden_size": 16, "num_attention_heads": 2,
				"intermediate_size": 16, "num_hidden_layers": 1, "grid_size": 4},
		},
	}
	if err := synth.Generate(owlConfig, dir, synth.Options{DType: safetensors.BF16, Seed: 2, Std: 0.3, Set: set}); err != nil {
		t.Fatal(err)
	}
	m, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	feats := make([]float32, 16*48)
	for i := range feats {
		feats[i] = float32(i%13) / 13
	}
	md := Media{Kind: "image", Rows: 16, Features: feats}
	emb, err := m.encoders[0].encode(ctx, 0, md, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(emb) != 65*32 {
		t.Fatalf("the image is %d rows, want 65", len(emb)/32)
	}
	for _, n := range []int{65, 64} {
		toks := slices.Concat([]int32{1, 400}, slices.Repeat([]int32{0}, n), []int32{401})
		_, err := m.ForwardInputs(ctx, []Input{{Tokens: toks, Media: []Media{md}}}, ForwardOptions{})
		if (err == nil) != (n == 65) {
			t.Errorf("a run of %d placeholders: %v", n, err)
		}
	}
}

// tokenizer_image_token on any text: as many IMAGE_TOKEN_INDEX as markers, every other id a
// vocabulary id, and the text between markers tokenized apart.
func FuzzMPLUGOwl2ImageTokens(f *testing.F) {
	for _, s := range []string{"USER: <|image|>a cat ASSISTANT:", "<|image|>", "<|image|><|image|>x", "", "a <|image", "<|image|>\x00é"} {
		f.Add(s)
	}
	dir := filepath.Join(f.TempDir(), "owl")
	if err := synth.Generate(owlTinyConfig, dir, synth.Options{DType: safetensors.F32, Seed: 1}); err != nil {
		f.Fatal(err)
	}
	m, err := Open(dir)
	if err != nil {
		f.Fatal(err)
	}
	e := m.encoders[0].(*mplugOwl2Image)
	f.Fuzz(func(t *testing.T, s string) {
		ids, err := e.imageTokenIDs(m.Tokenizer, s, 0)
		if err != nil {
			return
		}
		n := 0
		for _, id := range ids {
			switch {
			case id == -200:
				n++
			case id < 0 || int(id) >= m.cfg.Vocab:
				t.Fatalf("%q: id %d", s, id)
			}
		}
		if want := strings.Count(s, mplugOwl2Marker); n != want {
			t.Fatalf("%q: %d image indices for %d markers", s, n, want)
		}
	})
}
