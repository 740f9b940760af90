package benchenc_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/neurosurg/neurosurg/formats/safetensors"
	"github.com/neurosurg/neurosurg/internal/benchenc"
	"github.com/neurosurg/neurosurg/media/imageproc"
	"github.com/neurosurg/neurosurg/model"
	"github.com/neurosurg/neurosurg/model/synth"
)

// One image through the LLaVA test config's encoder: the rows reported are the processor's
// patch rows and the length of the placeholder run the prompt builder expands, and the times
// are positive with the best run no slower than the mean.
func TestRunLlavaImage(t *testing.T) {
	dir := t.TempDir()
	ckpt := filepath.Join(dir, "m")
	if err := synth.Generate("../../testdata/configs/llava-tiny", ckpt, synth.Options{DType: safetensors.F32, Seed: 3}); err != nil {
		t.Fatal(err)
	}
	img := &imageproc.RGB{W: 20, H: 12, Pix: make([]byte, 3*20*12)}
	for i := range img.Pix {
		img.Pix[i] = byte(i * 37)
	}
	png := filepath.Join(dir, "x.png")
	f, err := os.Create(png)
	if err != nil {
		t.Fatal(err)
	}
	if err := imageproc.WritePNG(f, img); err != nil {
		t.Fatal(err)
	}
	f.Close()
	res, err := benchenc.Run(context.Background(), benchenc.Options{Checkpoint: ckpt, MinSeconds: 0.01,
		Media: []model.Medium{{Kind: "image", Paths: []string{png}}}})
	if err != nil {
		t.Fatal(err)
	}
	m, err := model.Open(ckpt)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	in, err := m.BuildInput("x", model.Prompt{Text: "Describe it.", Media: []model.Medium{{Kind: "image", Paths: []string{png}}}})
	if err != nil {
		t.Fatal(err)
	}
	placeholders := 0
	for _, id := range in.Tokens {
		if id == 32000 {
			placeholders++
		}
	}
	if len(res) != 1 {
		t.Fatalf("%d results, want 1", len(res))
	}
	r := res[0]
	if r.InputRows != in.Media[0].Rows || r.OutputRows != placeholders || placeholders == 0 || r.Seconds <= 0 || r.Best <= 0 || r.Best > r.Seconds*1.0001 {
		t.Errorf("result %+v; want %d input rows, %d output rows, positive times", r, in.Media[0].Rows, placeholders)
	}
}
