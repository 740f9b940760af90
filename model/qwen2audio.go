package model

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/neurosurg/neurosurg/media/audiofeat"
	"github.com/neurosurg/neurosurg/model/tokenizer"
)

// Qwen2-Audio (Qwen2AudioForConditionalGeneration; tensors in
// model/archdef/defs/qwen2_audio.json): Whisper's encoder front end and pre-LN layers (module
// "audio"), an average pool and a final LayerNorm, a one-Linear projector (module "projector",
// no FFN neurons) and the Qwen2 decoder (module "llm", text_config with Qwen2Config's defaults
// for the sizes it omits). The projected frames replace the run of audio_token_index
// (<|AUDIO|>) the processor expanded to the clip's token count.

func init() {
	Register("Qwen2AudioForConditionalGeneration", Family{Build: buildQwen2Audio})
}

// qwen2Audio is the audio tower with its projector: the model's encoder of kind "audio".
type qwen2Audio struct {
	conv1, conv2 Conv1D
	pos          []float32 // embed_positions: maxSource × d
	encoder      Encoder   // module "audio", without a final norm (it follows the pool)
	norm         LayerNorm // audio_tower.layer_norm, after the pool
	proj         Linear    // multi_modal_projector.linear
	audioToken   int32
	mels         int // num_mel_bins: the width of a feature row (one mel frame)
	maxSource    int // max_source_positions: frames after conv2; the input has twice as many
	d            int // d_model
	textHidden   int

	model   *Model // for the checkpoint directory (the processor's files), known after Open
	featMu  sync.Mutex
	feat    *audiofeat.Extractor
	featErr error
}

func buildQwen2Audio(b *Binder) error {
	bindDecoderLMAt(b, b.Module("llm"), "language_model.")
	a, p := b.Module("audio"), b.Module("projector")
	if b.Err() != nil {
		return b.Err()
	}
	ac := a.Config()
	d, heads, inter, mels, maxSource := a.Int("d_model"), a.Int("encoder_attention_heads"), a.Int("encoder_ffn_dim"), a.Int("num_mel_bins"), a.Int("max_source_positions")
	if b.Err() == nil && (heads == 0 || d%heads != 0) {
		b.Fail(configError("audio_config.encoder_attention_heads", "%d does not divide d_model %d", heads, d))
	}
	if b.Err() == nil && maxSource == 0 {
		b.Fail(configError("audio_config.max_source_positions", "0, want at least 1"))
	}
	act, _ := ac.Config["activation_function"].(string)
	b.Fail(checkAct("audio_config.activation_function", act))
	// scale_embedding multiplies nothing in Qwen2-Audio's encoder (embed_scale is computed and
	// never used), so it needs no check.
	tok, err := configTokenID(b, "audio_token_index", 151646) // Qwen2AudioConfig's default
	b.Fail(err)
	if b.Err() != nil {
		return b.Err()
	}
	// nn.LayerNorm's default epsilon: the encoder config has no key for it.
	const eps = 1e-5
	e := &qwen2Audio{
		conv1:      Conv1D{w: a.FlatWeight("audio_tower.conv1.weight", -1), b: a.Vector("audio_tower.conv1.bias", -1), in: mels, k: 3, stride: 1, pad: 1, act: "gelu"},
		conv2:      Conv1D{w: a.FlatWeight("audio_tower.conv2.weight", -1), b: a.Vector("audio_tower.conv2.bias", -1), in: d, k: 3, stride: 2, pad: 1, act: "gelu"},
		audioToken: tok, mels: mels, maxSource: maxSource, d: d, textHidden: b.Model.cfg.Hidden,
		model: b.Model,
	}
	// The position table is read once into f32 (its rows are added, never multiplied).
	e.pos = a.Floats("audio_tower.embed_positions.weight", -1)
	e.encoder = Encoder{module: "audio"}
	for i := 0; i < a.Layers() && b.Err() == nil; i++ {
		e.encoder.layers = append(e.encoder.layers, EncoderLayer{
			ln1: a.LayerNorm("self_attn_layer_norm", i, eps),
			attn: Attention{
				q: a.Linear("self_attn.q_proj", i), k: a.Linear("self_attn.k_proj", i), // k_proj has no bias
				v: a.Linear("self_attn.v_proj", i), o: a.Linear("self_attn.out_proj", i),
				heads: heads, kvHeads: heads, hd: d / heads,
			},
			ln2: a.LayerNorm("final_layer_norm", i, eps),
			mlp: MLP{fc1: a.Linear("fc1", i), fc2: a.Linear("fc2", i), act: act, neurons: inter},
		})
	}
	e.norm = a.LayerNorm("audio_tower.layer_norm", -1, eps)
	e.proj = p.Linear("multi_modal_projector.linear", -1)
	b.Model.encoders = append(b.Model.encoders, e)
	b.Model.prompts = qwen2AudioPrompts{enc: e}
	return b.Err()
}

