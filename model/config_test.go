package model

import (
	"github.com/neurosurg/neurosurg/model/archdef"

	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const storiesDir = "../testdata/stories260K"

// storiesConfig returns stories260K's config.json with the given keys changed (nil deletes).
func storiesConfig(t testing.TB, set map[string]any) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(storiesDir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	json.Unmarshal(b, &m)
	for k, v := range set {
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
	}
	out, _ := json.Marshal(m)
	return out
}

func TestParseConfigRefusesNonsense(t *testing.T) {
	rope := func(v string) map[string]any {
		var m map[string]any
		json.Unmarshal([]byte(v), &m)
		return map[string]any{"rope_scaling": m}
	}
	cases := []struct {
		name string
		set  map[string]any
		key  string
	}{
		{"eps negative", map[string]any{"rms_norm_eps": -1}, "rms_norm_eps"},
		{"eps zero", map[string]any{"rms_norm_eps": 0}, "rms_norm_eps"},
		{"eps below float32", map[string]any{"rms_norm_eps": 1e-50}, "rms_norm_eps"},
		{"eps one", map[string]any{"rms_norm_eps": 1}, "rms_norm_eps"},
		{"rope_theta zero", map[string]any{"rope_theta": 0}, "rope_theta"},
		{"rope_theta negative", map[string]any{"rope_theta": -10000}, "rope_theta"},
		{"rope_theta one", map[string]any{"rope_theta": 1}, "rope_theta"},
		{"layers 10^12", map[string]any{"num_hidden_layers": 1e12}, "num_hidden_layers"},
		{"layers zero", map[string]any{"num_hidden_layers": 0}, "num_hidden_layers"},
		{"layers missing", map[string]any{"num_hidden_layers": nil}, "num_hidden_layers"},
		{"hidden negative", map[string]any{"hidden_size": -64}, "hidden_size"},
		{"hidden absurd", map[string]any{"hidden_size": 1 << 40}, "hidden_size"},
		{"vocab absurd", map[string]any{"vocab_size": 1 << 30}, "vocab_size"},
		{"intermediate zero", map[string]any{"intermediate_size": 0}, "intermediate_size"},
		{"heads do not divide hidden", map[string]any{"num_attention_heads": 6, "num_key_value_heads": 6, "head_dim": nil}, "num_attention_heads"},
		{"kv heads do not divide heads", map[string]any{"num_key_value_heads": 3}, "num_key_value_heads"},
		{"kv heads above heads", map[string]any{"num_key_value_heads": 16}, "num_key_value_heads"},
		{"kv heads zero", map[string]any{"num_key_value_heads": 0}, "num_key_value_heads"},
		{"head_dim negative", map[string]any{"head_dim": -8}, "head_dim"},
		{"head_dim odd", map[string]any{"head_dim": 7}, "head_dim"},
		{"max positions negative", map[string]any{"max_position_embeddings": -1}, "max_position_embeddings"},
		{"sliding window negative", map[string]any{"sliding_window": -5}, "sliding_window"},
		{"bos negative", map[string]any{"bos_token_id": -1}, "bos_token_id"},
		{"eos not an id", map[string]any{"eos_token_id": "two"}, "eos_token_id"},
		{"eos list with a negative", map[string]any{"eos_token_id": []int{2, -2}}, "eos_token_id"},
		{"activation", map[string]any{"hidden_act": "tanh"}, "hidden_act"},
		{"rope type", rope(`{"type":"longrope","factor":2}`), "rope_type"},
		{"rope factor zero", rope(`{"type":"linear","factor":0}`), "rope_scaling.factor"},
		{"rope factor missing", rope(`{"rope_type":"dynamic"}`), "rope_scaling.factor"},
		{"rope factor tiny", rope(`{"type":"linear","factor":5e-324}`), "rope_scaling.factor"},
		{"llama3 without original", rope(`{"rope_type":"llama3","factor":8,"low_freq_factor":1,"high_freq_factor":4}`), "original_max_position_embeddings"},
		{"llama3 low = high", rope(`{"rope_type":"llama3","factor":8,"low_freq_factor":4,"high_freq_factor":4,"original_max_position_embeddings":8192}`), "high_freq_factor"},
		{"yarn negative beta", rope(`{"rope_type":"yarn","factor":4,"beta_fast":-1,"original_max_position_embeddings":2048}`), "beta_fast"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseConfig(storiesConfig(t, c.set))
			if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), c.key) {
				t.Fatalf("err = %v, want ErrConfig naming %q", err, c.key)
			}
		})
	}
}

