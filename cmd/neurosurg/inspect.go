package main

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/neurosurg/neurosurg/formats/hfdir"
	"github.com/neurosurg/neurosurg/model/archdef"
	"github.com/urfave/cli/v3"
)

func init() {
	register(func() *cli.Command {
		return &cli.Command{
			Name:      "inspect",
			Usage:     "describe a checkpoint: architecture, FFN geometry, parameters, dtypes, shards, size",
			ArgsUsage: "CKPT",
			UsageText: `neurosurg inspect testdata/stories260K
neurosurg inspect --json /models/Qwen2-0.5B`,
			Flags: []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "print JSON"}},
			Action: func(ctx context.Context, cmd *cli.Command) error {
				dir, err := oneArg(cmd, "CKPT")
				if err != nil {
					return err
				}
				c, err := hfdir.Open(dir)
				if err != nil {
					return err
				}
				defer c.Close()
				s, err := archdef.Summarize(c)
				if err != nil {
					return err
				}
				w := cmd.Root().Writer
				if cmd.Bool("json") {
					return printJSON(w, s)
				}
				fmt.Fprintf(w, "checkpoint    %s\n", s.Dir)
				fmt.Fprintf(w, "architecture  %s", s.Architecture)
				if !s.Supported {
					fmt.Fprintf(w, " (no definition: supported are %s)", strings.Join(archdef.Supported(), ", "))
				}
				fmt.Fprintf(w, "\nparameters    %d (%s)\n", s.Parameters, human(float64(s.Parameters), ""))
				fmt.Fprintf(w, "size on disk  %s in %d shard(s), %d tensors\n", human(float64(s.SizeBytes), "B"), len(s.Shards), s.Tensors)
				var dts []string
				for d, n := range s.DTypes {
					dts = append(dts, fmt.Sprintf("%s×%d", d, n))
				}
				sort.Strings(dts)
				fmt.Fprintf(w, "dtypes        %s\n", strings.Join(dts, " "))
				for _, f := range s.FFN {
					fmt.Fprintf(w, "ffn %-9s %d layers × %d neurons = %d (act %s, down %s)\n", f.Module, f.Layers, f.Neurons, f.Layers*f.Neurons, f.Act, f.Down)
				}
				if len(s.Missing) > 0 {
					fmt.Fprintf(w, "missing       %d tensors the definition lists, e.g. %s\n", len(s.Missing), s.Missing[0])
				}
				if len(s.Unexpected) > 0 {
					fmt.Fprintf(w, "unexpected    %d tensors the definition does not list, e.g. %s\n", len(s.Unexpected), s.Unexpected[0])
				}
				return nil
			},
		}
	})
}

// oneArg returns the single positional argument or a usage error.
func oneArg(cmd *cli.Command, name string) (string, error) {
	if cmd.Args().Len() != 1 {
		return "", usageErrorf("%s takes one argument, %s (got %d)", cmd.Name, name, cmd.Args().Len())
	}
	return cmd.Args().First(), nil
}

func printJSON(w interface{ Write([]byte) (int, error) }, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// human prints n with a metric (or binary, for bytes) prefix.
func human(n float64, unit string) string {
	base, pre := 1000.0, []string{"", "K", "M", "G", "T"}
	if unit == "B" {
		base, pre = 1024, []string{"", "Ki", "Mi", "Gi", "Ti"}
	}
	i := 0
	for n >= base && i < len(pre)-1 {
		n /= base
		i++
	}
	return fmt.Sprintf("%.1f %s%s", n, pre[i], unit)
}
