package model

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/neurosurg/neurosurg/media/imageproc"
)

// Qwen2-VL (Qwen2VLForConditionalGeneration, model/archdef/defs/qwen2_vl.json): a vision
// tower — a Conv3d patch embedding over the processor's flattened patches, pre-LN blocks with
// a fused qkv, 2-D rotary (visionrope.go) and attention within each frame (cu_seqlens), a
// quick-GELU MLP (module "vision") — then the PatchMerger (LayerNorm, merge² neighbouring
// patches concatenated, Linear, GELU, Linear: module "projector") and the Qwen2 decoder with
// M-RoPE (module "llm"). Images and videos go through the same tower: two encoders, kinds
// "image" and "video", with their own placeholder tokens. The prompt builder (qwen2VLPrompts)
// writes the chat template's vision markup, expands the placeholders and computes the 3-D
// position ids as transformers' get_rope_index.

func init() {
	Register("Qwen2VLForConditionalGeneration", Family{Build: buildQwen2VL, Quirks: func(c *Config) {
		c.AttnBias = true // the decoder is Qwen2's: q/k/v biases, no o bias
	}})
}

// qwen2VLTower is the vision tower and merger both encoders share.
type qwen2VLTower struct {
	model      *Model // for the checkpoint directory (its preprocessor_config.json), set after Build
	patch      Linear // Conv3d kernel [embed, in·t·p·p], no bias
	encoder    Encoder
	lnq        LayerNorm
	merger     MLP
	embed      int
	hd         int
	merge      int
	patchSize  int
	temporal   int
	inWidth    int
	textHidden int

	procOnce sync.Once
	proc     imageproc.Qwen2VLConfig
	procErr  error
}

// qwen2VLEncoder is the tower seen as the encoder of one media kind.
type qwen2VLEncoder struct {
	t     *qwen2VLTower
	kindN string // "image" or "video"
	token int32  // image_token_id or video_token_id
}

// qwen2VLVisionTheta is VisionRotaryEmbedding's θ (not in the config).
const qwen2VLVisionTheta = 10000

// qwen2VLEps is the LayerNorm ε of the vision blocks and the merger (fixed in transformers).
const qwen2VLEps = 1e-6

// maxVideoFrames bounds the frames of one video (MINER samples at 1 fps: minutes of video).
const maxVideoFrames = 1024

func buildQwen2VL(b *Binder) error {
	bindDecoderLM(b, b.Module("llm"))
	v, p := b.Module("vision"), b.Module("projector")
	if b.Err() != nil {
		return b.Err()
	}
	vc := v.Config()
	embed, heads, ratio := v.Int("embed_dim"), v.Int("num_heads"), v.Int("mlp_ratio")
	merge, ps, tps, in, hidden := v.Int("spatial_merge_size"), v.Int("patch_size"), v.Int("temporal_patch_size"), v.Int("in_chans"), v.Int("hidden_size")
	if b.Err() != nil {
		return b.Err()
	}
	switch {
	case heads == 0 || embed%heads != 0:
		b.Fail(configError("vision_config.num_heads", "%d does not divide embed_dim %d", heads, embed))
	case (embed/heads)%4 != 0:
		b.Fail(configError("vision_config.num_heads", "head dim %d (embed_dim / num_heads) is not a multiple of 4, which the 2-D rotary needs", embed/heads))
	case merge < 1 || ps < 1 || tps < 1:
		b.Fail(configError("vision_config.spatial_merge_size", "merge %d, patch %d, temporal patch %d: want ≥ 1", merge, ps, tps))
	case hidden != b.Model.cfg.Hidden:
		b.Fail(configError("vision_config.hidden_size", "%d, the language model's hidden_size is %d", hidden, b.Model.cfg.Hidden))
	case in != 3:
		b.Fail(configError("vision_config.in_chans", "%d, the processor makes RGB patches (3)", in))
	}
	act, _ := vc.Config["hidden_act"].(string)
	b.Fail(checkAct("vision_config.hidden_act", act))
	ids := map[string]int32{}
	for key, def := range map[string]int32{"image_token_id": 151655, "video_token_id": 151656, "vision_start_token_id": 151652, "vision_end_token_id": 151653} {
		id, err := configTokenID(b, key, def)
		b.Fail(err)
		ids[key] = id
	}
	if b.Err() != nil {
		return b.Err()
	}
	t := &qwen2VLTower{
		model: b.Model, embed: embed, hd: embed / heads, merge: merge, patchSize: ps, temporal: tps,
		inWidth: in * tps * ps * ps, textHidden: hidden,
		patch:   Linear{w: v.FlatWeight("visual.patch_embed.proj.weight", -1)},
		encoder: Encoder{module: "vision"},
	}
	for i := 0; i < v.Layers() && b.Err() == nil; i++ {
		qkv := v.Linear("attn.qkv", i)
		q, k, vv := qkv.splitRows(embed)
		t.encoder.layers = append(t.encoder.layers, EncoderLayer{
			ln1:  v.LayerNorm("norm1", i, qwen2VLEps),
			attn: Attention{q: q, k: k, v: vv, o: v.Linear("attn.proj", i), heads: heads, kvHeads: heads, hd: embed / heads},
			ln2:  v.LayerNorm("norm2", i, qwen2VLEps),
			mlp:  MLP{fc1: v.Linear("mlp.fc1", i), fc2: v.Linear("mlp.fc2", i), act: act, neurons: embed * ratio},
		})
	}
	t.lnq = p.LayerNorm("ln_q", 0, qwen2VLEps)
	// nn.GELU() of the merger's Sequential: the exact (erf) GELU, whatever the config says.
	t.merger = MLP{fc1: p.Linear("mlp.0", 0), fc2: p.Linear("mlp.2", 0), act: "gelu", neurons: embed * merge * merge}
	if b.Err() != nil {
		return b.Err()
	}
	img := &qwen2VLEncoder{t: t, kindN: "image", token: ids["image_token_id"]}
	vid := &qwen2VLEncoder{t: t, kindN: "video", token: ids["video_token_id"]}
	b.Model.encoders = append(b.Model.encoders, img, vid)
	b.Model.prompts = &qwen2VLPrompts{image: img, video: vid, start: ids["vision_start_token_id"], end: ids["vision_end_token_id"]}
	return nil
}

