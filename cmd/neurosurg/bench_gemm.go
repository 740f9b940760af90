package main

import (
	"context"
	"fmt"

	"github.com/neurosurg/neurosurg/model/kernels/kbench"
	"github.com/urfave/cli/v3"
)

func init() {
	registerBench(func() *cli.Command {
		return &cli.Command{
			Name:  "gemm",
			Usage: "FMA peak, memory bandwidth, and MatMul GFLOP/s at real model shapes, per kernel variant",
			UsageText: `neurosurg bench gemm
neurosurg bench gemm --json`,
			Flags: []cli.Flag{&cli.BoolFlag{Name: "json"}, &cli.BoolFlag{Name: "large", Usage: "add the 7B shapes (512×3584×18944)"}},
			Action: func(ctx context.Context, cmd *cli.Command) error {
				shapes := [][3]int{{512, 896, 4864}, {512, 4864, 896}, {1, 896, 4864}, {1, 896, 151936}, {1, 3584, 18944}}
				if cmd.Bool("large") {
					shapes = append(shapes, [3]int{512, 3584, 18944})
				}
				c, res := kbench.Measure(shapes)
				w := cmd.Root().Writer
				if cmd.Bool("json") {
					return printJSON(w, map[string]any{"ceilings": c, "results": res})
				}
				fmt.Fprintf(w, "FMA peak %.0f GFLOP/s f32, VDPBF16PS peak %.0f GFLOP/s, AMX-BF16 peak %.0f GFLOP/s, memory bandwidth: triad %.1f GB/s, read %.1f GB/s\n", c.FMAPeakGFLOPS, c.DotPeakGFLOPS, c.AMXPeakGFLOPS, c.TriadGBps, c.ReadGBps)
				fmt.Fprintf(w, "%-18s %-5s %-10s %9s %9s %8s %8s\n", "m×k×n", "dtype", "variant", "GFLOP/s", "GB/s", "of peak", "of read")
				for _, r := range res {
					read := ""
					if r.OfRead > 0 {
						read = fmt.Sprintf("%7.0f%%", 100*r.OfRead)
					}
					fmt.Fprintf(w, "%-18s %-5s %-10s %9.1f %9.1f %7.0f%% %8s\n", r.Shape, r.DType, r.Variant, r.GFLOPS, r.GBps, 100*r.OfPeak, read)
				}
				return nil
			},
		}
	})
}
