package model_test

import (
	"context"
	"errors"
	"math"
	"testing"

	"github.com/neurosurg/neurosurg/model"
)

func TestGenerateOptionsValidate(t *testing.T) {
	for _, c := range []struct {
		name string
		o    model.GenerateOptions
		ok   bool
	}{
		{"defaults", model.GenerateOptions{}, true},
		{"sampled", model.GenerateOptions{MaxTokens: 8, Temperature: 0.8, TopK: 40, TopP: 0.9}, true},
		{"top-p 1", model.GenerateOptions{TopP: 1}, true},
		{"negative max tokens", model.GenerateOptions{MaxTokens: -5}, false},
		{"negative temperature", model.GenerateOptions{Temperature: -1}, false},
		{"NaN temperature", model.GenerateOptions{Temperature: float32(math.NaN())}, false},
		{"infinite temperature", model.GenerateOptions{Temperature: float32(math.Inf(1))}, false},
		{"negative top-k", model.GenerateOptions{TopK: -1}, false},
		{"negative top-p", model.GenerateOptions{TopP: -0.1}, false},
		{"top-p above 1", model.GenerateOptions{TopP: 1.5}, false},
		{"NaN top-p", model.GenerateOptions{TopP: float32(math.NaN())}, false},
	} {
		err := c.o.Validate()
		if (err == nil) != c.ok || (err != nil && !errors.Is(err, model.ErrOption)) {
			t.Errorf("%s: %v", c.name, err)
		}
	}
}

// Out-of-range values are errors or empty results from the model, never panics or huge
// allocations.
func TestOutOfRangeOptions(t *testing.T) {
	m := openModel(t, stories)
	ids := []int32{1, 403, 407}
	if _, err := m.Generate(context.Background(), [][]int32{ids}, model.GenerateOptions{MaxTokens: -5}); !errors.Is(err, model.ErrOption) {
		t.Errorf("Generate with -5 tokens: %v", err)
	}
	// A huge budget reserves no more than the model's context (before: a 2³¹-position cache);
	// every token stops it here, so one token comes out.
	var all []int32
	for id := range int32(m.Config().Vocab) {
		all = append(all, id)
	}
	gens, err := m.Generate(context.Background(), [][]int32{ids}, model.GenerateOptions{MaxTokens: math.MaxInt32, Stop: all})
	if err != nil || len(gens[0].Tokens) != 1 {
		t.Errorf("huge MaxTokens: %v", err)
	}
	if _, err := m.LogitLens(context.Background(), ids, []int{-1}, -1); !errors.Is(err, model.ErrOption) {
		t.Errorf("LogitLens top -1: %v", err)
	}
	if top := model.TopK(make([]float32, 8), -1, func([]int32) string { return "" }); len(top) != 0 {
		t.Errorf("TopK -1: %v", top)
	}
	for _, c := range [][2]int{{4, -1}, {4, 1 << 20}, {-1, 0}, {99, 0}} {
		if top := m.TopTokensOfNeuron(model.Site{Module: "llm", Layer: c[0]}, c[1], 5); top != nil {
			t.Errorf("neuron %v: %v", c, top)
		}
	}
	if top := m.TopTokensOfNeuron(model.Site{Module: "llm", Layer: 0}, 0, -3); len(top) != 0 {
		t.Errorf("top -3: %v", top)
	}
}
