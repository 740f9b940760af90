package model

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"github.com/neurosurg/neurosurg/media/imageproc"
	"github.com/neurosurg/neurosurg/model/tokenizer"
)

// instructBLIPPrompts lays out InstructBLIP prompts as InstructBlipProcessor does. The model
// has no chat template: the language model reads BOS + text. With an image, the query rows
// (num_query_tokens placeholders) come first — [queries][BOS text] — and the Q-Former reads
// the same text through its own tokenizer (qformer_tokenizer/: [CLS] text [SEP]).
type instructBLIPPrompts struct {
	img *instructBLIP

	mu   sync.Mutex
	qtok *tokenizer.WordPiece // loaded on first use from the checkpoint's qformer_tokenizer/
	proc *imageproc.CLIPConfig
}

// QFormerTokenizerDir is the folder of an InstructBLIP checkpoint holding the Q-Former's
// BERT tokenizer (vocab.txt and its config files).
const QFormerTokenizerDir = "qformer_tokenizer"

func (p *instructBLIPPrompts) buildInput(m *Model, sample string, pr Prompt, limit int) (Input, error) {
	if pr.Chat {
		return Input{}, fmt.Errorf("%s: InstructBLIP has no chat template; give the prompt as plain text (it follows BOS)", sample)
	}
	ids, err := TextPrompt(m.Tokenizer, pr.Text, false, limit)
	if err != nil {
		return Input{}, fmt.Errorf("%s: %w", sample, err)
	}
	if len(pr.Media) == 0 {
		return Input{Tokens: ids}, nil
	}
	if len(pr.Media) > 1 {
		return Input{}, fmt.Errorf("%s: %d media; InstructBLIP takes one image per prompt", sample, len(pr.Media))
	}
	qtok, proc, err := p.load(m)
	if err != nil {
		return Input{}, fmt.Errorf("%s: %w", sample, err)
	}
	md, err := p.img.prepare(proc, pr.Media[0].Paths[0])
	if err != nil {
		return Input{}, fmt.Errorf("%s: image: %w", sample, err)
	}
	md.Text = qtok.Encode(pr.Text, true)
	if n := len(md.Text); n > p.img.positions.rows {
		return Input{}, fmt.Errorf("%s: %w: the instruction is %d Q-Former tokens, its position embeddings hold %d", sample, ErrTooLong, n, p.img.positions.rows)
	}
	toks := slices.Concat(slices.Repeat([]int32{p.img.placeholderID}, p.img.nQuery), ids)
	if limit > 0 && len(toks) > limit {
		return Input{}, tooLong(sample, len(toks), limit)
	}
	return Input{Tokens: toks, Media: []Media{md}}, nil
}

// load reads the Q-Former tokenizer and the image processor's config of the checkpoint once.
// A checkpoint without preprocessor_config.json gets BlipImageProcessor at the vision tower's
// image_size (bicubic, no crop, OpenAI CLIP mean and std, as the conversion script builds it).
func (p *instructBLIPPrompts) load(m *Model) (*tokenizer.WordPiece, *imageproc.CLIPConfig, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.qtok != nil {
		return p.qtok, p.proc, nil
	}
	dir := m.Dir()
	if dir == "" {
		return nil, nil, fmt.Errorf("%w: the model was not opened from a checkpoint folder, so it has no %s/", ErrMediaPath, QFormerTokenizerDir)
	}
	qtok, err := tokenizer.LoadWordPiece(filepath.Join(dir, QFormerTokenizerDir))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil, fmt.Errorf("%s: the checkpoint has no %s/vocab.txt, the Q-Former's tokenizer for the instruction: %w", dir, QFormerTokenizerDir, err)
		}
		return nil, nil, err
	}
	if qtok.VocabSize() > p.img.words.rows {
		return nil, nil, fmt.Errorf("%s: %d pieces, more than the Q-Former's vocab_size %d", filepath.Join(dir, QFormerTokenizerDir, "vocab.txt"), qtok.VocabSize(), p.img.words.rows)
	}
	data, path, err := readProcessorConfig(m, false)
	if err != nil {
		return nil, nil, err
	}
	var proc imageproc.CLIPConfig
	if data != nil {
		if proc, err = imageproc.ParseCLIPConfig(data, path); err != nil {
			return nil, nil, err
		}
	} else {
		s := p.img.imageSide
		proc, err = imageproc.ParseCLIPConfig(fmt.Appendf(nil, `{"image_processor_type": "BlipImageProcessor", "size": {"height": %d, "width": %d}}`, s, s), "BlipImageProcessor defaults")
		if err != nil {
			return nil, nil, err
		}
	}
	p.qtok, p.proc = qtok, &proc
	return qtok, &proc, nil
}

// prepare is BlipImageProcessor on the picture at path (decoded as transformers' load_image
// does: EXIF orientation applied, converted to RGB): resize to the configured size with
// Pillow's filter, rescale and normalise, channel-first; then the p×p patches in raster order,
// each row its pixels channel by channel, row by row — the layout Conv2d's kernel
// [hidden, 3, p, p] multiplies.
func (e *instructBLIP) prepare(proc *imageproc.CLIPConfig, path string) (Media, error) {
	pic, err := imageproc.DecodeFile(path, imageproc.DecodeOptions{})
	if err != nil {
		return Media{}, err
	}
	chw, h, w, err := proc.Preprocess(pic)
	if err != nil {
		return Media{}, fmt.Errorf("%s: %w", path, err)
	}
	if h != e.imageSide || w != e.imageSide {
		return Media{}, fmt.Errorf("%w: %s: the processor makes %d×%d pixels, the vision tower takes %d×%d (vision_config.image_size)", ErrMedia, path, w, h, e.imageSide, e.imageSide)
	}
	return Media{Kind: "image", Rows: e.patches(), Features: patchRows(chw, 1, e.imageSide, e.patchSide)}, nil
}
