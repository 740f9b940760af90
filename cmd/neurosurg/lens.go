package main

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/neurosurg/neurosurg/formats/neuronset"
	"github.com/neurosurg/neurosurg/model"
	"github.com/neurosurg/neurosurg/patch"
	"github.com/neurosurg/neurosurg/pipeline"
	"github.com/urfave/cli/v3"
)

func init() {
	register(func() *cli.Command {
		return &cli.Command{
			Name:      "lens",
			Usage:     "logit lens: per-layer top tokens and entropy at chosen positions",
			ArgsUsage: "CKPT",
			UsageText: `neurosurg lens testdata/stories260K --prompt "Once upon a time"
neurosurg lens testdata/stories260K --prompt "The cat sat on the" --positions -1,-2 --top 3 --json
neurosurg lens /models/llava-1.5-7b-hf --chat --image a.png --image b.png --prompt "Compare the pictures."`,
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "prompt", Aliases: []string{"p"}},
				&cli.IntSliceFlag{Name: "positions", Value: []int{-1}, Usage: "token positions (negative: from the end)"},
				&cli.IntFlag{Name: "top", Aliases: []string{"k"}, Value: 5},
				&cli.BoolFlag{Name: "chat"},
				&cli.BoolFlag{Name: "json"},
				&cli.StringSliceFlag{Name: "image", Usage: "an image file (repeatable: several images, in order)"},
				&cli.StringFlag{Name: "video", Usage: "a video: its frames F1,F2,… or a directory of them"},
				&cli.StringFlag{Name: "audio", Usage: "an audio file (WAV)"},
			},
			Action: func(ctx context.Context, cmd *cli.Command) error {
				if err := valid(model.ValidateTop(int(cmd.Int("top")))); err != nil {
					return err
				}
				m, in, err := openWithPrompt(cmd)
				if err != nil {
					return err
				}
				defer m.Close()
				var pos []int
				for _, p := range cmd.IntSlice("positions") {
					pos = append(pos, int(p))
				}
				lens, err := m.LogitLensInput(ctx, in, pos, int(cmd.Int("top")))
				if err != nil {
					return err
				}
				w := cmd.Root().Writer
				if cmd.Bool("json") {
					return printJSON(w, lens)
				}
				for _, e := range lens {
					var toks []string
					for i, id := range e.TopIDs {
						toks = append(toks, fmt.Sprintf("%q %.3f", m.Tokenizer.Token(id), e.TopProbs[i]))
					}
					fmt.Fprintf(w, "layer %2d pos %3d  H=%.3f  %s\n", e.Layer, e.Position, e.Entropy, strings.Join(toks, "  "))
				}
				return nil
			},
		}
	})
	register(func() *cli.Command {
		return &cli.Command{
			Name:  "neurons",
			Usage: "inspect neuron-set files",
			UsageText: `neurosurg neurons show neurons.json
neurosurg neurons show lily.json --ckpt testdata/stories260K --top 5`,
			Commands: []*cli.Command{{
				Name: "show", ArgsUsage: "NEURONS.json",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "ckpt", Usage: "print each neuron's top tokens under the logit lens"},
					&cli.IntFlag{Name: "top", Value: 5},
					&cli.IntFlag{Name: "limit", Value: 20, Usage: "neurons listed per label"},
				},
				Action: func(ctx context.Context, cmd *cli.Command) error {
					path, err := oneArg(cmd, "NEURONS.json")
					if err != nil {
						return err
					}
					if err := valid(model.ValidateTop(int(cmd.Int("top")))); err != nil {
						return err
					}
					if cmd.Int("limit") < 0 {
						return usageErrorf("--limit %d is negative", cmd.Int("limit"))
					}
					set, err := neuronset.ReadFile(path)
					if err != nil {
						return err
					}
					var m *model.Model
					if c := cmd.String("ckpt"); c != "" {
						if m, err = pipeline.OpenModel(c); err != nil {
							return err
						}
						defer m.Close()
						if err := patch.CheckSet(set, m.Checkpoint()); err != nil {
							return fmt.Errorf("%s: %w", path, err)
						}
					}
					w := cmd.Root().Writer
					fmt.Fprintf(w, "method %s, %d neurons, params %v\n", set.Method, len(set.Neurons), set.Params)
					byLabel := map[string][]neuronset.Neuron{}
					for _, n := range set.Neurons {
						byLabel[n.Label] = append(byLabel[n.Label], n)
					}
					var labels []string
					for l := range byLabel {
						labels = append(labels, l)
					}
					sort.Strings(labels)
					for _, l := range labels {
						ns := byLabel[l]
						perLayer := map[int]int{}
						for _, n := range ns {
							perLayer[n.Layer]++
						}
						fmt.Fprintf(w, "\nlabel %q: %d neurons, per layer %v\n", l, len(ns), perLayer)
						sort.SliceStable(ns, func(a, b int) bool { return ns[a].Score > ns[b].Score })
						for _, n := range ns[:min(len(ns), int(cmd.Int("limit")))] {
							line := fmt.Sprintf("  %s L%-2d #%-6d score %.4g", n.Module, n.Layer, n.Index, n.Score)
							if m != nil && n.Module == "llm" {
								var toks []string
								for _, id := range m.TopTokensOfNeuron(model.Site{Module: n.Module, Layer: n.Layer}, n.Index, int(cmd.Int("top"))) {
									toks = append(toks, fmt.Sprintf("%q", m.Tokenizer.Token(id)))
								}
								line += "  → " + strings.Join(toks, " ")
							}
							fmt.Fprintln(w, line)
						}
					}
					return nil
				},
			}},
		}
	})
}
