package patch

import (
	"context"
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/neurosurg/neurosurg/formats/edit"
	"github.com/neurosurg/neurosurg/formats/hfdir"
	"github.com/neurosurg/neurosurg/formats/neuronset"
	"github.com/neurosurg/neurosurg/model"
)

// The run-time mask RuntimeMask builds from a set does what Apply's weight edit does.
func TestRuntimeMaskEqualsApply(t *testing.T) {
	c, err := hfdir.Open("../testdata/stories260K")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	base, err := model.Load(c.ConfigJSON, c)
	if err != nil {
		t.Fatal(err)
	}
	set := &neuronset.Set{Neurons: []neuronset.Neuron{
		{Module: "llm", Layer: 0, Index: 3, Label: "a"}, {Module: "llm", Layer: 0, Index: 3, Label: "b"},
		{Module: "llm", Layer: 0, Index: 100, Label: "a"}, {Module: "llm", Layer: 3, Index: 171, Label: "a"}}}
	prompts := [][]int32{{1, 40, 50, 60, 70, 80}, {1, 9, 8}}
	plain, err := base.Forward(context.Background(), prompts, model.ForwardOptions{AllLogits: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, ops := range [][]Op{{{Kind: "zero"}}, {{Kind: "scale", Alpha: 0.5}}, {{Kind: "scale", Alpha: 2}, {Kind: "scale", Alpha: -1}}} {
		name := opList(ops)
		mask, err := RuntimeMask(set, ops, base.Geometry())
		if err != nil {
			t.Fatal(err)
		}
		if mask.Len() != 3*len(ops) {
			t.Errorf("%s: %d mask entries, want %d (a neuron under two labels is one column)", name, mask.Len(), 3*len(ops))
		}
		masked, err := base.Forward(context.Background(), prompts, model.ForwardOptions{Mask: mask, AllLogits: true})
		if err != nil {
			t.Fatal(err)
		}
		out, err := Apply(Inputs{Base: c}, set, ops)
		if err != nil {
			t.Fatal(err)
		}
		edited, err := model.Load(c.ConfigJSON, edit.NewOverlay(c, out))
		if err != nil {
			t.Fatal(err)
		}
		want, err := edited.Forward(context.Background(), prompts, model.ForwardOptions{AllLogits: true})
		if err != nil {
			t.Fatal(err)
		}
		worst, moved := 0.0, 0.0
		for i := range prompts {
			for j := range want.Logits[i] {
				worst = math.Max(worst, math.Abs(float64(masked.Logits[i][j]-want.Logits[i][j])))
				moved = math.Max(moved, math.Abs(float64(plain.Logits[i][j]-want.Logits[i][j])))
			}
		}
		if worst > 1e-5 || moved < 1e-4 {
			t.Errorf("%s: mask vs edit differ by %g (edit moved logits by %g)", name, worst, moved)
		}
	}
	for _, cc := range []struct {
		ops []Op
		set *neuronset.Set
		is  error
		msg string
	}{
		{[]Op{{Kind: "noise", Sigma: 0.1}}, set, ErrOp, "no run-time mask equivalent"},
		{[]Op{{Kind: "zero"}, {Kind: "swap", Src: "a", Tgt: "b", Lambda: 1}}, set, ErrOp, "swap:a>b"},
		{[]Op{{Kind: "zero"}}, &neuronset.Set{Neurons: []neuronset.Neuron{{Module: "vision", Layer: 0, Index: 0}}}, neuronset.ErrGeometry, `no module "vision"`},
		{[]Op{{Kind: "zero"}}, &neuronset.Set{Neurons: []neuronset.Neuron{{Module: "llm", Layer: 0, Index: 172}}}, neuronset.ErrGeometry, "neurons 0..171"},
	} {
		if _, err := RuntimeMask(cc.set, cc.ops, base.Geometry()); !errors.Is(err, cc.is) || !strings.Contains(err.Error(), cc.msg) {
			t.Errorf("%s: %v, want %q", opList(cc.ops), err, cc.msg)
		}
	}
}
