package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/neurosurg/neurosurg/formats/neuronset"
	"github.com/neurosurg/neurosurg/formats/samples"
	"github.com/neurosurg/neurosurg/locate"
	"github.com/neurosurg/neurosurg/patch"
	"github.com/neurosurg/neurosurg/pipeline"
	"github.com/neurosurg/neurosurg/verify/mmneurons"
	"github.com/urfave/cli/v3"
)

func init() {
	register(func() *cli.Command {
		return &cli.Command{
			Name:      "record",
			Usage:     "run labelled samples through the model and save per-neuron statistics per label",
			ArgsUsage: "CKPT",
			UsageText: `neurosurg record testdata/stories260K --data testdata/samples/stories-animals-food.jsonl --out stats.st
neurosurg record testdata/stories260K --data examples/stories-generated.jsonl --concept Lily --out lily.st
neurosurg record testdata/stories260K --data more.jsonl --resume --out stats.st
neurosurg record testdata/stories260K --data all.jsonl --shard 2/8 --out part-2.st   # then: stats merge part-*.st
neurosurg record VLM --data captions.jsonl --concepts-from-text --per-sample --shuffle-patches 7 --out shuffled.st`,
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "data", Required: true, Usage: "samples JSONL"},
				&cli.StringFlag{Name: "out", Aliases: []string{"o"}, Required: true},
				&cli.StringSliceFlag{Name: "concept", Usage: "word whose generating steps feed contribution scores (repeatable)"},
				&cli.BoolFlag{Name: "resume", Usage: "extend --out, skipping sample ids it already holds"},
				&cli.BoolFlag{Name: "miner", Usage: "also record MINER's per-sample importance scores (needs attention: slower)"},
				&cli.BoolFlag{Name: "au", Usage: "contribution scores with the coefficient a·u instead of a"},
				&cli.BoolFlag{Name: "concept-from-label", Usage: "every sample label is also a concept word"},
				&cli.BoolFlag{Name: "chat", Usage: "wrap each text in the chat template (default: BOS + text)"},
				&cli.StringFlag{Name: "shard", Usage: "record only shard INDEX/COUNT of the samples (a contiguous block, 0-based); stats merge of every shard equals one pass"},
				&cli.BoolFlag{Name: "per-sample", Usage: "also keep each sample's activations at a concept's first generating step (locate --contrib-mode per-sample)"},
				&cli.BoolFlag{Name: "concepts-from-text", Usage: "every content word of a sample's text (caption) is also a concept word (Pan et al.'s nouns, without a POS tagger)"},
				&cli.Uint64Flag{Name: "shuffle-patches", Usage: "SEED: permute every image's patches with this seed before encoding (Pan et al.'s patch-order control)"},
			},
			Action: func(ctx context.Context, cmd *cli.Command) error {
				dir, err := oneArg(cmd, "CKPT")
				if err != nil {
					return err
				}
				var shard *locate.Shard
				if cmd.IsSet("shard") {
					sh, err := locate.ParseShard(cmd.String("shard"))
					if err != nil {
						return valid(fmt.Errorf("--shard: %w", err))
					}
					shard = &sh
				}
				if err := checkOut(cmd.String("out"), dir, cmd.String("data")); err != nil {
					return err
				}
				m, err := pipeline.OpenModel(dir)
				if err != nil {
					return err
				}
				defer m.Close()
				ss, err := samples.ReadFile(cmd.String("data"))
				if err != nil {
					return err
				}
				var into *locate.Stats
				if cmd.Bool("resume") {
					if into, err = locate.ReadStats(cmd.String("out")); err != nil {
						return err
					}
				}
				var shuffle *uint64
				if cmd.IsSet("shuffle-patches") {
					seed := cmd.Uint64("shuffle-patches")
					shuffle = &seed
				}
				bar := newBar(cmd, int64(len(ss)), "recording", false)
				st, err := pipeline.Record(ctx, m, ss, into, pipeline.RecordParams{Concepts: cmd.StringSlice("concept"), ConceptsFromLabels: cmd.Bool("concept-from-label"),
					Product: cmd.Bool("au"), MINER: cmd.Bool("miner"), Chat: cmd.Bool("chat"), PerSample: cmd.Bool("per-sample"), Shard: shard,
					ConceptsFromText: cmd.Bool("concepts-from-text"), ShuffleSeed: shuffle,
					Progress: func(done, total int) { bar.set(int64(done)) }})
				bar.finish()
				if err != nil {
					return err
				}
				return st.WriteFile(cmd.String("out"))
			},
		}
	})
	register(func() *cli.Command {
		return &cli.Command{
			Name:      "locate",
			Usage:     "select neurons from a stats file (miner, dape, contrib, random; ig: see attribute)",
			ArgsUsage: "STATS",
			UsageText: `neurosurg locate --method dape stats.st --out neurons.json
neurosurg locate --method dape --module all vlm.st --out per-module.json   # vision, projector, llm each on its own
neurosurg locate --method miner --strategy LA_MU --ratio 0.02 --weights 0,.25,.25,.5,0 stats.st --out msn.json
neurosurg locate --method contrib --top-k 60 --layers 4 lily.st --out lily.json
neurosurg locate --method contrib --contrib-mode per-sample --top-k 100 --label Lily@gen-1 lily.st --out lily-gen-1.json
neurosurg locate --method random --like neurons.json --seed 1 stats.st --out random.json`,
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "method", Required: true, Usage: "miner, dape, contrib or random (ig runs the model: neurosurg attribute)"},
				&cli.FloatSliceFlag{Name: "weights", Usage: "miner: weights of prob, mean, max, attn_k, attn_q (default 0,.25,.25,.5,0)"},
				&cli.FloatFlag{Name: "ratio", Usage: "miner: fraction of neurons (default 0.02)"},
				&cli.StringFlag{Name: "strategy", Usage: "miner: adaptive, LA_MU (default), LU_MA, uniform, random"},
				&cli.StringFlag{Name: "split", Usage: "miner: special_text_separate (default), special_text_as_one, prompt"},
				&cli.StringFlag{Name: "plot", Usage: "draw the per-layer distribution here (.svg)"},
				&cli.StringFlag{Name: "out", Aliases: []string{"o"}, Required: true},
				&cli.FloatFlag{Name: "top-rate", Usage: "dape: fraction kept (default 0.01)"},
				&cli.FloatFlag{Name: "filter-rate", Usage: "dape: quantile of P a neuron's largest P must exceed to be considered (default 0.95)"},
				&cli.FloatFlag{Name: "activation-bar-ratio", Usage: "dape: quantile of P a label's P must exceed to get the neuron (default 0.95)"},
				&cli.IntFlag{Name: "top-k", Usage: "contrib: neurons per concept (per sample and concept in per-sample mode)"},
				&cli.StringFlag{Name: "contrib-mode", Usage: "contrib: pooled (default: mean over every generating step) or per-sample (Pan et al.'s official reading; record --per-sample)"},
				&cli.IntSliceFlag{Name: "layers", Usage: "contrib: search only these layers"},
				&cli.StringFlag{Name: "like", Usage: "random: the neuron set whose count per label, module and layer the draw copies"},
				&cli.Uint64Flag{Name: "seed", Usage: "random, and miner's strategy random"},
				&cli.StringSliceFlag{Name: "module", Usage: "dape: modules to select in, each on its own (default or all: every recorded one); miner, contrib: the module (default and only contrib's: llm). Names: llm, vision, projector, audio, qformer, query, abstractor; MMNeuron's lang, mmproj, encoder accepted"},
				&cli.StringFlag{Name: "label", Usage: "keep only the neurons of this label (as a recipe's locate.label)"},
			},
			Action: func(ctx context.Context, cmd *cli.Command) error {
				path, err := oneArg(cmd, "STATS")
				if err != nil {
					return err
				}
				p := pipeline.LocateParams{Method: cmd.String("method"), Weights: cmd.FloatSlice("weights"), Ratio: cmd.Float("ratio"),
					Strategy: cmd.String("strategy"), Split: cmd.String("split"),
					TopRate: cmd.Float("top-rate"), FilterRate: cmd.Float("filter-rate"), ActivationBarRatio: cmd.Float("activation-bar-ratio"),
					TopK: int(cmd.Int("top-k")), Layers: cmd.IntSlice("layers"), ContribMode: cmd.String("contrib-mode"),
					Seed: cmd.Uint64("seed"), Label: cmd.String("label"), Modules: cmd.StringSlice("module")}
				if like := cmd.String("like"); like != "" {
					if p.Like, err = neuronset.ReadFile(like); err != nil {
						return err
					}
				}
				if !pipeline.ReadsStats(p.Method) {
					return usageErrorf("--method %s runs the model on samples, not a stats file: neurosurg attribute CKPT --data DATA --concept WORD", p.Method)
				}
				// Every option is checked before the stats are read.
				l, err := pipeline.NewLocator(p)
				if err != nil {
					return valid(err)
				}
				for _, out := range []string{cmd.String("out"), cmd.String("plot")} {
					if err := checkOut(out, path, cmd.String("like")); err != nil {
						return err
					}
				}
				st, hash, err := pipeline.ReadStats(path)
				if err != nil {
					return err
				}
				set, err := l.Locate(ctx, pipeline.LocateInputs{Stats: st, StatsSHA256: hash})
				if err != nil {
					return err
				}
				if err := pipeline.WriteSet(cmd.String("out"), set); err != nil {
					return err
				}
				if p := cmd.String("plot"); p != "" {
					if err := pipeline.PlotLayers(set, st, p); err != nil {
						return err
					}
				}
				fmt.Fprintf(cmd.Root().Writer, "%d neurons → %s\n", len(set.Neurons), cmd.String("out"))
				return nil
			},
		}
	})
	register(func() *cli.Command {
		return &cli.Command{
			Name:  "stats",
			Usage: "merge or export stats files",
			UsageText: `neurosurg stats merge a.st b.st --out ab.st
neurosurg stats merge part-*.st --out all.st   # the shards of record --shard, in any order
neurosurg stats export stats.st --csv > stats.csv
neurosurg stats export miner.st --by-modality > by-modality.csv   # record --miner`,
			Commands: []*cli.Command{
				{
					Name: "merge", ArgsUsage: "A [B…]",
					Flags: []cli.Flag{&cli.StringFlag{Name: "out", Aliases: []string{"o"}, Required: true}},
					Action: func(ctx context.Context, cmd *cli.Command) error {
						if cmd.Args().Len() < 1 {
							return usageErrorf("stats merge takes one or more stats files (one: the only shard of a recording)")
						}
						if err := checkOut(cmd.String("out"), cmd.Args().Slice()...); err != nil {
							return err
						}
						var all []*locate.Stats
						for _, p := range cmd.Args().Slice() {
							s, err := locate.ReadStats(p)
							if err != nil {
								return err
							}
							all = append(all, s)
						}
						acc, err := locate.MergeAll(all)
						if err != nil {
							return fmt.Errorf("%s: %w", strings.Join(cmd.Args().Slice(), ", "), err)
						}
						return acc.WriteFile(cmd.String("out"))
					},
				},
				{
					Name: "export", ArgsUsage: "STATS",
					Flags: []cli.Flag{&cli.BoolFlag{Name: "csv"}, &cli.BoolFlag{Name: "json"},
						&cli.BoolFlag{Name: "by-modality", Usage: "per MINER dataset, module, modality, layer and neuron: the raw firing probability, mean and max over that modality's positions (record --miner)"}},
					Action: func(ctx context.Context, cmd *cli.Command) error {
						path, err := oneArg(cmd, "STATS")
						if err != nil {
							return err
						}
						st, err := locate.ReadStats(path)
						if err != nil {
							return err
						}
						if cmd.Bool("by-modality") {
							rows, err := st.ExportByModality()
							if err != nil {
								return fmt.Errorf("%s: %w", path, err)
							}
							if cmd.Bool("json") {
								return printJSON(cmd.Root().Writer, rows)
							}
							return locate.WriteModalityCSV(cmd.Root().Writer, rows)
						}
						rows := st.Export()
						if cmd.Bool("json") {
							return printJSON(cmd.Root().Writer, rows)
						}
						return locate.WriteExportCSV(cmd.Root().Writer, rows)
					},
				},
			},
		}
	})
	register(func() *cli.Command {
		return &cli.Command{
			Name:      "patch",
			Usage:     "turn a neuron set into an edit file (release diff)",
			ArgsUsage: "CKPT",
			UsageText: `neurosurg patch testdata/stories260K --neurons neurons.json --op zero --out edit.nsd
neurosurg patch testdata/stories260K --neurons lily.json --op swap:Lily>Tim --out swap.nsd
neurosurg patch CKPT --neurons n.json --op scale:0.5 --op noise:0.01 --seed 3 --out e.nsd`,
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "neurons", Required: true},
				&cli.StringSliceFlag{Name: "op", Required: true, Usage: "zero, scale:α, swap:SRC>TGT[:λ], noise:σ, set:FILE.safetensors (repeatable, applied in order)"},
				&cli.Uint64Flag{Name: "seed", Usage: "noise seed"},
				&cli.StringFlag{Name: "out", Aliases: []string{"o"}, Required: true},
			},
			Action: func(ctx context.Context, cmd *cli.Command) error {
				dir, err := oneArg(cmd, "CKPT")
				if err != nil {
					return err
				}
				ops, err := pipeline.ParseOps(cmd.StringSlice("op"), cmd.Uint64("seed"), nil)
				if err != nil {
					return usageErrorf("%v", err)
				}
				if err := checkOut(cmd.String("out"), append([]string{dir, cmd.String("neurons")}, pipeline.OpPaths(ops)...)...); err != nil {
					return err
				}
				if err := pipeline.CheckOpFiles(ops); err != nil {
					return err
				}
				set, err := neuronset.ReadFile(cmd.String("neurons"))
				if err != nil {
					return err
				}
				c, tok, err := pipeline.OpenForPatch(dir, ops)
				if err != nil {
					return err
				}
				defer c.Close()
				e, err := pipeline.Patch(c, tok, set, cmd.String("neurons"), ops, map[string]string{"neurosurg.ops": strings.Join(cmd.StringSlice("op"), " ")})
				if err != nil {
					return err
				}
				if err := e.WriteFile(cmd.String("out")); err != nil {
					return err
				}
				return printStat(cmd, e)
			},
		}
	})
	register(func() *cli.Command {
		return &cli.Command{
			Name:      "verify",
			Usage:     "run base and edited model on a bench and report what the edit did",
			ArgsUsage: "CKPT",
			UsageText: `neurosurg verify testdata/stories260K --edit edit.nsd --bench testdata/samples/stories-animals-food.jsonl
neurosurg verify testdata/stories260K --edit swap.nsd --swap Lily>Tim --bench examples/stories-swap-bench.jsonl --gate efficacy>0.5 --gate kl<0.1
neurosurg verify CKPT --edit e.nsd --bench b.jsonl --out report --json
neurosurg verify VLM --edit swap.nsd --swap dog>cat --bench captions.jsonl --mm-metrics --mm-shuffle-seed 7 --gate mm/edit_specificity>0.7
neurosurg verify CKPT --edit e.nsd --random random.nsd --bench b.jsonl   # random.nsd: locate --method random --like, then patch`,
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "edit", Required: true},
				&cli.StringFlag{Name: "random", Usage: "the random baseline's edit, measured beside (locate --method random --like NEURONS: the same count per label, module and layer; then patch)"},
				&cli.StringFlag{Name: "bench", Required: true},
				&cli.StringFlag{Name: "swap", Usage: "SRC>TGT: also measure swap efficacy"},
				&cli.StringSliceFlag{Name: "gate", Usage: "METRIC<VALUE or METRIC>VALUE (exit 3 when one fails)"},
				&cli.IntFlag{Name: "max-tokens", Value: 32},
				&cli.StringFlag{Name: "out", Usage: "write the report as OUT.json, OUT.md and OUT.svg"},
				&cli.BoolFlag{Name: "json"},
				&cli.BoolFlag{Name: "mm-metrics", Usage: "also measure Pan et al.'s four metrics of the bench concepts' neurons (captioned images labelled with their concept; docs/metrics.md)"},
				&cli.IntFlag{Name: "mm-top-n", Usage: "mm-metrics: neurons per concept and image (default 50)"},
				&cli.IntFlag{Name: "mm-lens-k", Usage: "mm-metrics: logit-lens top tokens per neuron (default 10)"},
				&cli.Uint64Flag{Name: "mm-seed", Usage: "mm-metrics: the random baseline's seed"},
				&cli.Uint64Flag{Name: "mm-shuffle-seed", Usage: "mm-metrics: also locate with every image's patches permuted by this seed, and report the overlap"},
			},
			Action: func(ctx context.Context, cmd *cli.Command) error {
				dir, err := oneArg(cmd, "CKPT")
				if err != nil {
					return err
				}
				// Options, the swap and the gates are checked before anything runs.
				var swap *patch.Op
				if s := cmd.String("swap"); s != "" {
					src, tgt, err := patch.ParseSwapPair(s)
					if err != nil {
						return usageErrorf("--swap: %v", err)
					}
					swap = &patch.Op{Kind: "swap", Src: src, Tgt: tgt}
				}
				gates := cmd.StringSlice("gate")
				var mm *mmneurons.Options
				if cmd.Bool("mm-metrics") {
					mm = &mmneurons.Options{TopN: int(cmd.Int("mm-top-n")), LensK: int(cmd.Int("mm-lens-k")), Seed: cmd.Uint64("mm-seed")}
					if cmd.IsSet("mm-shuffle-seed") {
						seed := cmd.Uint64("mm-shuffle-seed")
						mm.ShuffleSeed = &seed
					}
				} else if cmd.IsSet("mm-top-n") || cmd.IsSet("mm-lens-k") || cmd.IsSet("mm-seed") || cmd.IsSet("mm-shuffle-seed") {
					return usageErrorf("--mm-top-n, --mm-lens-k, --mm-seed and --mm-shuffle-seed need --mm-metrics")
				}
				o, err := pipeline.VerifyOptions(int(cmd.Int("max-tokens")), swap, mm, gates)
				if err != nil {
					return valid(err)
				}
				if out := cmd.String("out"); out != "" {
					for _, ext := range pipeline.ReportExts {
						if err := checkOut(out+ext, dir, cmd.String("edit"), cmd.String("random"), cmd.String("bench")); err != nil {
							return err
						}
					}
				}
				bench, err := samples.ReadFile(cmd.String("bench"))
				if err != nil {
					return err
				}
				m, err := pipeline.OpenModel(dir)
				if err != nil {
					return err
				}
				defer m.Close()
				edits := []pipeline.EditVariant{{Name: "edited", Edit: cmd.String("edit")}}
				if r := cmd.String("random"); r != "" {
					edits = append(edits, pipeline.EditVariant{Name: "random", Edit: r})
				}
				rep, err := pipeline.Verify(ctx, m, edits, bench, o)
				if err != nil {
					return err
				}
				failed, err := pipeline.Gates(rep, "edited", gates)
				if err != nil {
					return err // a gate on a metric this run does not have: no report to print
				}
				if out := cmd.String("out"); out != "" {
					if err := pipeline.WriteReport(rep, out); err != nil {
						return err
					}
				}
				if cmd.Bool("json") {
					if err := printJSON(cmd.Root().Writer, rep); err != nil {
						return err
					}
				} else {
					fmt.Fprint(cmd.Root().Writer, rep.Markdown())
				}
				if failed != nil {
					return fmt.Errorf("%w: %v", errGate, failed)
				}
				return nil
			},
		}
	})
}
