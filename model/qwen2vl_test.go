package model

import (
	"context"
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
)

// qwen2VLConfigDir is the real Qwen2-VL-2B-Instruct config shrunk (2 vision blocks of 32, 2
// decoder layers of 32, mrope_section 16:24:24 scaled to 2:3:3) with the real token ids,
// patch sizes, processor config and tokenizer.
const qwen2VLConfigDir = "../testdata/configs/qwen2-vl-tiny"

// qwen2VL synthesises the shrunk checkpoint in dt (sharded when shard > 0) and opens it.
func qwen2VL(t *testing.T, dt safetensors.DType, shard int64) (*Model, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "q2vl")
	if err := synth.Generate(qwen2VLConfigDir, dir, synth.Options{DType: dt, Seed: 11, Std: 0.2, ShardSize: shard}); err != nil {
		t.Fatal(err)
	}
	if shard > 0 {
		if _, err := os.Stat(filepath.Join(dir, hfdir.IndexFile)); err != nil {
			t.Fatalf("sharded synth wrote no index: %v", err)
		}
	}
	m, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m, dir
}

const (
	q2Start, q2End, q2Image, q2Video = 151652, 151653, 151655, 151656
)

// get_rope_index on hand-built sequences whose answers are worked out in the comments.
func TestQwen2VLRopeIndex(t *testing.T) {
	const S, E, I, V, T = q2Start, q2End, q2Image, q2Video, 100
	rep := func(id int32, n int) []int32 { return slices.Repeat([]int32{id}, n) }
	for _, c := range []struct {
		name     string
		toks     []int32
		img, vid [][3]int
		want     [3][]int32
	}{
		// Text only (no grids): 0..n-1 on every axis.
		{"text", []int32{T, T, T}, nil, nil, [3][]int32{{0, 1, 2}, {0, 1, 2}, {0, 1, 2}}},
		// T S [1×4×4 → 1×2×2] E T: text 0,1; vision at 2 + (t, h, w); then max 3 + 1.
		{"image", slices.Concat([]int32{T, S}, rep(I, 4), []int32{E, T}), [][3]int{{1, 4, 4}}, nil, [3][]int32{
			{0, 1, 2, 2, 2, 2, 4, 5}, {0, 1, 2, 2, 3, 3, 4, 5}, {0, 1, 2, 3, 2, 3, 4, 5}}},
		// S [video 2×4×4 → 2×2×2] E: the temporal index is the frame pair's.
		{"video", slices.Concat([]int32{S}, rep(V, 8), []int32{E}), nil, [][3]int{{2, 4, 4}}, [3][]int32{
			{0, 1, 1, 1, 1, 2, 2, 2, 2, 3}, {0, 1, 1, 2, 2, 1, 1, 2, 2, 3}, {0, 1, 2, 1, 2, 1, 2, 1, 2, 3}}},
		// S [1×4×4] E S [1×2×4 → 1×1×2] E T: the second image's text starts at 3, its grid at 5.
		{"two images", slices.Concat([]int32{S}, rep(I, 4), []int32{E, S}, rep(I, 2), []int32{E, T}), [][3]int{{1, 4, 4}, {1, 2, 4}}, nil, [3][]int32{
			{0, 1, 1, 1, 1, 3, 4, 5, 5, 7, 8}, {0, 1, 1, 2, 2, 3, 4, 5, 5, 7, 8}, {0, 1, 2, 1, 2, 3, 4, 5, 6, 7, 8}}},
		// Video before image, both kinds: S [V 1×2×2 → 1 token] E S [I 1×2×2] E.
		{"video then image", []int32{S, V, E, S, I, E}, [][3]int{{1, 2, 2}}, [][3]int{{1, 2, 2}}, [3][]int32{
			{0, 1, 2, 3, 4, 5}, {0, 1, 2, 3, 4, 5}, {0, 1, 2, 3, 4, 5}}},
	} {
		got, err := qwen2VLRopeIndex(c.toks, c.img, c.vid, 2, S, I, V)
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if want := slices.Concat(c.want[0], c.want[1], c.want[2]); !slices.Equal(got, want) {
			t.Errorf("%s:\n got %v\nwant %v", c.name, got, want)
		}
	}
	// A run shorter than its grid, or more vision runs than grids, is an error.
	if _, err := qwen2VLRopeIndex([]int32{S, I, I, E}, [][3]int{{1, 4, 4}}, nil, 2, S, I, V); err == nil {
		t.Error("2 tokens for a 4-token grid: no error")
	}
	if _, err := qwen2VLRopeIndex([]int32{S, I, E, S, I, E}, [][3]int{{1, 2, 2}}, nil, 2, S, I, V); err == nil {
		t.Error("two images, one grid: no error")
	}
}

// q2ref is an independent float64 reading of transformers' Qwen2-VL forward
// (modeling_qwen2_vl.py) on the checkpoint's files: nothing of the runtime's layers.
type q2ref struct {
	t     *testing.T
	c     *hfdir.Checkpoint
	edits map[string]func([]float64) // applied to a tensor as it is read (weight-edit equivalence)
}

