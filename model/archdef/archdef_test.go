package archdef_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/neurosurg/neurosurg/formats/hfdir"
	"github.com/neurosurg/neurosurg/model/archdef"
)

// The definition must list exactly the tensors of the real stories260K checkpoint.
func TestLlamaMatchesRealCheckpoint(t *testing.T) {
	c, err := hfdir.Open("../../testdata/stories260K")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	a, err := archdef.ForConfig(c.ConfigJSON)
	if err != nil {
		t.Fatal(err)
	}
	specs, err := a.Tensors()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]int64{}
	for _, n := range c.TensorNames() {
		info, _ := c.Info(n)
		want[n] = info.Shape
	}
	got := map[string][]int64{}
	for _, s := range specs {
		got[s.Name] = s.Shape
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("tensors (-checkpoint +definition):\n%s", d)
	}
	ffn, _ := a.FFN()
	if len(ffn) != 1 || ffn[0].Module != "llm" || ffn[0].Layers != 5 || ffn[0].Neurons != 172 || ffn[0].Act != "silu" {
		t.Errorf("ffn = %+v", ffn)
	}
	if a.UnembedName() != "lm_head.weight" {
		t.Errorf("unembed = %s", a.UnembedName())
	}
}

func TestRealConfigs(t *testing.T) {
	cases := []struct {
		dir      string
		tensors  int
		unembed  string
		neurons  int
		hasQBias bool
	}{
		{"Qwen2-0.5B", 1 + 24*12 + 1, "model.embed_tokens.weight", 4864, true},
		{"Qwen2.5-0.5B-Instruct", 1 + 24*12 + 1, "model.embed_tokens.weight", 4864, true},
		{"Qwen2-7B-Instruct", 1 + 28*12 + 2, "lm_head.weight", 18944, true},
		{"Llama-2-7b-chat-hf", 1 + 32*9 + 2, "lm_head.weight", 11008, false},
		{"TinyLlama-1.1B-Chat-v1.0", 1 + 22*9 + 2, "lm_head.weight", 5632, false},
	}
	for _, c := range cases {
		t.Run(c.dir, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join("../../testdata/configs", c.dir, "config.json"))
			if err != nil {
				t.Fatal(err)
			}
			a, err := archdef.ForConfig(b)
			if err != nil {
				t.Fatal(err)
			}
			specs, err := a.Tensors()
			if err != nil {
				t.Fatal(err)
			}
			if len(specs) != c.tensors {
				t.Errorf("%d tensors, want %d", len(specs), c.tensors)
			}
			if a.UnembedName() != c.unembed {
				t.Errorf("unembed %s, want %s", a.UnembedName(), c.unembed)
			}
			ffn, _ := a.FFN()
			if ffn[0].Neurons != c.neurons {
				t.Errorf("neurons %d, want %d", ffn[0].Neurons, c.neurons)
			}
			has := false
			for _, s := range specs {
				has = has || s.Name == "model.layers.0.self_attn.q_proj.bias"
			}
			if has != c.hasQBias {
				t.Errorf("q bias = %v, want %v", has, c.hasQBias)
			}
		})
	}
}

func TestUnsupported(t *testing.T) {
	_, err := archdef.ForConfig([]byte(`{"architectures":["GPTNeoXForCausalLM"],"model_type":"gpt_neox"}`))
	if !errors.Is(err, archdef.ErrUnsupported) || !strings.Contains(err.Error(), "Qwen2ForCausalLM") {
		t.Errorf("err = %v: should list the supported architectures", err)
	}
	a, _ := archdef.ForConfig([]byte(`{"model_type":"llama","hidden_size":8}`))
	if _, err := a.Tensors(); err == nil || !strings.Contains(err.Error(), "num_hidden_layers") {
		t.Errorf("missing key error = %v", err)
	}
}

