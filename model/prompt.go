package model

import (
	"context"
	"errors"
	"fmt"

	"github.com/neurosurg/neurosurg/model/tokenizer"
)

// Medium is one medium of a prompt as a user names it: an image or an audio clip (one file),
// or a video (its frames, in order).
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
	for _, md := range p.Media {
		if len(md.Paths) == 0 {
			return Input{}, fmt.Errorf("%s: %s input without a file", sample, md.Kind)
		}
		if md.Kind != "video" && len(md.Paths) != 1 {
			return Input{}, fmt.Errorf("%s: one %s input has %d files (only a video has frames)", sample, md.Kind, len(md.Paths))
		}
		// A family that takes video registers an encoder of kind "video" (Qwen2-VL's is its
		// vision tower again, with the video placeholder).
		if !m.Accepts(md.Kind) {
			return Input{}, m.MediaError(sample, md.Kind)
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
	ids, err := tok.EncodeLimit(text, special, limit)
	if errors.Is(err, tokenizer.ErrTooLong) {
		return nil, fmt.Errorf("%w: the prompt has more than %d tokens", ErrTooLong, limit)
	}
	return ids, err
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