func (e *qwen2Audio) kind() string       { return "audio" }
func (e *qwen2Audio) placeholder() int32 { return e.audioToken }
func (e *qwen2Audio) inputWidth() int    { return e.mels }

// qwen2AudioFrames is the encoder's length for a clip whose feature attention mask has valid ≥ 1
// ones: n frames after conv2's stride, (valid−1)//2 + 1, and out rows kept after the pool,
// the processor's token count (audiofeat.Qwen2AudioTokens: 0 for fewer than 3 mel frames).
func qwen2AudioFrames(valid int) (n, out int) {
	return (valid-1)/2 + 1, audiofeat.Qwen2AudioTokens(valid)
}

// encode runs the audio tower and the projector on one clip: md holds 2·max_source_positions
// mel frames (30 s, padded) of num_mel_bins values, frame after frame, of which md.Valid are
// the clip. It returns qwen2AudioFrames(Valid) rows of the text hidden size.
//
// transformers runs every layer over all max_source_positions frames with the padded frames
// masked out as keys (an additive −inf on their columns), pools all of them and keeps the
// first qwen2AudioFrames(Valid) pooled rows. A valid frame's output never depends on a
// padded one (they are never keys), and the kept pooled rows average valid frames only
// (2·kept ≤ the valid frames after conv2), so running the layers over the valid frames alone
// gives the same rows; the padded frames' activations, which transformers computes and
// discards, are not computed and FFN taps see the valid frames only. The convolutions read
// the padding's mel frames where transformers does: conv2's last valid frame reads conv1's
// frame 2·n−1, which reads mel frame 2·n, in the padding for an odd mask length.
func (e *qwen2Audio) encode(ctx context.Context, seq int, md Media, taps []Tap, mask *Mask) ([]float32, error) {
	frames := 2 * e.maxSource
	if md.Rows != frames {
		return nil, fmt.Errorf("%w: sequence %d: Qwen2-Audio takes mel features of exactly %d frames (padded to 2·max_source_positions, as its processor pads to 30 s); got %d", ErrMedia, seq, frames, md.Rows)
	}
	valid := md.Valid
	if valid == 0 {
		valid = md.Rows
	}
	if valid < 0 || valid > md.Rows {
		return nil, fmt.Errorf("%w: sequence %d: %d valid frames of %d", ErrMedia, seq, valid, md.Rows)
	}
	n, out := qwen2AudioFrames(valid)
	if out == 0 {
		return nil, fmt.Errorf("%w: sequence %d: a clip of %d mel frames gives no audio tokens (the processor expands it to none)", ErrMedia, seq, valid)
	}
	sc := new(scratch)
	x, err := e.frontEnd(sc, md.Features, n)
	if err != nil {
		return nil, fmt.Errorf("sequence %d: %w", seq, err)
	}
	if err := e.encoder.Forward(ctx, sc, x, n, seq, taps, mask); err != nil {
		return nil, err
	}
	pooled := sc.get(out * e.d)
	avgPool2(pooled, x, out, e.d)
	e.norm.Forward(pooled, pooled, out)
	res := make([]float32, out*e.textHidden)
	e.proj.Forward(res, pooled, out)
	return res, nil
}

// frontEnd is the encoder's input for the first n frames after conv2 (n·d values): conv1 +
// GELU over the mel frames those frames read (conv2's output t reads conv1's 2t−1..2t+1,
// which read mel frames 2t−2..2t+2: a crop of 2n+1 frames, and past the last one conv1's own
// zero padding, as transformers pads), conv2 + GELU, plus embed_positions.
func (e *qwen2Audio) frontEnd(sc *scratch, mel []float32, n int) ([]float32, error) {
	m := min(len(mel)/e.mels, 2*n+1)
	h1 := sc.get(m * e.d)
	if _, err := e.conv1.Forward(sc, h1, mel[:m*e.mels], m); err != nil {
		return nil, err
	}
	x := sc.get(n * e.d)
	if got, err := e.conv2.Forward(sc, x, h1[:2*n*e.d], 2*n); err != nil || got != n {
		return nil, fmt.Errorf("conv2 gave %d frames, want %d: %v", got, n, err)
	}
	addInto(x, e.pos[:n*e.d])
	return x, nil
}

