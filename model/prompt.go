package model

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/neurosurg/neurosurg/model/tokenizer"
)

// Medium is one medium of a prompt as a user names it: an image or an audio clip (one file),
// or a video (its frames, in order, or one directory of them: VideoFrames).
type Medium struct {
	Kind  string   // "image", "video", "audio"
	Paths []string // one file for image and audio; the frames of a video
}

// Prompt is one sample as a user gives it: text, media and whether the text is a user turn of
// the checkpoint's chat template (with the assistant's turn opened) or a plain prompt.
type Prompt struct {
	Text  string
	Media []Medium
	Chat  bool
}

// promptBuilder is the optional capability of a family that lays out its own prompts (chat
// template with media markup, placeholder expansion to the processor's token counts, M-RoPE
// positions): Qwen2-VL, Qwen2-Audio, LLaVA. Build sets Model.prompts; a family without one
// gets defaultInput.
type promptBuilder interface {
	buildInput(m *Model, sample string, p Prompt, limit int) (Input, error)
}

// BuildInput is the forward input of a sample (named in errors) — the one prompt builder of
// record, verify, attribute, logits, generate and lens. Media are read and preprocessed by the
// family's processor; their placeholder runs are as long as the encoder's output. A prompt of
// more than the model's positions is an error wrapping ErrTooLong; media the checkpoint cannot
// take are ErrMedia naming the sample.
func (m *Model) BuildInput(sample string, p Prompt) (Input, error) {
	if m.Tokenizer == nil {
		return Input{}, fmt.Errorf("%s: the checkpoint has no tokenizer", sample)
	}
	p.Media = slices.Clone(p.Media)
	for i, md := range p.Media {
		if md.Kind == "video" {
			frames, err := VideoFrames(md.Paths)
			if err != nil {
				return Input{}, fmt.Errorf("%s: video: %w", sample, err)
			}
			p.Media[i].Paths, md.Paths = frames, frames
		}
		if len(md.Paths) == 0 {
			return Input{}, fmt.Errorf("%s: %s input without a file", sample, md.Kind)
		}
		if md.Kind != "video" && len(md.Paths) != 1 {
			return Input{}, fmt.Errorf("%s: one %s input has %d files (only a video has frames)", sample, md.Kind, len(md.Paths))
		}
		// A family that takes video registers an encoder of kind "video" (Qwen2-VL's is its
		// vision tower again, with the video placeholder).
		if err := m.CheckMedia(sample, []string{md.Kind}); err != nil {
			return Input{}, err
		}
	}
	limit := m.cfg.PositionLimit()
	if m.prompts != nil {
		return m.prompts.buildInput(m, sample, p, limit)
	}
	return m.defaultInput(sample, p, limit)
}

// defaultInput is the layout of families without their own builder: BOS + text (or the chat
// template's user turn), with each medium's placeholder run inserted after the leading BOS
// (PromptInput).
func (m *Model) defaultInput(sample string, p Prompt, limit int) (Input, error) {
	ids, err := TextPrompt(m.Tokenizer, p.Text, p.Chat, limit)
	if err != nil {
		return Input{}, fmt.Errorf("%s: %w", sample, err)
	}
	if len(ids) == 0 || len(p.Media) == 0 {
		return Input{Tokens: ids}, nil
	}
	var kinds, paths []string
	for _, md := range p.Media {
		// PromptInput inserts the placeholder runs side by side: two media of one kind would
		// make one run, which no encoder output fills.
		if slices.Contains(kinds, md.Kind) {
			return Input{}, fmt.Errorf("%w: %s has more than one %s; %s lays out one %s a prompt", ErrMedia, sample, md.Kind, m.cfg.Architecture, md.Kind)
		}
		kinds, paths = append(kinds, md.Kind), append(paths, md.Paths[0])
	}
	in, err := m.PromptInput(sample, ids, kinds, paths)
	if err != nil {
		return Input{}, err
	}
	if limit > 0 && len(in.Tokens) > limit {
		return Input{}, tooLong(sample, len(in.Tokens), limit)
	}
	return in, nil
}

// TextPrompt is the token ids of a text prompt: BOS + text, or the text as a user turn of the
// checkpoint's chat template with the assistant's turn opened (docs/samples.md). limit > 0
// bounds the tokens: a longer prompt is an error wrapping ErrTooLong, found without
// tokenizing all of a huge text.
func TextPrompt(tok *tokenizer.Tokenizer, text string, chat bool, limit int) ([]int32, error) {
	special := true
	if chat {
		s, err := tok.ApplyChatTemplate([]tokenizer.Message{{Role: "user", Content: text}}, true)
		if err != nil {
			return nil, err
		}
		// The template writes its own special tokens (BOS included where the family has one).
		text, special = s, false
	}
	return encodePrompt(tok, text, special, limit)
}

// encodePrompt is tok.EncodeLimit with a prompt of more than limit tokens reported as an error
// wrapping ErrTooLong: the tokenizing step of every prompt builder.
func encodePrompt(tok *tokenizer.Tokenizer, text string, special bool, limit int) ([]int32, error) {
	ids, err := tok.EncodeLimit(text, special, limit)
	if errors.Is(err, tokenizer.ErrTooLong) {
		return nil, fmt.Errorf("%w: the prompt has more than %d tokens", ErrTooLong, limit)
	}
	return ids, err
}

