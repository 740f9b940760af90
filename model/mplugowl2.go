package model

import (
	"context"
	"fmt"
	"math"
	"strings"
	"sync"

	"github.com/neurosurg/neurosurg/media/imageproc"
	"github.com/neurosurg/neurosurg/model/kernels"
	"github.com/neurosurg/neurosurg/model/tokenizer"
)

// mPLUG-Owl2 (MPLUGOwl2LlamaForCausalLM, model_type mplug_owl2), as the X-PLUG/mPLUG-Owl
// repository's mPLUG-Owl2/mplug_owl2 code runs it:
//
//   - module "vision" (visual_encoder.py MplugOwlVisionModel): a Conv2d patch embedding
//     without bias, the class token, learned positions, pre_layernorm, pre-LN blocks whose
//     fused query_key_value is laid out per head (reshape(…, heads, 3, head_dim)), quick-GELU
//     MLPs (fc1/fc2: the FFN neurons), post_layernorm; its last_hidden_state, class row
//     included, goes on.
//   - module "abstractor" (MplugOwlVisualAbstractorModel): 64 learned queries through
//     num_hidden_layers cross-attention layers. Each normalises the queries (norm1) and the
//     image rows (normk), attends from query(q + q_pos_embed) to key([q; img] + [q_pos_embed;
//     k_pos_embed]) and value([q; img]), adds out_proj to the normalised queries, then a SwiGLU
//     MLP w2(ffn_ln(silu(w1 x) ⊙ w3 x)) on norm2. Its neurons are ffn_ln's outputs, the values
//     w2 reads: zeroing or scaling one is exactly editing w2's column (the patch package's
//     edit), which the silu(w1 x) products, normalised together by ffn_ln, would not be.
//   - module "projector": visual_fc (abstractor width → LLM width) and vit_eos appended:
//     num_learnable_queries + 1 rows. No FFN neurons.
//   - module "llm": Llama-2 with the modality-adaptive layers of modeling_llama2.py: the rows
//     of the image's features (modality indicator 1) use input_layernorm.multiway.1,
//     post_attention_layernorm.multiway.1 and the multiway.1 k/v projections; text rows use
//     multiway.0; q_proj, o_proj and the MLP are shared.
//
// The image marker <|image|> is no vocabulary token: tokenizer_image_token splits the prompt
// on it and puts IMAGE_TOKEN_INDEX (−200) there, which the model replaces by the abstractor's
// rows. Here the run of those rows carries token 0 (<unk>, which Llama-2's byte-fallback
// SentencePiece never emits). Tensors: model/archdef/defs/mplug_owl2.json.

func init() {
	Register("MPLUGOwl2LlamaForCausalLM", Family{Build: buildMPLUGOwl2})
}

// mplugOwl2Image is the vision tower, the visual abstractor, visual_fc and the processor.
type mplugOwl2Image struct {
	m     *Model
	patch Linear // the Conv2d kernel [hidden, 3, p, p] as [hidden, 3p²] (no bias)
	cls   []float32
	pos   []float32 // (grid²+1) × hidden
	pre   LayerNorm
	tower Encoder // with post_layernorm when use_post_layernorm

	queries []float32 // num_learnable_queries × abstractor hidden
	abs     []abstractorLayer
	fc      Linear    // visual_fc
	eos     []float32 // vit_eos, text hidden

	imageToken        int32
	patchSide, side   int
	grid, hidden      int // the tower's patch grid side and width
	nQuery, absHidden int
	absHeads          int
	textHidden        int
	aspect            string // process_images' image_aspect_ratio: pad, resize, or another (plain)
	once              sync.Once
	clip              imageproc.CLIPConfig
	procErr           error
}

// abstractorLayer is one MplugOwlVisualAbstractorLayer (its crossattention module).
type abstractorLayer struct {
	norm1, normk, norm2 LayerNorm // nn.LayerNorm's default eps 1e-5
	q, k, v, out        Linear
	qPos, kPos          []float32 // the q_pos_embed / k_pos_embed buffers as the checkpoint holds them
	w1, w3, w2          Linear
	ffnLN               LayerNorm // layer_norm_eps
	neurons             int
}