// avgPool2 is AvgPool1d(2, 2) over time for the first rows pooled rows: dst row r is the mean
// of x rows 2r and 2r+1 (width d).
func avgPool2(dst, x []float32, rows, d int) {
	for r := 0; r < rows; r++ {
		a, b, o := x[2*r*d:(2*r+1)*d], x[(2*r+1)*d:(2*r+2)*d], dst[r*d:(r+1)*d]
		for i := range o {
			o[i] = (a[i] + b[i]) / 2
		}
	}
}

// extractor is the checkpoint's WhisperFeatureExtractor (preprocessor_config.json), read once.
func (e *qwen2Audio) extractor() (*audiofeat.Extractor, error) {
	e.featMu.Lock()
	defer e.featMu.Unlock()
	if e.feat != nil || e.featErr != nil {
		return e.feat, e.featErr
	}
	data, path, err := readProcessorConfig(e.model, true)
	if err != nil {
		e.featErr = err
		return nil, err
	}
	cfg, err := audiofeat.ParseConfig(data)
	switch {
	case err != nil:
		e.featErr = fmt.Errorf("%s: %w", path, err)
	case cfg.FeatureSize != e.mels:
		e.featErr = fmt.Errorf("%s: feature_size %d, but audio_config.num_mel_bins is %d", path, cfg.FeatureSize, e.mels)
	case cfg.NFrames() != 2*e.maxSource:
		e.featErr = fmt.Errorf("%s: %d frames per chunk (chunk_length·sampling_rate/hop_length), but the encoder takes 2·max_source_positions = %d", path, cfg.NFrames(), 2*e.maxSource)
	default:
		e.feat, e.featErr = audiofeat.NewExtractor(cfg)
		if e.featErr != nil {
			e.featErr = fmt.Errorf("%s: %w", path, e.featErr)
		}
	}
	return e.feat, e.featErr
}

// prepare is Qwen2-Audio's processor for one WAV file: WhisperFeatureExtractor's log-mel
// (media/audiofeat: padded or truncated to 30 s; several channels mixed to mono by their
// mean as librosa.to_mono does; another sampling rate is refused with the ffmpeg line that
// converts it) laid out frame after frame, with the feature attention mask's length as Valid.
// The token count is the processor's ((L−1)//2+1−2)//2+1.
func (e *qwen2Audio) prepare(path string) (Media, int, error) {
	ex, err := e.extractor()
	if err != nil {
		return Media{}, 0, err
	}
	f, err := ex.ExtractFile(path)
	if err != nil {
		return Media{}, 0, err
	}
	feats := make([]float32, f.Frames*f.NMels)
	for c := 0; c < f.NMels; c++ {
		for t := 0; t < f.Frames; t++ {
			feats[t*f.NMels+c] = f.Mel[c*f.Frames+t]
		}
	}
	return Media{Kind: "audio", Rows: f.Frames, Features: feats, Valid: f.ValidFrames}, f.AudioTokens, nil
}

// Qwen2-Audio's processor strings (Qwen2AudioProcessor's audio_token, audio_bos_token,
// audio_eos_token).
const (
	qwen2AudioToken = "<|AUDIO|>"
	qwen2AudioBOS   = "<|audio_bos|>"
	qwen2AudioEOS   = "<|audio_eos|>"
)

// qwen2AudioPrompts lays out Qwen2-Audio prompts as its processor does.
type qwen2AudioPrompts struct{ enc *qwen2Audio }

// buildInput writes the prompt's text with one <|AUDIO|> per clip, expands each to the clip's
// token count and tokenizes the result; positions are 1-D (0..n−1).
//
// The text: with Chat, the checkpoint's own audio-aware chat template when it has one (the
// processor's chat_template.jinja / chat_template.json, else a tokenizer template that mentions
// audio), rendered with one user message of parts {type: audio, audio_url: path}… then
// {type: text}; otherwise — and always without Chat — the processor's default layout,
// "Audio k: <|audio_bos|><|AUDIO|><|audio_eos|>\n" for each clip before the text, as the
// user turn of the tokenizer's plain template with Chat (its default system prompt included,
// as the processor's default template writes it; without any template, the processor's
// default template's own ChatML turn).
//
// The expansion is the processor's: the k-th <|AUDIO|> becomes as many copies as the k-th
// clip gives frames, wrapped in <|audio_bos|>…<|audio_eos|> when neither surrounds it. A clip
// too short for any frame (20 ms or less) keeps its markers and no <|AUDIO|>, and adds no
// medium (transformers discards its encoder output).
func (q qwen2AudioPrompts) buildInput(m *Model, sample string, p Prompt, limit int) (Input, error) {
	var media []Media
	var counts []int
	for _, md := range p.Media {
		x, n, err := q.enc.prepare(md.Paths[0])
		if err != nil {
			return Input{}, fmt.Errorf("%s: audio: %w", sample, err)
		}
		counts = append(counts, n)
		if n > 0 {
			media = append(media, x)
		}
	}
	if c := strings.Count(p.Text, qwen2AudioToken); c > 0 && len(p.Media) > 0 {
		return Input{}, fmt.Errorf("%w: %s: the text holds %s itself; the prompt builder writes one per audio input", ErrMedia, sample, qwen2AudioToken)
	}
	text, err := q.text(m, p)
	if err != nil {
		return Input{}, fmt.Errorf("%s: %w", sample, err)
	}
	if c := strings.Count(text, qwen2AudioToken); c != len(counts) {
		return Input{}, fmt.Errorf("%w: %s: the prompt has %d %s markers for %d audio inputs", ErrMedia, sample, c, qwen2AudioToken, len(counts))
	}
	text = expandAudio(text, counts)
	ids, err := encodePrompt(m.Tokenizer, text, !p.Chat, limit)
	if err != nil {
		return Input{}, fmt.Errorf("%s: %w", sample, err)
	}
	return Input{Tokens: ids, Media: media}, nil
}