func (r *q2ref) get(name string) []float64 {
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
	if e := r.edits[name]; e != nil {
		e(out)
	}
	return out
}

// linear is x·Wᵀ + b for rows rows (no bias when bias is "").
func (r *q2ref) linear(x []float64, rows int, weight, bias string) []float64 {
	w := r.get(weight)
	var b []float64
	if bias != "" {
		b = r.get(bias)
	}
	in := len(x) / rows
	out := len(w) / in
	y := make([]float64, rows*out)
	for i := range rows {
		for o := range out {
			s := 0.0
			if b != nil {
				s = b[o]
			}
			for k := range in {
				s += w[o*in+k] * x[i*in+k]
			}
			y[i*out+o] = s
		}
	}
	return y
}

func (r *q2ref) layerNorm(x []float64, rows int, name string, eps float64) []float64 {
	w, b := r.get(name+".weight"), r.get(name+".bias")
	d := len(w)
	y := make([]float64, len(x))
	for i := range rows {
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
		for j, a := range row {
			y[i*d+j] = (a-mean)/math.Sqrt(v+eps)*w[j] + b[j]
		}
	}
	return y
}

func (r *q2ref) rmsNorm(x []float64, rows int, name string, eps float64) []float64 {
	w := r.get(name)
	d := len(w)
	y := make([]float64, len(x))
	for i := range rows {
		var ss float64
		for _, a := range x[i*d : (i+1)*d] {
			ss += a * a
		}
		s := 1 / math.Sqrt(ss/float64(d)+eps)
		for j := range d {
			y[i*d+j] = x[i*d+j] * s * w[j]
		}
	}
	return y
}

// rotateHalf applies q·cos + rotate_half(q)·sin to one head vector.
func rotateHalf(v, cos, sin []float64) {
	h := len(v) / 2
	out := make([]float64, len(v))
	for i := range v {
		var rot float64 // rotate_half: (-x2, x1)
		if i >= h {
			rot = v[i-h]
		} else {
			rot = -v[i+h]
		}
		out[i] = v[i]*cos[i] + rot*sin[i]
	}
	copy(v, out)
}

// attend is softmax(q·kᵀ/√hd)·v over the key rows keys(i) of query row i, per head (kv head
// h/group), rows × heads·hd out.
func attend(q, k, v []float64, rows, heads, kvHeads, hd int, keys func(i int) (int, int)) []float64 {
	out := make([]float64, rows*heads*hd)
	group := heads / kvHeads
	for h := range heads {
		kh := h / group
		for i := range rows {
			lo, hi := keys(i)
			w := make([]float64, hi-lo)
			mx := math.Inf(-1)
			for j := lo; j < hi; j++ {
				var dot float64
				for d := range hd {
					dot += q[(i*heads+h)*hd+d] * k[(j*kvHeads+kh)*hd+d]
				}
				w[j-lo] = dot / math.Sqrt(float64(hd))
				mx = max(mx, w[j-lo])
			}
			var sum float64
			for j := range w {
				w[j] = math.Exp(w[j] - mx)
				sum += w[j]
			}
			for j := lo; j < hi; j++ {
				for d := range hd {
					out[(i*heads+h)*hd+d] += w[j-lo] / sum * v[(j*kvHeads+kh)*hd+d]
				}
			}
		}
	}
	return out
}

