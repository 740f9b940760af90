package model_test

import (
	"context"
	"testing"

	"github.com/neurosurg/neurosurg/model"
)

// The lens at the last layer is the model's own next-token distribution.
func TestLogitLensLastLayerIsOutput(t *testing.T) {
	m := openModel(t, stories)
	ids := []int32{1, 403, 407, 261, 378}
	lens, err := m.LogitLens(context.Background(), ids, []int{-1}, 3)
	if err != nil {
		t.Fatal(err)
	}
	if len(lens) != m.Config().Layers {
		t.Fatalf("%d entries", len(lens))
	}
	res, _ := m.Forward(context.Background(), [][]int32{ids}, model.ForwardOptions{})
	last := lens[len(lens)-1]
	if last.TopIDs[0] != int32(model.Argmax(res.Logits[0])) || last.Position != 4 {
		t.Errorf("last-layer lens top %v at %d, model argmax %d", last.TopIDs, last.Position, model.Argmax(res.Logits[0]))
	}
	if _, err := m.LogitLens(context.Background(), ids, []int{9}, 3); err == nil {
		t.Error("position outside the prompt accepted")
	}
	if top := m.TopTokensOfNeuron(model.Site{Module: "llm", Layer: 4}, 0, 5); len(top) != 5 {
		t.Errorf("top tokens %v", top)
	}
}
