package patch

import (
	"bytes"
	"context"
	"errors"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/neurosurg/neurosurg/dtype"
	"github.com/neurosurg/neurosurg/formats/hfdir"
	"github.com/neurosurg/neurosurg/formats/neuronset"
	"github.com/neurosurg/neurosurg/formats/safetensors"
	"github.com/neurosurg/neurosurg/model/archdef"
	"github.com/neurosurg/neurosurg/model/synth"
	"github.com/neurosurg/neurosurg/model/tokenizer"
)

func TestParseOp(t *testing.T) {
	for in, want := range map[string]string{"zero": "zero", "scale:0.5": "scale:0.5", "swap:Lily>Tim": "swap:Lily>Tim", "swap:a>b:0.5": "swap:a>b:0.5", "noise:0.1": "noise:0.1"} {
		o, err := ParseOp(in)
		if err != nil || o.String() != want {
			t.Errorf("%s -> %v %v", in, o, err)
		}
	}
	for _, bad := range []string{"zap", "scale:x", "swap:a", "swap:>b", "zero:1", "scale:NaN", "swap:Lily>Tim>Bob", "swap:Lily>Lily",
		"swap:Lily> ", "swap:Lily>Tim:x", "swap:Lily>Tim:Inf", "noise:-1", "noise:", "set:", "scale:"} {
		if _, err := ParseOp(bad); !errors.Is(err, ErrOp) {
			t.Errorf("%s: err %v", bad, err)
		}
	}
}