// Config values that cannot size a tensor are errors naming the key, found before anything is
// listed or allocated.
func TestAbsurdConfigValues(t *testing.T) {
	base := `{"architectures":["LlamaForCausalLM"],"hidden_size":64,"intermediate_size":172,"num_attention_heads":8,"num_key_value_heads":4,"vocab_size":512,"num_hidden_layers":`
	cases := []struct{ layers, msg string }{
		{"1e12", "num_hidden_layers"},
		{"5000", "want 1..4096"},
		{"0", "want 1..4096"},
		{"-3", "whole number"},
		{"2.5", "whole number"},
		{`"five"`, "not a number"},
	}
	for _, c := range cases {
		t.Run(c.layers, func(t *testing.T) {
			a, err := archdef.ForConfig([]byte(base + c.layers + "}"))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := a.Tensors(); err == nil || !strings.Contains(err.Error(), c.msg) {
				t.Errorf("Tensors: err = %v, want %q", err, c.msg)
			}
			if _, err := a.FFN(); err == nil || !strings.Contains(err.Error(), c.msg) {
				t.Errorf("FFN: err = %v, want %q", err, c.msg)
			}
		})
	}
	// inspect (Summarize) reports it as an error naming the checkpoint.
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "config.json"), []byte(base+"1e12}"), 0o644)
	abs, _ := filepath.Abs("../../testdata/stories260K/model.safetensors")
	os.Symlink(abs, filepath.Join(dir, "model.safetensors"))
	c, err := hfdir.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := archdef.Summarize(c); err == nil || !strings.Contains(err.Error(), dir) || !strings.Contains(err.Error(), "num_hidden_layers") {
		t.Errorf("Summarize: err = %v", err)
	}
}

// A module reads its keys from its config sub-object, falling back to the top level when the
// definition says so; its layer templates are named under its layer prefix.
func TestModuleConfigAndTemplates(t *testing.T) {
	a, err := archdef.ForConfig([]byte(`{"architectures":["LlamaForCausalLM"],"hidden_size":64,"num_attention_heads":8,"intermediate_size":172,"vocab_size":512,"num_hidden_layers":2}`))
	if err != nil {
		t.Fatal(err)
	}
	llm := a.Module("llm")
	if llm == nil || a.Module("vision") != nil {
		t.Fatalf("modules: llm %v, vision %v", llm, a.Module("vision"))
	}
	s, ok, err := llm.Tensor("self_attn.k_proj.weight", 1)
	if err != nil || !ok || s.Name != "model.layers.1.self_attn.k_proj.weight" || s.Shape[0] != 64 || s.Keys[0] != "num_key_value_heads*head_dim" {
		t.Errorf("k_proj: %+v %v %v", s, ok, err)
	}
	if _, ok, err := llm.Tensor("self_attn.q_proj.bias", 0); ok || err != nil {
		t.Errorf("q_proj.bias without attention_bias: ok %v err %v", ok, err)
	}
	if _, _, err := llm.Tensor("mlp.fc1.weight", 0); err == nil {
		t.Error("unknown template: no error")
	}
	ffn, _ := a.FFN()
	if ffn[0].Down != "model.layers.{i}.mlp.down_proj.weight" {
		t.Errorf("ffn down template %q", ffn[0].Down)
	}
}

