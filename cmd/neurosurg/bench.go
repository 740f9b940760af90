package main

import (
	"errors"
	"fmt"
	"os"
	"runtime/pprof"

	"github.com/urfave/cli/v3"
)

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

// cpuProfileFlag and startCPUProfile give bench subcommands a Go CPU profile of their run.
var cpuProfileFlag = &cli.StringFlag{Name: "cpuprofile", Usage: "write a Go CPU profile of the whole run to this file (go tool pprof)"}

// startCPUProfile starts profiling into path (nothing when path is empty); the returned stop
// ends the profile and closes the file, joining its error into *err.
func startCPUProfile(path string) (stop func(err *error), err error) {
	if path == "" {
		return func(*error) {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		return nil, errors.Join(fmt.Errorf("cpu profile %s: %w", path, err), f.Close())
	}
	return func(err *error) {
		pprof.StopCPUProfile()
		if cerr := f.Close(); cerr != nil {
			*err = errors.Join(*err, fmt.Errorf("cpu profile %s: %w", path, cerr))
		}
	}, nil
}
