package model

import (
	"errors"
	"strings"
	"testing"

	"github.com/neurosurg/neurosurg/formats/hfdir"
	"github.com/neurosurg/neurosurg/model/archdef"
)

func TestRegistry(t *testing.T) {
	for _, a := range []string{"LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM"} {
		if _, ok := family(a); !ok {
			t.Errorf("%s is not registered", a)
		}
	}
	mustPanic := func(name string, f func()) {
		t.Helper()
		defer func() {
			if recover() == nil {
				t.Errorf("%s: no panic", name)
			}
		}()
		f()
	}
	mustPanic("twice", func() { Register("LlamaForCausalLM", Family{Build: buildDecoderLM}) })
	mustPanic("no definition", func() { Register("NoSuchForCausalLM", Family{Build: buildDecoderLM}) })
	_, err := Load([]byte(`{"architectures":["GPTNeoXForCausalLM"],"model_type":"gpt_neox"}`), nil)
	if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "GPTNeoXForCausalLM") || !strings.Contains(err.Error(), strings.Join(Registered(), ", ")) {
		t.Errorf("unknown architecture: %v, want ErrConfig naming it and listing %v", err, Registered())
	}
	// Qwen2's quirk comes from its family, by architecture or by model_type alone.
	for _, cfg := range []string{`{"architectures":["Qwen2ForCausalLM"]`, `{"model_type":"qwen2"`} {
		c, err := ParseConfig([]byte(cfg + `,"hidden_size":8,"num_hidden_layers":1,"num_attention_heads":2,"intermediate_size":8,"vocab_size":8}`))
		if err != nil || !c.AttnBias {
			t.Errorf("%s: AttnBias %v, err %v", cfg, c.AttnBias, err)
		}
	}
}

// The binder finds tensors by template name under the module's layer prefix, binds a tied
// head to the embedding's own bytes, and refuses names the definition lacks.
func TestBinder(t *testing.T) {
	c, err := hfdir.Open("../testdata/stories260K")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, tied := range []bool{false, true} {
		cfg := c.ConfigJSON
		if tied {
			cfg = []byte(strings.Replace(string(cfg), `"tie_word_embeddings": false`, `"tie_word_embeddings": true`, 1))
		}
		a, err := archdef.ForConfig(cfg)
		if err != nil {
			t.Fatal(err)
		}
		b := &Binder{Model: &Model{}, Arch: a, src: c}
		llm := b.Module("llm")
		q := llm.Linear("self_attn.q_proj", 3)
		if q.w.name != "model.layers.3.self_attn.q_proj.weight" || q.b != nil {
			t.Errorf("q_proj of layer 3 bound to %q (bias %v)", q.w.name, q.b != nil)
		}
		emb, head := llm.Weight("model.embed_tokens.weight", -1), llm.Weight("lm_head.weight", -1)
		if same := &emb.b[0] == &head.b[0]; same != tied {
			t.Errorf("tied=%v: head shares the embedding's bytes: %v", tied, same)
		}
		if b.Err() != nil {
			t.Fatal(b.Err())
		}
		llm.Weight("mlp.fc1.weight", 0)
		if b.Err() == nil || !strings.Contains(b.Err().Error(), "mlp.fc1.weight") {
			t.Errorf("unknown template: err = %v", b.Err())
		}
		b = &Binder{Model: &Model{}, Arch: a, src: c}
		b.Module("vision")
		if b.Err() == nil || !strings.Contains(b.Err().Error(), "vision") {
			t.Errorf("unknown module: err = %v", b.Err())
		}
	}
}
