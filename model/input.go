package model

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
)

// Input is one sequence of a forward pass: token ids, with embedding spans that replace the
// token embeddings at their rows (encoder outputs at placeholder positions), media the model's
// own encoders turn into such spans, and position ids.
type Input struct {
	Tokens []int32
	Embeds []EmbedSpan
	// Media fill the runs of the family's placeholder token in order: the k-th medium's
	// encoder output replaces the k-th run, which must be as long as that output.
	Media []Media
	// Positions are the rotary positions: nil for 0..n-1; n values (1-D); or 3×n for M-RoPE
	// (temporal row, then height, then width), which needs rope_scaling.mrope_section.
	Positions []int32
}

// EmbedSpan replaces the token embeddings at rows Start..Start+Rows-1 with Data (Rows ×
// hidden size).
type EmbedSpan struct {
	Start, Rows int
	Data        []float32
}

// Media is one image's or clip's encoder input: Rows feature vectors (Rows × the encoder's
// input width), e.g. flattened patches.
type Media struct {
	Kind     string // "image", "video", "audio"
	Rows     int
	Features []float32
	// Grid is the medium's patch grid (temporal, height, width) for encoders that place their
	// rows by it (Qwen2-VL's 2-D rotary and cu_seqlens: Rows = t·h·w); zero for the others.
	Grid [3]int
	// Size is the picture's original (height, width) where the encoder needs it (LLaVA-NeXT
	// unpads its tile grid to the picture's aspect ratio); zero otherwise.
	Size [2]int
	// Text is token ids the encoder reads beside its features, in its own vocabulary:
	// InstructBLIP's instruction through the Q-Former's BERT tokenizer. Nil for most.
	Text []int32
	// Valid is how many of the first Rows are the medium itself, the rest being padding its
	// encoder masks (a Qwen2-Audio clip: the feature attention mask's ones among the 3000
	// frames of 30 s); 0 means all Rows.
	Valid int
}

// ErrMedia reports an input with media the model cannot take (a text-only checkpoint given an
// image, an audio clip to a vision model).
var ErrMedia = errors.New("model: media the checkpoint cannot take")

// Accepts reports whether the model has an encoder for media of kind ("image", "audio"):
// what a caller checks before it records a sample with such a field, to fail naming the
// sample instead of running it as text.
func (m *Model) Accepts(kind string) bool { return m.encoder(kind) != nil }

// MediaError is the error for a sample whose media kind the model cannot take.
func (m *Model) MediaError(sample, kind string) error {
	return fmt.Errorf("%w: %s has %s input, but %s takes %s", ErrMedia, sample, kind, m.cfg.Architecture, m.acceptedKinds())
}

func (m *Model) acceptedKinds() string {
	if len(m.encoders) == 0 {
		return "text only"
	}
	s := ""
	for i, e := range m.encoders {
		if i > 0 {
			s += ", "
		}
		s += e.kind()
	}
	return "text and " + s
}

// mediaEncoder is an encoder (and projector) a family adds: it turns one medium into rows of
// the language model's hidden size, firing taps and applying the mask at its FFN sites.
// prepareInputs checks the rows' count and that they are finite (ErrNonFinite).
type mediaEncoder interface {
	kind() string
	placeholder() int32
	inputWidth() int
	encode(ctx context.Context, seq int, md Media, taps []Tap, mask *Mask) ([]float32, error)
}

// PlaceholderKind is the media kind whose encoder output replaces the runs of token id ("" for
// none): what a caller that splits positions by modality (MINER) asks, since a family's
// placeholder need not be named like one (legacy InstructBLIP's query rows carry [PAD]).
func (m *Model) PlaceholderKind(id int32) string {
	for _, e := range m.encoders {
		if e.placeholder() == id {
			return e.kind()
		}
	}
	return ""
}

func (m *Model) encoder(kind string) mediaEncoder {
	for _, e := range m.encoders {
		if e.kind() == kind {
			return e
		}
	}
	return nil
}