func buildMPLUGOwl2(b *Binder) error {
	v, ab, pj, llm := b.Module("vision"), b.Module("abstractor"), b.Module("projector"), b.Module("llm")
	if b.Err() != nil {
		return b.Err()
	}
	const vs, as = "visual_config.visual_model", "visual_config.visual_abstractor"
	vh, vHeads, vInter := v.Int("hidden_size"), v.Int("num_attention_heads"), v.Int("intermediate_size")
	side, p := v.Int("image_size"), v.Int("patch_size")
	ah, aHeads, aInter := ab.Int("hidden_size"), ab.Int("num_attention_heads"), ab.Int("intermediate_size")
	nq, encH, grid := ab.Int("num_learnable_queries"), ab.Int("encoder_hidden_size"), ab.Int("grid_size")
	if b.Err() != nil {
		return b.Err()
	}
	vc, ac := v.Config().Config, ab.Config().Config
	switch {
	case vHeads == 0 || vh%vHeads != 0:
		return configError(vs+".num_attention_heads", "%d does not divide hidden_size %d", vHeads, vh)
	case p == 0 || side < p || side%p != 0:
		return configError(vs+".patch_size", "%d does not divide image_size %d", p, side)
	case vc["use_cls_token"] != true:
		return configError(vs+".use_cls_token", "%v: only the class-token tower (the released models') is supported", vc["use_cls_token"])
	case aHeads == 0 || ah%aHeads != 0:
		return configError(as+".num_attention_heads", "%d does not divide hidden_size %d", aHeads, ah)
	case nq < 1:
		return configError(as+".num_learnable_queries", "%d, want at least 1", nq)
	case encH != ah || vh != ah:
		// The code adds k_pos_embed (hidden_size wide) to the normalised image rows
		// (encoder_hidden_size) and out_proj (encoder_hidden_size) to the queries (hidden_size):
		// it runs only when all three widths agree.
		return configError(as+".encoder_hidden_size", "%d, hidden_size %d and the vision tower's %d must be equal", encH, ah, vh)
	case grid*grid != (side/p)*(side/p):
		return configError(as+".grid_size", "%d: k_pos_embed's %d²+1 rows do not match the tower's (%d/%d)²+1", grid, grid, side, p)
	case ac["use_cls_token"] != true:
		return configError(as+".use_cls_token", "%v: k_pos_embed without the class row does not fit the tower's output", ac["use_cls_token"])
	case ac["add_v2t_pos_emb"] == true:
		return configError(as+".add_v2t_pos_emb", "true: the code reads config.cls_token, which the config class never sets")
	}
	vAct, _ := vc["hidden_act"].(string)
	if err := checkAct(vs+".hidden_act", vAct); err != nil {
		return err
	}
	vEps, aEps := v.Eps(0), ab.Eps(0)
	if b.Err() != nil {
		return b.Err()
	}
	cfg := b.Arch.Config
	img := &mplugOwl2Image{
		m: b.Model, imageToken: 0, patchSide: p, side: side, grid: side / p, hidden: vh,
		nQuery: nq, absHidden: ah, absHeads: aHeads, textHidden: b.Model.cfg.Hidden, aspect: "resize",
	}
	if a, ok := cfg["image_aspect_ratio"]; ok && a != nil {
		s, isStr := a.(string)
		if !isStr {
			return configError("image_aspect_ratio", "%v, want a string (pad, resize)", a)
		}
		img.aspect = s
	}
	// Vision tower, in forward order.
	const ve = "model.vision_model.embeddings."
	img.cls = v.Floats(ve+"cls_token", -1)
	img.patch = Linear{w: v.FlatWeight(ve+"patch_embed.weight", -1)}
	img.pos = v.Floats(ve+"position_embedding", -1)
	img.pre = v.LayerNorm(ve+"pre_layernorm", -1, vEps)
	img.tower = Encoder{module: "vision"}
	for i := 0; i < v.Layers() && b.Err() == nil; i++ {
		bias := v.Vector("self_attn.query_key_value.bias", i)
		q, k, val := splitQKVPerHead(v.Weight("self_attn.query_key_value.weight", i), bias, vHeads, vh/vHeads)
		img.tower.layers = append(img.tower.layers, EncoderLayer{
			ln1:  v.LayerNorm("input_layernorm", i, vEps),
			attn: Attention{q: q, k: k, v: val, o: v.Linear("self_attn.dense", i), heads: vHeads, kvHeads: vHeads, hd: vh / vHeads},
			ln2:  v.LayerNorm("post_attention_layernorm", i, vEps),
			mlp:  MLP{fc1: v.Linear("mlp.fc1", i), fc2: v.Linear("mlp.fc2", i), act: vAct, neurons: vInter},
		})
	}
	if vc["use_post_layernorm"] == true {
		post := v.LayerNorm("model.vision_model.post_layernorm", -1, vEps)
		img.tower.post = &post
	}
	// Abstractor.
	img.queries = ab.Floats("model.visual_abstractor.query_embeds", -1)
	for i := 0; i < ab.Layers() && b.Err() == nil; i++ {
		img.abs = append(img.abs, abstractorLayer{
			norm1: ab.LayerNorm("norm1", i, 1e-5), normk: ab.LayerNorm("normk", i, 1e-5),
			q: ab.Linear("attention.query", i), k: ab.Linear("attention.key", i), v: ab.Linear("attention.value", i),
			qPos: ab.Floats("attention.q_pos_embed", i), kPos: ab.Floats("attention.k_pos_embed", i),
			out:   ab.Linear("output.out_proj", i),
			norm2: ab.LayerNorm("output.norm2", i, 1e-5),
			w1:    ab.Linear("output.mlp.w1", i), w3: ab.Linear("output.mlp.w3", i), w2: ab.Linear("output.mlp.w2", i),
			ffnLN: ab.LayerNorm("output.mlp.ffn_ln", i, aEps), neurons: aInter,
		})
	}
	img.fc = pj.Linear("model.visual_abstractor.visual_fc", -1)
	img.eos = pj.Floats("model.visual_abstractor.vit_eos", -1)
	bindMultiwayDecoder(b, llm)
	if b.Err() != nil {
		return b.Err()
	}
	b.Model.encoders = append(b.Model.encoders, img)
	b.Model.prompts = img
	return nil
}

