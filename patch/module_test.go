package patch

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/neurosurg/neurosurg/formats/hfdir"
	"github.com/neurosurg/neurosurg/formats/neuronset"
	"github.com/neurosurg/neurosurg/formats/safetensors"
	"github.com/neurosurg/neurosurg/model/archdef"
	"github.com/neurosurg/neurosurg/model/synth"
)

// visionLlamaDef is a test family: a 2-layer plain-MLP "vision" encoder (fc1 → GELU → fc2, with
// biases) beside a Llama decoder, described only by an archdef definition.
const visionLlamaDef = `{
  "architectures": ["NeurosurgPatchVisionTestForCausalLM"],
  "model_types": ["neurosurg_patch_vision_test"],
  "modules": [
    {
      "name": "vision", "layers": "vision_layers", "layer_prefix": "vision.layers.{i}.",
      "layer": [
        {"name": "mlp.fc1.weight", "shape": ["vision_intermediate_size", "vision_hidden_size"]},
        {"name": "mlp.fc1.bias", "shape": ["vision_intermediate_size"]},
        {"name": "mlp.fc2.weight", "shape": ["vision_hidden_size", "vision_intermediate_size"]},
        {"name": "mlp.fc2.bias", "shape": ["vision_hidden_size"]}
      ],
      "ffn": {"neurons": "vision_intermediate_size", "act": "vision_act", "up": "mlp.fc1.weight", "down": "mlp.fc2.weight"}
    },
    {
      "name": "llm", "layers": "num_hidden_layers", "layer_prefix": "model.layers.{i}.",
      "pre": [{"name": "model.embed_tokens.weight", "shape": ["vocab_size", "hidden_size"]}],
      "layer": [
        {"name": "input_layernorm.weight", "shape": ["hidden_size"], "init": "ones"},
        {"name": "self_attn.q_proj.weight", "shape": ["num_attention_heads*head_dim", "hidden_size"]},
        {"name": "self_attn.k_proj.weight", "shape": ["num_key_value_heads*head_dim", "hidden_size"]},
        {"name": "self_attn.v_proj.weight", "shape": ["num_key_value_heads*head_dim", "hidden_size"]},
        {"name": "self_attn.o_proj.weight", "shape": ["hidden_size", "num_attention_heads*head_dim"]},
        {"name": "post_attention_layernorm.weight", "shape": ["hidden_size"], "init": "ones"},
        {"name": "mlp.gate_proj.weight", "shape": ["intermediate_size", "hidden_size"]},
        {"name": "mlp.up_proj.weight", "shape": ["intermediate_size", "hidden_size"]},
        {"name": "mlp.down_proj.weight", "shape": ["hidden_size", "intermediate_size"]}
      ],
      "post": [
        {"name": "model.norm.weight", "shape": ["hidden_size"], "init": "ones"},
        {"name": "lm_head.weight", "shape": ["vocab_size", "hidden_size"], "tied_to": "model.embed_tokens.weight"}
      ],
      "ffn": {"neurons": "intermediate_size", "act": "hidden_act", "gate": "mlp.gate_proj.weight", "up": "mlp.up_proj.weight", "down": "mlp.down_proj.weight"}
    }
  ],
  "final_norm": "model.norm.weight",
  "unembed": "lm_head.weight",
  "tag_along": ["config.json"]
}`

const visionLlamaConfig = `{"architectures": ["NeurosurgPatchVisionTestForCausalLM"], "model_type": "neurosurg_patch_vision_test",
  "hidden_size": 16, "intermediate_size": 24, "num_hidden_layers": 2, "num_attention_heads": 2, "vocab_size": 32,
  "tie_word_embeddings": true, "hidden_act": "silu",
  "vision_hidden_size": 8, "vision_intermediate_size": 12, "vision_layers": 2, "vision_act": "gelu"}`

var registerVisionLlama = sync.OnceValue(func() error { return archdef.RegisterDefinition([]byte(visionLlamaDef)) })

