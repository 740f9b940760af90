package main

import (
	"context"
	"fmt"

	"github.com/neurosurg/neurosurg/formats/samples"
	"github.com/neurosurg/neurosurg/locate"
	"github.com/neurosurg/neurosurg/model"
	"github.com/urfave/cli/v3"
)

func init() {
	register(func() *cli.Command {
		return &cli.Command{
			Name:      "attribute",
			Usage:     "select neurons by integrated gradients of a concept's logit (the costly gradient baseline)",
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
				o := locate.IGOptions{Concept: cmd.String("concept"), TopK: int(cmd.Int("top-k")),
					Steps: int(cmd.Int("steps")), MaxOccurrences: int(cmd.Int("max-occurrences"))}
				if err := valid(o.Validate()); err != nil {
					return err
				}
				if err := checkOut(cmd.String("out"), dir, cmd.String("data")); err != nil {
					return err
				}
				m, err := model.Open(dir)
				if err != nil {
					return err
				}
				defer m.Close()
				ss, err := samples.ReadFile(cmd.String("data"))
				if err != nil {
					return err
				}
				bar := newBar(cmd, int64(cmd.Int("max-occurrences")), "attributing", false)
				o.Progress = func(done, total int) { bar.set(int64(done)) }
				set, err := locate.IG(ctx, m, ss, o)
				bar.finish()
				if err != nil {
					return err
				}
				set.ModelSHA256 = m.Checkpoint().Fingerprint()
				b, err := set.Marshal()
				if err != nil {
					return err
				}
				if err := writeFileAtomic(cmd.String("out"), b); err != nil {
					return err
				}
				fmt.Fprintf(cmd.Root().Writer, "%d neurons → %s\n", len(set.Neurons), cmd.String("out"))
				return nil
			},
		}
	})
}
