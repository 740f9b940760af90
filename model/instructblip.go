package model

import (
	"context"
	"fmt"
	"math"
)

// InstructBLIP (InstructBlipForConditionalGeneration, transformers' modeling_instructblip.py;
// tensors in model/archdef/defs/instructblip.json): an EVA ViT (module "vision": class token,
// learned positions, pre-LN blocks with a fused qkv projection, GELU MLPs, post_layernorm),
// a Q-Former (BERT post-LN layers over [32 learned queries; the instruction's tokens]:
// self-attention over all rows, cross-attention from the query rows to the image features
// every cross_attention_frequency layers, then the query rows through intermediate_query /
// output_query — module "query" — and the text rows through intermediate / output — module
// "qformer"), the language projection of the query outputs (module "projector": one Linear,
// so no FFN neurons) and a Llama decoder (module "llm").
//
// The projected query rows go into the language model's input before the text (the legacy
// configs without image_token_index, whose model concatenates them in front) or at the runs
// of image_token_index (newer checkpoints, whose processor writes num_query_tokens image
// tokens before the text). Both give the prompt layout [queries][BOS text]; they differ in
// the placeholder id the tokens carry there.

func init() {
	Register("InstructBlipForConditionalGeneration", Family{Build: buildInstructBLIP})
}

// instructBLIP is the image path: vision tower, Q-Former and projection.
type instructBLIP struct {
	// EVA ViT
	patch      Linear    // Conv2d(3, hidden, p, stride p) as [hidden, 3·p·p] over unfolded patches
	class, pos []float32 // class embedding (hidden) and positions ((grid²+1) × hidden)
	vision     Encoder
	patchSide  int // p
	imageSide  int // image_size
	vHidden    int
	// Q-Former
	words, positions weight // word and position embeddings
	embNorm          LayerNorm
	queries          []float32 // num_query_tokens × qHidden
	nQuery, qHidden  int
	qLayers          []qformerLayer
	// language projection
	proj          Linear
	textHidden    int
	placeholderID int32
	legacy        bool // no image_token_index: the query rows lead the prompt
}

// qformerLayer is one BERT layer of the Q-Former (post-LN: x = LN(x + sublayer(x))).
type qformerLayer struct {
	self      Attention
	selfNorm  LayerNorm
	cross     *crossAttention // nil in layers without cross-attention
	text      MLP             // intermediate / output.dense: module "qformer"
	textNorm  LayerNorm
	query     MLP // intermediate_query / output_query.dense: module "query"
	queryNorm LayerNorm
}

// crossAttention is the Q-Former's attention from query rows to the image features: q from
// the queries, k and v from the vision tower's output (its own width), dense and a post-LN.
type crossAttention struct {
	q, k, v, o Linear
	norm       LayerNorm
	heads, hd  int
}

