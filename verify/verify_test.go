package verify

import (
	"context"
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/neurosurg/neurosurg/formats/samples"
	"github.com/neurosurg/neurosurg/model"
)

func TestANLS(t *testing.T) {
	cases := []struct {
		pred, ans string
		want      float64
	}{
		{"Paris", "paris", 1},
		{"Pariss", "Paris", 1 - 1.0/6},
		{"London", "Paris", 0}, // NL = 6/6 ≥ 0.5
		{"", "", 1},
	}
	for _, c := range cases {
		if got := ANLS(c.pred, c.ans, 0.5); math.Abs(got-c.want) > 1e-12 {
			t.Errorf("ANLS(%q,%q) = %g, want %g", c.pred, c.ans, got, c.want)
		}
	}
}

func TestGates(t *testing.T) {
	r := &Report{Metrics: map[string]Metrics{"edited": {"kl": 0.02, "efficacy": 0.95}}}
	if err := r.CheckGates("edited", []string{"kl<0.05", "efficacy>0.9"}); err != nil || !r.Passed {
		t.Fatalf("err %v", err)
	}
	r.Gates = nil
	err := r.CheckGates("edited", []string{"kl<0.01"})
	if !errors.Is(err, ErrGate) || r.Passed || !strings.Contains(err.Error(), "kl<0.01 (is 0.02)") {
		t.Errorf("err %v", err)
	}
	if err := r.CheckGates("edited", []string{"klx<1"}); err == nil || !strings.Contains(err.Error(), "no metric") {
		t.Errorf("unknown metric: %v", err)
	}
	if err := r.CheckGates("edited", []string{"kl=1"}); err == nil {
		t.Error("malformed gate accepted")
	}
}

// Verifying a model against itself: KL 0, specificity 1, same perplexity, and multiple choice
// picks the continuation the model itself prefers.
func TestSelfVerify(t *testing.T) {
	m, err := model.Open("../testdata/stories260K")
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	bench := []samples.Sample{
		{ID: "a", Text: "Once upon a time, there was a little girl named", Label: "names"},
		{ID: "b", Text: "Once upon a time, there was a little girl named", Label: "mc", Choices: []string{"table", "Lily"}, Answer: "Lily"},
		{ID: "c", Text: "The dog ran", Label: "x", Control: true},
	}
	r, err := Run(context.Background(), m, []Variant{{Name: "same", Model: m}}, bench, Options{MaxTokens: 6, Source: "Lily", Target: "Tim"})
	if err != nil {
		t.Fatal(err)
	}
	s := r.Metrics["same"]
	if s["kl"] > 1e-9 || s["specificity"] != 1 || s["efficacy"] != 0 || s["mc_accuracy"] != 1 || s["source_positions"] < 1 {
		t.Errorf("self metrics %v", s)
	}
	if math.Abs(s["ppl/names"]-r.Metrics["base"]["ppl/names"]) > 1e-9 {
		t.Error("perplexity differs against itself")
	}
	if !strings.Contains(r.Markdown(), "| mc_accuracy | 1 | 1 |") {
		t.Errorf("markdown:\n%s", r.Markdown())
	}
}
