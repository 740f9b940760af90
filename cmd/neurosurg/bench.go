package main

import "github.com/urfave/cli/v3"

// benchCommands is filled by each bench_*.go file in init.
var benchCommands []func() *cli.Command

func registerBench(f func() *cli.Command) { benchCommands = append(benchCommands, f) }

func init() {
	register(func() *cli.Command {
		var subs []*cli.Command
		for _, f := range benchCommands {
			subs = append(subs, f())
		}
		return &cli.Command{
			Name:  "bench",
			Usage: "measure kernels, forward passes and checkpoint I/O on this machine",
			UsageText: `neurosurg bench gemm
neurosurg bench forward --checkpoint DIR
neurosurg bench io --size 2GiB`,
			Commands: subs,
		}
	})
}