// bindMultiwayDecoder binds mPLUG-Owl2's Llama: bindDecoderLM's layers with multiway.0 as
// the text weights and multiway.1 as the visual ones (DecoderLayer.visual, Attention.visual).
func bindMultiwayDecoder(b *Binder, llm *Module) {
	m, cfg := b.Model, &b.Model.cfg
	m.embed = Embedding{llm.Weight("model.embed_tokens.weight", -1)}
	m.decoder = Decoder{module: "llm", multiway: true}
	for i := 0; i < cfg.Layers && b.Err() == nil; i++ {
		var ly DecoderLayer
		ly.inNorm = RMSNorm{llm.Vector("input_layernorm.multiway.0.weight", i), cfg.Eps}
		ly.attn = Attention{
			q: llm.Linear("self_attn.q_proj", i), k: llm.Linear("self_attn.k_proj.multiway.0", i),
			v: llm.Linear("self_attn.v_proj.multiway.0", i), o: llm.Linear("self_attn.o_proj", i),
			heads: cfg.Heads, kvHeads: cfg.KVHeads, hd: cfg.HeadDim, window: cfg.SlidingWindow,
			visual: &[2]Linear{llm.Linear("self_attn.k_proj.multiway.1", i), llm.Linear("self_attn.v_proj.multiway.1", i)},
		}
		ly.postNorm = RMSNorm{llm.Vector("post_attention_layernorm.multiway.0.weight", i), cfg.Eps}
		ly.visual = &[2]RMSNorm{
			{llm.Vector("input_layernorm.multiway.1.weight", i), cfg.Eps},
			{llm.Vector("post_attention_layernorm.multiway.1.weight", i), cfg.Eps},
		}
		ly.mlp = GatedMLP{
			gate: llm.Linear("mlp.gate_proj", i), up: llm.Linear("mlp.up_proj", i), down: llm.Linear("mlp.down_proj", i),
			act: cfg.Act, neurons: cfg.Intermediate,
		}
		m.decoder.layers = append(m.decoder.layers, ly)
	}
	m.head = Head{norm: RMSNorm{llm.Vector("model.norm.weight", -1), cfg.Eps}, unembed: llm.Weight("lm_head.weight", -1)}
}