// prepareInputs checks every input and runs the encoders of their media, returning inputs
// whose media have become embedding spans (the caller's are not modified).
func (m *Model) prepareInputs(ctx context.Context, in []Input, opts ForwardOptions) ([]Input, error) {
	out := make([]Input, len(in))
	d := m.cfg.Hidden
	for i, x := range in {
		n := len(x.Tokens)
		out[i] = Input{Tokens: x.Tokens, Positions: x.Positions, Embeds: append([]EmbedSpan(nil), x.Embeds...)}
		nth := map[string]int{} // the k-th medium of a kind fills the k-th run of its placeholder
		for k, md := range x.Media {
			enc := m.encoder(md.Kind)
			if enc == nil {
				return nil, m.MediaError(fmt.Sprintf("sequence %d", i), md.Kind)
			}
			if md.Rows <= 0 || len(md.Features) != md.Rows*enc.inputWidth() {
				return nil, fmt.Errorf("%w: sequence %d, %s %d: %d features for %d rows of width %d", ErrMedia, i, md.Kind, k, len(md.Features), md.Rows, enc.inputWidth())
			}
			start, rows, ok := placeholderRun(x.Tokens, enc.placeholder(), nth[md.Kind])
			nth[md.Kind]++
			if !ok {
				return nil, fmt.Errorf("%w: sequence %d has %d %s inputs but fewer runs of placeholder token %d", ErrMedia, i, len(x.Media), md.Kind, enc.placeholder())
			}
			emb, err := enc.encode(ctx, i, md, opts.Taps, opts.Mask)
			if err != nil {
				return nil, err
			}
			if !finiteRow(emb) {
				return nil, fmt.Errorf("%w: sequence %d, %s %d: the encoder's output is not finite", ErrNonFinite, i, md.Kind, k)
			}
			if len(emb) != rows*d {
				return nil, fmt.Errorf("%w: sequence %d, %s %d: the encoder gives %d rows, the placeholder run at %d has %d", ErrMedia, i, md.Kind, k, len(emb)/d, start, rows)
			}
			out[i].Embeds = append(out[i].Embeds, EmbedSpan{Start: start, Rows: rows, Data: emb})
		}
		// A placeholder run without its medium (or a span the caller gave) would run as the
		// placeholder token's embedding: refuse it, as transformers does ("image features and
		// image tokens do not match").
		for _, enc := range m.encoders {
			runs, given := 0, 0
			for k := 0; ; k++ {
				start, _, ok := placeholderRun(x.Tokens, enc.placeholder(), k)
				if !ok {
					break
				}
				if !slices.ContainsFunc(x.Embeds, func(e EmbedSpan) bool { return e.Start == start }) {
					runs++
				}
			}
			for _, md := range x.Media {
				if md.Kind == enc.kind() {
					given++
				}
			}
			if runs != given {
				return nil, fmt.Errorf("%w: sequence %d has %d runs of the %s placeholder token %d and %d %s inputs", ErrMedia, i, runs, enc.kind(), enc.placeholder(), given, enc.kind())
			}
		}
		for _, e := range out[i].Embeds {
			if e.Start < 0 || e.Rows <= 0 || e.Start+e.Rows > n || len(e.Data) != e.Rows*d {
				return nil, errorf("sequence %d: embedding span at %d of %d rows (%d values) does not fit %d tokens of width %d", i, e.Start, e.Rows, len(e.Data), n, d)
			}
		}
		switch p := x.Positions; {
		case p == nil:
		case len(p) == n, len(p) == 3*n && m.cfg.mropeSection() != [3]int{}:
			for _, v := range p {
				if v < 0 {
					return nil, errorf("sequence %d: position %d is negative", i, v)
				}
			}
			if limit := m.cfg.PositionLimit(); limit > 0 {
				for _, v := range p {
					if int(v) >= limit {
						return nil, tooLong(fmt.Sprintf("sequence %d", i), int(v)+1, limit)
					}
				}
			}
		default:
			return nil, errorf("sequence %d: %d positions for %d tokens (want %d, or 3×%d with rope_scaling.mrope_section)", i, len(p), n, n, n)
		}
	}
	return out, nil
}

// placeholderRun finds the k-th run of consecutive id in toks.
func placeholderRun(toks []int32, id int32, k int) (start, rows int, ok bool) {
	for i := 0; i < len(toks); {
		if toks[i] != id {
			i++
			continue
		}
		j := i
		for j < len(toks) && toks[j] == id {
			j++
		}
		if k == 0 {
			return i, j - i, true
		}
		k--
		i = j
	}
	return 0, 0, false
}

