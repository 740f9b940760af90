package main

import (
	"context"
	"fmt"

	"github.com/neurosurg/neurosurg/pipeline"
	"github.com/neurosurg/neurosurg/report"
	"github.com/urfave/cli/v3"
)

func init() {
	register(func() *cli.Command {
		return &cli.Command{
			Name:      "report",
			Usage:     "one self-contained HTML page from the separate commands' files (surgery writes its own)",
			ArgsUsage: "STATS|NEURONS|REPORT|RECIPE…",
			UsageText: `neurosurg report neurons.json random.json report.json --html report.html
neurosurg report stats.st lily.json --ckpt testdata/stories260K --html lily.html`,
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "html", Required: true, Usage: "write the page here"},
				&cli.StringFlag{Name: "ckpt", Usage: "the base checkpoint: the top neurons then show the tokens they write"},
				&cli.StringFlag{Name: "title", Value: "neurosurg report"},
			},
			Action: func(ctx context.Context, cmd *cli.Command) error {
				if cmd.Args().Len() == 0 {
					return usageErrorf("report takes one or more files: stats (.st), neuron sets, a verify report (.json), a recipe (.yaml)")
				}
				in, err := report.Load(cmd.Args().Slice())
				if err != nil {
					return err
				}
				in.Title, in.Tool = cmd.String("title"), "neurosurg"
				if c := cmd.String("ckpt"); c != "" {
					m, err := pipeline.OpenModel(c)
					if err != nil {
						return err
					}
					defer m.Close()
					in.LM, in.Model = m, c
				}
				if err := report.WriteFile(cmd.String("html"), in); err != nil {
					return err
				}
				fmt.Fprintf(cmd.Root().Writer, "wrote %s\n", cmd.String("html"))
				return nil
			},
		}
	})
}