func buildInstructBLIP(b *Binder) error {
	cfg := b.Arch.Config
	if tc, _ := cfg["text_config"].(map[string]any); tc == nil || tc["model_type"] != "llama" {
		var mt any
		if tc != nil {
			mt = tc["model_type"]
		}
		return configError("text_config.model_type", "%v: neurosurg runs InstructBLIP with a Llama (Vicuna) language model; transformers builds OPT when it is missing, and Flan-T5 checkpoints are encoder-decoders", mt)
	}
	bindDecoderLMAt(b, b.Module("llm"), "language_model.")
	v, qf, qq, pj := b.Module("vision"), b.Module("qformer"), b.Module("query"), b.Module("projector")
	if b.Err() != nil {
		return b.Err()
	}
	vh, vHeads, vInter := v.Int("hidden_size"), v.Int("num_attention_heads"), v.Int("intermediate_size")
	side, p := v.Int("image_size"), v.Int("patch_size")
	qh, qHeads, qInter := qf.Int("hidden_size"), qf.Int("num_attention_heads"), qf.Int("intermediate_size")
	nq := qq.Int("num_query_tokens")
	freq := qf.Int("cross_attention_frequency")
	if b.Err() != nil {
		return b.Err()
	}
	switch {
	case vHeads == 0 || vh%vHeads != 0:
		return configError("vision_config.num_attention_heads", "%d does not divide hidden_size %d", vHeads, vh)
	case qHeads == 0 || qh%qHeads != 0:
		return configError("qformer_config.num_attention_heads", "%d does not divide hidden_size %d", qHeads, qh)
	case p == 0 || side < p:
		return configError("vision_config.patch_size", "%d, want 1..image_size (%d)", p, side)
	case nq < 1:
		return configError("num_query_tokens", "%d, want at least 1", nq)
	case freq < 1:
		return configError("qformer_config.cross_attention_frequency", "%d, want at least 1", freq)
	}
	if pe, _ := qf.Config().Config["position_embedding_type"].(string); pe != "absolute" {
		return configError("qformer_config.position_embedding_type", "%q: only \"absolute\" is supported", pe)
	}
	vAct, _ := v.Config().Config["hidden_act"].(string)
	qAct, _ := qf.Config().Config["hidden_act"].(string)
	for key, a := range map[string]string{"vision_config.hidden_act": vAct, "qformer_config.hidden_act": qAct} {
		if err := checkAct(key, a); err != nil {
			return err
		}
	}
	img := &instructBLIP{
		patchSide: p, imageSide: side, vHidden: vh, nQuery: nq, qHidden: qh,
		textHidden: b.Model.cfg.Hidden, legacy: true,
	}
	switch t, ok := cfg["image_token_index"]; {
	case ok && t != nil:
		id, isNum := t.(float64)
		if !isNum || id != math.Trunc(id) || id < 0 || int(id) >= b.Model.cfg.Vocab {
			return configError("image_token_index", "%v, want a token id below text_config.vocab_size %d", t, b.Model.cfg.Vocab)
		}
		img.placeholderID, img.legacy = int32(id), false
	default:
		// The legacy model puts the query rows in front of the text embeddings without
		// tokens of their own; here their run carries the pad id (the conversion's added
		// [PAD], the last row of the embedding) so the prompt stays a token sequence.
		img.placeholderID = int32(b.Model.cfg.Vocab - 1)
		for _, src := range []map[string]any{cfg["text_config"].(map[string]any), cfg} {
			if id, ok := src["pad_token_id"].(float64); ok && id >= 0 && int(id) < b.Model.cfg.Vocab && id == math.Trunc(id) {
				img.placeholderID = int32(id)
				break
			}
		}
	}
	vEps, qEps := v.Eps(1e-6), qf.Eps(1e-12)
	if b.Err() != nil {
		return b.Err()
	}
	// Vision tower, in forward order.
	img.patch = Linear{w: v.FlatWeight("vision_model.embeddings.patch_embedding.weight", -1), b: v.Vector("vision_model.embeddings.patch_embedding.bias", -1)}
	img.class = v.Floats("vision_model.embeddings.class_embedding", -1)
	img.pos = v.Floats("vision_model.embeddings.position_embedding", -1)
	img.vision = Encoder{module: "vision"}
	for i := 0; i < v.Layers() && b.Err() == nil; i++ {
		// The checkpoint's k bias is stored (as zeros) and used.
		bias, _ := v.OptVector("self_attn.qkv.bias", i)
		q, k, val := Linear{w: v.Weight("self_attn.qkv.weight", i), b: bias}.splitRows(vh)
		img.vision.layers = append(img.vision.layers, EncoderLayer{
			ln1:  v.LayerNorm("layer_norm1", i, vEps),
			attn: Attention{q: q, k: k, v: val, o: v.Linear("self_attn.projection", i), heads: vHeads, kvHeads: vHeads, hd: vh / vHeads},
			ln2:  v.LayerNorm("layer_norm2", i, vEps),
			mlp:  MLP{fc1: v.Linear("mlp.fc1", i), fc2: v.Linear("mlp.fc2", i), act: vAct, neurons: vInter},
		})
	}
	post := v.LayerNorm("vision_model.post_layernorm", -1, vEps)
	img.vision.post = &post
	// Q-Former.
	img.queries = qq.Floats("query_tokens", -1)
	img.words = qf.Weight("qformer.embeddings.word_embeddings.weight", -1)
	img.positions = qf.Weight("qformer.embeddings.position_embeddings.weight", -1)
	img.embNorm = qf.LayerNorm("qformer.embeddings.layernorm", -1, qEps)
	for i := 0; i < qf.Layers() && b.Err() == nil; i++ {
		ly := qformerLayer{
			self: Attention{
				q: qf.Linear("attention.attention.query", i), k: qf.Linear("attention.attention.key", i),
				v: qf.Linear("attention.attention.value", i), o: qf.Linear("attention.output.dense", i),
				heads: qHeads, kvHeads: qHeads, hd: qh / qHeads,
			},
			selfNorm: qf.LayerNorm("attention.output.LayerNorm", i, qEps),
		}
		if i%freq == 0 {
			ly.cross = &crossAttention{
				q: qf.Linear("crossattention.attention.query", i), k: qf.Linear("crossattention.attention.key", i),
				v: qf.Linear("crossattention.attention.value", i), o: qf.Linear("crossattention.output.dense", i),
				norm: qf.LayerNorm("crossattention.output.LayerNorm", i, qEps), heads: qHeads, hd: qh / qHeads,
			}
		}
		ly.query = MLP{fc1: qq.Linear("intermediate_query.dense", i), fc2: qq.Linear("output_query.dense", i), act: qAct, neurons: qInter}
		ly.queryNorm = qq.LayerNorm("output_query.LayerNorm", i, qEps)
		ly.text = MLP{fc1: qf.Linear("intermediate.dense", i), fc2: qf.Linear("output.dense", i), act: qAct, neurons: qInter}
		ly.textNorm = qf.LayerNorm("output.LayerNorm", i, qEps)
		img.qLayers = append(img.qLayers, ly)
	}
	img.proj = Linear{w: pj.Weight("language_projection.weight", -1), b: pj.Vector("language_projection.bias", -1)}
	if b.Err() != nil {
		return b.Err()
	}
	b.Model.encoders = append(b.Model.encoders, img)
	b.Model.prompts = &instructBLIPPrompts{img: img}
	return nil
}