// The test family: three modules, each with its config object and its FFN group; a
// projector's shapes come from the modules it joins (dotted keys), its one layer from a
// literal count.
func TestTinyVLMDefinition(t *testing.T) {
	b, err := os.ReadFile("../../testdata/configs/tiny-vlm/config.json")
	if err != nil {
		t.Fatal(err)
	}
	a, err := archdef.ForConfig(b)
	if err != nil {
		t.Fatal(err)
	}
	ffn, err := a.FFN()
	if err != nil {
		t.Fatal(err)
	}
	want := []archdef.FFNGroup{
		{Module: "vision", Layers: 2, Neurons: 40, Act: "quick_gelu", Up: "vision_tower.layers.{i}.mlp.fc1.weight", Down: "vision_tower.layers.{i}.mlp.fc2.weight"},
		{Module: "projector", Layers: 1, Neurons: 32, Act: "gelu", Up: "multi_modal_projector.linear_1.weight", Down: "multi_modal_projector.linear_2.weight"},
		{Module: "llm", Layers: 2, Neurons: 64, Act: "silu", Gate: "model.layers.{i}.mlp.gate_proj.weight", Up: "model.layers.{i}.mlp.up_proj.weight", Down: "model.layers.{i}.mlp.down_proj.weight"},
	}
	if d := cmp.Diff(want, ffn); d != "" {
		t.Errorf("ffn (-want +got):\n%s", d)
	}
	specs, err := a.Tensors()
	if err != nil {
		t.Fatal(err)
	}
	shapes := map[string][]int64{}
	for _, s := range specs {
		shapes[s.Name] = s.Shape
	}
	for name, shape := range map[string][]int64{
		"vision_tower.patch_embed.weight":        {16, 12},
		"vision_tower.layers.1.mlp.fc2.weight":   {16, 40},
		"multi_modal_projector.linear_1.weight":  {32, 16},
		"model.layers.1.self_attn.k_proj.weight": {16, 32}, // text_config's 2 kv heads × 8
		"lm_head.weight":                         {64, 32},
	} {
		if !slices.Equal(shapes[name], shape) {
			t.Errorf("%s: %v, want %v", name, shapes[name], shape)
		}
	}
	if len(specs) != 2+2*16+2+4+1+2*9+2 {
		t.Errorf("%d tensors", len(specs))
	}
	// The top level's keys serve text_config where it falls back (eos_token_id), not vision.
	if _, err := a.Module("llm").Int("eos_token_id"); err != nil {
		t.Errorf("llm falls back to the top level: %v", err)
	}
	if _, err := a.Module("vision").Int("eos_token_id"); err == nil {
		t.Error("vision reads the top level without fallback")
	}
}

func TestRegisterDefinition(t *testing.T) {
	good := `{"architectures": ["NeurosurgRegisterTest"], "model_types": ["neurosurg_register_test"],
	  "modules": [{"name": "vision", "layers": "n", "layer_prefix": "enc.{i}.",
	    "layer": [{"name": "fc1.weight", "shape": ["f", "h"]}, {"name": "fc2.weight", "shape": ["h", "f"]}],
	    "ffn": {"neurons": "f", "act": "a", "up": "fc1.weight", "down": "fc2.weight"}}]}`
	if err := archdef.RegisterDefinition([]byte(good)); err != nil {
		t.Fatal(err)
	}
	a, err := archdef.ForConfig([]byte(`{"model_type": "neurosurg_register_test", "n": 1, "h": 4, "f": 6, "a": "gelu"}`))
	if err != nil {
		t.Fatal(err)
	}
	ffn, err := a.FFN()
	if err != nil || a.Name != "NeurosurgRegisterTest" || len(ffn) != 1 || ffn[0].Module != "vision" || ffn[0].Gate != "" || ffn[0].Neurons != 6 || ffn[0].Act != "gelu" || ffn[0].Down != "enc.{i}.fc2.weight" {
		t.Errorf("%s: %+v %v", a.Name, ffn, err)
	}
	for name, def := range map[string]string{
		"defined twice":   good,
		"llama again":     `{"architectures": ["LlamaForCausalLM"], "modules": [{"name": "llm"}]}`,
		"not JSON":        `{`,
		"unknown key":     `{"architectures": ["X1"], "modules": [{"name": "llm"}], "colour": 1}`,
		"no down tensor":  `{"architectures": ["X2"], "modules": [{"name": "m", "layers": "n", "layer_prefix": "m.{i}.", "layer": [{"name": "u", "shape": ["f"]}], "ffn": {"neurons": "f", "up": "u"}}]}`,
		"module twice":    `{"architectures": ["X3"], "modules": [{"name": "m"}, {"name": "m"}]}`,
		"no {i}":          `{"architectures": ["X4"], "modules": [{"name": "m", "layers": "n", "layer_prefix": "m.", "layer": [{"name": "u", "shape": ["f"]}]}]}`,
		"no modules":      `{"architectures": ["X5"]}`,
		"old flat schema": `{"architectures": ["X6"], "layers": "n"}`,
		"no arch":         `{"modules": [{"name": "llm"}]}`,
	} {
		if err := archdef.RegisterDefinition([]byte(def)); err == nil {
			t.Errorf("%s: registered", name)
		}
	}
}

