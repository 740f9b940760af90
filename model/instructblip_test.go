package model_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/png"
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
	"github.com/neurosurg/neurosurg/model"
	"github.com/neurosurg/neurosurg/model/kernels"
	"github.com/neurosurg/neurosurg/model/synth"
)

const instructBLIPConfig = "../testdata/configs/instructblip-tiny"

// instructBLIP synthesises the shrunk InstructBLIP checkpoint (the reconstructed
// instructblip-vicuna-7b config with small sizes: 2 vision layers, 3 Q-Former layers with
// cross-attention in 0 and 2, 4 queries, a 2-layer Llama) and opens it.
func instructBLIP(t *testing.T, dt safetensors.DType, shard int64, set map[string]any) (*model.Model, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "ib")
	if err := synth.Generate(instructBLIPConfig, dir, synth.Options{DType: dt, Seed: 7, Std: 0.3, ShardSize: shard, Set: set}); err != nil {
		t.Fatal(err)
	}
	m, err := model.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m, dir
}

// writePicture writes a w×h PNG gradient.
func writePicture(t *testing.T, path string, w, h, seed int) {
	t.Helper()
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			img.Set(x, y, color.NRGBA{uint8(23*x + 7*seed), uint8(31*y + 3*seed), uint8(250 - 9*x - 13*y + seed), 255})
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

// activations collects every FFN event's activations per site (copied).
type activations map[model.Site][]float32

func (a activations) FFN(e *model.FFNEvent) { a[e.Site] = append(a[e.Site], e.Act...) }

// ibRef is an independent float64 InstructBLIP forward written from transformers'
// modeling_instructblip.py, reading the checkpoint's tensors by their names.
type ibRef struct {
	t   *testing.T
	c   *hfdir.Checkpoint
	act map[model.Site][]float64 // FFN activations per site, as the taps see them
}

func (r *ibRef) get(name string) []float64 {
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

// linear is x·Wᵀ + b over rows rows (nn.Linear).
func (r *ibRef) linear(x []float64, rows int, name string) []float64 {
	w, b := r.get(name+".weight"), r.get(name+".bias")
	out := len(b)
	in := len(w) / out
	y := make([]float64, rows*out)
	for i := 0; i < rows; i++ {
		for o := 0; o < out; o++ {
			s := b[o]
			for k := 0; k < in; k++ {
				s += w[o*in+k] * x[i*in+k]
			}
			y[i*out+o] = s
		}
	}
	return y
}

func (r *ibRef) layerNorm(x []float64, rows int, name string, eps float64) []float64 {
	w, b := r.get(name+".weight"), r.get(name+".bias")
	d := len(w)
	y := make([]float64, len(x))
	for i := 0; i < rows; i++ {
		row := x[i*d : (i+1)*d]
		var mean, v float64
		for _, a := range row {
			mean += a
		}
		mean /= float64(d)
		for _, a := range row {
			v += (a - mean) * (a - mean)
		}
		v /= float64(d)
		for k, a := range row {
			y[i*d+k] = (a-mean)/math.Sqrt(v+eps)*w[k] + b[k]
		}
	}
	return y
}

// attend is softmax(q kᵀ/√hd) v per head: nq query rows over nk key rows, width d.
func attend(q, k, v []float64, nq, nk, d, heads int) []float64 {
	hd := d / heads
	out := make([]float64, nq*d)
	for h := 0; h < heads; h++ {
		for i := 0; i < nq; i++ {
			w := make([]float64, nk)
			mx := math.Inf(-1)
			for j := 0; j < nk; j++ {
				for e := 0; e < hd; e++ {
					w[j] += q[i*d+h*hd+e] * k[j*d+h*hd+e]
				}
				w[j] /= math.Sqrt(float64(hd))
				mx = math.Max(mx, w[j])
			}
			var z float64
			for j := range w {
				w[j] = math.Exp(w[j] - mx)
				z += w[j]
			}
			for j := 0; j < nk; j++ {
				for e := 0; e < hd; e++ {
					out[i*d+h*hd+e] += w[j] / z * v[j*d+h*hd+e]
				}
			}
		}
	}
	return out
}

func gelu(x []float64) {
	for i, a := range x {
		x[i] = 0.5 * a * (1 + math.Erf(a/math.Sqrt2))
	}
}

func add(x, y []float64) []float64 {
	out := make([]float64, len(x))
	for i := range x {
		out[i] = x[i] + y[i]
	}
	return out
}

// vision is InstructBlipVisionModel: Conv2d patches of the channel-first picture, class token,
// positions, pre-LN layers with the fused qkv (reshape(…, 3, heads, head_dim)), post_layernorm.
func (r *ibRef) vision(pix []float64, side, p, d, heads, layers int) ([]float64, int) {
	g := side / p
	V := g*g + 1
	w, b := r.get("vision_model.embeddings.patch_embedding.weight"), r.get("vision_model.embeddings.patch_embedding.bias")
	x := make([]float64, V*d)
	copy(x, r.get("vision_model.embeddings.class_embedding"))
	for gy := 0; gy < g; gy++ {
		for gx := 0; gx < g; gx++ {
			row := x[(1+gy*g+gx)*d:]
			for o := 0; o < d; o++ {
				s := b[o]
				for c := 0; c < 3; c++ {
					for ky := 0; ky < p; ky++ {
						for kx := 0; kx < p; kx++ {
							s += w[((o*3+c)*p+ky)*p+kx] * pix[(c*side+gy*p+ky)*side+gx*p+kx]
						}
					}
				}
				row[o] = s
			}
		}
	}
	x = add(x, r.get("vision_model.embeddings.position_embedding"))
	for l := 0; l < layers; l++ {
		pre := fmt.Sprintf("vision_model.encoder.layers.%d.", l)
		qkv := r.linear(r.layerNorm(x, V, pre+"layer_norm1", 1e-6), V, pre+"self_attn.qkv")
		q, k, v := make([]float64, V*d), make([]float64, V*d), make([]float64, V*d)
		for i := 0; i < V; i++ {
			copy(q[i*d:], qkv[i*3*d:i*3*d+d])
			copy(k[i*d:], qkv[i*3*d+d:i*3*d+2*d])
			copy(v[i*d:], qkv[i*3*d+2*d:i*3*d+3*d])
		}
		x = add(x, r.linear(attend(q, k, v, V, V, d, heads), V, pre+"self_attn.projection"))
		h := r.linear(r.layerNorm(x, V, pre+"layer_norm2", 1e-6), V, pre+"mlp.fc1")
		gelu(h)
		r.act[model.Site{Module: "vision", Layer: l}] = h
		x = add(x, r.linear(h, V, pre+"mlp.fc2"))
	}
	return r.layerNorm(x, V, "vision_model.post_layernorm", 1e-6), V
}

// qformer is InstructBlipQFormerModel over [queries; ids] with the image features, returning
// the projected query outputs (language_projection).
func (r *ibRef) qformer(img []float64, V, vd int, ids []int32, Q, d, heads, layers, freq int) []float64 {
	T := len(ids)
	n := Q + T
	words, pos := r.get("qformer.embeddings.word_embeddings.weight"), r.get("qformer.embeddings.position_embeddings.weight")
	x := make([]float64, n*d)
	copy(x, r.get("query_tokens"))
	for t, id := range ids {
		for e := 0; e < d; e++ {
			x[(Q+t)*d+e] = words[int(id)*d+e] + pos[t*d+e]
		}
	}
	const eps = 1e-12
	x = r.layerNorm(x, n, "qformer.embeddings.layernorm", eps)
	for l := 0; l < layers; l++ {
		pre := fmt.Sprintf("qformer.encoder.layer.%d.", l)
		q, k, v := r.linear(x, n, pre+"attention.attention.query"), r.linear(x, n, pre+"attention.attention.key"), r.linear(x, n, pre+"attention.attention.value")
		a := r.layerNorm(add(r.linear(attend(q, k, v, n, n, d, heads), n, pre+"attention.output.dense"), x), n, pre+"attention.output.LayerNorm", eps)
		qa, ta := a[:Q*d], a[Q*d:]
		if l%freq == 0 {
			cq := r.linear(qa, Q, pre+"crossattention.attention.query")
			ck, cv := r.linear(img, V, pre+"crossattention.attention.key"), r.linear(img, V, pre+"crossattention.attention.value")
			qa = r.layerNorm(add(r.linear(attend(cq, ck, cv, Q, V, d, heads), Q, pre+"crossattention.output.dense"), qa), Q, pre+"crossattention.output.LayerNorm", eps)
		}
		hq := r.linear(qa, Q, pre+"intermediate_query.dense")
		gelu(hq)
		r.act[model.Site{Module: "query", Layer: l}] = hq
		xq := r.layerNorm(add(r.linear(hq, Q, pre+"output_query.dense"), qa), Q, pre+"output_query.LayerNorm", eps)
		ht := r.linear(ta, T, pre+"intermediate.dense")
		gelu(ht)
		r.act[model.Site{Module: "qformer", Layer: l}] = ht
		xt := r.layerNorm(add(r.linear(ht, T, pre+"output.dense"), ta), T, pre+"output.LayerNorm", eps)
		x = append(xq, xt...)
	}
	return r.linear(x[:Q*d], Q, "language_projection")
}

// The whole model against the float64 port of transformers' forward on the same files, under
// the f32-exact kernels: logits at every position to 1e-4 (relative to the logit scale), and
// the FFN activations of every vision, query and qformer layer (what record's statistics are
// made of: firing probability exact, mean and max to 1e-4).
func TestInstructBLIPMatchesReference(t *testing.T) {
	prev := kernels.Use(exactVariant())
	defer kernels.Use(prev)
	for _, c := range []struct {
		dt    safetensors.DType
		shard int64
	}{{safetensors.F32, 40000}, {safetensors.BF16, 0}} {
		t.Run(string(c.dt), func(t *testing.T) {
			m, dir := instructBLIP(t, c.dt, c.shard, nil)
			ck, err := hfdir.Open(dir)
			if err != nil {
				t.Fatal(err)
			}
			defer ck.Close()
			if c.shard > 0 && len(ck.ShardNames) < 2 {
				t.Fatalf("%d shards, want several", len(ck.ShardNames))
			}
			pic := filepath.Join(t.TempDir(), "pic.png")
			writePicture(t, pic, 13, 9, 1)
			const text = "What is in the picture?"
			in, err := m.BuildInput("s1", model.Prompt{Text: text, Media: []model.Medium{{Kind: "image", Paths: []string{pic}}}})
			if err != nil {
				t.Fatal(err)
			}
			acts := activations{}
			res, err := m.ForwardInputs(context.Background(), []model.Input{in}, model.ForwardOptions{AllLogits: true, Taps: []model.Tap{acts}})
			if err != nil {
				t.Fatal(err)
			}
			// The reference reads the picture through the processor itself (channel-first
			// pixel values, as BlipImageProcessor returns them) and convolves it.
			proc, err := imageproc.LoadCLIPConfig(filepath.Join(dir, "preprocessor_config.json"))
			if err != nil {
				t.Fatal(err)
			}
			rgb, err := imageproc.DecodeFile(pic, imageproc.DecodeOptions{})
			if err != nil {
				t.Fatal(err)
			}
			chw, _, _, err := proc.Preprocess(rgb)
			if err != nil {
				t.Fatal(err)
			}
			pix := make([]float64, len(chw))
			for i, v := range chw {
				pix[i] = float64(v)
			}
			ref := &ibRef{t: t, c: ck, act: map[model.Site][]float64{}}
			img, V := ref.vision(pix, 8, 4, 16, 2, 2)
			proj := ref.qformer(img, V, 16, in.Media[0].Text, 4, 24, 2, 3, 2)
			cfg := m.Config()
			want := refForwardEmbeds(t, ck, cfg, "language_model.", func(emb []float64) [][]float64 {
				x := make([][]float64, len(in.Tokens))
				for p, id := range in.Tokens {
					if p < 4 {
						x[p] = slices.Clone(proj[p*cfg.Hidden : (p+1)*cfg.Hidden])
					} else {
						x[p] = slices.Clone(emb[int(id)*cfg.Hidden : (int(id)+1)*cfg.Hidden])
					}
				}
				return x
			})
			worst, scale := 0.0, 0.0
			for p := range want {
				for j, w := range want[p] {
					worst = math.Max(worst, math.Abs(float64(res.Logits[0][p*cfg.Vocab+j])-w))
					scale = math.Max(scale, math.Abs(w))
				}
			}
			t.Logf("logits: max abs diff %.3g (scale %.3g) over %d positions", worst, scale, len(want))
			if worst > 1e-4 {
				t.Errorf("logits differ from the reference by %g", worst)
			}
			if len(ref.act) != 8 {
				t.Fatalf("reference sites %d, want 8", len(ref.act))
			}
			for site, w := range ref.act {
				got := acts[site]
				if len(got) != len(w) {
					t.Errorf("%v: %d activations, reference %d", site, len(got), len(w))
					continue
				}
				var diff, meanG, meanW, maxG, maxW float64
				fireG, fireW := 0, 0
				maxG, maxW = math.Inf(-1), math.Inf(-1)
				for i := range w {
					g := float64(got[i])
					diff = math.Max(diff, math.Abs(g-w[i]))
					meanG, meanW = meanG+g, meanW+w[i]
					maxG, maxW = math.Max(maxG, g), math.Max(maxW, w[i])
					if g > 0 {
						fireG++
					}
					if w[i] > 0 {
						fireW++
					}
				}
				n := float64(len(w))
				if diff > 1e-4 || math.Abs(meanG-meanW)/n > 1e-4 || math.Abs(maxG-maxW) > 1e-4 || fireG != fireW {
					t.Errorf("%v: activations differ by %g; mean %g vs %g, max %g vs %g, firing %d vs %d", site, diff, meanG/n, meanW/n, maxG, maxW, fireG, fireW)
				}
			}
		})
	}
}

// The sites and row counts the taps see: every vision layer over the class token and the
// patches, every Q-Former layer's query path over the queries and its text path over the
// instruction's tokens, the language model over the whole prompt; the projector is one Linear
// and has no neurons.
func TestInstructBLIPSites(t *testing.T) {
	m, dir := instructBLIP(t, safetensors.F32, 0, nil)
	var sites []string
	for _, s := range m.FFNSites() {
		sites = append(sites, fmt.Sprintf("%s.%d", s.Module, s.Layer))
	}
	if want := "vision.0 vision.1 qformer.0 qformer.1 qformer.2 query.0 query.1 query.2 llm.0 llm.1"; strings.Join(sites, " ") != want {
		t.Errorf("sites %v, want %s", sites, want)
	}
	pic := filepath.Join(dir, "pic.png")
	writePicture(t, pic, 20, 20, 2)
	in, err := m.BuildInput("s1", model.Prompt{Text: "describe this photo", Media: []model.Medium{{Kind: "image", Paths: []string{pic}}}})
	if err != nil {
		t.Fatal(err)
	}
	rows := map[model.Site]int{}
	tap := siteRows(rows)
	if _, err := m.ForwardInputs(context.Background(), []model.Input{in}, model.ForwardOptions{Taps: []model.Tap{tap}}); err != nil {
		t.Fatal(err)
	}
	T := len(in.Media[0].Text) // [CLS] describe this photo [SEP]
	for s, n := range rows {
		want := map[string]int{"vision": 5, "query": 4, "qformer": T, "llm": len(in.Tokens)}[s.Module]
		if n != want {
			t.Errorf("%v: %d rows, want %d", s, n, want)
		}
	}
	if T != 5 || len(rows) != 10 {
		t.Errorf("Q-Former tokens %v, %d sites", in.Media[0].Text, len(rows))
	}
}

type siteRows map[model.Site]int

func (r siteRows) FFN(e *model.FFNEvent) { r[e.Site] += e.Rows }

// The prompt: [4 query placeholders][BOS text] for the language model (the pad id, the last
// row of the legacy vocabulary; image_token_index where the config has one), the same text
// in the Q-Former's vocabulary ([CLS] … [SEP]); no chat template; one image.
func TestInstructBLIPPrompt(t *testing.T) {
	m, dir := instructBLIP(t, safetensors.F32, 0, nil)
	pic := filepath.Join(dir, "pic.png")
	writePicture(t, pic, 8, 8, 3)
	img := []model.Medium{{Kind: "image", Paths: []string{pic}}}
	in, err := m.BuildInput("s1", model.Prompt{Text: "How many cats are on the table?", Media: img})
	if err != nil {
		t.Fatal(err)
	}
	text, err := m.BuildInput("s1", model.Prompt{Text: "How many cats are on the table?"})
	if err != nil {
		t.Fatal(err)
	}
	if text.Tokens[0] != 1 || len(text.Media) != 0 {
		t.Errorf("text prompt %v: want BOS first and no media", text.Tokens)
	}
	if want := slices.Concat([]int32{511, 511, 511, 511}, text.Tokens); !slices.Equal(in.Tokens, want) {
		t.Errorf("tokens %v, want %v", in.Tokens, want)
	}
	if m.PlaceholderKind(511) != "image" || m.PlaceholderKind(1) != "" {
		t.Errorf("placeholder kinds: 511 %q, 1 %q", m.PlaceholderKind(511), m.PlaceholderKind(1))
	}
	// how many cat ##s are on the table ? in the tiny vocabulary.
	if want := []int32{2, 30, 31, 18, 20, 32, 33, 8, 34, 10, 3}; !slices.Equal(in.Media[0].Text, want) {
		t.Errorf("Q-Former ids %v, want %v", in.Media[0].Text, want)
	}
	if in.Media[0].Rows != 4 || len(in.Media[0].Features) != 4*48 {
		t.Errorf("media %d rows, %d features", in.Media[0].Rows, len(in.Media[0].Features))
	}
	for _, c := range []struct {
		p   model.Prompt
		msg string
	}{
		{model.Prompt{Text: "x", Chat: true}, "no chat template"},
		{model.Prompt{Text: "x", Media: append(slices.Clone(img), img...)}, "one image per prompt"},
		{model.Prompt{Text: "x", Media: []model.Medium{{Kind: "audio", Paths: []string{pic}}}}, "audio"},
		{model.Prompt{Text: strings.Repeat("what ", 40), Media: img}, "42 Q-Former tokens, its position embeddings hold 32"},
	} {
		if _, err := m.BuildInput("s1", c.p); err == nil || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%+v: %v, want %q", c.p, err, c.msg)
		}
	}
	// A newer checkpoint's image_token_index: its runs carry the queries, and the forward is
	// the legacy one (the placeholder rows are replaced either way).
	mt, _ := instructBLIP(t, safetensors.F32, 0, map[string]any{"image_token_index": 7})
	in7, err := mt.BuildInput("s1", model.Prompt{Text: "How many cats are on the table?", Media: img})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(in7.Tokens[:5], []int32{7, 7, 7, 7, 1}) {
		t.Errorf("image_token_index prompt %v", in7.Tokens)
	}
	a, err := m.ForwardInputs(context.Background(), []model.Input{in}, model.ForwardOptions{AllLogits: true})
	if err != nil {
		t.Fatal(err)
	}
	b, err := mt.ForwardInputs(context.Background(), []model.Input{in7}, model.ForwardOptions{AllLogits: true})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(a.Logits[0], b.Logits[0]) {
		t.Error("legacy and image_token_index layouts give different logits")
	}
	// Elsewhere in the prompt, image_token_index runs take the queries where they are.
	moved := model.Input{Tokens: slices.Concat(in7.Tokens[4:6], in7.Tokens[:4], in7.Tokens[6:]), Media: in7.Media}
	if _, err := mt.ForwardInputs(context.Background(), []model.Input{moved}, model.ForwardOptions{}); err != nil {
		t.Errorf("image tokens after BOS: %v", err)
	}
	// Without the Q-Former's tokenizer an image prompt cannot be built.
	if err := os.RemoveAll(filepath.Join(dir, "qformer_tokenizer")); err != nil {
		t.Fatal(err)
	}
	m2, err := model.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer m2.Close()
	if _, err := m2.BuildInput("s1", model.Prompt{Text: "x", Media: img}); err == nil || !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "qformer_tokenizer/vocab.txt") {
		t.Errorf("no qformer_tokenizer: %v", err)
	}
}