func (e *qwen2VLEncoder) kind() string       { return e.kindN }
func (e *qwen2VLEncoder) placeholder() int32 { return e.token }
func (e *qwen2VLEncoder) inputWidth() int    { return e.t.inWidth }

// processor is the checkpoint's image processor: its preprocessor_config.json (read once; a
// user may edit min_pixels / max_pixels), transformers' defaults when the directory has none.
// Its patch, temporal patch and merge sizes must be the vision tower's.
func (t *qwen2VLTower) processor() (imageproc.Qwen2VLConfig, error) {
	t.procOnce.Do(func() {
		t.proc = imageproc.DefaultQwen2VLConfig()
		data, path, err := readProcessorConfig(t.model, false)
		switch {
		case err != nil:
			t.procErr = err
		case data == nil:
			t.proc.PatchSize, t.proc.TemporalPatchSize, t.proc.MergeSize = t.patchSize, t.temporal, t.merge
		default:
			t.proc, t.procErr = imageproc.ParseQwen2VLConfig(data, path)
			if t.procErr == nil && (t.proc.PatchSize != t.patchSize || t.proc.TemporalPatchSize != t.temporal || t.proc.MergeSize != t.merge) {
				t.procErr = fmt.Errorf("%s: patch_size %d, temporal_patch_size %d, merge_size %d; the vision tower's (config.json vision_config) are %d, %d, %d",
					path, t.proc.PatchSize, t.proc.TemporalPatchSize, t.proc.MergeSize, t.patchSize, t.temporal, t.merge)
			}
		}
	})
	return t.proc, t.procErr
}

// prepare reads one image file (kind image) or a video given as one directory of frames.
func (e *qwen2VLEncoder) prepare(path string) (Media, int, error) {
	return e.prepareFiles([]string{path})
}

// prepareFiles runs the processor on a medium's files: an image (one file), or a video's
// frames — the files in order, or one directory whose image files (.png, .jpg, .jpeg, .webp,
// .bmp) are the frames in name order. Frames are resized to the size smart_resize gives the
// first; an odd count repeats the last frame (temporal_patch_size 2), as transformers does.
func (e *qwen2VLEncoder) prepareFiles(paths []string) (Media, int, error) {
	proc, err := e.t.processor()
	if err != nil {
		return Media{}, 0, err
	}
	if e.kindN == "video" {
		if paths, err = videoFrames(paths); err != nil {
			return Media{}, 0, err
		}
	} else if len(paths) != 1 {
		return Media{}, 0, fmt.Errorf("an image is one file, got %d", len(paths))
	}
	frames := make([]*imageproc.RGB, len(paths))
	for i, p := range paths {
		if frames[i], err = imageproc.DecodeFile(p, imageproc.DecodeOptions{}); err != nil {
			return Media{}, 0, err
		}
	}
	px, err := proc.Video(frames)
	if err != nil {
		return Media{}, 0, fmt.Errorf("%s: %w", paths[0], err)
	}
	if px.Cols != e.t.inWidth {
		return Media{}, 0, fmt.Errorf("%s: the processor makes patches of %d values, the patch embedding takes %d", paths[0], px.Cols, e.t.inWidth)
	}
	return Media{Kind: e.kindN, Rows: px.Rows, Features: px.Values, Grid: px.GridTHW}, px.Tokens(e.t.merge), nil
}

