package model

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/neurosurg/neurosurg/media/imageproc"
)

// LLaVA-1.5 (LlavaForConditionalGeneration) and LLaVA-NeXT (LlavaNextForConditionalGeneration),
// as transformers' modeling_llava and modeling_llava_next run them: a CLIP vision tower (module
// "vision": patch embedding, class token, learned positions, pre_layrnorm, pre-LN blocks with
// quick-GELU MLPs), its hidden state after vision_feature_layer (default -2: the last layer's
// output is never used, nor post_layernorm), the CLS row dropped ("default") or kept ("full"),
// a two-layer MLP projector (module "projector") and the Llama decoder (module "llm"), the
// projected rows replacing the runs of image_token_index. LLaVA-NeXT encodes the picture's
// base image and the tiles of its best-fitting grid resolution, lays the tiles' features out
// as one grid, cuts the rows or columns that only cover padding and ends every row with
// image_newline (pack_image_features). Tensors: model/archdef/defs/llava*.json.

func init() {
	Register("LlavaForConditionalGeneration", Family{Build: buildLlava})
	Register("LlavaNextForConditionalGeneration", Family{Build: buildLlava})
}

// llavaImage is the vision tower, the projector and the processor of a LLaVA checkpoint.
type llavaImage struct {
	m     *Model // its directory holds preprocessor_config.json (read on first use)
	next  bool   // LLaVA-NeXT: tiles, unpadding, image_newline
	patch Linear // the Conv2d kernel [hidden, 3, p, p] as [hidden, 3p²] (no bias)
	class []float32
	pos   []float32 // position_embedding (grid²+1) × hidden
	pre   LayerNorm
	tower Encoder
	// feature is how many encoder layers give the selected hidden state (hidden_states[k]).
	feature    int
	keepCLS    bool // vision_feature_select_strategy "full"
	projector  MLP
	newline    []float32
	imageToken int32
	patchSide  int // p
	imageSize  int // the tower's input side (vision_config.image_size)
	grid       int // imageSize / p
	hidden     int
	textHidden int
	pinpoints  [][2]int // LLaVA-NeXT's image_grid_pinpoints (height, width)

	once    sync.Once
	clip    imageproc.CLIPConfig
	anyres  imageproc.LlavaNextConfig
	procErr error
}

