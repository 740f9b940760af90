package patch

import (
	"bytes"
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/neurosurg/neurosurg/formats/hfdir"
	"github.com/neurosurg/neurosurg/formats/neuronset"
	"github.com/neurosurg/neurosurg/formats/safetensors"
	"github.com/neurosurg/neurosurg/model/archdef"
	"github.com/neurosurg/neurosurg/model/tokenizer"
)

func TestParseOp(t *testing.T) {
	for in, want := range map[string]string{"zero": "zero", "scale:0.5": "scale:0.5", "swap:Lily>Tim": "swap:Lily>Tim", "swap:a>b:0.5": "swap:a>b:0.5", "noise:0.1": "noise:0.1"} {
		o, err := ParseOp(in)
		if err != nil || o.String() != want {
			t.Errorf("%s -> %v %v", in, o, err)
		}
	}
	for _, bad := range []string{"zap", "scale:x", "swap:a", "swap:>b", "zero:1", "scale:NaN"} {
		if _, err := ParseOp(bad); !errors.Is(err, ErrOp) {
			t.Errorf("%s: err %v", bad, err)
		}
	}
}

func column(b []byte, rows, n, j int) []float64 {
	v := make([]float64, rows)
	one := make([]float32, 1)
	for r := range v {
		safetensors.ToFloat32(one, b[(r*n+j)*4:], safetensors.F32)
		v[r] = float64(one[0])
	}
	return v
}

func dot(a, b []float64) float64 {
	var s float64
	for i := range a {
		s += a[i] * b[i]
	}
	return s
}

func TestSwapExchangesComponents(t *testing.T) {
	c, err := hfdir.Open("../testdata/stories260K")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	tok, err := tokenizer.Load("../testdata/stories260K")
	if err != nil {
		t.Fatal(err)
	}
	set := &neuronset.Set{Neurons: []neuronset.Neuron{{Module: "llm", Layer: 2, Index: 7}, {Module: "llm", Layer: 2, Index: 9}}}
	op, _ := ParseOp("swap:Lily>Tim")
	out, err := Apply(Inputs{Base: c, Tokenizer: tok}, set, []Op{op})
	if err != nil {
		t.Fatal(err)
	}
	name := "model.layers.2.mlp.down_proj.weight"
	_, orig, _ := c.Tensor(name)
	nb := out[name]
	a, _ := archdef.ForConfig(c.ConfigJSON)
	w, _ := swapDirection(Inputs{Base: c, Tokenizer: tok}, a, op)
	// ê_s and ê_t: reflection across w⊥ exchanges them; check through w and norms.
	for j := 0; j < 172; j++ {
		v, v2 := column(orig, 64, 172, j), column(nb, 64, 172, j)
		edited := j == 7 || j == 9
		if !edited {
			if !bytes.Equal(orig, orig) || dot(v, v) != dot(v2, v2) {
				t.Fatalf("column %d changed", j)
			}
			continue
		}
		if d := math.Abs(dot(v, v) - dot(v2, v2)); d > 1e-5 {
			t.Errorf("col %d: norm changed by %g", j, d)
		}
		if d := math.Abs(dot(w, v) + dot(w, v2)); d > 1e-5 {
			t.Errorf("col %d: component along w not negated (%g vs %g)", j, dot(w, v), dot(w, v2))
		}
	}
	// Untouched elements are byte-identical.
	diff := 0
	for i := 0; i < len(orig); i += 4 {
		if !bytes.Equal(orig[i:i+4], nb[i:i+4]) {
			if col := (i / 4) % 172; col != 7 && col != 9 {
				t.Fatalf("element %d outside the edited columns changed", i/4)
			}
			diff++
		}
	}
	if diff == 0 {
		t.Error("swap changed nothing")
	}
	// Out of range.
	bad := &neuronset.Set{Neurons: []neuronset.Neuron{{Module: "llm", Layer: 5, Index: 0}}}
	if _, err := Apply(Inputs{Base: c, Tokenizer: tok}, bad, []Op{{Kind: "zero"}}); !errors.Is(err, ErrOp) || !errors.Is(err, neuronset.ErrGeometry) {
		t.Errorf("err %v", err)
	}
}

func TestSetFromFile(t *testing.T) {
	c, err := hfdir.Open("../testdata/stories260K")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	vec := make([]float32, 64)
	for i := range vec {
		vec[i] = float32(i) / 8 // exact in f32
	}
	b := make([]byte, 256)
	safetensors.FromFloat32(b, vec, safetensors.F32)
	path := t.TempDir() + "/v.safetensors"
	if err := safetensors.WriteFile(path, []safetensors.Tensor{{Info: safetensors.TensorInfo{Name: "llm.1.5", DType: safetensors.F32, Shape: []int64{64}}, Data: b}}, nil); err != nil {
		t.Fatal(err)
	}
	op, err := ParseOp("set:" + path)
	if err != nil {
		t.Fatal(err)
	}
	set := &neuronset.Set{Neurons: []neuronset.Neuron{{Module: "llm", Layer: 1, Index: 5}}}
	out, err := Apply(Inputs{Base: c}, set, []Op{op})
	if err != nil {
		t.Fatal(err)
	}
	got := column(out["model.layers.1.mlp.down_proj.weight"], 64, 172, 5)
	for i := range got {
		if got[i] != float64(vec[i]) {
			t.Fatalf("col[%d] = %g, want %g", i, got[i], vec[i])
		}
	}
	set.Neurons[0].Index = 6 // no vector for this neuron
	if _, err := Apply(Inputs{Base: c}, set, []Op{op}); !errors.Is(err, ErrOp) || !strings.Contains(err.Error(), "llm.1.6") {
		t.Errorf("err %v", err)
	}
}
