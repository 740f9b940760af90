package model

import (
	"context"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/neurosurg/neurosurg/formats/hfdir"
	"github.com/neurosurg/neurosurg/formats/safetensors"
	"github.com/neurosurg/neurosurg/model/synth"

	"github.com/nlpodyssey/spago/ag"
	"github.com/nlpodyssey/spago/mat"
)

// Every activation the runtime supports has a derivative in the graph that matches a central
// difference of the function activate computes, and the graph node's forward is that function.
func TestActivationDerivatives(t *testing.T) {
	xs := []float64{-3.1, -1, -0.2, 0.3, 1.2, 2.7}
	for _, act := range []string{"silu", "swish", "gelu", "gelu_pytorch_tanh", "gelu_new", "quick_gelu", "relu"} {
		f, df, ok := activation(act)
		if !ok {
			t.Fatalf("%s: not supported", act)
		}
		x32 := make([]float32, len(xs))
		for i, v := range xs {
			x32[i] = float32(v)
		}
		activate(x32, act)
		in := mat.NewDense[float64](mat.WithShape(len(xs), 1), mat.WithBacking(append([]float64(nil), xs...)), mat.WithGrad(true))
		y, err := activationGraph(in, act)
		if err != nil {
			t.Fatal(err)
		}
		if err := ag.Backward(ag.ReduceSum(y)); err != nil {
			t.Fatal(err)
		}
		got, grad := y.Value().Data().F64(), in.Grad().Data().F64()
		const h = 1e-6
		for i, x := range xs {
			if fd := (f(x+h) - f(x-h)) / (2 * h); math.Abs(fd-df(x)) > 1e-6 || math.Abs(grad[i]-df(x)) > 1e-12 {
				t.Errorf("%s'(%g): df %.9f, graph %.9f, difference %.9f", act, x, df(x), grad[i], fd)
			}
			if math.Abs(got[i]-float64(x32[i])) > 1e-6*math.Max(1, math.Abs(got[i])) {
				t.Errorf("%s(%g): graph %.7f, activate %.7f", act, x, got[i], x32[i])
			}
		}
	}
	if _, err := activationGraph(mat.Scalar(1.0), "tanh"); err == nil {
		t.Error("an unknown activation got a graph")
	}
}

// A layer downstream whose activation the graph cannot differentiate is refused by name before
// any work, not attributed with a wrong gradient.
func TestIntegratedGradientsRefusesActivationWithoutGradient(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "q")
	if err := synth.Generate("../testdata/configs/Qwen2-0.5B", dir, synth.Options{DType: safetensors.F32, Seed: 5, Std: 0.3,
		Set: map[string]any{"num_hidden_layers": 2, "hidden_size": 16, "intermediate_size": 24, "num_attention_heads": 2, "num_key_value_heads": 1, "vocab_size": 50}}); err != nil {
		t.Fatal(err)
	}
	ck, err := hfdir.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer ck.Close()
	m, err := Load(ck.ConfigJSON, ck)
	if err != nil {
		t.Fatal(err)
	}
	m.decoder.layers[1].mlp.act = "tanh"
	_, _, _, err = m.IntegratedGradients(context.Background(), []int32{1, 2, 3}, Site{Module: "llm", Layer: 0}, 4, 2)
	if err == nil || !strings.Contains(err.Error(), `layer 1: activation "tanh" has no gradient`) {
		t.Errorf("error %v, want the layer and activation named", err)
	}
	// Attributing the last layer needs no downstream activation.
	if _, _, _, err := m.IntegratedGradients(context.Background(), []int32{1, 2, 3}, Site{Module: "llm", Layer: 1}, 4, 2); err != nil {
		t.Error(err)
	}
}
