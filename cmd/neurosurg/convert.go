package main

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/neurosurg/neurosurg/formats/convert"
	"github.com/neurosurg/neurosurg/formats/outpath"
	"github.com/urfave/cli/v3"
)

func init() {
	register(func() *cli.Command {
		var list []string
		for _, f := range convert.Formats() {
			list = append(list, fmt.Sprintf("  %-12s %s", f[0], f[1]))
		}
		return &cli.Command{
			Name:        "convert",
			Usage:       "convert a public benchmark release (TextVQA, COCO, MMLU, MSVD-QA, LibriSpeech, VocalSound, VQAv2, DocVQA, PMC-VQA, RSVQA, LingoQA) to samples JSONL",
			ArgsUsage:   "FORMAT INPUT...",
			Description: "Formats (docs/datasets.md says what maps to what):\n" + strings.Join(list, "\n"),
			UsageText: `neurosurg convert textvqa TextVQA_0.5.1_val.json --images train_images --out textvqa.jsonl --limit 5000
neurosurg convert mmlu data/test data/dev --out mmlu.jsonl
neurosurg convert librispeech LibriSpeech/test-clean --images libri-wav --out libri.jsonl`,
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "out", Usage: "samples JSONL to write (atomically; never an input)"},
				&cli.StringFlag{Name: "images", Aliases: []string{"media"}, Usage: "directory the release's images/frames/audio are in (default: the first input's directory); librispeech: where the decoded WAVs are written (default: OUT without extension + -wav)"},
				&cli.IntFlag{Name: "limit", Usage: "keep the first N samples (0: all)"},
				&cli.StringFlag{Name: "label", Usage: "label of every sample (default: the format's; MMNeuron's formats: their domain key)"},
				&cli.StringFlag{Name: "dataset", Usage: "dataset of every sample (default: MINER's dataset name for MINER's formats)"},
				&cli.StringFlag{Name: "prompt", Usage: "MMNeuron's formats: full (the evaluation prompt, default) or simple (the bare question, as MMNeuron records statistics)"},
				&cli.IntFlag{Name: "shots", Value: -1, Usage: "mmlu: in-context examples from the *_dev.csv inputs (default 5, as MINER)"},
			},
			Action: func(ctx context.Context, cmd *cli.Command) error {
				if cmd.Args().Len() < 2 {
					return usageErrorf("convert takes FORMAT INPUT... (got %d arguments)", cmd.Args().Len())
				}
				args := cmd.Args().Slice()
				o := convert.Options{Inputs: args[1:], Media: cmd.String("images"), Limit: int(cmd.Int("limit")),
					Label: cmd.String("label"), Dataset: cmd.String("dataset"), Prompt: cmd.String("prompt"), Shots: int(cmd.Int("shots"))}
				n, err := convert.Run(args[0], o, cmd.String("out"))
				if errors.Is(err, convert.ErrUsage) || errors.Is(err, outpath.ErrCollision) {
					return usageErrorf("%v", err)
				}
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.Root().Writer, "wrote %d samples to %s\n", n, cmd.String("out"))
				return nil
			},
		}
	})
}
