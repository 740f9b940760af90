package model

import (
	"math"
	"testing"

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
