package main

import (
	"context"
	"fmt"

	"github.com/neurosurg/neurosurg/formats/edit"
	"github.com/neurosurg/neurosurg/formats/hfdir"
	"github.com/urfave/cli/v3"
)

func init() {
	register(func() *cli.Command {
		return &cli.Command{
			Name:      "diff",
			Usage:     "make the release diff (edit file) that turns BASE into EDITED",
			ArgsUsage: "BASE EDITED",
			UsageText: `neurosurg diff base/ edited/ --out edit.nsd
neurosurg diff base/ edited/ --stat
neurosurg diff base/ edited/ --stat --json`,
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "out", Aliases: []string{"o"}, Usage: "write the edit file here"},
				&cli.BoolFlag{Name: "stat", Usage: "print edited columns/rows/elements per tensor and layer"},
				&cli.BoolFlag{Name: "json", Usage: "print --stat as JSON"},
			},
			Action: func(ctx context.Context, cmd *cli.Command) error {
				if cmd.Args().Len() != 2 {
					return usageErrorf("diff takes BASE and EDITED")
				}
				if cmd.String("out") == "" && !cmd.Bool("stat") {
					return usageErrorf("diff needs --out FILE or --stat")
				}
				if err := checkOut(cmd.String("out"), cmd.Args().Slice()...); err != nil {
					return err
				}
				base, err := hfdir.Open(cmd.Args().Get(0))
				if err != nil {
					return err
				}
				defer base.Close()
				ed, err := hfdir.Open(cmd.Args().Get(1))
				if err != nil {
					return err
				}
				defer ed.Close()
				e, err := edit.Diff(base, ed)
				if err != nil {
					return err
				}
				if out := cmd.String("out"); out != "" {
					if err := e.WriteFile(out); err != nil {
						return err
					}
				}
				if cmd.Bool("stat") {
					return printStat(cmd, e)
				}
				return nil
			},
		}
	})
	applyCmd := func(name, usage, examples string) func() *cli.Command {
		return func() *cli.Command {
			return &cli.Command{
				Name:      name,
				Usage:     usage,
				ArgsUsage: "BASE EDIT",
				UsageText: examples,
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "edit", Usage: "edit file (instead of the second argument)"},
					&cli.StringFlag{Name: "out", Aliases: []string{"o"}, Usage: "new checkpoint directory (must not exist)", Required: true},
				},
				Action: func(ctx context.Context, cmd *cli.Command) error {
					args := cmd.Args().Slice()
					editPath := cmd.String("edit")
					if editPath == "" && len(args) == 2 {
						editPath = args[1]
						args = args[:1]
					}
					if len(args) != 1 || editPath == "" {
						return usageErrorf("%s takes BASE and an edit file (second argument or --edit)", name)
					}
					if err := checkOut(cmd.String("out"), args[0], editPath); err != nil {
						return err
					}
					base, err := hfdir.Open(args[0])
					if err != nil {
						return err
					}
					defer base.Close()
					e, err := edit.ReadFile(editPath, base) // checked against base before its data is read
					if err != nil {
						return err
					}
					bar := newByteBar(cmd, base.Size(), "writing")
					prov, err := edit.Apply(ctx, base, e, cmd.String("out"), hfdir.WriteOptions{Progress: bar.set})
					bar.finish()
					if err != nil {
						return err
					}
					fmt.Fprintf(cmd.Root().Writer, "wrote %s: %d edited tensor(s), %d files with sha256 in %s\n", cmd.String("out"), len(prov.Edited), len(prov.Outputs), hfdir.ProvenanceFile)
					return nil
				},
			}
		}
	}
	register(applyCmd("apply", "apply a release diff to its base checkpoint, reproducing the edited checkpoint byte for byte",
		`neurosurg apply base/ edit.nsd --out edited/
neurosurg apply /models/Qwen2-0.5B qwen-no-cat.nsd -o qwen-no-cat/`))
	register(applyCmd("write", "write a new checkpoint: CKPT with an edit applied (same as apply)",
		`neurosurg write testdata/stories260K --edit swap.nsd --out stories-swapped/`))
}

func printStat(cmd *cli.Command, e *edit.Edit) error {
	st := e.Stats()
	w := cmd.Root().Writer
	if cmd.Bool("json") {
		return printJSON(w, st)
	}
	fmt.Fprintf(w, "%-5s %-48s %-6s %10s %10s\n", "layer", "tensor", "layout", "edited", "bytes")
	total := 0
	for _, s := range st {
		layer := "-"
		if s.Layer >= 0 {
			layer = fmt.Sprint(s.Layer)
		}
		fmt.Fprintf(w, "%-5s %-48s %-6s %6d %-8s %8d\n", layer, s.Name, s.Layout, s.Count, s.Unit, s.Bytes)
		total += s.Bytes
	}
	fmt.Fprintf(w, "%d tensor(s) edited, %d value bytes\n", len(st), total)
	return nil
}
