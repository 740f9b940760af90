package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/neurosurg/neurosurg/formats/safetensors"
	"github.com/neurosurg/neurosurg/model/synth"
	"github.com/urfave/cli/v3"
)

func init() {
	register(func() *cli.Command {
		return &cli.Command{
			Name:      "synth",
			Usage:     "make a synthetic checkpoint (seeded random weights) from a real config.json",
			ArgsUsage: "CONFIG_OR_DIR",
			UsageText: `neurosurg synth testdata/configs/Qwen2-0.5B --out /tmp/qwen2-synth
neurosurg synth config.json --dtype f16 --set num_hidden_layers=2 --set hidden_size=128 --out small/
neurosurg synth testdata/configs/Qwen2-7B-Instruct --shard-size 2GB --out /tmp/q7
neurosurg synth --convert bf16 testdata/stories260K --out /tmp/stories-bf16`,
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "out", Aliases: []string{"o"}, Required: true, Usage: "new checkpoint directory"},
				&cli.StringFlag{Name: "dtype", Value: "bf16", Usage: "f32, bf16 or f16"},
				&cli.StringSliceFlag{Name: "set", Usage: "override a config key (shrink), KEY=INT; SUB.KEY sets a sub-config's key (text_config.num_hidden_layers=1)"},
				&cli.StringFlag{Name: "shard-size", Usage: "split into shards of at most this size, e.g. 2GB, 500MB"},
				&cli.Uint64Flag{Name: "seed", Usage: "random seed"},
				&cli.StringFlag{Name: "convert", Usage: "instead: convert the real checkpoint CONFIG_OR_DIR's floats to this dtype"},
			},
			Action: func(ctx context.Context, cmd *cli.Command) error {
				src, err := oneArg(cmd, "CONFIG_OR_DIR")
				if err != nil {
					return err
				}
				if err := checkOut(cmd.String("out"), src); err != nil {
					return err
				}
				if c := cmd.String("convert"); c != "" {
					dt, err := parseDType(c)
					if err != nil {
						return err
					}
					return synth.Convert(ctx, src, cmd.String("out"), dt)
				}
				dt, err := parseDType(cmd.String("dtype"))
				if err != nil {
					return err
				}
				opts := synth.Options{DType: dt, Seed: cmd.Uint64("seed"), Set: map[string]any{}}
				for _, kv := range cmd.StringSlice("set") {
					k, v, ok := strings.Cut(kv, "=")
					n, err := strconv.ParseInt(v, 10, 64)
					if !ok || err != nil {
						return usageErrorf("--set %q: want KEY=INT", kv)
					}
					opts.Set[k] = n
				}
				if s := cmd.String("shard-size"); s != "" {
					if opts.ShardSize, err = parseSize(s); err != nil {
						return err
					}
				}
				bar := newByteBar(cmd, 0, "generating")
				opts.Progress = func(w, total int64) {
					if bar.pb != nil && bar.pb.GetMax64() != total {
						bar.pb.ChangeMax64(total)
					}
					bar.set(w)
				}
				err = synth.Generate(src, cmd.String("out"), opts)
				bar.finish()
				if err == nil {
					fmt.Fprintf(cmd.Root().Writer, "wrote %s\n", cmd.String("out"))
				}
				return err
			},
		}
	})
}

func parseDType(s string) (safetensors.DType, error) {
	switch strings.ToLower(s) {
	case "f32", "float32", "fp32":
		return safetensors.F32, nil
	case "bf16", "bfloat16":
		return safetensors.BF16, nil
	case "f16", "float16", "fp16":
		return safetensors.F16, nil
	}
	return "", usageErrorf("dtype %q: want f32, bf16 or f16", s)
}

// parseSize reads sizes like 2GB, 512MiB, 1000.
func parseSize(s string) (int64, error) {
	units := []struct {
		suffix string
		mult   int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"GB", 1e9}, {"MB", 1e6}, {"KB", 1e3}, {"G", 1 << 30}, {"M", 1 << 20}, {"K", 1 << 10}, {"B", 1}}
	for _, u := range units {
		if strings.HasSuffix(s, u.suffix) {
			f, err := strconv.ParseFloat(strings.TrimSuffix(s, u.suffix), 64)
			if err != nil || f < 0 {
				return 0, usageErrorf("size %q", s)
			}
			return int64(f * float64(u.mult)), nil
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, usageErrorf("size %q: want e.g. 2GB or 512MiB", s)
	}
	return n, nil
}