// Bad configs are errors naming the key.
func TestInstructBLIPConfigErrors(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(instructBLIPConfig, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ from, to, msg string }{
		{`"model_type": "llama"`, `"model_type": "opt"`, "text_config.model_type"},
		{`"cross_attention_frequency": 2`, `"cross_attention_frequency": 0`, "cross_attention_frequency is 0"},
		{`"position_embedding_type": "absolute"`, `"position_embedding_type": "relative_key"`, "position_embedding_type"},
		{`"num_query_tokens": 4`, `"num_query_tokens": 4, "image_token_index": 600`, "image_token_index"},
		{`"hidden_act": "gelu",
    "hidden_dropout_prob"`, `"hidden_act": "tanh",
    "hidden_dropout_prob"`, "qformer_config.hidden_act"},
	} {
		cfg := strings.Replace(string(raw), c.from, c.to, 1)
		if cfg == string(raw) {
			t.Fatalf("%q not in the config", c.from)
		}
		dir := filepath.Join(t.TempDir(), "bad")
		err := synth.Generate(writeConfig(t, cfg), dir, synth.Options{DType: safetensors.F32})
		if err == nil {
			var m *model.Model
			m, err = model.Open(dir)
			if err == nil {
				m.Close()
			}
		}
		if err == nil || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%s: %v, want an error naming %q", c.to, err, c.msg)
		}
	}
}

