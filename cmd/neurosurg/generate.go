package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/neurosurg/neurosurg/model"
	"github.com/neurosurg/neurosurg/model/tokenizer"
	"github.com/neurosurg/neurosurg/pipeline"
	"github.com/urfave/cli/v3"
)

func init() {
	register(func() *cli.Command {
		return &cli.Command{
			Name:      "generate",
			Usage:     "continue a prompt with the model (greedy or sampled)",
			ArgsUsage: "CKPT",
			UsageText: `neurosurg generate testdata/stories260K --prompt "Once upon a time" --max-tokens 60
neurosurg generate testdata/stories260K --prompt "The cat" --temperature 0.8 --top-p 0.9 --seed 7
neurosurg generate /models/Qwen2-0.5B-Instruct --chat --prompt "Name three colours."
neurosurg generate /models/Qwen2-VL-2B-Instruct --chat --image cat.png --prompt "What is in the picture?"`,
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "prompt", Aliases: []string{"p"}, Usage: "prompt text"},
				&cli.IntFlag{Name: "max-tokens", Aliases: []string{"n"}, Value: 64},
				&cli.BoolFlag{Name: "greedy", Usage: "argmax decoding (the default unless --temperature > 0)"},
				&cli.FloatFlag{Name: "temperature", Aliases: []string{"t"}},
				&cli.IntFlag{Name: "top-k"},
				&cli.FloatFlag{Name: "top-p"},
				&cli.Uint64Flag{Name: "seed"},
				&cli.BoolFlag{Name: "chat", Usage: "wrap the prompt in the model's chat template"},
				&cli.BoolFlag{Name: "json", Usage: "print JSON"},
				&cli.StringSliceFlag{Name: "image", Usage: "an image file (repeatable: several images, in order)"},
				&cli.StringFlag{Name: "video", Usage: "a video: its frames F1,F2,… or a directory of them"},
				&cli.StringFlag{Name: "audio", Usage: "an audio file (WAV)"},
			},
			Action: func(ctx context.Context, cmd *cli.Command) error {
				o := model.GenerateOptions{MaxTokens: int(cmd.Int("max-tokens")), Seed: cmd.Uint64("seed"), TopK: int(cmd.Int("top-k")),
					TopP: float32(cmd.Float("top-p")), Temperature: float32(cmd.Float("temperature"))}
				if err := valid(o.Validate()); err != nil {
					return err
				}
				if cmd.Bool("greedy") {
					o.Temperature = 0
				}
				m, in, err := openWithPrompt(cmd)
				if err != nil {
					return err
				}
				defer m.Close()
				ids := in.Tokens
				o.Stop = m.Tokenizer.EOS()
				if bos, ok := m.Tokenizer.BOS(); ok && m.Config().ModelType == "llama" {
					o.Stop = append(o.Stop, bos) // llama2.c-style models end a story with BOS
				}
				gens, err := m.GenerateInputs(ctx, []model.Input{in}, o)
				if err != nil {
					return err
				}
				// Decode prompt and continuation together so word boundaries come out right.
				text := m.Tokenizer.Decode(append(pipeline.PromptText(m, ids), gens[0].Tokens...))
				if cmd.Bool("json") {
					return printJSON(cmd.Root().Writer, map[string]any{"prompt_ids": ids, "ids": gens[0].Tokens, "text": text})
				}
				fmt.Fprintln(cmd.Root().Writer, text)
				return nil
			},
		}
	})
	register(func() *cli.Command {
		return &cli.Command{
			Name:      "logits",
			Usage:     "print the top-K next-token ids, tokens and logits at the last position",
			ArgsUsage: "CKPT",
			UsageText: `neurosurg logits testdata/stories260K --prompt "Once upon a time" --top 5
neurosurg logits testdata/stories260K --prompt "The cat" --top 10 --json
neurosurg logits /models/Qwen2-VL-2B-Instruct --chat --video frames/ --prompt "What happens?" --json
neurosurg logits /models/Qwen2-Audio-7B-Instruct --chat --audio clip.wav --prompt "What is the sound?"`,
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "prompt", Aliases: []string{"p"}},
				&cli.IntFlag{Name: "top", Aliases: []string{"k"}, Value: 10},
				&cli.BoolFlag{Name: "chat"},
				&cli.BoolFlag{Name: "json"},
				&cli.StringSliceFlag{Name: "image", Usage: "an image file (repeatable: several images, in order)"},
				&cli.StringFlag{Name: "video", Usage: "a video: its frames F1,F2,… or a directory of them"},
				&cli.StringFlag{Name: "audio", Usage: "an audio file (WAV)"},
			},
			Action: func(ctx context.Context, cmd *cli.Command) error {
				if err := valid(model.ValidateTop(int(cmd.Int("top")))); err != nil {
					return err
				}
				m, in, err := openWithPrompt(cmd)
				if err != nil {
					return err
				}
				defer m.Close()
				ids := in.Tokens
				res, err := m.ForwardInputs(ctx, []model.Input{in}, model.ForwardOptions{})
				if err != nil {
					return err
				}
				top := model.TopK(res.Logits[0], int(cmd.Int("top")), m.Tokenizer.Decode)
				if cmd.Bool("json") {
					return printJSON(cmd.Root().Writer, map[string]any{"prompt_ids": ids, "top": top})
				}
				for i, e := range top {
					fmt.Fprintf(cmd.Root().Writer, "%2d  %6d  %-16q %10.4f  p=%.4f\n", i+1, e.ID, e.Token, e.Logit, e.Prob)
				}
				return nil
			},
		}
	})
	register(func() *cli.Command {
		return &cli.Command{
			Name:      "tokenize",
			Usage:     "print the token ids and pieces of TEXT (or, with --decode, the text of ids)",
			ArgsUsage: "CKPT TEXT",
			UsageText: `neurosurg tokenize testdata/stories260K "Once upon a time"
neurosurg tokenize testdata/stories260K --decode "1 403 407 261 378"
neurosurg tokenize --json --no-special testdata/stories260K "The cat sat."`,
			Flags: []cli.Flag{
				&cli.BoolFlag{Name: "decode", Usage: "TEXT is a list of ids to decode"},
				&cli.BoolFlag{Name: "no-special", Usage: "do not add BOS or other special tokens"},
				&cli.BoolFlag{Name: "json"},
			},
			Action: func(ctx context.Context, cmd *cli.Command) error {
				if cmd.Args().Len() != 2 {
					return usageErrorf("tokenize takes CKPT and TEXT")
				}
				tok, err := tokenizer.Load(cmd.Args().Get(0))
				if err != nil {
					return err
				}
				w := cmd.Root().Writer
				if cmd.Bool("decode") {
					var ids []int32
					for _, f := range strings.FieldsFunc(cmd.Args().Get(1), func(r rune) bool { return r == ' ' || r == ',' || r == '[' || r == ']' }) {
						n, err := strconv.Atoi(f)
						if err != nil {
							return usageErrorf("--decode: %q is not a token id", f)
						}
						ids = append(ids, int32(n))
					}
					fmt.Fprintln(w, tok.Decode(ids))
					return nil
				}
				ids, err := tok.Encode(cmd.Args().Get(1), !cmd.Bool("no-special"))
				if err != nil {
					return err
				}
				pieces := make([]string, len(ids))
				for i, id := range ids {
					pieces[i] = tok.Token(id)
				}
				if cmd.Bool("json") {
					return printJSON(w, map[string]any{"ids": ids, "pieces": pieces})
				}
				fmt.Fprintln(w, strings.Trim(fmt.Sprint(ids), "[]"))
				fmt.Fprintf(w, "%q\n", pieces)
				return nil
			},
		}
	})
}

// openWithPrompt opens the model of the single argument and builds the prompt of --prompt,
// --image, --video, --audio and --chat (model.BuildInput: the family's layout).
func openWithPrompt(cmd *cli.Command) (*model.Model, model.Input, error) {
	dir, err := oneArg(cmd, "CKPT")
	if err != nil {
		return nil, model.Input{}, err
	}
	p, err := pipeline.PromptFlags(cmd.String("prompt"), cmd.StringSlice("image"), cmd.String("video"), cmd.String("audio"), cmd.Bool("chat"))
	if err != nil {
		return nil, model.Input{}, valid(err)
	}
	m, err := pipeline.OpenModel(dir)
	if err != nil {
		return nil, model.Input{}, err
	}
	if m.Tokenizer == nil {
		m.Close()
		return nil, model.Input{}, fmt.Errorf("%s: no tokenizer.json or vocab.json", dir)
	}
	in, err := m.BuildInput("prompt", p)
	if err != nil {
		m.Close()
		return nil, model.Input{}, err
	}
	if len(in.Tokens) == 0 {
		m.Close()
		return nil, model.Input{}, usageErrorf("--prompt is empty and the tokenizer adds no BOS")
	}
	return m, in, nil
}