// FuzzRegisterDefinition: a definition is registered or refused, never a panic; a registered
// one lists its tensors and FFN groups (or errors) for any config without panicking.
func FuzzRegisterDefinition(f *testing.F) {
	f.Add([]byte(`{"architectures": ["F1"], "modules": [{"name": "m", "layers": "n", "layer_prefix": "m.{i}.", "layer": [{"name": "w", "shape": ["h", "f*h"]}], "ffn": {"neurons": "f", "act": "a", "up": "w", "down": "w"}}]}`),
		[]byte(`{"n": 2, "h": 3, "f": 4, "a": "gelu"}`))
	f.Add([]byte(`{"architectures": ["F2"], "modules": [{"name": "v", "config": "vc", "fallback": true, "layers": "1", "layer_prefix": "p.", "layer": [{"name": "w", "shape": ["vc.h"], "if": "b", "tied_to": "x"}]}]}`),
		[]byte(`{"vc": {"h": 5}, "b": true, "tie_word_embeddings": true}`))
	f.Add([]byte(`{"architectures": ["F3"], "modules": [{"name": "v", "config": "vc", "defaults": {"h": 3, "image_size": 8, "patch_size": 4}, "layers": "1", "layer_prefix": "p.", "layer": [{"name": "w", "shape": ["num_positions", "h"]}]}, {"name": "p", "defaults": {"b": true}, "layers": "1", "layer_prefix": "q.", "layer": [{"name": "w", "shape": ["vc.h", "vc.vc.h"], "if": "b"}]}]}`),
		[]byte(`{"vc": {"patch_size": 0}}`))
	n := 0
	f.Fuzz(func(t *testing.T, def, cfg []byte) {
		n++
		// A fresh architecture name each time, so the same definition can register again.
		def = bytes.Replace(def, []byte(`"architectures": ["`), []byte(`"architectures": ["fz`+strconv.Itoa(n)), 1)
		if archdef.RegisterDefinition(def) != nil {
			return
		}
		var d struct{ Architectures []string }
		if json.Unmarshal(def, &d) != nil || len(d.Architectures) == 0 {
			return
		}
		cfgObj := map[string]any{}
		if json.Unmarshal(cfg, &cfgObj) != nil {
			return
		}
		cfgObj["architectures"] = []any{d.Architectures[0]}
		j, _ := json.Marshal(cfgObj)
		a, err := archdef.ForConfig(j)
		if err != nil {
			return
		}
		a.Tensors()
		a.FFN()
		a.UnembedName()
		for _, m := range a.Modules() {
			m.LayerCount()
			for _, tt := range m.Module.Layer {
				m.Tensor(tt.Name, 0)
			}
		}
	})
}

