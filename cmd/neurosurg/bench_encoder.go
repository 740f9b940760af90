package main

import (
	"context"
	"fmt"

	"github.com/neurosurg/neurosurg/internal/benchenc"
	"github.com/neurosurg/neurosurg/pipeline"
	"github.com/urfave/cli/v3"
)

func init() {
	registerBench(func() *cli.Command {
		return &cli.Command{
			Name:  "encoder",
			Usage: "seconds per image, video or audio clip through a multimodal checkpoint's encoder and projector",
			UsageText: `neurosurg bench encoder --checkpoint /models/Qwen2-VL-2B-Instruct --image photo.png
neurosurg bench encoder --checkpoint /models/Qwen2-Audio-7B-Instruct --audio clip.wav --json`,
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "checkpoint", Required: true, Usage: "a multimodal checkpoint directory"},
				&cli.StringSliceFlag{Name: "image", Usage: "an image file (repeatable: each timed alone)"},
				&cli.StringFlag{Name: "audio", Usage: "a WAV file"},
				&cli.StringFlag{Name: "video", Usage: "a video's frames: F1,F2,… or a directory"},
				&cli.FloatFlag{Name: "min-seconds", Value: 2, Usage: "time each medium at least this long"},
				&cli.BoolFlag{Name: "json"},
				cpuProfileFlag,
			},
			Action: func(ctx context.Context, cmd *cli.Command) (err error) {
				p, err := pipeline.PromptFlags("", cmd.StringSlice("image"), cmd.String("video"), cmd.String("audio"), false)
				if err != nil {
					return valid(err)
				}
				media := p.Media
				if len(media) == 0 {
					return usageErrorf("bench encoder: give --image, --audio or --video")
				}
				stop, err := startCPUProfile(cmd.String("cpuprofile"))
				if err != nil {
					return err
				}
				defer stop(&err)
				res, err := benchenc.Run(ctx, benchenc.Options{Checkpoint: cmd.String("checkpoint"), Media: media, MinSeconds: cmd.Float("min-seconds")})
				if err != nil {
					return err
				}
				w := cmd.Root().Writer
				if cmd.Bool("json") {
					return printJSON(w, map[string]any{"results": res})
				}
				fmt.Fprintf(w, "%-40s %8s %8s %9s %9s %12s\n", "medium", "in rows", "out rows", "s", "best s", "peak RSS")
				for _, r := range res {
					fmt.Fprintf(w, "%-40s %8d %8d %9.3f %9.3f %9.0f MiB\n", r.Name, r.InputRows, r.OutputRows, r.Seconds, r.Best, r.PeakRSSMiB)
				}
				return nil
			},
		}
	})
}