// splitQKVPerHead copies a fused [3h, h] projection whose output the code reshapes to
// (heads, 3, head_dim) — rows h·3·hd + j·hd + i are part j (q, k, v) of head h — into the q,
// k and v Linears (rows of head h at h·hd). The copy keeps the stored dtype.
func splitQKVPerHead(w weight, bias []float32, heads, hd int) (q, k, v Linear) {
	if len(w.b) == 0 {
		return
	}
	es := w.dt.Size()
	rowBytes := w.cols * es
	part := func(j int) Linear {
		bs := make([]byte, heads*hd*rowBytes)
		var bb []float32
		if bias != nil {
			bb = make([]float32, heads*hd)
		}
		for h := range heads {
			src := (h*3 + j) * hd
			copy(bs[h*hd*rowBytes:(h+1)*hd*rowBytes], w.b[src*rowBytes:(src+hd)*rowBytes])
			if bb != nil {
				copy(bb[h*hd:(h+1)*hd], bias[src:src+hd])
			}
		}
		return Linear{w: weight{name: w.name, b: bs, dt: w.dt, rows: heads * hd, cols: w.cols}, b: bb}
	}
	return part(0), part(1), part(2)
}

func (e *mplugOwl2Image) kind() string       { return "image" }
func (e *mplugOwl2Image) placeholder() int32 { return e.imageToken }
func (e *mplugOwl2Image) inputWidth() int    { return 3 * e.patchSide * e.patchSide }

// tokens is the number of rows an image becomes: the queries and vit_eos.
func (e *mplugOwl2Image) tokens() int { return e.nQuery + 1 }

// processor reads the checkpoint's preprocessor_config.json (a CLIPImageProcessor) once; its
// crop must be the tower's image_size.
func (e *mplugOwl2Image) processor() error {
	e.once.Do(func() {
		data, path, err := readProcessorConfig(e.m, true)
		if err != nil {
			e.procErr = err
			return
		}
		e.clip, err = imageproc.ParseCLIPConfig(data, path)
		if err == nil && e.clip.DoCenterCrop && (e.clip.CropH != e.side || e.clip.CropW != e.side) {
			err = fmt.Errorf("%s: the processor makes %dx%d pictures, the vision tower takes %dx%d (visual_config.visual_model.image_size)", path, e.clip.CropW, e.clip.CropH, e.side, e.side)
		}
		e.procErr = err
	})
	return e.procErr
}

// squarePicture is process_images' step before the CLIP processor: image_aspect_ratio "pad"
// pastes the picture into a square of its longer side filled with int(255·image_mean)
// (expand2square); "resize" (also the default: the README's and the evaluation scripts' call
// passes no model config) resizes it to that square with Pillow's default filter, bicubic; any
// other value hands the picture to the processor as it is.
func (e *mplugOwl2Image) squarePicture(pic *imageproc.RGB) (*imageproc.RGB, error) {
	switch e.aspect {
	case "pad":
		return imageproc.ExpandToSquare(pic, imageproc.TruncatedColour(e.clip.Mean)), nil
	case "resize":
		n := max(pic.W, pic.H)
		return imageproc.Resize(pic, n, n, imageproc.Bicubic)
	}
	return pic, nil
}

// prepare reads a picture as mPLUG-Owl2's code does (PIL's open and convert("RGB"): no EXIF
// orientation), squares it (squarePicture) and runs the CLIP processor, into rows of p×p
// patches in the Conv2d kernel's [c][ky][kx] order.
func (e *mplugOwl2Image) prepare(path string) (Media, int, error) {
	if err := e.processor(); err != nil {
		return Media{}, 0, err
	}
	pic, err := imageproc.DecodeFile(path, imageproc.DecodeOptions{IgnoreOrientation: true})
	if err != nil {
		return Media{}, 0, err
	}
	md, err := e.pixels(pic)
	if err != nil {
		return Media{}, 0, fmt.Errorf("%s: %w", path, err)
	}
	return md, e.tokens(), nil
}

// pixels is prepare after decoding.
func (e *mplugOwl2Image) pixels(pic *imageproc.RGB) (Media, error) {
	sq, err := e.squarePicture(pic)
	if err != nil {
		return Media{}, err
	}
	values, h, w, err := e.clip.Preprocess(sq)
	if err != nil {
		return Media{}, err
	}
	if h != e.side || w != e.side {
		return Media{}, fmt.Errorf("the processor made a %dx%d picture, the tower takes %dx%d", w, h, e.side, e.side)
	}
	return Media{Kind: "image", Rows: e.grid * e.grid, Features: patchRows(values, 1, e.side, e.patchSide), Size: [2]int{pic.H, pic.W}}, nil
}