// Qwen2-VL's definition on the real 2B and 7B configs: the tensor count and the shapes of
// transformers' modules (Conv3d patch embedding, fused qkv, mlp_ratio 4, PatchMerger over
// merge² = 4 patches); lm_head only when the embeddings are not tied (7B).
func TestQwen2VLRealConfigs(t *testing.T) {
	for _, c := range []struct {
		dir    string
		hidden int64
		count  int
	}{
		{"Qwen2-VL-2B-Instruct", 1536, 729},
		{"Qwen2-VL-7B-Instruct", 3584, 730},
	} {
		raw, err := os.ReadFile(filepath.Join("../../testdata/configs", c.dir, "config.json"))
		if err != nil {
			t.Fatal(err)
		}
		a, err := archdef.ForConfig(raw)
		if err != nil {
			t.Fatal(err)
		}
		specs, err := a.Tensors()
		if err != nil {
			t.Fatal(err)
		}
		got := map[string][]int64{}
		for _, s := range specs {
			got[s.Name] = s.Shape
		}
		if len(specs) != c.count {
			t.Errorf("%s: %d tensors, want %d", c.dir, len(specs), c.count)
		}
		for name, want := range map[string][]int64{
			"visual.patch_embed.proj.weight":        {1280, 3, 2, 14, 14},
			"visual.blocks.31.attn.qkv.weight":      {3840, 1280},
			"visual.blocks.0.attn.qkv.bias":         {3840},
			"visual.blocks.0.mlp.fc1.weight":        {5120, 1280},
			"visual.blocks.0.mlp.fc2.weight":        {1280, 5120},
			"visual.merger.ln_q.weight":             {1280},
			"visual.merger.mlp.0.weight":            {5120, 5120},
			"visual.merger.mlp.2.weight":            {c.hidden, 5120},
			"model.layers.27.self_attn.k_proj.bias": {map[int64]int64{1536: 256, 3584: 512}[c.hidden]},
		} {
			if !slices.Equal(got[name], want) {
				t.Errorf("%s: %s is %v, want %v", c.dir, name, got[name], want)
			}
		}
		groups, err := a.FFN()
		if err != nil {
			t.Fatal(err)
		}
		var summary []string
		for _, g := range groups {
			summary = append(summary, g.Module+":"+strconv.Itoa(g.Layers)+"x"+strconv.Itoa(g.Neurons)+":"+g.Act)
		}
		inter := map[int64]string{1536: "8960", 3584: "18944"}[c.hidden]
		if want := []string{"vision:32x5120:quick_gelu", "projector:1x5120:gelu", "llm:28x" + inter + ":silu"}; !slices.Equal(summary, want) {
			t.Errorf("%s: FFN groups %v, want %v", c.dir, summary, want)
		}
	}
	// A vision_config that leaves keys out takes Qwen2VLVisionConfig's defaults.
	a, err := archdef.ForConfig([]byte(`{"architectures": ["Qwen2VLForConditionalGeneration"], "hidden_size": 64, "num_hidden_layers": 1,
		"num_attention_heads": 2, "intermediate_size": 8, "vocab_size": 10, "vision_config": {"depth": 1}}`))
	if err != nil {
		t.Fatal(err)
	}
	v := a.Module("vision")
	for key, want := range map[string]int64{"depth": 1, "embed_dim": 1280, "num_heads": 16, "in_chans": 3, "temporal_patch_size": 2, "hidden_size": 3584} {
		if n, err := v.Int(key); err != nil || n != want {
			t.Errorf("vision_config.%s: %d, %v, want %d", key, n, err, want)
		}
	}
	if act := v.Config["hidden_act"]; act != "quick_gelu" {
		t.Errorf("default hidden_act %v, want quick_gelu", act)
	}
}

// LLaVA-1.5's definition, bound to the real config (whose text_config and vision_config name
// only what differs from LlamaConfig's and CLIPVisionConfig's defaults), lists exactly the 686
// names of the real checkpoint's index; LLaVA-NeXT's adds image_newline.
func TestLlavaMatchesRealIndex(t *testing.T) {
	b, err := os.ReadFile("../../testdata/configs/llava-1.5-7b-hf/config.json")
	if err != nil {
		t.Fatal(err)
	}
	ix, err := os.ReadFile("../../testdata/configs/llava-1.5-7b-hf/model.safetensors.index.json")
	if err != nil {
		t.Fatal(err)
	}
	var index struct {
		WeightMap map[string]string `json:"weight_map"`
	}
	if err := json.Unmarshal(ix, &index); err != nil {
		t.Fatal(err)
	}
	a, err := archdef.ForConfig(b)
	if err != nil {
		t.Fatal(err)
	}
	specs, err := a.Tensors()
	if err != nil {
		t.Fatal(err)
	}
	var got, want []string
	shapes := map[string][]int64{}
	for _, s := range specs {
		got = append(got, s.Name)
		shapes[s.Name] = s.Shape
	}
	for n := range index.WeightMap {
		want = append(want, n)
	}
	slices.Sort(got)
	slices.Sort(want)
	if len(want) != 686 {
		t.Fatalf("the index has %d names", len(want))
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("names (-index +definition):\n%s", d)
	}
	for name, shape := range map[string][]int64{
		"vision_tower.vision_model.embeddings.patch_embedding.weight":    {1024, 3, 14, 14},
		"vision_tower.vision_model.embeddings.position_embedding.weight": {577, 1024},
		"vision_tower.vision_model.embeddings.class_embedding":           {1024},
		"multi_modal_projector.linear_1.weight":                          {4096, 1024},
		"language_model.model.layers.31.mlp.down_proj.weight":            {4096, 11008},
		"language_model.lm_head.weight":                                  {32064, 4096},
	} {
		if !slices.Equal(shapes[name], shape) {
			t.Errorf("%s: %v, want %v", name, shapes[name], shape)
		}
	}
	ffn, err := a.FFN()
	if err != nil {
		t.Fatal(err)
	}
	wantFFN := []string{"vision 24×4096 quick_gelu", "projector 1×4096 gelu", "llm 32×11008 silu"}
	var gotFFN []string
	for _, g := range ffn {
		gotFFN = append(gotFFN, g.Module+" "+strconv.Itoa(g.Layers)+"×"+strconv.Itoa(g.Neurons)+" "+g.Act)
	}
	if !slices.Equal(gotFFN, wantFFN) {
		t.Errorf("ffn %v, want %v", gotFFN, wantFFN)
	}
	if a.UnembedName() != "language_model.lm_head.weight" {
		t.Errorf("unembed %s", a.UnembedName())
	}

	b, err = os.ReadFile("../../testdata/configs/llava-v1.6-vicuna-7b-hf-RECONSTRUCTED/config.json")
	if err != nil {
		t.Fatal(err)
	}
	if a, err = archdef.ForConfig(b); err != nil {
		t.Fatal(err)
	}
	next, err := a.Tensors()
	if err != nil {
		t.Fatal(err)
	}
	if len(next) != 687 || !slices.ContainsFunc(next, func(s archdef.TensorSpec) bool {
		return s.Name == "image_newline" && slices.Equal(s.Shape, []int64{4096})
	}) {
		t.Errorf("LLaVA-NeXT: %d tensors, want 687 with image_newline [4096]", len(next))
	}
}

