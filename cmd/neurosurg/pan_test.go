package main

import (
	"bytes"
	"encoding/json"
	"image"
	"image/color"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/neurosurg/neurosurg/formats/safetensors"
	"github.com/neurosurg/neurosurg/model/synth"
)

// Pan et al.'s pipeline on images through the CLI, on the test family with the stories
// tokenizer: caption concepts recorded per sample, per-sample contribution lists, a swap of
// one concept's neurons, and verify --mm-metrics writing the four metrics (and the edit's
// specificity) into the report.
func TestPanPipelineCLI(t *testing.T) {
	tmp := t.TempDir()
	src := tinyVLMSource(t, tmp)
	ckpt := filepath.Join(tmp, "vlm")
	if err := synth.Generate(src, ckpt, synth.Options{DType: safetensors.F32, Seed: 5, Std: 0.3}); err != nil {
		t.Fatal(err)
	}
	var lines bytes.Buffer
	for i, c := range []struct{ text, label, box string }{
		{"An image of Lily with a ball", "Lily", `,"bbox":[0,0,4,4]`},
		{"An image of Tim and Lily", "Lily", ""},
		{"An image of Tim in the park", "Tim", `,"bbox":[2,2,8,8]`},
		{"An image of Lily and Tim", "Tim", ""},
	} {
		p := filepath.Join(tmp, string(rune('a'+i))+".png")
		img := image.NewNRGBA(image.Rect(0, 0, 8, 8))
		for y := range 8 {
			for x := range 8 {
				img.Set(x, y, color.NRGBA{uint8(50*i + 20*x), uint8(200 - 20*y), uint8(30 * (x + y)), 255})
			}
		}
		var b bytes.Buffer
		png.Encode(&b, img)
		os.WriteFile(p, b.Bytes(), 0o644)
		pj, _ := json.Marshal(p)
		lines.WriteString(`{"id":"c` + string(rune('0'+i)) + `","text":"` + c.text + `","image":` + string(pj) + `,"label":"` + c.label + `"` + c.box + "}\n")
	}
	data := filepath.Join(tmp, "captions.jsonl")
	os.WriteFile(data, lines.Bytes(), 0o644)

	st := filepath.Join(tmp, "caps.st")
	if _, errs, code := runCLI(t, "record", ckpt, "--data", data, "--concepts-from-text", "--per-sample", "--out", st); code != 0 {
		t.Fatalf("record: %s", errs)
	}
	if _, errs, code := runCLI(t, "record", ckpt, "--data", data, "--shuffle-patches", "7", "--resume", "--out", st); code != 1 || !strings.Contains(errs, "shuffled") {
		t.Errorf("record --shuffle-patches --resume: exit %d, %s; want 1 naming the shuffle", code, errs)
	}
	set := filepath.Join(tmp, "lily.json")
	if _, errs, code := runCLI(t, "locate", "--method", "contrib", "--contrib-mode", "per-sample", "--top-k", "10", "--label", "Lily@c0", st, "--out", set); code != 0 {
		t.Fatalf("locate: %s", errs)
	}
	nsd := filepath.Join(tmp, "swap.nsd")
	if _, errs, code := runCLI(t, "patch", ckpt, "--neurons", set, "--op", "swap:Lily>Tim", "--out", nsd); code != 0 {
		t.Fatalf("patch: %s", errs)
	}
	if _, errs, code := runCLI(t, "verify", ckpt, "--edit", nsd, "--bench", data, "--mm-top-n", "5"); code != 2 || !strings.Contains(errs, "--mm-metrics") {
		t.Errorf("--mm-top-n without --mm-metrics: exit %d, %s", code, errs)
	}
	if _, errs, code := runCLI(t, "verify", ckpt, "--edit", nsd, "--bench", data, "--mm-metrics", "--mm-top-n", "-3"); code != 2 || !strings.Contains(errs, "top-n -3") {
		t.Errorf("--mm-top-n -3: exit %d, %s", code, errs)
	}
	out := filepath.Join(tmp, "rep")
	stdout, errs, code := runCLI(t, "verify", ckpt, "--edit", nsd, "--bench", data, "--swap", "Lily>Tim", "--max-tokens", "4",
		"--mm-metrics", "--mm-top-n", "10", "--mm-shuffle-seed", "7", "--out", out)
	if code != 0 {
		t.Fatalf("verify: exit %d: %s", code, errs)
	}
	if !strings.Contains(stdout, "Multi-modal neurons") || !strings.Contains(stdout, "| Lily | 3 |") {
		t.Errorf("the Markdown report lacks the neuron metrics:\n%s", stdout)
	}
	b, err := os.ReadFile(out + ".json")
	if err != nil {
		t.Fatal(err)
	}
	var rep struct {
		Metrics map[string]map[string]float64 `json:"metrics"`
		Neurons *struct {
			Lists            int      `json:"lists"`
			RegionInvariance *float64 `json:"region_invariance"`
			CrossImage       *float64 `json:"cross_image"`
			ShuffleOverlap   *float64 `json:"shuffle_overlap"`
		} `json:"multimodal_neurons"`
	}
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	// Lily is written after the images of c0, c1, c3, Tim after c1, c2, c3.
	if n := rep.Neurons; n == nil || n.Lists != 6 || n.RegionInvariance == nil || n.CrossImage == nil || n.ShuffleOverlap == nil {
		t.Fatalf("multimodal_neurons: %+v", rep.Neurons)
	}
	for _, k := range []string{"mm/semantic_lens", "mm/prob_drop", "mm/specificity", "mm/cross_image", "mm/region_invariance", "mm/shuffle_overlap"} {
		if _, ok := rep.Metrics["base"][k]; !ok {
			t.Errorf("base metrics lack %s", k)
		}
	}
	if s, ok := rep.Metrics["edited"]["mm/edit_specificity"]; !ok || s < 0 || s > 1 {
		t.Errorf("edited mm/edit_specificity %v (%v)", s, ok)
	}
	html := filepath.Join(tmp, "rep.html")
	if _, errs, code := runCLI(t, "report", out+".json", "--html", html); code != 0 {
		t.Fatalf("report: %s", errs)
	}
	page, _ := os.ReadFile(html)
	if !strings.Contains(string(page), "mm/cross_image") {
		t.Error("the HTML report lacks the neuron metrics")
	}
}