func (e *instructBLIP) kind() string       { return "image" }
func (e *instructBLIP) placeholder() int32 { return e.placeholderID }
func (e *instructBLIP) inputWidth() int    { return 3 * e.patchSide * e.patchSide }

// patches is the number of feature rows an image gives: the (image_size / patch_size)² grid.
func (e *instructBLIP) patches() int { g := e.imageSide / e.patchSide; return g * g }

// encode runs the vision tower over the image's patch rows, the Q-Former over the learned
// queries and md.Text (the instruction in the Q-Former's vocabulary), and projects the query
// outputs: num_query_tokens × the language model's hidden size.
func (e *instructBLIP) encode(ctx context.Context, seq int, md Media, taps []Tap, mask *Mask) ([]float32, error) {
	P := e.patches()
	if md.Rows != P {
		return nil, fmt.Errorf("%w: sequence %d: %d patch rows, the vision tower takes %d ((image_size/patch_size)²)", ErrMedia, seq, md.Rows, P)
	}
	T, qh, Q := len(md.Text), e.qHidden, e.nQuery
	if T > e.positions.rows {
		return nil, fmt.Errorf("%w: sequence %d: the instruction is %d Q-Former tokens, its position embeddings hold %d", ErrTooLong, seq, T, e.positions.rows)
	}
	for _, id := range md.Text {
		if id < 0 || int(id) >= e.words.rows {
			return nil, fmt.Errorf("%w: sequence %d: Q-Former token id %d out of range [0,%d)", ErrMedia, seq, id, e.words.rows)
		}
	}
	sc := new(scratch)
	// Vision: [class; patches] + positions.
	vh, V := e.vHidden, P+1
	img := make([]float32, V*vh)
	e.patch.Forward(img[vh:], md.Features, P)
	copy(img, e.class)
	addInto(img, e.pos[:V*vh])
	if err := e.vision.Forward(ctx, sc, img, V, seq, taps, mask); err != nil {
		return nil, err
	}
	// Q-Former embeddings: the queries (no positions), then the words with positions 0..T-1;
	// one LayerNorm over all rows.
	n := Q + T
	x := make([]float32, n*qh)
	copy(x, e.queries)
	row := make([]float32, qh)
	for t, id := range md.Text {
		dst := x[(Q+t)*qh : (Q+t+1)*qh]
		e.words.row(dst, int(id))
		e.positions.row(row, t)
		addInto(dst, row)
	}
	e.embNorm.Forward(x, x, n)
	o := make([]float32, n*qh)
	inter := 0
	if len(e.qLayers) > 0 {
		inter = e.qLayers[0].query.neurons
	}
	h := make([]float32, max(Q, T)*inter)
	spans := [][2]int{{0, n}}
	for l := range e.qLayers {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		ly := &e.qLayers[l]
		mark := sc.next
		ly.self.forwardBidirectional(sc, o, x, n, spans, nil, nil)
		sc.reuseFrom(mark)
		addInto(o, x)
		ly.selfNorm.Forward(x, o, n)
		qx, tx := x[:Q*qh], x[Q*qh:]
		if ly.cross != nil {
			ly.cross.forward(o[:Q*qh], qx, Q, img, V)
			addInto(o[:Q*qh], qx)
			ly.cross.norm.Forward(qx, o[:Q*qh], Q)
		}
		call := ffnCall{site: Site{Module: "query", Layer: l}, taps: taps, mask: mask, seqs: []ffnSeq{{seq: seq, rows: Q}}}
		ly.query.Forward(o[:Q*qh], qx, h, Q, &call)
		addInto(o[:Q*qh], qx)
		ly.queryNorm.Forward(qx, o[:Q*qh], Q)
		if T > 0 {
			call = ffnCall{site: Site{Module: "qformer", Layer: l}, taps: taps, mask: mask, seqs: []ffnSeq{{seq: seq, rows: T}}}
			ly.text.Forward(o[:T*qh], tx, h, T, &call)
			addInto(o[:T*qh], tx)
			ly.textNorm.Forward(tx, o[:T*qh], T)
		}
	}
	out := make([]float32, Q*e.textHidden)
	e.proj.Forward(out, x[:Q*qh], Q)
	return out, nil
}

// forward computes out (rows × hidden) = dense(attention of the rows of x to the V rows of
// img), before the residual and the LayerNorm.
func (c *crossAttention) forward(out, x []float32, rows int, img []float32, V int) {
	d := c.heads * c.hd
	q, k, v, att := make([]float32, rows*d), make([]float32, V*d), make([]float32, V*d), make([]float32, rows*d)
	c.q.Forward(q, x, rows)
	c.k.Forward(k, img, V)
	c.v.Forward(v, img, V)
	crossAttend(att, q, k, v, rows, V, c.heads, c.hd)
	c.o.Forward(out, att, rows)
}