// videoFrames lists a video's frame files (VideoFrames: the paths given, or a directory's
// pictures in natural name order), at most maxVideoFrames of them.
func videoFrames(paths []string) ([]string, error) {
	paths, err := VideoFrames(paths)
	if err != nil {
		return nil, err
	}
	if len(paths) > maxVideoFrames {
		return nil, fmt.Errorf("%s: %d frames, over the limit of %d (sample the video at a lower rate)", paths[0], len(paths), maxVideoFrames)
	}
	return paths, nil
}

// encode runs the tower and the merger on one medium: Grid t·h·w patch rows in, t·h·w/merge²
// rows of the text hidden size out. Attention stays within each frame; FFN taps and the mask
// see Site{"vision", l} and Site{"projector", 0}.
func (e *qwen2VLEncoder) encode(ctx context.Context, seq int, md Media, taps []Tap, mask *Mask) ([]float32, error) {
	t := e.t
	g := md.Grid
	if g[0] < 1 || g[1] < 1 || g[2] < 1 || g[0]*g[1]*g[2] != md.Rows {
		return nil, fmt.Errorf("%w: sequence %d: %s grid %v for %d patch rows (want t·h·w = rows)", ErrMedia, seq, md.Kind, g, md.Rows)
	}
	cos, sin, spans, err := visionRotaryTable([][3]int{g}, t.merge, t.hd, qwen2VLVisionTheta)
	if err != nil {
		return nil, fmt.Errorf("%w: sequence %d: %v", ErrMedia, seq, err)
	}
	rows, mm := md.Rows, t.merge*t.merge
	sc := new(scratch)
	x := sc.get(rows * t.embed)
	t.patch.Forward(x, md.Features, rows)
	if err := t.encoder.forwardRotary(ctx, sc, x, rows, seq, spans, cos, sin, 0, len(t.encoder.layers), taps, mask); err != nil {
		return nil, err
	}
	// PatchMerger: ln_q per patch, then each merge² consecutive rows (one merge block, in the
	// order the processor emits patches) read as one row of embed·merge².
	xn := sc.get(rows * t.embed)
	t.lnq.Forward(xn, x, rows)
	m := rows / mm
	out := make([]float32, m*t.textHidden)
	h := sc.get(m * t.merger.neurons)
	call := ffnCall{site: Site{Module: "projector"}, taps: taps, mask: mask, seqs: []ffnSeq{{seq: seq, rows: m}}}
	t.merger.Forward(out, xn, h, m, &call)
	return out, nil
}

// qwen2VLPrompts lays out Qwen2-VL prompts: the chat template's content parts (or the vision
// markup before the text), each <|image_pad|> / <|video_pad|> expanded to the medium's
// grid_t·grid_h·grid_w / merge² tokens, and M-RoPE positions.
type qwen2VLPrompts struct {
	image, video *qwen2VLEncoder
	start, end   int32
}

