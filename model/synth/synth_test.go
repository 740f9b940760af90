package synth_test

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/neurosurg/neurosurg/dtype"
	"github.com/neurosurg/neurosurg/formats/hfdir"
	"github.com/neurosurg/neurosurg/formats/safetensors"
	"github.com/neurosurg/neurosurg/model/archdef"
	"github.com/neurosurg/neurosurg/model/synth"
)

var shrink = map[string]any{"num_hidden_layers": 2, "hidden_size": 64, "intermediate_size": 96, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 300}

func TestGenerateShardedQwen2(t *testing.T) {
	tmp := t.TempDir()
	out := filepath.Join(tmp, "q")
	opts := synth.Options{DType: safetensors.BF16, Set: shrink, ShardSize: 40000, Seed: 7}
	if err := synth.Generate("../../testdata/configs/Qwen2-0.5B", out, opts); err != nil {
		t.Fatal(err)
	}
	c, err := hfdir.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if len(c.Shards) < 2 {
		t.Errorf("%d shards, want several", len(c.Shards))
	}
	a, _ := archdef.ForConfig(c.ConfigJSON)
	specs, _ := a.Tensors()
	if len(c.TensorNames()) != len(specs) {
		t.Errorf("%d tensors, want %d", len(c.TensorNames()), len(specs))
	}
	if c.Has("lm_head.weight") {
		t.Error("tied Qwen2 must not get an lm_head tensor")
	}
	info, b, _ := c.Tensor("model.layers.1.mlp.down_proj.weight")
	if info.DType != safetensors.BF16 || info.Shape[0] != 64 || info.Shape[1] != 96 {
		t.Errorf("down_proj %+v", info)
	}
	v := make([]float32, info.NumElements())
	dtype.ToFloat32(v, b, info.DType)
	var ss float64
	for _, x := range v {
		ss += float64(x) * float64(x)
	}
	if std := math.Sqrt(ss / float64(len(v))); std < 0.015 || std > 0.025 {
		t.Errorf("weight std %g, want ~0.02", std)
	}
	// Deterministic: the same options give the same bytes.
	out2 := filepath.Join(tmp, "q2")
	if err := synth.Generate("../../testdata/configs/Qwen2-0.5B", out2, opts); err != nil {
		t.Fatal(err)
	}
	for _, n := range c.ShardNames {
		x, _ := os.ReadFile(filepath.Join(out, n))
		y, _ := os.ReadFile(filepath.Join(out2, n))
		if !bytes.Equal(x, y) {
			t.Errorf("%s differs between two runs", n)
		}
	}
}

func TestConvertStories(t *testing.T) {
	out := filepath.Join(t.TempDir(), "bf16")
	if err := synth.Convert(context.Background(), "../../testdata/stories260K", out, safetensors.BF16); err != nil {
		t.Fatal(err)
	}
	src, _ := hfdir.Open("../../testdata/stories260K")
	defer src.Close()
	dst, err := hfdir.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	for _, n := range src.TensorNames() {
		si, sb, _ := src.Tensor(n)
		di, db, _ := dst.Tensor(n)
		if di.DType != safetensors.BF16 || len(db) != len(sb)/2 {
			t.Fatalf("%s: %s %d bytes", n, di.DType, len(db))
		}
		a := make([]float32, si.NumElements())
		b := make([]float32, si.NumElements())
		dtype.ToFloat32(a, sb, si.DType)
		dtype.ToFloat32(b, db, di.DType)
		for i := range a {
			if d := math.Abs(float64(a[i] - b[i])); d > math.Abs(float64(a[i]))/128 {
				t.Fatalf("%s[%d]: %g -> %g", n, i, a[i], b[i])
			}
		}
	}
}

// Impossible sizes are refused before anything is written: no folder is left behind.
func TestGenerateRefusesBadSizes(t *testing.T) {
	for _, c := range []struct {
		set map[string]any
		msg string
	}{
		{map[string]any{"num_hidden_layers": -1}, "negative"},
		{map[string]any{"num_hidden_layers": int64(-1)}, "negative"},
		{map[string]any{"num_hidden_layers": 0}, "num_hidden_layers is 0"}, // the config's own bounds (archdef) come first
		{map[string]any{"hidden_size": 0}, "every size must be positive"},
		{map[string]any{"intermediate_size": int64(1) << 31}, "GB free"}, // within bounds: 8 TB of weights
		{map[string]any{"intermediate_size": int64(1) << 60}, "intermediate_size is"},
		{map[string]any{"vocab_size.x": 1}, "vocab_size is not an object"},
		{map[string]any{"text_config.a.b": 1}, "one level of sub-config only"},
	} {
		tmp := t.TempDir()
		err := synth.Generate("../../testdata/stories260K", filepath.Join(tmp, "out"), synth.Options{Set: c.set})
		if err == nil || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%v: %v, want %q", c.set, err, c.msg)
		}
		if ents, _ := os.ReadDir(tmp); len(ents) != 0 {
			t.Errorf("%v: left %v", c.set, ents)
		}
	}
}

// A dotted --set key shrinks a sub-config: the LLaVA test config's language model to one layer,
// its vision tower untouched.
func TestGenerateSetsSubConfigKey(t *testing.T) {
	out := filepath.Join(t.TempDir(), "m")
	if err := synth.Generate("../../testdata/configs/llava-tiny", out, synth.Options{DType: safetensors.F32, Set: map[string]any{"text_config.num_hidden_layers": 1}}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(out, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Text   map[string]any `json:"text_config"`
		Vision map[string]any `json:"vision_config"`
	}
	if err := json.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.Text["num_hidden_layers"] != 1.0 || cfg.Vision["num_hidden_layers"] != 3.0 {
		t.Errorf("text layers %v, vision layers %v; want 1 and 3", cfg.Text["num_hidden_layers"], cfg.Vision["num_hidden_layers"])
	}
}