// readProcessorConfig reads the checkpoint's preprocessor_config.json, with its path for
// messages. required: the family's processor has no defaults transformers would apply (LLaVA,
// mPLUG-Owl2, Qwen2-Audio), so a model without the file is ErrMediaPath; otherwise (Qwen2-VL,
// InstructBLIP) data is nil when there is none and the family takes its processor's defaults.
func readProcessorConfig(m *Model, required bool) (data []byte, path string, err error) {
	dir := m.Dir()
	if dir == "" {
		if !required {
			return nil, "", nil
		}
		return nil, "", fmt.Errorf("%w: the model was not opened from a directory: no preprocessor_config.json", ErrMediaPath)
	}
	path = filepath.Join(dir, "preprocessor_config.json")
	data, err = os.ReadFile(path)
	switch {
	case err == nil:
		return data, path, nil
	case !required && errors.Is(err, fs.ErrNotExist):
		return nil, path, nil
	}
	return nil, path, fmt.Errorf("%w: the processor's config: %v", ErrMediaPath, err)
}

// ErrMediaPath reports media of a kind the model has an encoder for but no processor that reads
// a sample's file for it: the encoder runs through ForwardInputs with Media the caller made.
var ErrMediaPath = errors.New("model: no processor reads this media file for the samples paths")

// mediaProcessor is the optional capability of an encoder that reads a sample's media file
// into its input (the family's preprocessing) and says how many placeholder tokens the
// encoder's output fills. The samples paths (record, verify, attribute) feed a medium only
// through an encoder that has one.
type mediaProcessor interface {
	prepare(path string) (md Media, tokens int, err error)
}

// PromptInput is the forward input of a sample (named in errors) whose prompt tokenizes to
// ids and whose media of kinds[k] are in the files paths[k] (as a samples file names them,
// relative to the working directory): the shared prompt builder of record, verify and
// attribute. Without media it is the ids as they are. Each medium is read by its encoder's processor and its run of the family's
// placeholder token (as many as the encoder's output rows) is inserted after the prompt's
// leading BOS (at the start when there is none), media in the order given: the "<image>\n"
// + text layout of LLaVA-style prompts. Errors: ErrMedia for a kind the model has no encoder
// for, ErrMediaPath for an encoder without a processor, the file's own error naming it.
func (m *Model) PromptInput(sample string, ids []int32, kinds, paths []string) (Input, error) {
	in := Input{Tokens: ids}
	if len(kinds) == 0 {
		return in, nil
	}
	if len(paths) != len(kinds) {
		return Input{}, fmt.Errorf("%s: %d media kinds for %d files", sample, len(kinds), len(paths))
	}
	if err := m.CheckMedia(sample, kinds); err != nil {
		return Input{}, err
	}
	at := 0
	if len(ids) > 0 && slices.Contains(m.cfg.BOS, ids[0]) {
		at = 1
	}
	var run []int32
	for k, kind := range kinds {
		enc := m.encoder(kind)
		p, ok := enc.(mediaProcessor)
		if !ok {
			return Input{}, fmt.Errorf("%w: %s has %s input; %s has an encoder for it but no processor for its files (feed it through ForwardInputs)", ErrMediaPath, sample, kind, m.cfg.Architecture)
		}
		md, n, err := p.prepare(paths[k])
		if err != nil {
			return Input{}, fmt.Errorf("%s: %s: %w", sample, kind, err)
		}
		// Runs of one kind must stay apart to be told apart (placeholderRun): a single
		// separator would change the prompt, so a sample takes one medium of each kind.
		for range n {
			run = append(run, enc.placeholder())
		}
		in.Media = append(in.Media, md)
	}
	in.Tokens = slices.Concat(ids[:at], run, ids[at:])
	return in, nil
}

// CheckMedia is what a samples path calls for each sample before it tokenizes it: ErrMedia
// naming the sample when the model has no encoder for one of its media kinds.
func (m *Model) CheckMedia(sample string, kinds []string) error {
	for _, k := range kinds {
		if !m.Accepts(k) {
			return m.MediaError(sample, k)
		}
	}
	return nil
}

// MediaTokens are the token ids that mark media in a model's prompts: per kind ("image",
// "video", "audio") the placeholder ids the encoders' outputs replace, and the markup ids
// around the runs (<|vision_start|>, <|audio_bos|>, …) that are not placeholders. MINER's
// modality split (algorithms.md §2.2) reads positions by these ids, never by token strings.
type MediaTokens struct {
	Placeholders map[string][]int32
	Markup       []int32
}