// vision is Qwen2VisionTransformerPretrainedModel.forward on one medium's pixel rows.
func (r *q2ref) vision(pix []float32, grid [3]int, depth, embed, heads, merge int) []float64 {
	rows := grid[0] * grid[1] * grid[2]
	x64 := make([]float64, len(pix))
	for i, v := range pix {
		x64[i] = float64(v)
	}
	// PatchEmbed: the Conv3d over a [C, T, P, P] view of each row is its dot product with the
	// flattened kernel (TestQwen2VLPatchEmbedIsConv3d checks that against the convolution).
	x := r.linear(x64, rows, "visual.patch_embed.proj.weight", "")
	// rot_pos_emb: (h, w) of each row in merge-block order; angles concat(h·inv, w·inv).
	hd := embed / heads
	dim := hd / 2
	var cos, sin [][]float64
	for range grid[0] {
		for a := 0; a < grid[1]/merge; a++ {
			for b := 0; b < grid[2]/merge; b++ {
				for c := range merge {
					for d := range merge {
						hp, wp := float64(a*merge+c), float64(b*merge+d)
						var ang []float64
						for _, p := range []float64{hp, wp} {
							for i := 0; i < dim; i += 2 {
								ang = append(ang, p/math.Pow(10000, float64(i)/float64(dim)))
							}
						}
						ang = append(ang, ang...) // emb = cat(rotary, rotary)
						cr, sr := make([]float64, hd), make([]float64, hd)
						for i, a := range ang {
							cr[i], sr[i] = math.Cos(a), math.Sin(a)
						}
						cos, sin = append(cos, cr), append(sin, sr)
					}
				}
			}
		}
	}
	frame := grid[1] * grid[2] // cu_seqlens: one chunk per frame (temporal patch)
	for l := range depth {
		p := fmt.Sprintf("visual.blocks.%d.", l)
		xn := r.layerNorm(x, rows, p+"norm1", 1e-6)
		qkv := r.linear(xn, rows, p+"attn.qkv.weight", p+"attn.qkv.bias")
		q, k, v := make([]float64, rows*embed), make([]float64, rows*embed), make([]float64, rows*embed)
		for i := range rows {
			copy(q[i*embed:], qkv[i*3*embed:i*3*embed+embed])
			copy(k[i*embed:], qkv[i*3*embed+embed:i*3*embed+2*embed])
			copy(v[i*embed:], qkv[i*3*embed+2*embed:(i+1)*3*embed])
			for h := range heads {
				rotateHalf(q[i*embed+h*hd:i*embed+(h+1)*hd], cos[i], sin[i])
				rotateHalf(k[i*embed+h*hd:i*embed+(h+1)*hd], cos[i], sin[i])
			}
		}
		att := attend(q, k, v, rows, heads, heads, hd, func(i int) (int, int) { return i / frame * frame, (i/frame + 1) * frame })
		o := r.linear(att, rows, p+"attn.proj.weight", p+"attn.proj.bias")
		for i := range x {
			x[i] += o[i]
		}
		hid := r.linear(r.layerNorm(x, rows, p+"norm2", 1e-6), rows, p+"mlp.fc1.weight", p+"mlp.fc1.bias")
		for i, a := range hid {
			hid[i] = a / (1 + math.Exp(-1.702*a)) // quick_gelu
		}
		o = r.linear(hid, rows, p+"mlp.fc2.weight", p+"mlp.fc2.bias")
		for i := range x {
			x[i] += o[i]
		}
	}
	// PatchMerger: ln_q, view(-1, embed·merge²), Linear, GELU (erf), Linear.
	xn := r.layerNorm(x, rows, "visual.merger.ln_q", 1e-6)
	m := rows / (merge * merge)
	hid := r.linear(xn, m, "visual.merger.mlp.0.weight", "visual.merger.mlp.0.bias")
	for i, a := range hid {
		hid[i] = 0.5 * a * (1 + math.Erf(a/math.Sqrt2))
	}
	return r.linear(hid, m, "visual.merger.mlp.2.weight", "visual.merger.mlp.2.bias")
}

// logits is Qwen2VLForConditionalGeneration's forward: token embeddings with the vision rows
// scattered over the image (video) tokens, Qwen2 decoder layers with M-RoPE at pos (3×n),
// final norm, tied head. All rows' logits, n × vocab.
func (r *q2ref) logits(toks []int32, media []Media, pos []int32, cfg Config) []float64 {
	n, d := len(toks), cfg.Hidden
	emb := r.get("model.embed_tokens.weight")
	x := make([]float64, n*d)
	for i, id := range toks {
		copy(x[i*d:], emb[int(id)*d:int(id+1)*d])
	}
	for _, kind := range []string{"image", "video"} { // masked_scatter, images then videos
		tok := int32(q2Image)
		if kind == "video" {
			tok = q2Video
		}
		var rows []float64
		for _, md := range media {
			if md.Kind == kind {
				rows = append(rows, r.vision(md.Features, md.Grid, 2, 32, 2, 2)...)
			}
		}
		j := 0
		for i, id := range toks {
			if id == tok {
				copy(x[i*d:(i+1)*d], rows[j*d:(j+1)*d])
				j++
			}
		}
		if j*d != len(rows) {
			r.t.Fatalf("%s: %d tokens for %d rows", kind, j, len(rows)/d)
		}
	}
	heads, kvh, hd := cfg.Heads, cfg.KVHeads, cfg.HeadDim
	// M-RoPE: emb = cat(freqs, freqs) per axis; dims split by mrope_section·2, chunk i from
	// axis i mod 3 (apply_multimodal_rotary_pos_emb).
	sec := cfg.RopeScaling.MRopeSection
	axis := make([]int, 0, hd)
	for i, s := range slices.Concat(sec, sec) {
		for range s {
			axis = append(axis, i%3)
		}
	}
	cos, sin := make([][]float64, n), make([][]float64, n)
	for i := range n {
		cos[i], sin[i] = make([]float64, hd), make([]float64, hd)
		for dd := range hd {
			p := float64(i)
			if pos != nil {
				p = float64(pos[axis[dd]*n+i])
			}
			f := p / math.Pow(cfg.RopeTheta, float64(2*(dd%(hd/2)))/float64(hd))
			cos[i][dd], sin[i][dd] = math.Cos(f), math.Sin(f)
		}
	}
	for l := range cfg.Layers {
		p := fmt.Sprintf("model.layers.%d.", l)
		xn := r.rmsNorm(x, n, p+"input_layernorm.weight", 1e-6)
		q := r.linear(xn, n, p+"self_attn.q_proj.weight", p+"self_attn.q_proj.bias")
		k := r.linear(xn, n, p+"self_attn.k_proj.weight", p+"self_attn.k_proj.bias")
		v := r.linear(xn, n, p+"self_attn.v_proj.weight", p+"self_attn.v_proj.bias")
		for i := range n {
			for h := range heads {
				rotateHalf(q[(i*heads+h)*hd:(i*heads+h+1)*hd], cos[i], sin[i])
			}
			for h := range kvh {
				rotateHalf(k[(i*kvh+h)*hd:(i*kvh+h+1)*hd], cos[i], sin[i])
			}
		}
		att := attend(q, k, v, n, heads, kvh, hd, func(i int) (int, int) { return 0, i + 1 })
		o := r.linear(att, n, p+"self_attn.o_proj.weight", "")
		for i := range x {
			x[i] += o[i]
		}
		xn = r.rmsNorm(x, n, p+"post_attention_layernorm.weight", 1e-6)
		g := r.linear(xn, n, p+"mlp.gate_proj.weight", "")
		u := r.linear(xn, n, p+"mlp.up_proj.weight", "")
		for i := range g {
			g[i] = g[i] / (1 + math.Exp(-g[i])) * u[i]
		}
		o = r.linear(g, n, p+"mlp.down_proj.weight", "")
		for i := range x {
			x[i] += o[i]
		}
	}
	return r.linear(r.rmsNorm(x, n, "model.norm.weight", 1e-6), n, "model.embed_tokens.weight", "")
}