// text is the prompt before expansion (one <|AUDIO|> per clip).
func (q qwen2AudioPrompts) text(m *Model, p Prompt) (string, error) {
	if p.Chat && len(p.Media) > 0 {
		if tpl := audioChatTemplate(m); tpl != "" {
			var parts []tokenizer.Part
			for _, md := range p.Media {
				parts = append(parts, tokenizer.Part{Type: "audio", URL: md.Paths[0]})
			}
			parts = append(parts, tokenizer.Part{Type: "text", Text: p.Text})
			eos := ""
			if e := m.Tokenizer.EOS(); len(e) > 0 {
				eos = m.Tokenizer.Token(e[0])
			}
			return tokenizer.RenderChatTemplate(tpl, []tokenizer.Message{{Role: "user", Parts: parts}}, true, "", eos)
		}
	}
	var b strings.Builder
	for k := range p.Media {
		fmt.Fprintf(&b, "Audio %d: %s%s%s\n", k+1, qwen2AudioBOS, qwen2AudioToken, qwen2AudioEOS)
	}
	b.WriteString(p.Text)
	if !p.Chat {
		return b.String(), nil
	}
	if m.Tokenizer.ChatTemplate() == "" {
		// No template at all: what the processor's default template writes for one user turn.
		return "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n" + b.String() + "<|im_end|>\n<|im_start|>assistant\n", nil
	}
	return m.Tokenizer.ApplyChatTemplate([]tokenizer.Message{{Role: "user", Content: b.String()}}, true)
}

// audioChatTemplate is the checkpoint's chat template with audio markup, "" when it has none:
// the processor's own (chat_template.jinja, then chat_template.json, which
// processor.apply_chat_template prefers), else the tokenizer's when it mentions audio.
func audioChatTemplate(m *Model) string {
	var cands []string
	if dir := m.Dir(); dir != "" {
		if b, err := os.ReadFile(filepath.Join(dir, "chat_template.jinja")); err == nil {
			cands = append(cands, string(b))
		}
		if b, err := os.ReadFile(filepath.Join(dir, "chat_template.json")); err == nil {
			var ct struct {
				ChatTemplate string `json:"chat_template"`
			}
			if json.Unmarshal(b, &ct) == nil {
				cands = append(cands, ct.ChatTemplate)
			}
		}
	}
	cands = append(cands, m.Tokenizer.ChatTemplate())
	for _, t := range cands {
		if strings.Contains(t, "audio") || strings.Contains(t, qwen2AudioToken) {
			return t
		}
	}
	return ""
}

// expandAudio replaces the k-th <|AUDIO|> of text by counts[k] copies, wrapped in
// <|audio_bos|>…<|audio_eos|> when neither marker surrounds it (processing_qwen2_audio.py).
func expandAudio(text string, counts []int) string {
	var b strings.Builder
	rest, prev := text, ""
	for _, n := range counts {
		i := strings.Index(rest, qwen2AudioToken)
		before, after := rest[:i], rest[i+len(qwen2AudioToken):]
		hasBOS := strings.HasSuffix(prev+before, qwen2AudioBOS)
		hasEOS := strings.HasPrefix(after, qwen2AudioEOS)
		b.WriteString(before)
		run := strings.Repeat(qwen2AudioToken, n)
		if !hasBOS && !hasEOS {
			run = qwen2AudioBOS + run + qwen2AudioEOS
		}
		b.WriteString(run)
		prev, rest = qwen2AudioToken, after
	}
	b.WriteString(rest)
	return b.String()
}
