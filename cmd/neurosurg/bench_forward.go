package main

import (
	"context"
	"fmt"

	"github.com/neurosurg/neurosurg/internal/benchfwd"
	"github.com/urfave/cli/v3"
)

func init() {
	registerBench(func() *cli.Command {
		return &cli.Command{
			Name:  "forward",
			Usage: "prefill and decode tokens/s (default: synthetic Qwen2-0.5B shapes in BF16)",
			UsageText: `neurosurg bench forward
neurosurg bench forward --checkpoint /models/Qwen2-0.5B --json`,
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "checkpoint", Usage: "measure this checkpoint instead of a synthetic one"},
				&cli.StringFlag{Name: "config", Value: "testdata/configs/Qwen2-0.5B"},
				&cli.BoolFlag{Name: "json"},
				cpuProfileFlag,
			},
			Action: func(ctx context.Context, cmd *cli.Command) (err error) {
				stop, err := startCPUProfile(cmd.String("cpuprofile"))
				if err != nil {
					return err
				}
				defer stop(&err)
				res, size, err := benchfwd.Run(ctx, benchfwd.Options{Checkpoint: cmd.String("checkpoint"), Config: cmd.String("config"),
					Log: func(s string) { fmt.Fprintln(cmd.Root().ErrWriter, s) }})
				if err != nil {
					return err
				}
				w := cmd.Root().Writer
				if cmd.Bool("json") {
					return printJSON(w, map[string]any{"checkpoint_bytes": size, "results": res})
				}
				fmt.Fprintf(w, "checkpoint %.2f GB\n%-22s %8s %9s %10s %12s\n", float64(size)/1e9, "run", "tokens", "s", "tokens/s", "peak RSS")
				for _, r := range res {
					fmt.Fprintf(w, "%-22s %8d %9.2f %10.1f %9.0f MiB\n", r.Name, r.Tokens, r.Seconds, r.TokensPerS, r.PeakRSSMiB)
				}
				return nil
			},
		}
	})
}
