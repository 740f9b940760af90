package main

import (
	"context"
	"fmt"

	"github.com/neurosurg/neurosurg/internal/benchio"
	"github.com/urfave/cli/v3"
)

func init() {
	registerBench(func() *cli.Command {
		return &cli.Command{
			Name:  "io",
			Usage: "time writing and applying a ≥2 GiB sharded bf16 synthetic checkpoint against cp",
			UsageText: `neurosurg bench io --config testdata/configs/TinyLlama-1.1B-Chat-v1.0
neurosurg bench io --config testdata/configs/Qwen2-0.5B --dir /mnt/fast --json`,
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "config", Value: "testdata/configs/TinyLlama-1.1B-Chat-v1.0", Usage: "config.json or dir to synthesise"},
				&cli.StringFlag{Name: "dir", Usage: "scratch directory (default: the system temp dir)"},
				&cli.BoolFlag{Name: "json", Usage: "print JSON"},
			},
			Action: func(ctx context.Context, cmd *cli.Command) error {
				res, err := benchio.Run(ctx, benchio.Options{Config: cmd.String("config"), Dir: cmd.String("dir"),
					Log: func(s string) { fmt.Fprintln(cmd.Root().ErrWriter, s) }})
				if err != nil {
					return err
				}
				w := cmd.Root().Writer
				if cmd.Bool("json") {
					return printJSON(w, res)
				}
				fmt.Fprintf(w, "%-40s %10s %8s %8s %8s %12s\n", "operation", "GB", "s", "GB/s", "vs cp", "peak RSS")
				for _, r := range res {
					fmt.Fprintf(w, "%-40s %10.2f %8.2f %8.2f %7.0f%% %9.0f MiB\n", r.Name, float64(r.Bytes)/1e9, r.Seconds, r.GBps, 100*r.VsCp, r.PeakRSSMiB)
				}
				return nil
			},
		}
	})
}