// A config that turns multimodal_projector_bias off drops the projector's biases (the default,
// true, keeps them).
func TestLlavaProjectorBias(t *testing.T) {
	cfg := `{"architectures": ["LlavaForConditionalGeneration"], "multimodal_projector_bias": false,
		"text_config": {"num_hidden_layers": 1}, "vision_config": {"num_hidden_layers": 1}}`
	a, err := archdef.ForConfig([]byte(cfg))
	if err != nil {
		t.Fatal(err)
	}
	specs, err := a.Tensors()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range specs {
		if strings.HasPrefix(s.Name, "multi_modal_projector.") && strings.HasSuffix(s.Name, ".bias") {
			t.Errorf("%s listed with multimodal_projector_bias false", s.Name)
		}
	}
	// Without any sub-config every size is the config classes' default.
	a, _ = archdef.ForConfig([]byte(`{"architectures": ["LlavaForConditionalGeneration"]}`))
	specs, err = a.Tensors()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, s := range specs {
		if strings.HasSuffix(s.Name, "position_embedding.weight") && slices.Equal(s.Shape, []int64{50, 768}) {
			n++ // CLIPVisionConfig: (224/32)² + 1 positions of width 768
		}
		if strings.HasSuffix(s.Name, ".bias") && strings.HasPrefix(s.Name, "multi_modal_projector.") {
			n++
		}
	}
	if n != 3 {
		t.Errorf("default config: %d of the position table and the 2 projector biases", n)
	}
}