// q2Prompt writes a picture and a 3-frame clip and returns the chat prompt over both.
func q2Prompt(t *testing.T, dir string) Prompt {
	pic := filepath.Join(dir, "pic.png")
	writePNG(t, pic, 84, 56, 1) // smart_resize keeps 84×56: grid 1×4×6, 6 tokens
	frames := filepath.Join(dir, "clip")
	if err := os.Mkdir(frames, 0o755); err != nil {
		t.Fatal(err)
	}
	for i := range 3 { // 3 frames: the last repeated, grid 2×4×4, 8 tokens
		writePNG(t, filepath.Join(frames, fmt.Sprintf("f%02d.png", i)), 56, 56, 30*i)
	}
	return Prompt{Text: "Describe both.", Chat: true, Media: []Medium{{Kind: "image", Paths: []string{pic}}, {Kind: "video", Paths: []string{frames}}}}
}

// The whole model — vision tower, merger, decoder with M-RoPE — agrees with the float64
// reference to 1e-4 on every logit of an image + video chat prompt, for F32 (one file and
// sharded) and BF16 checkpoints, under the f32-exact kernels.
func TestQwen2VLMatchesReference(t *testing.T) {
	prev := kernels.Use(exactVariantInternal())
	defer kernels.Use(prev)
	for _, c := range []struct {
		dt    safetensors.DType
		shard int64
	}{{safetensors.F32, 0}, {safetensors.F32, 4 << 20}, {safetensors.BF16, 0}} {
		t.Run(fmt.Sprintf("%s-shard%d", c.dt, c.shard), func(t *testing.T) {
			m, dir := qwen2VL(t, c.dt, c.shard)
			in, err := m.BuildInput("s1", q2Prompt(t, t.TempDir()))
			if err != nil {
				t.Fatal(err)
			}
			if len(in.Positions) != 3*len(in.Tokens) {
				t.Fatalf("%d positions for %d tokens", len(in.Positions), len(in.Tokens))
			}
			res, err := m.ForwardInputs(context.Background(), []Input{in}, ForwardOptions{AllLogits: true})
			if err != nil {
				t.Fatal(err)
			}
			ck, err := hfdir.Open(dir)
			if err != nil {
				t.Fatal(err)
			}
			defer ck.Close()
			ref := (&q2ref{t: t, c: ck}).logits(in.Tokens, in.Media, in.Positions, m.Config())
			worst, scale := 0.0, 0.0
			for i, v := range ref {
				worst = max(worst, math.Abs(float64(res.Logits[0][i])-v))
				scale = max(scale, math.Abs(v))
			}
			t.Logf("%d tokens, logits up to %.3g, within %.2g of the reference", len(in.Tokens), scale, worst)
			if worst > 1e-4 || scale < 1e-3 {
				t.Errorf("logits differ from the reference by %g (largest %g)", worst, scale)
			}
		})
	}
}

