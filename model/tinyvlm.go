package model

import (
	"context"
	"fmt"
	"math"

	"github.com/neurosurg/neurosurg/media/imageproc"
)

// TinyVLM is the test family of the multimodal runtime (model/archdef/defs/tiny_vlm.json): a
// linear patch embedding of given feature rows, a pre-LN bidirectional encoder with plain
// MLPs (module "vision"), a two-layer MLP projector (module "projector") and the Llama
// decoder (module "llm"). The projected rows replace the runs of image_token_index in the
// tokens. It is also the template for LLaVA-style families: their files differ in tensor
// names (JSON) and in what the encoder's front end is.

func init() {
	Register("TinyVLMForConditionalGeneration", Family{Build: buildTinyVLM})
}

type tinyVLMImage struct {
	patch      Linear
	encoder    Encoder
	projector  MLP
	imageToken int32
	inWidth    int
	textHidden int
	patchSide  int // p of the processor's p×p RGB patches (3p² = inWidth); 0: none fits
}

func buildTinyVLM(b *Binder) error {
	bindDecoderLM(b, b.Module("llm"))
	v, p := b.Module("vision"), b.Module("projector")
	if b.Err() != nil {
		return b.Err()
	}
	vc := v.Config()
	hidden, heads, inter, in := v.Int("hidden_size"), v.Int("num_attention_heads"), v.Int("intermediate_size"), v.Int("input_size")
	if b.Err() == nil && (heads == 0 || hidden%heads != 0) {
		b.Fail(configError("vision_config.num_attention_heads", "%d does not divide hidden_size %d", heads, hidden))
	}
	eps := v.Eps(1e-5)
	act, _ := vc.Config["hidden_act"].(string)
	pact, _ := b.Arch.Config["projector_hidden_act"].(string)
	for key, a := range map[string]string{"vision_config.hidden_act": act, "projector_hidden_act": pact} {
		b.Fail(checkAct(key, a))
	}
	tok, err := configTokenID(b, "image_token_index", -1)
	b.Fail(err)
	if b.Err() != nil {
		return b.Err()
	}
	patch := v.Linear("vision_tower.patch_embed", -1)
	post := v.LayerNorm("vision_tower.post_layernorm", -1, eps)
	img := &tinyVLMImage{
		patch:      patch,
		encoder:    Encoder{module: "vision", post: &post},
		projector:  MLP{fc1: p.Linear("linear_1", 0), fc2: p.Linear("linear_2", 0), act: pact, neurons: b.Model.cfg.Hidden},
		imageToken: tok,
		inWidth:    in,
		textHidden: b.Model.cfg.Hidden,
	}
	if p := int(math.Round(math.Sqrt(float64(in) / 3))); p > 0 && 3*p*p == in {
		img.patchSide = p
	}
	for i := 0; i < v.Layers() && b.Err() == nil; i++ {
		img.encoder.layers = append(img.encoder.layers, EncoderLayer{
			ln1: v.LayerNorm("layer_norm1", i, eps),
			attn: Attention{
				q: v.Linear("self_attn.q_proj", i), k: v.Linear("self_attn.k_proj", i),
				v: v.Linear("self_attn.v_proj", i), o: v.Linear("self_attn.out_proj", i),
				heads: heads, kvHeads: heads, hd: hidden / heads,
			},
			ln2: v.LayerNorm("layer_norm2", i, eps),
			mlp: MLP{fc1: v.Linear("mlp.fc1", i), fc2: v.Linear("mlp.fc2", i), act: act, neurons: inter},
		})
	}
	b.Model.encoders = append(b.Model.encoders, img)
	return b.Err()
}

func (e *tinyVLMImage) kind() string       { return "image" }
func (e *tinyVLMImage) placeholder() int32 { return e.imageToken }
func (e *tinyVLMImage) inputWidth() int    { return e.inWidth }

// tinyVLMGrid is the test family's processor grid: an image becomes tinyVLMGrid² patches.
const tinyVLMGrid = 2

// prepare is the test family's image processor, documented here and not a real model's: the
// picture (PNG, JPEG, WebP or BMP, read by imageproc.DecodeFile as transformers' load_image
// does) is resized with Pillow's bicubic filter to 2p×2p pixels, where a feature row is one
// p×p patch of RGB pixels (3p² = vision_config.input_size; 2×2 pixels for the tiny config),
// and cut into 2×2 patches in raster order. A row holds its patch's pixels row by row, R G B
// each, rescaled to [-1, 1] (x/127.5 − 1: mean = std = 0.5). The projector keeps the rows,
// so the image fills 4 placeholder tokens.
func (e *tinyVLMImage) prepare(path string) (Media, int, error) {
	p := e.patchSide
	if p == 0 {
		return Media{}, 0, fmt.Errorf("%w: the test family's processor cuts p×p RGB patches; vision_config.input_size %d is not 3·p²", ErrMediaPath, e.inWidth)
	}
	img, err := imageproc.DecodeFile(path, imageproc.DecodeOptions{})
	if err != nil {
		return Media{}, 0, err
	}
	side := tinyVLMGrid * p
	if img, err = imageproc.Resize(img, side, side, imageproc.Bicubic); err != nil {
		return Media{}, 0, fmt.Errorf("%s: %w", path, err)
	}
	rows := tinyVLMGrid * tinyVLMGrid
	f := make([]float32, 0, rows*e.inWidth)
	for gy := range tinyVLMGrid {
		for gx := range tinyVLMGrid {
			for y := gy * p; y < (gy+1)*p; y++ {
				for x := gx * p; x < (gx+1)*p; x++ {
					for _, v := range img.Pix[3*(y*side+x) : 3*(y*side+x)+3] {
						f = append(f, float32(v)/127.5-1)
					}
				}
			}
		}
	}
	return Media{Kind: "image", Rows: rows, Features: f}, rows, nil
}

// encode embeds the feature rows, runs the encoder and the projector: rows × text hidden.
func (e *tinyVLMImage) encode(ctx context.Context, seq int, md Media, taps []Tap, mask *Mask) ([]float32, error) {
	sc := new(scratch)
	rows := md.Rows
	x := sc.get(rows * e.patch.w.rows)
	e.patch.Forward(x, md.Features, rows)
	if err := e.encoder.Forward(ctx, sc, x, rows, seq, taps, mask); err != nil {
		return nil, err
	}
	out := make([]float32, rows*e.textHidden)
	h := sc.get(rows * e.projector.neurons)
	call := ffnCall{site: Site{Module: "projector"}, taps: taps, mask: mask, seqs: []ffnSeq{{seq: seq, rows: rows}}}
	e.projector.Forward(out, x, h, rows, &call)
	return out, nil
}
