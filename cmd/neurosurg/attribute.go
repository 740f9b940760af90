package main

import (
	"context"
	"fmt"

	"github.com/neurosurg/neurosurg/formats/samples"
	"github.com/neurosurg/neurosurg/pipeline"
	"github.com/urfave/cli/v3"
)

func init() {
	register(func() *cli.Command {
		return &cli.Command{
			Name:      "attribute",
			Usage:     "select neurons by integrated gradients of a concept's logit (locate method ig: the costly gradient baseline)",
			ArgsUsage: "CKPT",
			UsageText: `neurosurg attribute testdata/stories260K --data examples/stories-generated.jsonl --concept Lily --top-k 40 --out ig.json
neurosurg attribute CKPT --data captions.jsonl --concept cat --steps 20 --max-occurrences 100 --out cat-ig.json`,
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "data", Required: true},
				&cli.StringFlag{Name: "concept", Required: true},
				&cli.IntFlag{Name: "top-k"},
				&cli.IntFlag{Name: "steps", Value: 20},
				&cli.IntFlag{Name: "max-occurrences", Value: 50},
				&cli.StringFlag{Name: "out", Aliases: []string{"o"}, Required: true},
			},
			Action: func(ctx context.Context, cmd *cli.Command) error {
				dir, err := oneArg(cmd, "CKPT")
				if err != nil {
					return err
				}
				l, err := pipeline.NewLocator(pipeline.LocateParams{Method: "ig", Concept: cmd.String("concept"), TopK: int(cmd.Int("top-k")),
					Steps: int(cmd.Int("steps")), MaxOccurrences: int(cmd.Int("max-occurrences"))})
				if err != nil {
					return valid(err)
				}
				if err := checkOut(cmd.String("out"), dir, cmd.String("data")); err != nil {
					return err
				}
				m, err := pipeline.OpenModel(dir)
				if err != nil {
					return err
				}
				defer m.Close()
				ss, err := samples.ReadFile(cmd.String("data"))
				if err != nil {
					return err
				}
				bar := newBar(cmd, int64(cmd.Int("max-occurrences")), "attributing", false)
				set, err := l.Locate(ctx, pipeline.LocateInputs{Model: m, Data: ss, Progress: func(done, total int) { bar.set(int64(done)) }})
				bar.finish()
				if err != nil {
					return err
				}
				if err := pipeline.WriteSet(cmd.String("out"), set); err != nil {
					return err
				}
				fmt.Fprintf(cmd.Root().Writer, "%d neurons → %s\n", len(set.Neurons), cmd.String("out"))
				return nil
			},
		}
	})
}