// The patch embedding over the processor's rows is the Conv3d (stride = kernel) over the
// normalised frames: each output row is the convolution at its patch, rows in merge-block
// order.
func TestQwen2VLPatchEmbedIsConv3d(t *testing.T) {
	prev := kernels.Use(exactVariantInternal())
	defer kernels.Use(prev)
	m, dir := qwen2VL(t, safetensors.F32, 0)
	proc, err := imageproc.LoadQwen2VLConfig(filepath.Join(dir, "preprocessor_config.json"))
	if err != nil {
		t.Fatal(err)
	}
	const W, H, P, T, C = 56, 84, 14, 2, 3
	var frames []*imageproc.RGB
	for f := range T {
		img := imageproc.NewRGB(W, H)
		for i := range img.Pix {
			img.Pix[i] = uint8(i*7 + f*91 + i*i%13)
		}
		frames = append(frames, img)
	}
	px, err := proc.Patchify(frames)
	if err != nil {
		t.Fatal(err)
	}
	tw := m.encoders[0].(*qwen2VLEncoder).t
	got := make([]float32, px.Rows*tw.embed)
	tw.patch.Forward(got, px.Values, px.Rows)
	ck, _ := hfdir.Open(dir)
	defer ck.Close()
	w := (&q2ref{t: t, c: ck}).get("visual.patch_embed.proj.weight") // [E, C, T, P, P]
	vol := make([][]float32, T)                                      // per frame: CHW
	for f := range T {
		vol[f] = proc.Normalize.CHW(frames[f])
	}
	gw := W / P
	worst := 0.0
	for gy := range H / P {
		for gx := range gw {
			row := ((gy/2*(gw/2)+gx/2)*2+gy%2)*2 + gx%2 // merge-block order
			for o := range tw.embed {
				var s float64
				for c := range C {
					for f := range T {
						for i := range P {
							for j := range P {
								s += w[(((o*C+c)*T+f)*P+i)*P+j] * float64(vol[f][(c*H+gy*P+i)*W+gx*P+j])
							}
						}
					}
				}
				worst = max(worst, math.Abs(s-float64(got[row*tw.embed+o])))
			}
		}
	}
	if worst > 1e-4 {
		t.Errorf("patch embedding differs from the Conv3d by %g", worst)
	}
}