// encode runs the vision tower over the picture's patch rows, the abstractor over its
// queries, visual_fc, and appends vit_eos: num_learnable_queries + 1 rows of the language
// model's width.
func (e *mplugOwl2Image) encode(ctx context.Context, seq int, md Media, taps []Tap, mask *Mask) ([]float32, error) {
	g2 := e.grid * e.grid
	if md.Rows != g2 {
		return nil, fmt.Errorf("%w: sequence %d: %d patch rows, the vision tower takes %d ((image_size/patch_size)²)", ErrMedia, seq, md.Rows, g2)
	}
	sc := new(scratch)
	D, V := e.hidden, g2+1
	x := sc.get(V * D)
	copy(x[:D], e.cls)
	e.patch.Forward(x[D:], md.Features, g2)
	addInto(x, e.pos[:V*D])
	e.pre.Forward(x, x, V)
	if err := e.tower.Forward(ctx, sc, x, V, seq, taps, mask); err != nil {
		return nil, err
	}
	h, err := e.abstract(ctx, sc, x, seq, taps, mask)
	if err != nil {
		return nil, err
	}
	Q := e.nQuery
	out := make([]float32, (Q+1)*e.textHidden)
	e.fc.Forward(out, h, Q)
	copy(out[Q*e.textHidden:], e.eos)
	return out, nil
}

// abstract runs the abstractor's layers over its queries with the tower's rows img (V ×
// width): the queries' final rows, Q × width.
func (e *mplugOwl2Image) abstract(ctx context.Context, sc *scratch, img []float32, seq int, taps []Tap, mask *Mask) ([]float32, error) {
	A, Q := e.absHidden, e.nQuery
	V := len(img) / A
	S := Q + V
	h := sc.get(Q * A)
	copy(h, e.queries)
	kv, kin, qin := sc.get(S*A), sc.get(S*A), sc.get(Q*A)
	qm, km, vm, att, o := sc.get(Q*A), sc.get(S*A), sc.get(S*A), sc.get(Q*A), sc.get(Q*A)
	for l := range e.abs {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		ly := &e.abs[l]
		// kv = [norm1(h); normk(img)]; h becomes norm1(h) (the residual the code adds to).
		ly.norm1.Forward(h, h, Q)
		copy(kv, h)
		ly.normk.Forward(kv[Q*A:], img, V)
		copy(kin, kv)
		addInto(kin[:Q*A], ly.qPos)
		addInto(kin[Q*A:], ly.kPos)
		copy(qin, h)
		addInto(qin, ly.qPos)
		ly.q.Forward(qm, qin, Q)
		ly.k.Forward(km, kin, S)
		ly.v.Forward(vm, kv, S)
		crossAttend(att, qm, km, vm, Q, S, e.absHeads, A/e.absHeads)
		ly.out.Forward(o, att, Q)
		addInto(h, o)
		// h += w2(ffn_ln(silu(w1 x) ⊙ w3 x)), x = norm2(h).
		xn := qin
		ly.norm2.Forward(xn, h, Q)
		call := ffnCall{site: Site{Module: "abstractor", Layer: l}, taps: taps, mask: mask, seqs: []ffnSeq{{seq: seq, rows: Q}}}
		n := ly.neurons
		g, u := sc.get(Q*n), sc.get(Q*n)
		matmulShared(xn, Q, [][]float32{g, u}, []*weight{&ly.w1.w, &ly.w3.w}, [][]float32{ly.w1.b, ly.w3.b})
		rowTasks.Run(Q, spanChunk(Q), rowTask{op: rowActivate, x: g, width: n, act: "silu"})
		rowTasks.Run(Q, spanChunk(Q), rowTask{op: rowMul, x: g, y: u, width: n})
		ly.ffnLN.Forward(g, g, Q)
		call.event(g, nil, n)
		call.mask.apply(call.site, g, Q, n)
		ly.w2.Forward(o, g, Q)
		addInto(h, o)
	}
	return h, nil
}

