// Package benchenc measures a multimodal checkpoint's encoders: the seconds one medium (an
// image, a video, an audio clip) takes through its family's encoder and projector, as
// bench/pytorch_encoders.py times PyTorch's, with the processor's work left out (done once).
package benchenc

import (
	"context"
	"fmt"

	"github.com/neurosurg/neurosurg/internal/benchfwd"
	"github.com/neurosurg/neurosurg/model"
	"github.com/neurosurg/neurosurg/model/kernels"
)

// Result is one encoder measurement.
type Result struct {
	Name       string  `json:"name"`
	InputRows  int     `json:"input_rows"`  // rows the encoder reads (patches, mel frames)
	OutputRows int     `json:"output_rows"` // rows of the language model's input they fill
	Seconds    float64 `json:"seconds"`     // mean seconds per medium
	Best       float64 `json:"best_seconds"`
	PeakRSSMiB float64 `json:"peak_rss_mib"`
	Kernels    string  `json:"kernels"`
}

// Options for Run.
type Options struct {
	Checkpoint string
	Media      []model.Medium
	MinSeconds float64 // timed runs continue until this much has passed (at least two); default 2
}

// Run loads the checkpoint, prepares each medium once through the family's prompt builder
// and times its encoders: one untimed run, then runs until MinSeconds have passed.
func Run(ctx context.Context, o Options) ([]Result, error) {
	m, err := model.Open(o.Checkpoint)
	if err != nil {
		return nil, err
	}
	defer m.Close()
	minS := o.MinSeconds
	if minS <= 0 {
		minS = 2
	}
	var out []Result
	for _, md := range o.Media {
		name := fmt.Sprintf("%s %v", md.Kind, md.Paths)
		in, err := m.BuildInput(name, model.Prompt{Media: []model.Medium{md}, Text: "Describe it."})
		if err != nil {
			return nil, err
		}
		rows := 0
		for _, x := range in.Media {
			rows += x.Rows
		}
		filled := 0
		mean, best, err := benchfwd.Timed(func() (err error) {
			filled, err = m.EncodeMedia(ctx, in)
			return err
		}, minS)
		if err != nil {
			return nil, err
		}
		out = append(out, Result{Name: name, InputRows: rows, OutputRows: filled, Seconds: mean, Best: best, PeakRSSMiB: benchfwd.PeakMiB(), Kernels: kernels.Active()})
	}
	return out, nil
}