// Zeroing a vision or projector neuron with a runtime mask equals zeroing that column of
// fc2 / mlp.2 in the weights (the float64 reference with the column zeroed), and changes
// the logits.
func TestQwen2VLMaskEqualsWeightEdit(t *testing.T) {
	prev := kernels.Use(exactVariantInternal())
	defer kernels.Use(prev)
	m, dir := qwen2VL(t, safetensors.F32, 0)
	in, err := m.BuildInput("s1", q2Prompt(t, t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	ck, _ := hfdir.Open(dir)
	defer ck.Close()
	ctx := context.Background()
	plain, _ := m.ForwardInputs(ctx, []Input{in}, ForwardOptions{})
	for _, c := range []struct {
		site    Site
		j       int
		tensor  string
		neurons int
	}{
		{Site{"vision", 1}, 5, "visual.blocks.1.mlp.fc2.weight", 128},
		{Site{"vision", 0}, 127, "visual.blocks.0.mlp.fc2.weight", 128},
		{Site{"projector", 0}, 9, "visual.merger.mlp.2.weight", 128},
	} {
		mask := NewMask()
		mask.Set(c.site, c.j, 0)
		got, err := m.ForwardInputs(ctx, []Input{in}, ForwardOptions{Mask: mask, AllLogits: true})
		if err != nil {
			t.Fatal(err)
		}
		r := &q2ref{t: t, c: ck, edits: map[string]func([]float64){c.tensor: func(w []float64) {
			for row := 0; row < len(w)/c.neurons; row++ {
				w[row*c.neurons+c.j] = 0
			}
		}}}
		ref := r.logits(in.Tokens, in.Media, in.Positions, m.Config())
		worst := 0.0
		for i, v := range ref {
			worst = max(worst, math.Abs(float64(got.Logits[0][i])-v))
		}
		if worst > 1e-4 {
			t.Errorf("%v neuron %d: mask vs zeroed column differ by %g", c.site, c.j, worst)
		}
		last := got.Logits[0][len(got.Logits[0])-m.Config().Vocab:]
		if slices.Equal(last, plain.Logits[0]) {
			t.Errorf("%v neuron %d: the mask changed nothing", c.site, c.j)
		}
	}
}

// The prompt builder: the chat template's markup (or the markup before the text), each
// placeholder expanded to the processor's token count, text-only prompts with 1-D positions,
// and clear errors.
func TestQwen2VLPrompt(t *testing.T) {
	m, dir := qwen2VL(t, safetensors.BF16, 0)
	proc, err := imageproc.LoadQwen2VLConfig(filepath.Join(dir, "preprocessor_config.json"))
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	for _, size := range [][2]int{{56, 56}, {100, 60}, {300, 200}, {30, 500}, {17, 29}} {
		pic := filepath.Join(tmp, fmt.Sprintf("p%dx%d.png", size[0], size[1]))
		writePNG(t, pic, size[0], size[1], 3)
		img, err := imageproc.DecodeFile(pic, imageproc.DecodeOptions{})
		if err != nil {
			t.Fatal(err)
		}
		px, err := proc.Image(img)
		if err != nil {
			t.Fatal(err)
		}
		want := px.Tokens(2)
		for _, chat := range []bool{false, true} {
			in, err := m.BuildInput("s", Prompt{Text: "What is it?", Chat: chat, Media: []Medium{{Kind: "image", Paths: []string{pic}}}})
			if err != nil {
				t.Fatal(err)
			}
			pads := strings.Repeat("<|image_pad|>", want)
			text := "<|vision_start|>" + pads + "<|vision_end|>What is it?"
			if chat {
				text = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n" + text + "<|im_end|>\n<|im_start|>assistant\n"
			}
			ids, _ := m.Tokenizer.Encode(text, false)
			if !slices.Equal(in.Tokens, ids) {
				t.Errorf("%v chat %v: tokens\n%q\nwant\n%q", size, chat, m.Tokenizer.Decode(in.Tokens), text)
			}
			if len(in.Media) != 1 || in.Media[0].Grid != px.GridTHW || in.Media[0].Rows != px.Rows {
				t.Errorf("%v: media %v rows %d, processor grid %v rows %d", size, in.Media[0].Grid, in.Media[0].Rows, px.GridTHW, px.Rows)
			}
			if len(in.Positions) != 3*len(in.Tokens) {
				t.Errorf("%v: %d positions for %d tokens", size, len(in.Positions), len(in.Tokens))
			}
		}
	}
	// Text only: no media, plain positions.
	in, err := m.BuildInput("s", Prompt{Text: "Hello", Chat: true})
	if err != nil || in.Positions != nil || in.Media != nil {
		t.Errorf("text prompt: positions %v, media %v, %v", in.Positions, in.Media, err)
	}
	// A video as a list of frames equals the same frames as a directory; 3 frames make 2
	// temporal patches.
	clip := filepath.Join(tmp, "clip")
	os.Mkdir(clip, 0o755)
	var files []string
	for i := range 3 {
		f := filepath.Join(clip, fmt.Sprintf("%03d.png", i))
		writePNG(t, f, 60, 40, 9*i)
		files = append(files, f)
	}
	a, err := m.BuildInput("s", Prompt{Text: "x", Media: []Medium{{Kind: "video", Paths: []string{clip}}}})
	if err != nil {
		t.Fatal(err)
	}
	b, err := m.BuildInput("s", Prompt{Text: "x", Media: []Medium{{Kind: "video", Paths: files}}})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(a.Tokens, b.Tokens) || !slices.Equal(a.Media[0].Features, b.Media[0].Features) || a.Media[0].Grid[0] != 2 {
		t.Errorf("video dir vs files: %v vs %v, grid %v", len(a.Tokens), len(b.Tokens), a.Media[0].Grid)
	}
	if _, err := m.ForwardInputs(context.Background(), []Input{a}, ForwardOptions{}); err != nil {
		t.Errorf("video forward: %v", err)
	}
	// Errors name the sample and the problem.
	os.Mkdir(filepath.Join(tmp, "empty"), 0o755)
	pic := filepath.Join(tmp, "p56x56.png")
	for _, c := range []struct {
		p    Prompt
		want string
	}{
		{Prompt{Text: "<|image_pad|> twice", Media: []Medium{{Kind: "image", Paths: []string{pic}}}}, "2 <|image_pad|>"},
		{Prompt{Text: "x", Media: []Medium{{Kind: "video", Paths: []string{filepath.Join(tmp, "empty")}}}}, "without frames"},
		{Prompt{Text: "x", Media: []Medium{{Kind: "image", Paths: []string{filepath.Join(tmp, "missing.png")}}}}, "missing.png"},
		{Prompt{Text: "x", Media: []Medium{{Kind: "audio", Paths: []string{pic}}}}, "takes text and image, video"},
	} {
		_, err := m.BuildInput("sample 7", c.p)
		if err == nil || !strings.Contains(err.Error(), "sample 7") || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %q", c.p.Media, err, c.want)
		}
	}
	if _, err := m.BuildInput("s", Prompt{Text: "x", Media: []Medium{{Kind: "audio", Paths: []string{pic}}}}); !errors.Is(err, ErrMedia) {
		t.Errorf("audio: %v, want ErrMedia", err)
	}
}

// Decoding continues M-RoPE from the largest prompt position + 1 (transformers' rope_deltas):
// the logits of prompt + one token run as one sequence with that position equal those of the
// prompt's prefill followed by a decode step.
func TestQwen2VLDecodeContinuesPositions(t *testing.T) {
	prev := kernels.Use(exactVariantInternal())
	defer kernels.Use(prev)
	m, dir := qwen2VL(t, safetensors.F32, 0)
	in, err := m.BuildInput("s", q2Prompt(t, t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	next := int32(1234)
	n := len(in.Tokens)
	mx := slices.Max(in.Positions)
	full := slices.Concat(in.Tokens, []int32{next})
	pos := make([]int32, 0, 3*(n+1))
	for a := range 3 {
		pos = append(append(pos, in.Positions[a*n:(a+1)*n]...), mx+1)
	}
	ck, _ := hfdir.Open(dir)
	defer ck.Close()
	ref := (&q2ref{t: t, c: ck}).logits(full, in.Media, pos, m.Config())
	V := m.Config().Vocab
	got, err := m.decodeOne(in, next)
	if err != nil {
		t.Fatal(err)
	}
	worst := 0.0
	for i, v := range ref[n*V:] {
		worst = max(worst, math.Abs(float64(got[i])-v))
	}
	if worst > 1e-4 || mx+1 == int32(n) {
		t.Errorf("decode step differs from the reference at position %d by %g (n %d)", mx+1, worst, n)
	}
}

// decodeOne prefills in and decodes next as a second step of the same sequence: the logits
// of next.
func (m *Model) decodeOne(in Input, next int32) ([]float32, error) {
	ctx := context.Background()
	prep, err := m.prepareInputs(ctx, []Input{in}, ForwardOptions{})
	if err != nil {
		return nil, err
	}
	st := []*seqState{m.newState(len(in.Tokens) + 1)}
	if _, _, err := m.step(ctx, st, [][]int32{in.Tokens}, prep, nil, nil, false, nil); err != nil {
		return nil, err
	}
	out, _, err := m.step(ctx, st, [][]int32{{next}}, nil, nil, nil, false, nil)
	if err != nil {
		return nil, err
	}
	return out[0], nil
}

// FuzzQwen2VLRopeIndex: any token sequence and grids give an error or 3×n positions, never a
// panic, and text-only sequences give 0..n-1.
func FuzzQwen2VLRopeIndex(f *testing.F) {
	f.Add([]byte{0, 1, 2, 2, 2, 2, 3, 4}, uint8(1), uint8(4), uint8(4))
	f.Add([]byte{0, 5, 5, 3, 0, 2, 3}, uint8(2), uint8(2), uint8(2))
	f.Add([]byte{4, 4, 4}, uint8(0), uint8(0), uint8(0))
	f.Fuzz(func(t *testing.T, raw []byte, gt, gh, gw uint8) {
		alphabet := []int32{q2Start, 7, q2Image, q2End, 9, q2Video}
		toks := make([]int32, len(raw))
		for i, b := range raw {
			toks[i] = alphabet[int(b)%len(alphabet)]
		}
		g := [3]int{int(gt % 5), int(gh % 9), int(gw % 9)}
		grids := [][3]int{g, g, g}
		pos, err := qwen2VLRopeIndex(toks, grids, grids, 2, q2Start, q2Image, q2Video)
		if err != nil {
			return
		}
		if len(pos) != 3*len(toks) {
			t.Fatalf("%d positions for %d tokens", len(pos), len(toks))
		}
		for _, p := range pos {
			if p < 0 {
				t.Fatalf("negative position in %v", pos)
			}
		}
	})
}

// The vision tower and merger alone (patch embedding, 2-D rotary, attention within each
// frame, quick-GELU MLP, PatchMerger) agree with the float64 reference on an image and on a
// 3-frame video (two temporal patches: two cu_seqlens chunks), and the FFN taps see every
// patch row at the vision sites and every merged row at the projector.
func TestQwen2VLVisionTower(t *testing.T) {
	prev := kernels.Use(exactVariantInternal())
	defer kernels.Use(prev)
	m, dir := qwen2VL(t, safetensors.F32, 0)
	in, err := m.BuildInput("s", q2Prompt(t, t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	ck, _ := hfdir.Open(dir)
	defer ck.Close()
	r := &q2ref{t: t, c: ck}
	for k, md := range in.Media {
		enc := m.encoder(md.Kind)
		tap := &siteTap{sites: map[Site]int{}}
		got, err := enc.encode(context.Background(), 0, md, []Tap{tap}, nil)
		if err != nil {
			t.Fatal(err)
		}
		ref := r.vision(md.Features, md.Grid, 2, 32, 2, 2)
		if len(got) != len(ref) {
			t.Fatalf("%s: %d values, reference %d", md.Kind, len(got), len(ref))
		}
		worst := 0.0
		for i, v := range ref {
			worst = max(worst, math.Abs(float64(got[i])-v))
		}
		if worst > 1e-4 {
			t.Errorf("medium %d (%s, grid %v): merged rows differ from the reference by %g", k, md.Kind, md.Grid, worst)
		}
		want := map[Site]int{{"vision", 0}: md.Rows, {"vision", 1}: md.Rows, {"projector", 0}: md.Rows / 4}
		if !maps.Equal(tap.sites, want) {
			t.Errorf("%s: taps saw %v, want %v", md.Kind, tap.sites, want)
		}
	}
	// A grid that does not cover the rows is refused.
	bad := in.Media[0]
	bad.Grid[0] = 2
	if _, err := m.encoder("image").encode(context.Background(), 0, bad, nil, nil); !errors.Is(err, ErrMedia) {
		t.Errorf("grid %v for %d rows: %v", bad.Grid, bad.Rows, err)
	}
}

// BenchmarkQwen2VLVisionTower runs the vision tower and merger of Qwen2-VL-2B's real
// vision_config (32 blocks of 1280, 16 heads, mlp 5120, merger 5120) in BF16 on a 448×448
// image: 1024 patches, 256 merged rows. The language model is shrunk to hidden 64 (the
// merger's last Linear is then 64 wide instead of 1536: under 0.2% of the FLOPs).
func BenchmarkQwen2VLVisionTower(b *testing.B) {
	dir := b.TempDir()
	set := map[string]any{"hidden_size": 64, "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 64, "num_hidden_layers": 1,
		"rope_scaling": map[string]any{"type": "mrope", "mrope_section": []any{2, 3, 3}},
		"vision_config": map[string]any{"depth": 32, "embed_dim": 1280, "mlp_ratio": 4, "num_heads": 16, "in_chans": 3, "hidden_size": 64,
			"patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2}}
	ck := filepath.Join(dir, "q2vl-2b-vision")
	if err := synth.Generate(qwen2VLConfigDir, ck, synth.Options{DType: safetensors.BF16, Seed: 3, Set: set}); err != nil {
		b.Fatal(err)
	}
	m, err := Open(ck)
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	pic := filepath.Join(dir, "pic.png")
	writePNG(b, pic, 448, 448, 5)
	md, n, err := m.encoder("image").(*qwen2VLEncoder).prepareFiles([]string{pic})
	if err != nil || n != 256 {
		b.Fatalf("%d tokens, %v", n, err)
	}
	b.ResetTimer()
	for range b.N {
		if _, err := m.encoder("image").encode(context.Background(), 0, md, nil, nil); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Seconds())/float64(b.N), "s/image")
}

// FuzzQwen2VLPrompt: any text, with or without the chat template, around one image gives an
// error or an input whose image run is the processor's 4 tokens (56×56: grid 1×4×4), whose
// positions are 3×n, and that the forward pass takes.
func FuzzQwen2VLPrompt(f *testing.F) {
	for _, s := range []string{"What is it?", "", "<|image_pad|>", "<|vision_start|><|video_pad|><|vision_end|>", "<|vision_start|>x", "<|im_end|><|im_start|>assistant\n"} {
		f.Add(s, false)
		f.Add(s, true)
	}
	dir := f.TempDir()
	ck := filepath.Join(dir, "q2vl")
	if err := synth.Generate(qwen2VLConfigDir, ck, synth.Options{DType: safetensors.BF16, Seed: 2}); err != nil {
		f.Fatal(err)
	}
	m, err := Open(ck)
	if err != nil {
		f.Fatal(err)
	}
	defer m.Close()
	pic := filepath.Join(dir, "pic.png")
	writePNG(f, pic, 56, 56, 4)
	f.Fuzz(func(t *testing.T, text string, chat bool) {
		in, err := m.BuildInput("s", Prompt{Text: text, Chat: chat, Media: []Medium{{Kind: "image", Paths: []string{pic}}}})
		if err != nil {
			return
		}
		pads := 0
		for _, id := range in.Tokens {
			if id == q2Image {
				pads++
			}
		}
		if pads != 4 || len(in.Positions) != 3*len(in.Tokens) || len(in.Media) != 1 {
			t.Fatalf("%d image tokens, %d positions for %d tokens, %d media", pads, len(in.Positions), len(in.Tokens), len(in.Media))
		}
		if _, err := m.ForwardInputs(context.Background(), []Input{in}, ForwardOptions{}); err != nil {
			t.Fatalf("forward: %v", err)
		}
	})
}

// expandPlaceholders (LLaVA's and Qwen2-VL's expansion): the k-th placeholder of each kind
// takes the k-th medium of that kind's count, kinds interleaved in any order; a count of
// placeholders unlike the media's is an error naming the token and both counts.
func TestExpandPlaceholders(t *testing.T) {
	m, _ := qwen2VL(t, safetensors.F32, 0)
	q := m.prompts.(*qwen2VLPrompts)
	I, V := q.image.token, q.video.token
	tokens := map[string]int32{"image": I, "video": V}
	img, vid := Medium{Kind: "image"}, Medium{Kind: "video"}
	for _, c := range []struct {
		ids    []int32
		media  []Medium
		counts []int
		want   []int32
		err    string
	}{
		{[]int32{1, I, 2}, []Medium{img}, []int{3}, []int32{1, I, I, I, 2}, ""},
		{[]int32{I, V, I}, []Medium{img, vid, img}, []int{1, 2, 3}, []int32{I, V, V, I, I, I}, ""},
		{[]int32{V, I, I}, []Medium{img, img, vid}, []int{2, 1, 1}, []int32{V, I, I, I}, ""},
		{[]int32{5}, nil, nil, []int32{5}, ""},
		{[]int32{I, I}, []Medium{img}, []int{2}, nil, "2 <|image_pad|> tokens for 1 image inputs"},
		{[]int32{I}, []Medium{img, vid}, []int{1, 1}, nil, "0 <|video_pad|> tokens for 1 video inputs"},
	} {
		got, err := expandPlaceholders(m.Tokenizer, c.ids, c.media, c.counts, tokens)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%v: %v, want %q", c.ids, err, c.err)
			}
			continue
		}
		if err != nil || !slices.Equal(got, c.want) {
			t.Errorf("%v %v: %v, %v, want %v", c.ids, c.counts, got, err, c.want)
		}
	}
}