func writeConfig(t *testing.T, cfg string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config.json")
	if err := os.WriteFile(p, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// A runtime mask on a neuron of each image-path module gives the logits of the checkpoint
// whose output weight has that neuron's column zeroed: output_query.dense for "query",
// output.dense for "qformer", fc2 for "vision".
func TestInstructBLIPMaskEqualsWeightEdit(t *testing.T) {
	m, dir := instructBLIP(t, safetensors.F32, 0, nil)
	pic := filepath.Join(dir, "pic.png")
	writePicture(t, pic, 11, 7, 4)
	in, err := m.BuildInput("s1", model.Prompt{Text: "what is in the image?", Media: []model.Medium{{Kind: "image", Paths: []string{pic}}}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	plain, err := m.ForwardInputs(ctx, []model.Input{in}, model.ForwardOptions{AllLogits: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		site    model.Site
		j       int
		tensor  string
		neurons int
	}{
		{model.Site{Module: "query", Layer: 1}, 5, "qformer.encoder.layer.1.output_query.dense.weight", 48},
		{model.Site{Module: "query", Layer: 2}, 0, "qformer.encoder.layer.2.output_query.dense.weight", 48},
		{model.Site{Module: "qformer", Layer: 0}, 11, "qformer.encoder.layer.0.output.dense.weight", 48},
		{model.Site{Module: "vision", Layer: 1}, 3, "vision_model.encoder.layers.1.mlp.fc2.weight", 40},
	} {
		mask := model.NewMask()
		mask.Set(c.site, c.j, 0)
		masked, err := m.ForwardInputs(ctx, []model.Input{in}, model.ForwardOptions{Mask: mask, AllLogits: true})
		if err != nil {
			t.Fatal(err)
		}
		ck, err := hfdir.Open(dir)
		if err != nil {
			t.Fatal(err)
		}
		info, b, err := ck.Tensor(c.tensor)
		if err != nil {
			t.Fatal(err)
		}
		edited := slices.Clone(b)
		for r := 0; r < int(info.Shape[0]); r++ {
			clear(edited[(r*c.neurons+c.j)*4 : (r*c.neurons+c.j+1)*4])
		}
		me, err := model.Load(ck.ConfigJSON, replaced{ck, map[string][]byte{c.tensor: edited}})
		if err != nil {
			t.Fatal(err)
		}
		edit, err := me.ForwardInputs(ctx, []model.Input{in}, model.ForwardOptions{AllLogits: true})
		if err != nil {
			t.Fatal(err)
		}
		worst := 0.0
		for i := range edit.Logits[0] {
			worst = math.Max(worst, math.Abs(float64(edit.Logits[0][i]-masked.Logits[0][i])))
		}
		if worst > 1e-6 {
			t.Errorf("%v neuron %d: mask and weight edit differ by %g", c.site, c.j, worst)
		}
		if slices.Equal(masked.Logits[0], plain.Logits[0]) {
			t.Errorf("%v neuron %d: the mask changed nothing", c.site, c.j)
		}
		ck.Close()
	}
}

// BenchmarkInstructBLIPImage: one image through the real-shaped image path of
// instructblip-vicuna-7b — the EVA ViT-g tower (39 layers, 1408 wide, 257 rows), the 12-layer
// Q-Former over 32 queries and a 10-token instruction, the projection — in BF16, with a
// 2-layer stand-in language model (the checkpoint is ~2.2 GB; it is synthesised first).
func BenchmarkInstructBLIPImage(b *testing.B) {
	cfg, err := os.ReadFile("../testdata/configs/instructblip-vicuna-7b-RECONSTRUCTED/config.json")
	if err != nil {
		b.Fatal(err)
	}
	src := filepath.Join(b.TempDir(), "cfg")
	if err := os.MkdirAll(src, 0o755); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "config.json"), cfg, 0o644); err != nil {
		b.Fatal(err)
	}
	dir := filepath.Join(b.TempDir(), "ib")
	text := map[string]any{"model_type": "llama", "hidden_size": 4096, "intermediate_size": 64, "num_hidden_layers": 2,
		"num_attention_heads": 32, "vocab_size": 64, "max_position_embeddings": 2048}
	if err := synth.Generate(src, dir, synth.Options{DType: safetensors.BF16, Seed: 1, Std: 0.02, Set: map[string]any{"text_config": text}}); err != nil {
		b.Fatal(err)
	}
	m, err := model.Open(dir)
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	feat := make([]float32, 256*3*14*14)
	for i := range feat {
		feat[i] = float32(math.Sin(float64(i) * 0.01))
	}
	qids := []int32{101, 2054, 2003, 5866, 2055, 2023, 3746, 1029, 102, 0}
	toks := make([]int32, 32+5)
	for i := range 32 {
		toks[i] = 63 // the legacy placeholder: the last vocabulary row
	}
	in := model.Input{Tokens: toks, Media: []model.Media{{Kind: "image", Rows: 256, Features: feat, Text: qids}}}
	for b.Loop() {
		if _, err := m.ForwardInputs(context.Background(), []model.Input{in}, model.ForwardOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/image")
}