// crossAttend is multi-head attention of Q query rows over S key/value rows (all of them,
// no mask), heads of hd each, into out: mPLUG-Owl2's abstractor, InstructBLIP's Q-Former.
func crossAttend(out, q, k, v []float32, Q, S, heads, hd int) {
	d := heads * hd
	scale := float32(1 / math.Sqrt(float64(hd)))
	parallelSpan(Q*heads, func(i0, i1 int) {
		scores := make([]float32, S)
		for i := i0; i < i1; i++ {
			r, hh := i/heads, i%heads
			qr := q[r*d+hh*hd : r*d+(hh+1)*hd]
			for s := 0; s < S; s++ {
				scores[s] = kernels.Dot(qr, k[s*d+hh*hd:s*d+(hh+1)*hd]) * scale
			}
			kernels.Softmax(scores)
			dst := out[r*d+hh*hd : r*d+(hh+1)*hd]
			clear(dst)
			for s := 0; s < S; s++ {
				kernels.Axpy(scores[s], v[s*d+hh*hd:s*d+(hh+1)*hd], dst)
			}
		}
	})
}

// mplugOwl2Marker is the code's DEFAULT_IMAGE_TOKEN.
const mplugOwl2Marker = "<|image|>"

// buildInput lays out an mPLUG-Owl2 prompt as its code does. With Chat, the conversation
// template conv_mplug_owl2 (TWO_NO_SYS: no system line, roles USER and ASSISTANT, sep " "):
// "USER: <|image|>{text} ASSISTANT:" (the README's DEFAULT_IMAGE_TOKEN + query); without,
// "<|image|>{text}". tokenizer_image_token then tokenizes the pieces between markers apart
// (each with the tokenizer's BOS, kept only on the first piece when it starts with one) and
// puts the image there, here as the abstractor's num_learnable_queries + 1 rows.
func (e *mplugOwl2Image) buildInput(m *Model, sample string, p Prompt, limit int) (Input, error) {
	tok := m.Tokenizer
	var in Input
	if len(p.Media) > 1 {
		return Input{}, fmt.Errorf("%s: %d images: mPLUG-Owl2 prompts take one image here (adjacent image runs cannot be told apart)", sample, len(p.Media))
	}
	for _, md := range p.Media {
		if md.Kind != "image" {
			return Input{}, m.MediaError(sample, md.Kind)
		}
		x, _, err := e.prepare(md.Paths[0])
		if err != nil {
			return Input{}, fmt.Errorf("%s: image: %w", sample, err)
		}
		in.Media = append(in.Media, x)
	}
	if strings.Contains(p.Text, mplugOwl2Marker) {
		return Input{}, fmt.Errorf("%s: the text contains %s; give the image as the sample's image field", sample, mplugOwl2Marker)
	}
	text := strings.Repeat(mplugOwl2Marker, len(p.Media)) + p.Text
	if p.Chat {
		text = "USER: " + text + " ASSISTANT:"
	}
	ids, err := e.imageTokenIDs(tok, text, limit)
	if err != nil {
		return Input{}, fmt.Errorf("%s: %w", sample, err)
	}
	for _, id := range ids {
		if id != -200 {
			in.Tokens = append(in.Tokens, id)
			continue
		}
		for range e.tokens() {
			in.Tokens = append(in.Tokens, e.imageToken)
		}
	}
	if limit > 0 && len(in.Tokens) > limit {
		return Input{}, tooLong(sample, len(in.Tokens), limit)
	}
	return in, nil
}

// imageTokenIDs is mm_utils.tokenizer_image_token: IMAGE_TOKEN_INDEX (−200) where the prompt
// has <|image|>.
func (e *mplugOwl2Image) imageTokenIDs(tok *tokenizer.Tokenizer, prompt string, limit int) ([]int32, error) {
	chunks := strings.Split(prompt, mplugOwl2Marker)
	enc := make([][]int32, len(chunks))
	for i, c := range chunks {
		if c == "" {
			continue
		}
		ids, err := encodePrompt(tok, c, true, limit)
		if err != nil {
			return nil, err
		}
		enc[i] = ids
	}
	var out []int32
	offset := 0
	if bos, ok := tok.BOS(); ok && len(enc[0]) > 0 && enc[0][0] == bos {
		offset = 1
		out = append(out, bos)
	}
	for i, x := range enc {
		if i > 0 {
			out = append(out, -200)
		}
		if len(x) > offset {
			out = append(out, x[offset:]...)
		}
	}
	return out, nil
}
