package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/neurosurg/neurosurg/surgery"
	"github.com/neurosurg/neurosurg/verify"
	"github.com/urfave/cli/v3"
)

func init() {
	register(func() *cli.Command {
		return &cli.Command{
			Name:      "surgery",
			Usage:     "run a recipe: record → locate → patch → verify → write (only if the gates pass)",
			ArgsUsage: "RECIPE.yaml",
			UsageText: `neurosurg surgery examples/stories-swap.yaml
neurosurg surgery examples/stories-domain-mask.yaml --force
neurosurg surgery --json examples/stories-swap.yaml`,
			Flags: []cli.Flag{
				&cli.BoolFlag{Name: "force", Usage: "write the checkpoint even if verify gates fail (recorded in the provenance)"},
				&cli.BoolFlag{Name: "json", Usage: "print the result as JSON"},
			},
			Action: func(ctx context.Context, cmd *cli.Command) error {
				path, err := oneArg(cmd, "RECIPE.yaml")
				if err != nil {
					return err
				}
				res, err := surgery.Run(ctx, path, surgery.Options{Force: cmd.Bool("force"),
					Log: func(s string) { fmt.Fprintln(cmd.Root().ErrWriter, s) }})
				if res != nil {
					w := cmd.Root().Writer
					if cmd.Bool("json") {
						if perr := printJSON(w, res); perr != nil {
							return errors.Join(err, perr)
						}
					} else {
						fmt.Fprint(w, res.Report.Markdown())
						if res.Written {
							fmt.Fprintf(w, "\nwrote %s (edit: %s)\n", res.Out, res.Files["edit"])
						}
					}
				}
				if errors.Is(err, verify.ErrGate) {
					return fmt.Errorf("%w: %v", errGate, err)
				}
				return err
			},
		}
	})
}