// mediaTurn renders the checkpoint's chat template for one user turn of content parts — a
// {type: kind} part per medium, then {type: text} — with the assistant's turn opened: the
// layout of the processors' apply_chat_template (the template writes each kind's markup).
func mediaTurn(tok *tokenizer.Tokenizer, media []Medium, text string) (string, error) {
	parts := make([]tokenizer.Part, 0, len(media)+1)
	for _, md := range media {
		parts = append(parts, tokenizer.Part{Type: md.Kind})
	}
	parts = append(parts, tokenizer.Part{Type: "text", Text: text})
	return tok.ApplyChatTemplate([]tokenizer.Message{{Role: "user", Parts: parts}}, true)
}

// expandPlaceholders replaces the k-th placeholder token of each kind in ids (tokens[kind]:
// <image>, <|image_pad|>, <|video_pad|>) by counts[i] copies, medium i being the k-th of that
// kind in media: the processors' expansion to the encoder's rows. The prompt must hold
// exactly one placeholder per medium of each kind (the text may not hold them itself).
func expandPlaceholders(tok *tokenizer.Tokenizer, ids []int32, media []Medium, counts []int, tokens map[string]int32) ([]int32, error) {
	runs := map[int32][]int{} // each placeholder's counts, in order
	for _, id := range tokens {
		runs[id] = nil
	}
	total := len(ids)
	for i, md := range media {
		id := tokens[md.Kind]
		runs[id] = append(runs[id], counts[i])
		total += counts[i] - 1
	}
	seen := map[int32]int{}
	out := make([]int32, 0, max(total, 0))
	for _, id := range ids {
		r, ok := runs[id]
		if !ok {
			out = append(out, id)
			continue
		}
		if k := seen[id]; k < len(r) {
			out = append(out, slices.Repeat([]int32{id}, r[k])...)
		}
		seen[id]++
	}
	var bad []string
	for _, kind := range slices.Sorted(maps.Keys(tokens)) {
		if id := tokens[kind]; seen[id] != len(runs[id]) {
			bad = append(bad, fmt.Sprintf("%d %s tokens for %d %s inputs", seen[id], tok.Token(id), len(runs[id]), kind))
		}
	}
	if bad != nil {
		return nil, fmt.Errorf("the prompt has %s (the text may not hold them itself)", strings.Join(bad, " and "))
	}
	return out, nil
}

// EncodeMedia runs the encoders (and projectors) of in's media as a forward pass does before
// the language model, and returns how many rows of the language model's input they fill: what
// `bench encoder` times. No taps, no mask.
func (m *Model) EncodeMedia(ctx context.Context, in Input) (rows int, err error) {
	out, err := m.prepareInputs(ctx, []Input{in}, ForwardOptions{})
	if err != nil {
		return 0, err
	}
	for _, e := range out[0].Embeds {
		rows += e.Rows
	}
	return rows, nil
}

// frameExts are the picture files VideoFrames lists in a directory of frames.
var frameExts = []string{".png", ".jpg", ".jpeg", ".webp", ".bmp"}

// VideoFrames is a video's frames: paths as given, or — when paths is one directory — the
// picture files in it (.png, .jpg, .jpeg, .webp, .bmp, any case; other entries are skipped),
// in natural order of their names (frame2 before frame10), as MINER's frames at 1 fps are
// written by `ffmpeg -i clip.mp4 -vf fps=1 DIR/%05d.png`. A directory without frames is an
// error naming it.
func VideoFrames(paths []string) ([]string, error) {
	if len(paths) != 1 {
		return paths, nil
	}
	fi, err := os.Stat(paths[0])
	if err != nil || !fi.IsDir() {
		return paths, nil // a one-frame video; the processor's open names a missing file
	}
	ents, err := os.ReadDir(paths[0])
	if err != nil {
		return nil, err
	}
	var frames []string
	for _, e := range ents {
		if e.Type().IsRegular() && slices.Contains(frameExts, strings.ToLower(filepath.Ext(e.Name()))) {
			frames = append(frames, e.Name())
		}
	}
	if len(frames) == 0 {
		return nil, fmt.Errorf("%s: a directory without frames (%s files)", paths[0], strings.Join(frameExts, ", "))
	}
	slices.SortFunc(frames, naturalCompare)
	for i, f := range frames {
		frames[i] = filepath.Join(paths[0], f)
	}
	return frames, nil
}

// naturalCompare orders names with their digit runs compared as numbers: "f2" < "f10"
// (names equal as numbers, "f01" and "f1", by their bytes).
func naturalCompare(a, b string) int {
	if c := natural(a, b); c != 0 {
		return c
	}
	return strings.Compare(a, b)
}

func natural(a, b string) int {
	for a != "" && b != "" {
		da, db := digits(a), digits(b)
		if da > 0 && db > 0 {
			na, nb := strings.TrimLeft(a[:da], "0"), strings.TrimLeft(b[:db], "0")
			if c := len(na) - len(nb); c != 0 {
				return c
			}
			if c := strings.Compare(na, nb); c != 0 {
				return c
			}
			a, b = a[da:], b[db:]
			continue
		}
		if a[0] != b[0] {
			return int(a[0]) - int(b[0])
		}
		a, b = a[1:], b[1:]
	}
	return len(a) - len(b)
}

func digits(s string) int {
	n := 0
	for n < len(s) && s[n] >= '0' && s[n] <= '9' {
		n++
	}
	return n
}
