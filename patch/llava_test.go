package patch

import (
	"context"
	"image"
	"image/color"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/neurosurg/neurosurg/formats/edit"
	"github.com/neurosurg/neurosurg/formats/neuronset"
	"github.com/neurosurg/neurosurg/formats/safetensors"
	"github.com/neurosurg/neurosurg/model"
	"github.com/neurosurg/neurosurg/model/synth"
)

// On F16 and BF16 LLaVA-NeXT checkpoints (LLaVA ships FP16), zeroing and scaling neurons of the
// vision tower, the projector and the language model edits fc2 / linear_2 / down_proj columns
// in the stored dtype, and the edited checkpoint's forward on an image prompt equals the
// run-time mask's.
func TestLlavaPatchEqualsRuntimeMask(t *testing.T) {
	for _, dt := range []safetensors.DType{safetensors.F16, safetensors.BF16} {
		dir := filepath.Join(t.TempDir(), "llava")
		if err := synth.Generate("../testdata/configs/llava-next-tiny", dir, synth.Options{DType: dt, Seed: 3, Std: 0.3}); err != nil {
			t.Fatal(err)
		}
		base, err := model.Open(dir)
		if err != nil {
			t.Fatal(err)
		}
		pic := filepath.Join(dir, "p.png")
		img := image.NewNRGBA(image.Rect(0, 0, 29, 18))
		for y := range 18 {
			for x := range 29 {
				img.Set(x, y, color.NRGBA{uint8(9 * x), uint8(13 * y), uint8(x * y), 255})
			}
		}
		f, _ := os.Create(pic)
		png.Encode(f, img)
		f.Close()
		in, err := base.BuildInput("s", model.Prompt{Text: "what is it", Media: []model.Medium{{Kind: "image", Paths: []string{pic}}}})
		if err != nil {
			t.Fatal(err)
		}
		set := &neuronset.Set{Neurons: []neuronset.Neuron{
			{Module: "vision", Layer: 0, Index: 4}, {Module: "vision", Layer: 1, Index: 39},
			{Module: "projector", Layer: 0, Index: 7}, {Module: "llm", Layer: 1, Index: 60}}}
		ctx := context.Background()
		plain, err := base.ForwardInputs(ctx, []model.Input{in}, model.ForwardOptions{AllLogits: true})
		if err != nil {
			t.Fatal(err)
		}
		for _, ops := range [][]Op{{{Kind: "zero"}}, {{Kind: "scale", Alpha: 0.5}}} {
			mask, err := RuntimeMask(set, ops, base.Geometry())
			if err != nil {
				t.Fatal(err)
			}
			masked, err := base.ForwardInputs(ctx, []model.Input{in}, model.ForwardOptions{Mask: mask, AllLogits: true})
			if err != nil {
				t.Fatal(err)
			}
			out, err := Apply(Inputs{Base: base.Checkpoint()}, set, ops)
			if err != nil {
				t.Fatal(err)
			}
			if len(out) != 4 {
				t.Errorf("%s %s: %d tensors edited, want 4", dt, opList(ops), len(out))
			}
			edited, err := model.Load(base.Checkpoint().ConfigJSON, edit.NewOverlay(base.Checkpoint(), out))
			if err != nil {
				t.Fatal(err)
			}
			want, err := edited.ForwardInputs(ctx, []model.Input{in}, model.ForwardOptions{AllLogits: true})
			if err != nil {
				t.Fatal(err)
			}
			worst, moved := 0.0, 0.0
			for j := range want.Logits[0] {
				worst = math.Max(worst, math.Abs(float64(masked.Logits[0][j]-want.Logits[0][j])))
				moved = math.Max(moved, math.Abs(float64(plain.Logits[0][j]-want.Logits[0][j])))
			}
			// zero is exact in any dtype; scale by 0.5 is exact too (a power of two).
			if worst > 1e-5 || moved < 1e-4 {
				t.Errorf("%s %s: mask vs edit differ by %g (the edit moved logits by %g)", dt, opList(ops), worst, moved)
			}
		}
		base.Close()
	}
}