func (q *qwen2VLPrompts) buildInput(m *Model, sample string, p Prompt, limit int) (Input, error) {
	var media []Media
	var counts []int
	for _, md := range p.Media {
		enc := q.image
		if md.Kind == "video" {
			enc = q.video
		} else if md.Kind != "image" {
			return Input{}, m.MediaError(sample, md.Kind)
		}
		x, n, err := enc.prepareFiles(md.Paths)
		if err != nil {
			return Input{}, fmt.Errorf("%s: %s: %w", sample, md.Kind, err)
		}
		media, counts = append(media, x), append(counts, n)
	}
	tok := m.Tokenizer
	var text string
	special := true
	if p.Chat {
		s, err := mediaTurn(tok, p.Media, p.Text)
		if err != nil {
			return Input{}, fmt.Errorf("%s: %w", sample, err)
		}
		text, special = s, false
	} else {
		var sb strings.Builder
		for _, md := range p.Media {
			sb.WriteString("<|vision_start|><|" + md.Kind + "_pad|><|vision_end|>")
		}
		text = sb.String() + p.Text
	}
	ids, err := encodePrompt(tok, text, special, limit)
	if err != nil {
		return Input{}, fmt.Errorf("%s: %w", sample, err)
	}
	toks, err := expandPlaceholders(tok, ids, p.Media, counts, map[string]int32{"image": q.image.token, "video": q.video.token})
	if err != nil {
		return Input{}, fmt.Errorf("%s: %w", sample, err)
	}
	if limit > 0 && len(toks) > limit {
		return Input{}, tooLong(sample, len(toks), limit)
	}
	in := Input{Tokens: toks, Media: media}
	if len(media) == 0 {
		return in, nil // text only: plain 1-D positions
	}
	var imgGrid, vidGrid [][3]int
	for _, md := range media {
		if md.Kind == "video" {
			vidGrid = append(vidGrid, md.Grid)
		} else {
			imgGrid = append(imgGrid, md.Grid)
		}
	}
	if in.Positions, err = qwen2VLRopeIndex(toks, imgGrid, vidGrid, q.image.t.merge, q.start, q.image.token, q.video.token); err != nil {
		return Input{}, fmt.Errorf("%s: %w", sample, err)
	}
	return in, nil
}

// qwen2VLRopeIndex is transformers' Qwen2VLModel.get_rope_index for one unpadded sequence:
// the 3×n M-RoPE position ids (temporal row, height row, width row). A vision run — the
// image (video) tokens after a vision_start — takes (t, h/merge, w/merge) grid indices offset
// by the text before it; text takes the same 1-D index on all three axes, continuing from
// the largest index before it + 1. The video temporal index is the frame-pair index.
func qwen2VLRopeIndex(toks []int32, imgGrid, vidGrid [][3]int, merge int, start, imageTok, videoTok int32) ([]int32, error) {
	n := len(toks)
	imageNums, videoNums := 0, 0
	for i := 0; i+1 < n; i++ {
		if toks[i] == start {
			switch toks[i+1] {
			case imageTok:
				imageNums++
			case videoTok:
				videoNums++
			}
		}
	}
	if imageNums > len(imgGrid) || videoNums > len(vidGrid) {
		return nil, fmt.Errorf("M-RoPE: %d images and %d videos in the tokens, %d and %d grids", imageNums, videoNums, len(imgGrid), len(vidGrid))
	}
	var pos [3][]int32
	last := -1 // largest index of the last chunk; -1: none yet
	text := func(from, count int) {
		for a := range 3 {
			for j := range count {
				pos[a] = append(pos[a], int32(from+j))
			}
		}
		if count > 0 {
			last = from + count - 1
		}
	}
	st, ii, vi := 0, 0, 0
	remI, remV := imageNums, videoNums
	for range imageNums + videoNums {
		edI, edV := n+1, n+1
		if remI > 0 {
			if edI = slices.Index(toks[st:], imageTok); edI < 0 {
				return nil, fmt.Errorf("M-RoPE: no image token after position %d", st)
			}
			edI += st
		}
		if remV > 0 {
			if edV = slices.Index(toks[st:], videoTok); edV < 0 {
				return nil, fmt.Errorf("M-RoPE: no video token after position %d", st)
			}
			edV += st
		}
		var g [3]int
		ed := edI
		if edI < edV {
			g, ii, remI = imgGrid[ii], ii+1, remI-1
		} else {
			g, vi, remV, ed = vidGrid[vi], vi+1, remV-1, edV
		}
		lt, lh, lw := g[0], g[1]/merge, g[2]/merge
		stIdx := last + 1
		textLen := ed - st
		text(stIdx, textLen)
		base := stIdx + textLen
		for t := range lt {
			for h := range lh {
				for w := range lw {
					pos[0] = append(pos[0], int32(base+t))
					pos[1] = append(pos[1], int32(base+h))
					pos[2] = append(pos[2], int32(base+w))
				}
			}
		}
		last = base + max(lt, lh, lw) - 1
		if st = ed + lt*lh*lw; st > n {
			return nil, fmt.Errorf("M-RoPE: the vision run at %d needs %d tokens, the prompt ends at %d", ed, lt*lh*lw, n)
		}
	}
	if st < n {
		text(last+1, n-st)
	}
	if len(pos[0]) != n {
		return nil, fmt.Errorf("M-RoPE: the vision runs' grids cover %d positions, the prompt has %d tokens (a placeholder run shorter than its grid)", len(pos[0]), n)
	}
	return slices.Concat(pos[0], pos[1], pos[2]), nil
}
