package pipeline

import (
	"errors"
	"fmt"
	"strings"

	"github.com/neurosurg/neurosurg/model"
)

// ErrPromptFlag reports a prompt option that names no file (an empty --image, a --video list
// with an empty entry): a usage error, found before the model is opened.
var ErrPromptFlag = errors.New("bad prompt option")

// PromptFlags is the prompt of logits, generate and lens: the text, the images (one file
// each, in order), a video — a comma-separated list of frames or one directory of them — and
// an audio file, in the order images, video, audio (as a sample's). model.BuildInput lays it
// out; the files are read there, and a bad one is an error naming it.
func PromptFlags(text string, images []string, video, audio string, chat bool) (model.Prompt, error) {
	p := model.Prompt{Text: text, Chat: chat}
	for _, f := range images {
		if strings.TrimSpace(f) == "" {
			return p, fmt.Errorf("%w: --image: an empty path", ErrPromptFlag)
		}
		p.Media = append(p.Media, model.Medium{Kind: "image", Paths: []string{f}})
	}
	if video != "" {
		frames := strings.Split(video, ",")
		for i, f := range frames {
			if strings.TrimSpace(f) == "" {
				return p, fmt.Errorf("%w: --video: entry %d of %q is empty (want F1,F2,… or a directory)", ErrPromptFlag, i+1, video)
			}
		}
		p.Media = append(p.Media, model.Medium{Kind: "video", Paths: frames})
	}
	if audio != "" {
		p.Media = append(p.Media, model.Medium{Kind: "audio", Paths: []string{audio}})
	}
	return p, nil
}

// PromptText is the text of a prompt's tokens for printing beside a continuation: its special
// tokens and media placeholders left out.
func PromptText(m *model.Model, ids []int32) []int32 {
	mt := m.MediaTokens()
	var out []int32
	for _, id := range ids {
		if !m.Tokenizer.IsSpecial(id) && mt.Kind(id) == "" {
			out = append(out, id)
		}
	}
	return out
}
