package locate

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
)

// ErrOption reports a selection parameter outside its range. Every method checks its options
// first; callers (the CLI, surgery) call Validate before recording or loading anything.
var ErrOption = errors.New("locate: option out of range")

// MINER's strategies and modality splits, as its options name them.
var (
	MINERStrategies = []string{"adaptive", "LA_MU", "LU_MA", "uniform", "random"}
	MINERSplits     = []string{"special_text_separate", "special_text_as_one", "prompt"}
)

// Methods lists the selection methods a recipe or the CLI can name.
var Methods = []string{"miner", "dape", "contrib", "ig", "random"}

// fraction checks a rate that must lie in [0, 1] (0 picks the default).
func fraction(name string, v float64) error {
	if !(v >= 0 && v <= 1) {
		return fmt.Errorf("%w: %s %v: want a fraction in [0, 1]", ErrOption, name, v)
	}
	return nil
}

func count(name string, v int) error {
	if v < 0 {
		return fmt.Errorf("%w: %s %d is negative", ErrOption, name, v)
	}
	return nil
}

func oneOf(name, v string, allowed []string) error {
	if v != "" && !slices.Contains(allowed, v) {
		return fmt.Errorf("%w: %s %q: want one of %s", ErrOption, name, v, strings.Join(allowed, ", "))
	}
	return nil
}

// Validate reports the first option outside its range.
func (o DAPEOptions) Validate() error {
	if err := fraction("top_rate", o.TopRate); err != nil {
		return err
	}
	return fraction("filter_rate", o.FilterRate)
}

// Validate reports the first option outside its range.
func (o MINEROptions) Validate() error {
	for i, w := range o.Weights {
		if !(w >= 0) || math.IsInf(w, 0) {
			return fmt.Errorf("%w: weight of %s %v: want a finite number ≥ 0", ErrOption, Metrics[i], w)
		}
	}
	if err := fraction("ratio", o.Ratio); err != nil {
		return err
	}
	if err := oneOf("strategy", o.Strategy, MINERStrategies); err != nil {
		return err
	}
	return oneOf("split", o.Split, MINERSplits)
}

// Validate reports the first option outside its range. Layers above the stats' count are
// refused by Contrib, which knows it.
func (o ContribOptions) Validate() error {
	if o.Module != "" && o.Module != "llm" {
		return fmt.Errorf("%w: contrib module %q: a contribution score is a neuron's direct effect on the logits (its down_proj column against an unembedding row), which only the language model (llm) has; select in an encoder with dape", ErrOption, o.Module)
	}
	if err := count("top_k", o.TopK); err != nil {
		return err
	}
	for _, l := range o.Layers {
		if err := count("layer", l); err != nil {
			return err
		}
	}
	return nil
}

// Validate reports the first option outside its range.
func (o IGOptions) Validate() error {
	if strings.TrimSpace(o.Concept) == "" {
		return fmt.Errorf("%w: no concept word", ErrOption)
	}
	if err := count("top_k", o.TopK); err != nil {
		return err
	}
	if err := count("steps", o.Steps); err != nil {
		return err
	}
	return count("max_occurrences", o.MaxOccurrences)
}
