package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"github.com/neurosurg/neurosurg/formats/atomicfile"
	"github.com/neurosurg/neurosurg/formats/samples"
	"github.com/neurosurg/neurosurg/model"
	"github.com/neurosurg/neurosurg/patch"
	"github.com/neurosurg/neurosurg/verify"
	"github.com/neurosurg/neurosurg/verify/mmneurons"
)

// VerifyOptions are verify's options for a bench measured with greedy continuations of
// maxTokens, measuring the swap when there is one and the multi-modal neurons' metrics when
// neurons is not nil, checked together with the gates.
func VerifyOptions(maxTokens int, swap *patch.Op, neurons *mmneurons.Options, gates []string) (verify.Options, error) {
	o := verify.Options{MaxTokens: maxTokens, Neurons: neurons}
	if swap != nil {
		o.Source, o.Target = swap.Src, swap.Tgt
	}
	if err := o.Validate(); err != nil {
		return o, err
	}
	if _, err := verify.ParseGates(gates); err != nil {
		return o, err
	}
	return o, nil
}

// EditVariant names an edit file to verify against the base.
type EditVariant struct {
	Name string // "edited", "random"
	Edit string // edit file path
}

// Verify lays each edit over base (OpenVariant) and measures them all against it on bench.
func Verify(ctx context.Context, base *model.Model, edits []EditVariant, bench []samples.Sample, o verify.Options) (*verify.Report, error) {
	var variants []verify.Variant
	for _, v := range edits {
		m, err := OpenVariant(base, v.Edit)
		if err != nil {
			return nil, err
		}
		variants = append(variants, verify.Variant{Name: v.Name, Model: m})
	}
	return verify.Run(ctx, base, variants, bench, o)
}

// Gates checks the gates against the variant's metrics. failed is the gates that failed
// (wrapping verify.ErrGate): the report stands and the caller decides. err is a gate the
// report cannot answer (a metric this run does not have): no verdict at all.
func Gates(rep *verify.Report, variant string, gates []string) (failed, err error) {
	gerr := rep.CheckGates(variant, gates)
	if gerr != nil && !errors.Is(gerr, verify.ErrGate) {
		return nil, gerr
	}
	return gerr, nil
}

// ReportExts are the files WriteReport writes beside each other (STEM.json, .md, .svg).
var ReportExts = []string{".json", ".md", ".svg"}

// WriteReport writes the verify report as stem.svg (the perplexity plot), stem.md (the table)
// and stem.json, each whole or not at all, the JSON last: its presence marks the report done.
func WriteReport(rep *verify.Report, stem string) error {
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return fmt.Errorf("%s.json: %w", stem, err)
	}
	if err := rep.Plot(stem + ".svg"); err != nil {
		return err
	}
	if err := atomicfile.Write(stem+".md", []byte(rep.Markdown())); err != nil {
		return fmt.Errorf("%s.md: %w", stem, err)
	}
	if err := atomicfile.Write(stem+".json", append(b, '\n')); err != nil {
		return fmt.Errorf("%s.json: %w", stem, err)
	}
	return nil
}

// ReadReport reads a verify report WriteReport wrote; one without the edited model's metrics
// is refused (a report of nothing).
func ReadReport(path string) (*verify.Report, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r verify.Report
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if r.Metrics["edited"] == nil {
		return nil, fmt.Errorf("%s: no metrics of the edited model", path)
	}
	return &r, nil
}