// InstructBLIP's reconstructed real config: every module's tensors at real sizes, the
// cross-attention only in even Q-Former layers, and the parameter count the hub's model card
// gives (7.91 B).
func TestInstructBLIPRealConfig(t *testing.T) {
	b, err := os.ReadFile("../../testdata/configs/instructblip-vicuna-7b-RECONSTRUCTED/config.json")
	if err != nil {
		t.Fatal(err)
	}
	a, err := archdef.ForConfig(b)
	if err != nil {
		t.Fatal(err)
	}
	specs, err := a.Tensors()
	if err != nil {
		t.Fatal(err)
	}
	// vision 4 + 39·12 + 2, qformer 4 + 12·16 + 6·10, query 1 + 12·6, projector 2, llm 1 + 32·9 + 2
	if len(specs) != 474+256+73+2+291 {
		t.Errorf("%d tensors, want 1096", len(specs))
	}
	shapes := map[string][]int64{}
	var params int64
	for _, s := range specs {
		shapes[s.Name] = s.Shape
		n := int64(1)
		for _, d := range s.Shape {
			n *= d
		}
		params += n
	}
	for name, want := range map[string][]int64{
		"vision_model.embeddings.class_embedding":             {1, 1, 1408},
		"vision_model.embeddings.patch_embedding.weight":      {1408, 3, 14, 14},
		"vision_model.embeddings.position_embedding":          {1, 257, 1408},
		"vision_model.encoder.layers.38.self_attn.qkv.weight": {4224, 1408},
		"vision_model.encoder.layers.0.self_attn.qkv.bias":    {4224},
		"query_tokens": {1, 32, 768},
		"qformer.embeddings.word_embeddings.weight":                    {30523, 768},
		"qformer.encoder.layer.10.crossattention.attention.key.weight": {768, 1408},
		"qformer.encoder.layer.11.output_query.dense.weight":           {768, 3072},
		"language_projection.weight":                                   {4096, 768},
		"language_model.lm_head.weight":                                {32001, 4096},
		"language_model.model.layers.31.mlp.down_proj.weight":          {4096, 11008},
	} {
		if !slices.Equal(shapes[name], want) {
			t.Errorf("%s: %v, want %v", name, shapes[name], want)
		}
	}
	if _, ok := shapes["qformer.encoder.layer.1.crossattention.attention.query.weight"]; ok {
		t.Error("odd Q-Former layer 1 has cross-attention")
	}
	t.Logf("%d parameters", params)
	if params < 7_905_000_000 || params > 7_915_000_000 {
		t.Errorf("%d parameters, want 7.91 B", params)
	}
	ffn, _ := a.FFN()
	var groups []string
	for _, g := range ffn {
		groups = append(groups, g.Module+":"+strconv.Itoa(g.Layers)+"×"+strconv.Itoa(g.Neurons))
	}
	if got := strings.Join(groups, " "); got != "vision:39×6144 qformer:12×3072 query:12×3072 llm:32×11008" {
		t.Errorf("FFN groups %s", got)
	}
	if a.UnembedName() != "language_model.lm_head.weight" {
		t.Errorf("unembed %s", a.UnembedName())
	}
}

// Keys a config leaves out take the transformers config classes' defaults (sub-configs key
// by key); "every" follows cross_attention_frequency, which must be positive.
func TestDefaultsAndEvery(t *testing.T) {
	a, err := archdef.ForConfig([]byte(`{"architectures":["InstructBlipForConditionalGeneration"],"vision_config":{"num_hidden_layers":2},"qformer_config":{"cross_attention_frequency":3},"text_config":{"model_type":"llama","num_hidden_layers":1}}`))
	if err != nil {
		t.Fatal(err)
	}
	specs, err := a.Tensors()
	if err != nil {
		t.Fatal(err)
	}
	cross := 0
	var qkv []int64
	for _, s := range specs {
		if strings.HasSuffix(s.Name, "crossattention.attention.query.weight") {
			cross++
		}
		if s.Name == "vision_model.encoder.layers.1.self_attn.qkv.weight" {
			qkv = s.Shape
		}
	}
	if cross != 4 || !slices.Equal(qkv, []int64{4224, 1408}) {
		t.Errorf("cross-attention in %d layers (want 0, 3, 6, 9), qkv %v", cross, qkv)
	}
	if n, _ := a.Int("num_query_tokens"); n != 32 {
		t.Errorf("num_query_tokens %d", n)
	}
	for _, bad := range []string{`0`, `-1`, `"two"`} {
		a, err := archdef.ForConfig([]byte(`{"architectures":["InstructBlipForConditionalGeneration"],"qformer_config":{"cross_attention_frequency":` + bad + `},"text_config":{"model_type":"llama"}}`))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := a.Tensors(); err == nil || !strings.Contains(err.Error(), "cross_attention_frequency") {
			t.Errorf("cross_attention_frequency %s: %v", bad, err)
		}
	}
}