func column(b []byte, rows, n, j int) []float64 {
	v := make([]float64, rows)
	one := make([]float32, 1)
	for r := range v {
		dtype.ToFloat32(one, b[(r*n+j)*4:], safetensors.F32)
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
	dtype.FromFloat32(b, vec, safetensors.F32)
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

// A swap word that is not one token is refused with its pieces, never swapped through its
// first piece; a set made on another model is refused before anything is edited.
func TestApplyRefuses(t *testing.T) {
	c, err := hfdir.Open("../testdata/stories260K")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	tok, err := tokenizer.Load("../testdata/stories260K")
	if err != nil {
		t.Fatal(err)
	}
	in := Inputs{Base: c, Tokenizer: tok}
	one := []neuronset.Neuron{{Module: "llm", Layer: 2, Index: 7}}
	for _, cc := range []struct {
		op  string
		set neuronset.Set
		is  error
		msg string
	}{
		{"swap:Lily>Zzyzx", neuronset.Set{Neurons: one}, tokenizer.ErrNotOneToken, `swap target "Zzyzx": not one token: it is 6 tokens (▁|Z|z|y|z|x)`},
		{"swap:Bartholomew>Tim", neuronset.Set{Neurons: one}, tokenizer.ErrNotOneToken, `swap source "Bartholomew"`},
		{"zero", neuronset.Set{Neurons: one, ModelSHA256: "0123456789abcdef"}, neuronset.ErrOtherModel, "no geometry"},
		{"zero", neuronset.Set{Neurons: one, ModelSHA256: "0123456789abcdef", Geometry: map[string]neuronset.Geometry{"llm": {Layers: 24, Neurons: 4864}}}, neuronset.ErrOtherModel, "24 layers × 4864 neurons, this checkpoint's is 5 × 172"},
	} {
		op, err := ParseOp(cc.op)
		if err != nil {
			t.Fatal(err)
		}
		_, err = Apply(in, &cc.set, []Op{op})
		if !errors.Is(err, cc.is) || !strings.Contains(err.Error(), cc.msg) {
			t.Errorf("%s: %v, want %q", cc.op, err, cc.msg)
		}
	}
	// The same geometry under another fingerprint (a fine-tune, a conversion) is accepted.
	g, err := Geometry(c)
	if err != nil {
		t.Fatal(err)
	}
	set := &neuronset.Set{Neurons: one, ModelSHA256: "0123456789abcdef", Geometry: g}
	if err := CheckSet(set, c); err != nil {
		t.Error(err)
	}
	if _, err := Apply(in, set, []Op{{Kind: "zero"}}); err != nil {
		t.Error(err)
	}
}

// An accepted op prints back to itself (the form recorded in edit metadata) and parses again
// to the same op.
func FuzzParseOp(f *testing.F) {
	for _, s := range []string{"zero", "scale:0.5", "swap:Lily>Tim", "swap:a>b:0.5", "noise:0.1", "set:v.safetensors", "swap:A>B>C", "noise:-1", "scale:1e400"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		o, err := ParseOp(s)
		if err != nil {
			if !errors.Is(err, ErrOp) {
				t.Fatalf("%q: error %v does not wrap ErrOp", s, err)
			}
			return
		}
		again, err := ParseOp(o.String())
		if err != nil || again != o {
			t.Fatalf("%q → %q → %+v %v, want %+v", s, o.String(), again, err, o)
		}
		if o.Kind == "swap" && (o.Src == "" || o.Tgt == "" || strings.Contains(o.Tgt, ">") || o.Src == o.Tgt) {
			t.Fatalf("%q: accepted swap %+v", s, o)
		}
	})
}

// No op may write a NaN or ±Inf into the checkpoint: an α or σ that overflows the tensor's
// dtype, a set vector holding NaN, or a swap between tokens with the same direction.
func TestOpsRefuseNonFiniteWeights(t *testing.T) {
	f16 := filepath.Join(t.TempDir(), "f16")
	if err := synth.Convert(context.Background(), "../testdata/stories260K", f16, safetensors.F16); err != nil {
		t.Fatal(err)
	}
	tok, err := tokenizer.Load("../testdata/stories260K")
	if err != nil {
		t.Fatal(err)
	}
	nanVec := filepath.Join(t.TempDir(), "nan.safetensors")
	b := make([]byte, 256)
	vec := make([]float32, 64)
	vec[10] = float32(math.NaN())
	dtype.FromFloat32(b, vec, safetensors.F32)
	if err := safetensors.WriteFile(nanVec, []safetensors.Tensor{{Info: safetensors.TensorInfo{Name: "llm.1.5", DType: safetensors.F32, Shape: []int64{64}}, Data: b}}, nil); err != nil {
		t.Fatal(err)
	}
	set := &neuronset.Set{Neurons: []neuronset.Neuron{{Module: "llm", Layer: 1, Index: 5}}}
	for _, c := range []struct {
		ckpt string
		ops  []string
		ok   bool
	}{
		{"../testdata/stories260K", []string{"scale:1e39"}, false},
		{"../testdata/stories260K", []string{"scale:-1e39"}, false},
		{"../testdata/stories260K", []string{"scale:1e30", "scale:1e30"}, false},
		{"../testdata/stories260K", []string{"noise:1e39"}, false},
		{"../testdata/stories260K", []string{"set:" + nanVec}, false},
		{"../testdata/stories260K", []string{"swap:Lily>Lily"}, false},
		{"../testdata/stories260K", []string{"scale:1e30"}, true},
		{"../testdata/stories260K", []string{"scale:1e39", "zero"}, true},
		{f16, []string{"scale:1e6"}, false},
		{f16, []string{"scale:10"}, true},
	} {
		base, err := hfdir.Open(c.ckpt)
		if err != nil {
			t.Fatal(err)
		}
		var ops []Op
		var perr error
		for _, s := range c.ops {
			op, err := ParseOp(s)
			if err != nil {
				perr = err // refused already when parsed (swap:Lily>Lily)
				break
			}
			ops = append(ops, op)
		}
		if perr != nil {
			base.Close()
			if c.ok || !errors.Is(perr, ErrOp) {
				t.Errorf("%s %v: parse: %v", filepath.Base(c.ckpt), c.ops, perr)
			}
			continue
		}
		out, err := Apply(Inputs{Base: base, Tokenizer: tok}, set, ops)
		base.Close()
		if c.ok {
			if err != nil {
				t.Errorf("%s %v: %v", filepath.Base(c.ckpt), c.ops, err)
			}
			continue
		}
		if !errors.Is(err, ErrOp) || out != nil {
			t.Errorf("%s %v: err %v, want a refusal", filepath.Base(c.ckpt), c.ops, err)
		}
	}
}
