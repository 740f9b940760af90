package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"

	"github.com/neurosurg/neurosurg/model"
	"github.com/neurosurg/neurosurg/model/kernels"
	"github.com/urfave/cli/v3"
)

// Exit codes, decided here and nowhere else.
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
	exitGate  = 3 // verify gates failed
)

// errUsage marks an error in how the command was called.
var errUsage = errors.New("usage")

// errGate marks a run whose verify gates failed.
var errGate = errors.New("verify gate failed")

// commands is filled by each verb's file in init, so adding a verb touches one file.
var commands []func() *cli.Command

func register(f func() *cli.Command) { commands = append(commands, f) }

func newApp(stdout, stderr io.Writer) *cli.Command {
	var cmds []*cli.Command
	for _, f := range commands {
		cmds = append(cmds, f())
	}
	sort.Slice(cmds, func(i, j int) bool { return cmds[i].Name < cmds[j].Name })
	root := &cli.Command{
		Name:  "neurosurg",
		Usage: "find, edit and ship the neurons of (multimodal) language models",
		UsageText: `neurosurg inspect testdata/stories260K
neurosurg surgery examples/stories-swap.yaml
neurosurg COMMAND --help`,
		Commands: cmds,
		Flags: []cli.Flag{&cli.StringFlag{Name: "kernels", Sources: cli.EnvVars("NEUROSURG_KERNELS"),
			Usage: "kernel variant: " + strings.Join(kernels.Variants(), ", ") + " (default " + kernels.Active() + "; avx512 is f32-exact, avx512bf16 rounds activations to bf16 against BF16 weights)"},
			&cli.BoolFlag{Name: "mmap", Sources: cli.EnvVars("NEUROSURG_MMAP"),
				Usage: "compute on the checkpoint's file mapping instead of copying the weights into memory at load (faster start, slower decode; see docs/guide.md)"}},
		Before: func(ctx context.Context, cmd *cli.Command) (context.Context, error) {
			if name := cmd.String("kernels"); name != "" {
				if !slices.Contains(kernels.Variants(), name) {
					return ctx, fmt.Errorf("%w: --kernels %s: this CPU runs %s", errUsage, name, strings.Join(kernels.Variants(), ", "))
				}
				kernels.Use(name)
			}
			model.KeepMapped(cmd.Bool("mmap"))
			return ctx, nil
		},
		Writer:                stdout,
		ErrWriter:             stderr,
		EnableShellCompletion: true,
		ExitErrHandler:        func(context.Context, *cli.Command, error) {}, // run decides exit codes
	}
	oneLineUsageErrors(root)
	return root
}

// oneLineUsageErrors makes every command report a flag or argument error as one usage error
// (exit 2) instead of urfave/cli's "Incorrect Usage" followed by the whole help, and makes
// every command that only groups others refuse an unknown subcommand by name.
func oneLineUsageErrors(cmd *cli.Command) {
	cmd.OnUsageError = func(ctx context.Context, c *cli.Command, err error, isSubcommand bool) error {
		return fmt.Errorf("%w: %s%v (see %s --help)", errUsage, subPath(c), err, c.FullName())
	}
	if len(cmd.Commands) > 0 && cmd.Action == nil {
		cmd.Action = func(ctx context.Context, c *cli.Command) error {
			if c.Args().Present() {
				var names []string
				for _, s := range c.Commands {
					if !s.Hidden {
						names = append(names, s.Name)
					}
				}
				return usageErrorf("%sunknown command %q (have %s)", subPath(c), c.Args().First(), strings.Join(names, ", "))
			}
			return cli.ShowSubcommandHelp(c)
		}
	}
	for _, s := range cmd.Commands {
		oneLineUsageErrors(s)
	}
}

// subPath is "stats merge: " for the command stats merge, "" for the root.
func subPath(c *cli.Command) string {
	p := c.Path()[1:]
	if len(p) == 0 {
		return ""
	}
	return strings.Join(p, " ") + ": "
}

// run executes the CLI and maps errors to exit codes.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	app := newApp(stdout, stderr)
	err := app.Run(ctx, args)
	if err == nil {
		return exitOK
	}
	fmt.Fprintf(stderr, "neurosurg: %v\n", err)
	return exitCode(err)
}

func exitCode(err error) int {
	var ec cli.ExitCoder
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, errGate):
		return exitGate
	case errors.Is(err, errUsage):
		return exitUsage
	case errors.As(err, &ec):
		// Only urfave/cli itself returns ExitCoders (unknown command, bad flags): usage errors.
		return exitUsage
	}
	return exitError
}

// usageErrorf returns an error that exits with the usage code.
func usageErrorf(format string, a ...any) error {
	return fmt.Errorf("%w: %s", errUsage, fmt.Sprintf(format, a...))
}