// A module's defaults fill the keys its config object leaves out (Qwen2-Audio's text_config
// omits Qwen2-7B's sizes), never override a key it has, and serve dotted keys of other
// modules' shapes (the projector's text_config.hidden_size).
func TestModuleDefaults(t *testing.T) {
	def := `{"architectures": ["NeurosurgDefaultsTest"], "modules": [
	  {"name": "llm", "config": "text_config", "layers": "n", "layer_prefix": "l.{i}.",
	    "defaults": {"n": 3, "h": 8, "f": 5},
	    "layer": [{"name": "w", "shape": ["f", "h"]}]},
	  {"name": "projector", "pre": [{"name": "p.weight", "shape": ["text_config.h", "audio_config.d"]}]}]}`
	if err := archdef.RegisterDefinition([]byte(def)); err != nil {
		t.Fatal(err)
	}
	a, err := archdef.ForConfig([]byte(`{"architectures": ["NeurosurgDefaultsTest"], "audio_config": {"d": 4}, "text_config": {"f": 7}}`))
	if err != nil {
		t.Fatal(err)
	}
	specs, err := a.Tensors()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range specs {
		got = append(got, fmt.Sprint(s.Name, s.Shape))
	}
	want := []string{"l.0.w[7 8]", "l.1.w[7 8]", "l.2.w[7 8]", "p.weight[8 4]"}
	if !slices.Equal(got, want) {
		t.Errorf("tensors %v, want %v", got, want)
	}
	// An absent sub-object is all defaults (transformers builds it from the class defaults);
	// one no module gives defaults for is an error naming it.
	b, err := archdef.ForConfig([]byte(`{"architectures": ["NeurosurgDefaultsTest"], "audio_config": {"d": 4}}`))
	if err != nil {
		t.Fatal(err)
	}
	if specs, err := b.Tensors(); err != nil || len(specs) != 4 || specs[0].Shape[0] != 5 || specs[3].Shape[0] != 8 {
		t.Errorf("absent text_config: %v, %v", specs, err)
	}
	c, err := archdef.ForConfig([]byte(`{"architectures": ["NeurosurgDefaultsTest"], "text_config": {}}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Tensors(); err == nil || !strings.Contains(err.Error(), `"audio_config"`) {
		t.Errorf("missing audio_config: %v", err)
	}
}

// A module's config may be a dotted path into nested objects (mPLUG-Owl2's
// visual_config.visual_model), and grid_positions is grid_size² + 1.
func TestNestedModuleConfig(t *testing.T) {
	def := `{"architectures": ["NestedTestForCausalLM"], "modules": [
	  {"name": "enc", "config": "outer.inner", "layers": "num_hidden_layers", "layer_prefix": "enc.{i}.",
	   "layer": [{"name": "pos", "shape": ["grid_positions", "hidden_size"]}]},
	  {"name": "llm", "layers": "num_hidden_layers", "layer_prefix": "l.{i}.", "layer": [{"name": "w", "shape": ["hidden_size"]}]}]}`
	if err := archdef.RegisterDefinition([]byte(def)); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		cfg  string
		want []string
		err  string
	}{
		{`{"architectures": ["NestedTestForCausalLM"], "hidden_size": 8, "num_hidden_layers": 1, "outer": {"inner": {"hidden_size": 4, "num_hidden_layers": 2, "grid_size": 3}}}`,
			[]string{"enc.0.pos [10 4]", "enc.1.pos [10 4]", "l.0.w [8]"}, ""},
		{`{"architectures": ["NestedTestForCausalLM"], "hidden_size": 8, "num_hidden_layers": 1, "outer": {"inner": {"hidden_size": 4, "num_hidden_layers": 1}}}`,
			nil, `missing key "grid_size"`},
		{`{"architectures": ["NestedTestForCausalLM"], "hidden_size": 8, "num_hidden_layers": 1, "outer": {"inner": {"hidden_size": 4, "num_hidden_layers": 1, "grid_size": 40000}}}`,
			nil, "grid_size is 40000"},
		{`{"architectures": ["NestedTestForCausalLM"], "hidden_size": 8, "num_hidden_layers": 1, "outer": 3}`,
			nil, `missing key "num_hidden_layers"`},
	} {
		a, err := archdef.ForConfig([]byte(c.cfg))
		if err != nil {
			t.Fatal(err)
		}
		specs, err := a.Tensors()
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%s: %v, want %q", c.cfg, err, c.err)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, s := range specs {
			got = append(got, fmt.Sprintf("%s %v", s.Name, s.Shape))
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("%s: %v, want %v", c.cfg, got, c.want)
		}
	}
}