// Every real config in testdata parses as it is (a multimodal one: its language model's keys).
func TestParseConfigAcceptsRealConfigs(t *testing.T) {
	paths, _ := filepath.Glob("../testdata/configs/*/config.json")
	paths = append(paths, filepath.Join(storiesDir, "config.json"))
	if len(paths) < 2 {
		t.Fatal("no configs found")
	}
	for _, p := range paths {
		b, _ := os.ReadFile(p)
		a, err := archdef.ForConfig(b)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		if _, err := parseModuleConfig(a, b); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
}

// TestConfigMustMatchTheTensors opens stories260K under configs that disagree with its
// tensors: each is refused with the file and the key named, and fast.
func TestConfigMustMatchTheTensors(t *testing.T) {
	cases := []struct {
		name string
		set  map[string]any
		msg  string
	}{
		{"fewer layers than the checkpoint", map[string]any{"num_hidden_layers": 4}, "num_hidden_layers: 4, but the checkpoint holds model.layers.4."},
		{"more layers than the checkpoint", map[string]any{"num_hidden_layers": 6}, "num_hidden_layers: 6, but the checkpoint holds layers 0..4 only"},
		{"10^12 layers", map[string]any{"num_hidden_layers": 1e12}, "num_hidden_layers"},
		{"hidden size", map[string]any{"hidden_size": 128, "head_dim": 16}, "hidden_size"},
		{"intermediate size", map[string]any{"intermediate_size": 171}, "intermediate_size"},
		{"vocab size", map[string]any{"vocab_size": 500}, "vocab_size"},
		{"kv heads", map[string]any{"num_key_value_heads": 8}, "num_key_value_heads×head_dim"},
		{"head dim", map[string]any{"head_dim": 4}, "num_attention_heads×head_dim"},
		{"the config as it is", map[string]any{}, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			os.WriteFile(filepath.Join(dir, "config.json"), storiesConfig(t, c.set), 0o644)
			abs, _ := filepath.Abs(filepath.Join(storiesDir, "model.safetensors"))
			if err := os.Symlink(abs, filepath.Join(dir, "model.safetensors")); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			m, err := Open(dir)
			if c.msg == "" {
				if err != nil {
					t.Fatal(err)
				}
				m.Close()
				return
			}
			if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), c.msg) || !strings.Contains(err.Error(), filepath.Join(dir, "config.json")) {
				t.Fatalf("err = %v, want ErrConfig naming %s and %q", err, filepath.Join(dir, "config.json"), c.msg)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("refusing took %v", d)
			}
		})
	}
}

// FuzzConfig: ParseConfig never panics, and what it accepts is usable: sizes in bounds, heads
// that divide, and finite rotary frequencies.
func FuzzConfig(f *testing.F) {
	paths, _ := filepath.Glob("../testdata/configs/*/config.json")
	for _, p := range append(paths, filepath.Join(storiesDir, "config.json")) {
		b, _ := os.ReadFile(p)
		f.Add(b)
	}
	f.Add(storiesConfig(f, map[string]any{"num_hidden_layers": 1e12}))
	f.Add(storiesConfig(f, map[string]any{"rms_norm_eps": -1, "rope_theta": 0}))
	f.Add(storiesConfig(f, map[string]any{"rope_scaling": map[string]any{"rope_type": "yarn", "factor": 4, "original_max_position_embeddings": 2048}}))
	f.Add(storiesConfig(f, map[string]any{"rope_scaling": map[string]any{"rope_type": "llama3", "factor": 8, "low_freq_factor": 1, "high_freq_factor": 4, "original_max_position_embeddings": 8192}}))
	f.Add(storiesConfig(f, map[string]any{"rope_scaling": map[string]any{"type": "dynamic", "factor": 2}}))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseConfig(data)
		if err != nil {
			if !errors.Is(err, ErrConfig) {
				t.Fatalf("error without ErrConfig: %v", err)
			}
			return
		}
		if c.Hidden < 1 || c.Hidden > maxHidden || c.Layers < 1 || c.Layers > maxLayers || c.Vocab < 1 || c.Vocab > maxVocab ||
			c.Intermediate < 1 || c.Intermediate > maxIntermediate || c.HeadDim < 2 || c.HeadDim%2 != 0 || c.HeadDim > maxHidden ||
			c.KVHeads < 1 || c.Heads%c.KVHeads != 0 || !(c.Eps > 0) || !(c.RopeTheta > 1) {
			t.Fatalf("accepted %+v", c)
		}
		for _, seq := range []int{1, 16, 1 << 20} {
			inv, scale := RopeFrequencies(&c, seq)
			if math.IsNaN(scale) || math.IsInf(scale, 0) {
				t.Fatalf("rope scale %v for %+v", scale, c.RopeScaling)
			}
			for _, v := range inv {
				if math.IsNaN(v) || math.IsInf(v, 0) {
					t.Fatalf("rope frequency %v for theta %v, scaling %+v", v, c.RopeTheta, c.RopeScaling)
				}
			}
		}
	})
}