// placeholderKeys and markupKeys are the config keys that name media token ids across the
// families (top level or text_config): LLaVA's and InstructBLIP's image_token_index,
// Qwen2-VL's image_token_id, video_token_id and vision_start/end_token_id, Qwen2-Audio's
// audio_token_index.
var (
	placeholderKeys = map[string][]string{
		"image": {"image_token_id", "image_token_index"},
		"video": {"video_token_id", "video_token_index"},
		"audio": {"audio_token_id", "audio_token_index"},
	}
	markupKeys = []string{"vision_start_token_id", "vision_end_token_id", "audio_bos_token_id", "audio_eos_token_id",
		"audio_start_token_id", "audio_end_token_id"}
)

// MediaTokens lists the model's media token ids: each encoder's placeholder, and the ids
// the config names (a token id in range; the same id under two kinds is the first's).
func (m *Model) MediaTokens() MediaTokens {
	mt := MediaTokens{Placeholders: map[string][]int32{}}
	seen := map[int32]bool{}
	add := func(kind string, id int32) {
		if id < 0 || (m.cfg.Vocab > 0 && int(id) >= m.cfg.Vocab) || seen[id] {
			return
		}
		seen[id] = true
		if kind == "" {
			mt.Markup = append(mt.Markup, id)
		} else {
			mt.Placeholders[kind] = append(mt.Placeholders[kind], id)
		}
	}
	for _, e := range m.encoders {
		add(e.kind(), e.placeholder())
	}
	var cfgs []map[string]any
	if m.arch != nil {
		cfgs = append(cfgs, m.arch.Config)
		if tc, ok := m.arch.Config["text_config"].(map[string]any); ok {
			cfgs = append(cfgs, tc)
		}
	}
	id := func(key string) (int32, bool) {
		for _, c := range cfgs {
			if v, ok := c[key].(float64); ok && v == float64(int32(v)) {
				return int32(v), true
			}
		}
		return 0, false
	}
	for _, kind := range []string{"image", "video", "audio"} {
		for _, k := range placeholderKeys[kind] {
			if v, ok := id(k); ok {
				add(kind, v)
			}
		}
	}
	for _, k := range markupKeys {
		if v, ok := id(k); ok {
			add("", v)
		}
	}
	return mt
}

// Kind is the media kind whose placeholder id is, or "".
func (mt MediaTokens) Kind(id int32) string {
	for k, ids := range mt.Placeholders {
		if slices.Contains(ids, id) {
			return k
		}
	}
	return ""
}

// MediaEnd is where the media of in end: the position after its last placeholder or markup
// token (0 when it has none). What follows is the prompt's text — the positions perplexity is
// measured on and integrated gradients attributed at.
func (mt MediaTokens) MediaEnd(in Input) int {
	end := 0
	for p, id := range in.Tokens {
		if mt.Kind(id) != "" || slices.Contains(mt.Markup, id) {
			end = p + 1
		}
	}
	for _, e := range in.Embeds {
		end = max(end, e.Start+e.Rows)
	}
	return end
}

// Prefix is the input's first n positions, for a prompt cut short (integrated gradients at
// an earlier step): tokens, positions (each M-RoPE row), the embedding spans that end by n and
// all the media — n must not fall before the end of their placeholder runs (MediaEnd): the
// forward pass refuses a medium whose run the cut shortened or removed.
func (in Input) Prefix(n int) Input {
	out := Input{Tokens: in.Tokens[:n:n]}
	switch T := len(in.Tokens); len(in.Positions) {
	case T:
		out.Positions = in.Positions[:n:n]
	case 3 * T:
		out.Positions = slices.Concat(in.Positions[:n], in.Positions[T:T+n], in.Positions[2*T:2*T+n])
	}
	for _, e := range in.Embeds {
		if e.Start+e.Rows <= n {
			out.Embeds = append(out.Embeds, e)
		}
	}
	out.Media = in.Media
	return out
}

// Extend is the input followed by the tokens toks (a continuation to score): rotary
// positions, when the input has its own, continue one by one from its largest in every row,
// as transformers' generation continues after an M-RoPE prompt (rope_deltas).
func (in Input) Extend(toks []int32) Input {
	out := in
	out.Tokens = append(slices.Clone(in.Tokens), toks...)
	T := len(in.Tokens)
	if T == 0 || len(in.Positions) == 0 || len(in.Positions)%T != 0 {
		return out
	}
	rows := len(in.Positions) / T
	next := slices.Max(in.Positions) + 1
	pos := make([]int32, 0, rows*(T+len(toks)))
	for r := range rows {
		pos = append(pos, in.Positions[r*T:(r+1)*T]...)
		for k := range toks {
			pos = append(pos, next+int32(k))
		}
	}
	out.Positions = pos
	return out
}
