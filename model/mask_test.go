package model_test

import (
	"context"
	"math"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/neurosurg/neurosurg/dtype"
	"github.com/neurosurg/neurosurg/formats/edit"
	"github.com/neurosurg/neurosurg/formats/hfdir"
	"github.com/neurosurg/neurosurg/formats/safetensors"
	"github.com/neurosurg/neurosurg/model"
	"github.com/neurosurg/neurosurg/model/synth"
)

// editedColumns returns down_proj bytes of each layer with columns cols[l] multiplied by alpha.
func editedColumns(t *testing.T, c *hfdir.Checkpoint, cols map[int][]int, alpha float32) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	for l, js := range cols {
		name := "model.layers." + strconv.Itoa(l) + ".mlp.down_proj.weight"
		info, b, err := c.Tensor(name)
		if err != nil {
			t.Fatal(err)
		}
		v := make([]float32, info.NumElements())
		dtype.ToFloat32(v, b, info.DType)
		rows, n := int(info.Shape[0]), int(info.Shape[1])
		for r := 0; r < rows; r++ {
			for _, j := range js {
				v[r*n+j] *= alpha
			}
		}
		nb := make([]byte, len(b))
		dtype.FromFloat32(nb, v, info.DType)
		out[name] = nb
	}
	return out
}

// The base of every neurosurg edit: masking neurons at run time equals editing down_proj.
func TestRuntimeMaskEqualsWeightEdit(t *testing.T) {
	qwenDir := filepath.Join(t.TempDir(), "qwen")
	if err := synth.Generate("../testdata/configs/Qwen2-0.5B", qwenDir, synth.Options{DType: safetensors.F32, Seed: 5, Std: 0.2,
		Set: map[string]any{"num_hidden_layers": 3, "hidden_size": 64, "intermediate_size": 96, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 256}}); err != nil {
		t.Fatal(err)
	}
	qwenBF16 := filepath.Join(t.TempDir(), "qwen-bf16")
	if err := synth.Convert(context.Background(), qwenDir, qwenBF16, safetensors.BF16); err != nil {
		t.Fatal(err)
	}
	cols := map[int][]int{0: {1, 5, 17}, 2: {0, 33, 95}}
	prompts := [][]int32{{1, 40, 50, 60, 70, 80}, {1, 9, 8}}
	for _, tc := range []struct {
		name  string
		dir   string
		alpha float32
		tol   float64
	}{
		// Zero is exact with a plain dot-product kernel; through gonum's Sgemm the masked and the
		// edited product differ at float32 rounding (measured 4.8e-6 on logits of ~10).
		{"stories/zero/f32", stories, 0, 1e-5},
		{"stories/scale/f32", stories, 0.5, 1e-5},
		{"qwen2/zero/f32", qwenDir, 0, 1e-5},
		{"qwen2/scale/f32", qwenDir, 0.25, 1e-5},
		{"qwen2/zero/bf16", qwenBF16, 0, 1e-5},
		// 0.5 is exact in bf16, so the edited weights hold no rounding either.
		{"qwen2/scale/bf16", qwenBF16, 0.5, 1e-4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := hfdir.Open(tc.dir)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			base, err := model.Load(c.ConfigJSON, c)
			if err != nil {
				t.Fatal(err)
			}
			mask := model.NewMask()
			for l, js := range cols {
				for _, j := range js {
					if tc.alpha == 0 {
						mask.Set(model.Site{Module: "llm", Layer: l}, j, 0)
					} else {
						mask.Scale(model.Site{Module: "llm", Layer: l}, j, tc.alpha)
					}
				}
			}
			masked, err := base.Forward(context.Background(), prompts, model.ForwardOptions{Mask: mask, AllLogits: true})
			if err != nil {
				t.Fatal(err)
			}
			edited, err := model.Load(c.ConfigJSON, edit.NewOverlay(c, editedColumns(t, c, cols, tc.alpha)))
			if err != nil {
				t.Fatal(err)
			}
			want, err := edited.Forward(context.Background(), prompts, model.ForwardOptions{AllLogits: true})
			if err != nil {
				t.Fatal(err)
			}
			plain, _ := base.Forward(context.Background(), prompts, model.ForwardOptions{AllLogits: true})
			worst, moved := 0.0, 0.0
			for i := range prompts {
				for j := range want.Logits[i] {
					worst = math.Max(worst, math.Abs(float64(masked.Logits[i][j]-want.Logits[i][j])))
					moved = math.Max(moved, math.Abs(float64(plain.Logits[i][j]-want.Logits[i][j])))
				}
			}
			if worst > tc.tol {
				t.Errorf("mask vs edit: max abs diff %g > %g", worst, tc.tol)
			}
			if moved < 1e-4 {
				t.Errorf("the edit moved logits by only %g: the test would not notice a no-op", moved)
			}
		})
	}
}