// visionLlama synthesises an F32 checkpoint of the test family.
func visionLlama(t *testing.T) *hfdir.Checkpoint {
	t.Helper()
	if err := registerVisionLlama(); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.json")
	if err := os.WriteFile(cfg, []byte(visionLlamaConfig), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "ckpt")
	if err := synth.Generate(cfg, out, synth.Options{DType: safetensors.F32, Seed: 3, Std: 0.5}); err != nil {
		t.Fatal(err)
	}
	c, err := hfdir.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// An encoder neuron of a plain MLP is edited at its fc2 column, and nothing else changes: no
// other column, no other tensor (fc1, the biases, the decoder).
func TestPatchEncoderNeuron(t *testing.T) {
	c := visionLlama(t)
	g, err := Geometry(c)
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]neuronset.Geometry{"llm": {Layers: 2, Neurons: 24}, "vision": {Layers: 2, Neurons: 12}}; !cmp.Equal(g, want) {
		t.Fatalf("geometry %v, want %v", g, want)
	}
	vision := func(layer, index int) neuronset.Neuron {
		return neuronset.Neuron{Module: "vision", Layer: layer, Index: index}
	}
	for _, cc := range []struct {
		op      string
		neurons []neuronset.Neuron
		edited  map[string][]int // tensor -> the columns that must change
		want    func(orig, got []float64) bool
	}{
		{"zero", []neuronset.Neuron{vision(1, 5)}, map[string][]int{"vision.layers.1.mlp.fc2.weight": {5}},
			func(_, got []float64) bool { return !slices.ContainsFunc(got, func(v float64) bool { return v != 0 }) }},
		{"scale:0.5", []neuronset.Neuron{vision(0, 3), vision(0, 11)}, map[string][]int{"vision.layers.0.mlp.fc2.weight": {3, 11}},
			func(orig, got []float64) bool {
				for i := range orig {
					if got[i] != orig[i]*0.5 {
						return false
					}
				}
				return true
			}},
		{"noise:0.1", []neuronset.Neuron{vision(1, 0)}, map[string][]int{"vision.layers.1.mlp.fc2.weight": {0}},
			func(orig, got []float64) bool { return !slices.Equal(orig, got) }},
		{"zero", []neuronset.Neuron{vision(0, 2), {Module: "llm", Layer: 1, Index: 4}},
			map[string][]int{"vision.layers.0.mlp.fc2.weight": {2}, "model.layers.1.mlp.down_proj.weight": {4}},
			func(_, got []float64) bool { return !slices.ContainsFunc(got, func(v float64) bool { return v != 0 }) }},
	} {
		op, err := ParseOp(cc.op)
		if err != nil {
			t.Fatal(err)
		}
		op.Seed = 1
		out, err := Apply(Inputs{Base: c}, &neuronset.Set{Neurons: cc.neurons}, []Op{op})
		if err != nil {
			t.Fatalf("%s: %v", cc.op, err)
		}
		var names []string
		for name := range out {
			names = append(names, name)
		}
		slices.Sort(names)
		var want []string
		for name := range cc.edited {
			want = append(want, name)
		}
		slices.Sort(want)
		if !slices.Equal(names, want) {
			t.Errorf("%s: edited %v, want only %v", cc.op, names, want)
			continue
		}
		for name, cols := range cc.edited {
			info, orig, err := c.Tensor(name)
			if err != nil {
				t.Fatal(err)
			}
			rows, n := int(info.Shape[0]), int(info.Shape[1])
			got := out[name]
			for j := 0; j < n; j++ {
				o, g := column(orig, rows, n, j), column(got, rows, n, j)
				if !slices.Contains(cols, j) {
					if !slices.Equal(o, g) {
						t.Errorf("%s: %s column %d changed", cc.op, name, j)
					}
					continue
				}
				if !cc.want(o, g) {
					t.Errorf("%s: %s column %d: %v → %v", cc.op, name, j, o, g)
				}
			}
			// Byte for byte: every element outside the edited columns is the base's.
			for i := 0; i < len(orig); i += 4 {
				if !slices.Contains(cols, (i/4)%n) && !bytes.Equal(orig[i:i+4], got[i:i+4]) {
					t.Fatalf("%s: %s element %d outside the edited columns changed", cc.op, name, i/4)
				}
			}
		}
	}
}

func TestPatchEncoderRefuses(t *testing.T) {
	c := visionLlama(t)
	for _, cc := range []struct {
		op  Op
		set neuronset.Set
		is  error
		msg string
	}{
		{Op{Kind: "swap", Src: "a", Tgt: "b", Lambda: 1}, neuronset.Set{Neurons: []neuronset.Neuron{{Module: "llm", Layer: 0, Index: 1}, {Module: "vision", Layer: 0, Index: 1}}},
			ErrOp, `neuron 1 is in module "vision"`},
		{Op{Kind: "zero"}, neuronset.Set{Neurons: []neuronset.Neuron{{Module: "vision", Layer: 2, Index: 0}}}, neuronset.ErrGeometry, "layers 0..1"},
		{Op{Kind: "zero"}, neuronset.Set{Neurons: []neuronset.Neuron{{Module: "vision", Layer: 0, Index: 12}}}, neuronset.ErrGeometry, "neurons 0..11"},
		{Op{Kind: "zero"}, neuronset.Set{Neurons: []neuronset.Neuron{{Module: "audio", Layer: 0, Index: 0}}}, neuronset.ErrGeometry, "[llm vision]"},
	} {
		_, err := Apply(Inputs{Base: c}, &cc.set, []Op{cc.op})
		if !errors.Is(err, cc.is) || !strings.Contains(err.Error(), cc.msg) {
			t.Errorf("%s on %v: %v, want %q", cc.op, cc.set.Neurons, err, cc.msg)
		}
	}
}