func buildLlava(b *Binder) error {
	v, p := b.Module("vision"), b.Module("projector")
	if b.Err() != nil {
		return b.Err()
	}
	vc := v.Config()
	hidden, heads, inter := v.Int("hidden_size"), v.Int("num_attention_heads"), v.Int("intermediate_size")
	side, ps, ch, layers := v.Int("image_size"), v.Int("patch_size"), v.Int("num_channels"), v.Layers()
	if b.Err() != nil {
		return b.Err()
	}
	switch {
	case heads == 0 || hidden%heads != 0:
		return configError("vision_config.num_attention_heads", "%d does not divide hidden_size %d", heads, hidden)
	case ps == 0 || side < ps || side%ps != 0:
		return configError("vision_config.patch_size", "%d does not divide image_size %d", ps, side)
	case ch != 3:
		return configError("vision_config.num_channels", "%d, the image processor gives RGB (3)", ch)
	}
	eps := v.Eps(1e-5)
	if b.Err() != nil {
		return b.Err()
	}
	act, _ := vc.Config["hidden_act"].(string)
	pact, _ := p.Config().Config["projector_hidden_act"].(string)
	for key, a := range map[string]string{"vision_config.hidden_act": act, "projector_hidden_act": pact} {
		if err := checkAct(key, a); err != nil {
			return err
		}
	}
	cfg := b.Arch.Config
	img := &llavaImage{
		m: b.Model, next: b.Arch.Name == "LlavaNextForConditionalGeneration",
		patchSide: ps, imageSize: side, grid: side / ps, hidden: hidden, textHidden: b.Model.cfg.Hidden,
	}
	var err error
	if img.imageToken, err = configTokenID(b, "image_token_index", 32000); err != nil {
		return err
	}
	img.feature = -2
	if f, ok := cfg["vision_feature_layer"]; ok {
		n, isNum := f.(float64)
		if !isNum || n != float64(int(n)) {
			return configError("vision_feature_layer", "%v: only one layer (an integer) is supported, not a list", f)
		}
		img.feature = int(n)
	}
	if img.feature < 0 {
		img.feature += layers + 1
	}
	if img.feature < 0 || img.feature > layers {
		return configError("vision_feature_layer", "%v is outside the tower's hidden states -%d..%d", cfg["vision_feature_layer"], layers+1, layers)
	}
	switch s, _ := cfg["vision_feature_select_strategy"].(string); s {
	case "", "default":
	case "full":
		if img.next {
			// pack_image_features views each tile's rows as a grid×grid block: with the CLS row
			// kept transformers cannot run it either.
			return configError("vision_feature_select_strategy", "\"full\" does not fit LLaVA-NeXT's tile grid (transformers cannot run it)")
		}
		img.keepCLS = true
	default:
		return configError("vision_feature_select_strategy", "%q, want default or full", s)
	}
	if img.next {
		pp, err := pinpoints(cfg["image_grid_pinpoints"], side)
		if err != nil {
			return err
		}
		img.pinpoints = pp
	}
	const vp = "vision_tower.vision_model."
	img.class = v.Vector(vp+"embeddings.class_embedding", -1)
	img.patch = Linear{w: v.FlatWeight(vp+"embeddings.patch_embedding.weight", -1)}
	img.pos = v.Floats(vp+"embeddings.position_embedding.weight", -1)
	img.pre = v.LayerNorm(vp+"pre_layrnorm", -1, eps)
	img.tower = Encoder{module: "vision"}
	for i := 0; i < layers && b.Err() == nil; i++ {
		img.tower.layers = append(img.tower.layers, EncoderLayer{
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
	img.projector = MLP{fc1: p.Linear("linear_1", 0), fc2: p.Linear("linear_2", 0), act: pact, neurons: b.Model.cfg.Hidden}
	if img.next {
		img.newline = p.Vector("image_newline", -1)
	}
	// Bound after the tower and the projector: the order the forward pass uses them in
	// (FirstNonFiniteWeight blames the first).
	bindDecoderLMAt(b, b.Module("llm"), "language_model.")
	b.Model.encoders = append(b.Model.encoders, img)
	b.Model.prompts = img
	return b.Err()
}

// pinpoints reads image_grid_pinpoints (LlavaNextConfig's default when absent): each a
// (height, width) that tiles into image_size squares.
func pinpoints(v any, side int) ([][2]int, error) {
	if v == nil {
		return [][2]int{{336, 672}, {672, 336}, {672, 672}, {1008, 336}, {336, 1008}}, nil
	}
	list, _ := v.([]any)
	if len(list) == 0 {
		return nil, configError("image_grid_pinpoints", "want a non-empty list of [height, width]")
	}
	out := make([][2]int, len(list))
	for i, e := range list {
		pair, _ := e.([]any)
		ok := len(pair) == 2
		for k := 0; ok && k < 2; k++ {
			f, isNum := pair[k].(float64)
			ok = isNum && f >= float64(side) && f <= 1<<14 && f == float64(int(f)) && int(f)%side == 0
			if ok {
				out[i][k] = int(f)
			}
		}
		if !ok {
			return nil, configError("image_grid_pinpoints", "entry %d is %v, want [height, width], multiples of image_size %d up to %d", i, e, side, 1<<14)
		}
	}
	return out, nil
}

func (e *llavaImage) kind() string       { return "image" }
func (e *llavaImage) placeholder() int32 { return e.imageToken }
func (e *llavaImage) inputWidth() int    { return 3 * e.patchSide * e.patchSide }

// processor reads the checkpoint's preprocessor_config.json once: CLIPImageProcessor for
// LLaVA-1.5, LlavaNextImageProcessor for NeXT. Its tiles must be the tower's image_size.
func (e *llavaImage) processor() error {
	e.once.Do(func() {
		data, path, err := readProcessorConfig(e.m, true)
		if err != nil {
			e.procErr = err
			return
		}
		var h, w int
		if e.next {
			// The processor tiles by its pinpoints, the model packs by config.json's: they must
			// agree (transformers would mis-split the features otherwise).
			if e.anyres, err = imageproc.ParseLlavaNextConfig(data, path); err == nil && !slices.Equal(e.anyres.Pinpoints, e.pinpoints) {
				err = fmt.Errorf("%s: image_grid_pinpoints %v differ from config.json's %v", path, e.anyres.Pinpoints, e.pinpoints)
			}
			h, w = e.anyres.CropH, e.anyres.CropW
		} else {
			e.clip, err = imageproc.ParseCLIPConfig(data, path)
			h, w = e.clip.CropH, e.clip.CropW
		}
		// Without a centre crop the size depends on the picture: prepare checks each one.
		if err == nil && (e.clip.DoCenterCrop || e.anyres.DoCenterCrop) && (h != e.imageSize || w != e.imageSize) {
			err = fmt.Errorf("%s: the processor makes %dx%d pictures, the vision tower takes %dx%d (vision_config.image_size)", path, w, h, e.imageSize, e.imageSize)
		}
		e.procErr = err
	})
	return e.procErr
}

// prepare reads a picture as transformers' LlavaProcessor / LlavaNextProcessor does (EXIF
// orientation applied, then the CLIP resize, centre crop and normalisation; NeXT: the base
// image and the tiles of the padded best grid resolution) into rows of p×p patches, each
// channel-major then row by row (the Conv2d kernel's order), tile after tile. tokens is the
// processor's count of <image> tokens for it.
func (e *llavaImage) prepare(path string) (Media, int, error) {
	if err := e.processor(); err != nil {
		return Media{}, 0, err
	}
	pic, err := imageproc.DecodeFile(path, imageproc.DecodeOptions{})
	if err != nil {
		return Media{}, 0, err
	}
	S := e.imageSize
	var values []float32
	tiles, tokens := 1, 0
	md := Media{Kind: "image", Size: [2]int{pic.H, pic.W}}
	if e.next {
		px, err := e.anyres.Preprocess(pic)
		if err != nil {
			return Media{}, 0, fmt.Errorf("%s: %w", path, err)
		}
		if px.H != S || px.W != S {
			return Media{}, 0, fmt.Errorf("%s: the processor made %dx%d tiles, the tower takes %dx%d", path, px.W, px.H, S, S)
		}
		values, tiles = px.Values, px.Tiles
		tokens, err = e.anyres.ImageTokens(pic.H, pic.W, imageproc.LlavaNextTokenParams{PatchSize: e.patchSide, NumAdditionalImageTokens: 1, DropCLS: !e.keepCLS})
		if err != nil {
			return Media{}, 0, fmt.Errorf("%s: %w", path, err)
		}
	} else {
		v, h, w, err := e.clip.Preprocess(pic)
		if err != nil {
			return Media{}, 0, fmt.Errorf("%s: %w", path, err)
		}
		if h != S || w != S {
			return Media{}, 0, fmt.Errorf("%s: the processor made a %dx%d picture, the tower takes %dx%d", path, w, h, S, S)
		}
		values = v
		// LlavaProcessor: (height // patch_size) * (width // patch_size) + 1, less the CLS
		// row under the "default" strategy.
		tokens = (h/e.patchSide)*(w/e.patchSide) + 1
		if !e.keepCLS {
			tokens--
		}
	}
	md.Rows = tiles * e.grid * e.grid
	md.Features = patchRows(values, tiles, S, e.patchSide)
	return md, tokens, nil
}

// patchRows cuts tiles of [3, S, S] pixel values into rows of p×p patches in raster order,
// each row [c][ky][kx]: a ViT's Conv2d patch embedding as a matrix product (LLaVA's tiles,
// InstructBLIP's one picture).
func patchRows(values []float32, tiles, S, p int) []float32 {
	g := S / p
	out := make([]float32, 0, len(values))
	for t := range tiles {
		tile := values[t*3*S*S : (t+1)*3*S*S]
		for py := range g {
			for px := range g {
				for c := range 3 {
					for ky := range p {
						at := c*S*S + (py*p+ky)*S + px*p
						out = append(out, tile[at:at+p]...)
					}
				}
			}
		}
	}
	return out
}

// encode runs the tower over every tile (each attending within itself), takes the hidden state
// after e.feature layers, drops the CLS rows (default strategy), projects the rows, and for
// LLaVA-NeXT packs them: rows × text hidden.
func (e *llavaImage) encode(ctx context.Context, seq int, md Media, taps []Tap, mask *Mask) ([]float32, error) {
	g2 := e.grid * e.grid
	if md.Rows%g2 != 0 {
		return nil, fmt.Errorf("%w: sequence %d: %d patch rows are not whole %d×%d tiles", ErrMedia, seq, md.Rows, e.grid, e.grid)
	}
	tiles := md.Rows / g2
	var gridH, gridW int
	if e.next {
		if md.Size[0] <= 0 || md.Size[1] <= 0 {
			return nil, fmt.Errorf("%w: sequence %d: LLaVA-NeXT needs the picture's size (Media.Size) to unpad its tiles", ErrMedia, seq)
		}
		best := imageproc.SelectBestResolution(md.Size[0], md.Size[1], e.pinpoints)
		gridH, gridW = best[0]/e.imageSize, best[1]/e.imageSize
		if tiles != 1+gridH*gridW {
			return nil, fmt.Errorf("%w: sequence %d: %d tiles, a %dx%d picture takes 1 + %d×%d", ErrMedia, seq, tiles, md.Size[1], md.Size[0], gridH, gridW)
		}
	} else if tiles != 1 {
		return nil, fmt.Errorf("%w: sequence %d: %d tiles, LLaVA-1.5 takes one", ErrMedia, seq, tiles)
	}
	sc := new(scratch)
	D, per := e.hidden, g2+1
	rows := tiles * per
	pe := sc.get(md.Rows * D)
	e.patch.Forward(pe, md.Features, md.Rows)
	x := sc.get(rows * D)
	spans := make([][2]int, tiles)
	for t := range tiles {
		base := t * per
		spans[t] = [2]int{base, base + per}
		copy(x[base*D:(base+1)*D], e.class)
		copy(x[(base+1)*D:(base+per)*D], pe[t*g2*D:(t+1)*g2*D])
		addInto(x[base*D:(base+per)*D], e.pos)
	}
	e.pre.Forward(x, x, rows)
	// The layers after the feature layer change nothing the model uses; they run only when
	// taps watch, so their neurons are recorded as transformers' hooks would see them.
	if err := e.tower.forwardLayers(ctx, sc, x, rows, seq, spans, 0, e.feature, taps, mask); err != nil {
		return nil, err
	}
	sel := md.Rows
	if e.keepCLS {
		sel = rows
	}
	f := sc.get(sel * D)
	if e.keepCLS {
		copy(f, x[:rows*D])
	} else {
		for t := range tiles {
			copy(f[t*g2*D:(t+1)*g2*D], x[(t*per+1)*D:(t+1)*per*D])
		}
	}
	if len(taps) > 0 {
		if err := e.tower.forwardLayers(ctx, sc, x, rows, seq, spans, e.feature, len(e.tower.layers), taps, mask); err != nil {
			return nil, err
		}
	}
	proj := make([]float32, sel*e.textHidden)
	h := sc.get(sel * e.projector.neurons)
	call := ffnCall{site: Site{Module: "projector"}, taps: taps, mask: mask, seqs: []ffnSeq{{seq: seq, rows: sel}}}
	e.projector.Forward(proj, f, h, sel, &call)
	out := proj
	if e.next {
		out = e.pack(proj, md.Size, gridH, gridW)
	}
	return out, nil
}

// pack is pack_image_features for one picture: the base tile's rows, then the grid of the
// other tiles' rows as one (gridH·g) × (gridW·g) picture, cut to the rows or columns that cover
// the picture (unpad_image), each row followed by image_newline.
func (e *llavaImage) pack(proj []float32, size [2]int, gridH, gridW int) []float32 {
	g, d := e.grid, e.textHidden
	g2 := g * g
	H, W := gridH*g, gridW*g
	r0, r1, c0, c1 := imageproc.UnpadGrid(size[0], size[1], H, W)
	out := make([]float32, 0, (g2+(r1-r0)*(c1-c0+1))*d)
	out = append(out, proj[:g2*d]...)
	for R := r0; R < r1; R++ {
		for C := c0; C < c1; C++ {
			tile := 1 + (R/g)*gridW + C/g
			r := tile*g2 + (R%g)*g + C%g
			out = append(out, proj[r*d:(r+1)*d]...)
		}
		out = append(out, e.newline...)
	}
	return out
}

// buildInput lays out a LLaVA prompt as the processor does. With Chat, the checkpoint's chat
// template renders a user turn of {type: image} parts then {type: text} (writing the image
// token's text, "<image>", where the images go), with the assistant's turn opened; the
// tokenizer adds BOS unless the template wrote it. Without Chat the prompt is
// "<image>\n" per image, then the text, after BOS (the layout of LLaVA's own examples). Each
// image token becomes the processor's count of them; positions are 0..n-1.
func (e *llavaImage) buildInput(m *Model, sample string, p Prompt, limit int) (Input, error) {
	tok := m.Tokenizer
	var in Input
	var counts []int
	for _, md := range p.Media {
		if md.Kind != "image" {
			return Input{}, m.MediaError(sample, md.Kind)
		}
		x, n, err := e.prepare(md.Paths[0])
		if err != nil {
			return Input{}, fmt.Errorf("%s: image: %w", sample, err)
		}
		in.Media = append(in.Media, x)
		counts = append(counts, n)
	}
	marker := tok.Token(e.imageToken)
	if marker == "" {
		return Input{}, fmt.Errorf("%s: the tokenizer has no token %d (image_token_index)", sample, e.imageToken)
	}
	text, addBOS := "", true
	if p.Chat {
		s, err := mediaTurn(tok, p.Media, p.Text)
		if err != nil {
			return Input{}, fmt.Errorf("%s: %w", sample, err)
		}
		if bos, ok := tok.BOS(); ok && strings.HasPrefix(s, tok.Token(bos)) {
			addBOS = false // ProcessorMixin.apply_chat_template: the template wrote it
		}
		text = s
	} else {
		text = strings.Repeat(marker+"\n", len(p.Media)) + p.Text
	}
	ids, err := encodePrompt(tok, text, addBOS, limit)
	if err != nil {
		return Input{}, fmt.Errorf("%s: %w", sample, err)
	}
	if in.Tokens, err = expandPlaceholders(tok, ids, p.Media, counts, map[string]int32{"image": e.imageToken}); err != nil {
		return Input{}, fmt.Errorf("%s: %w", sample, err)
	}
	if limit > 0 && len(in.Tokens) > limit {
		return Input{}, tooLong(sample, len(in.Tokens), limit)
	}
	return in, nil
}
