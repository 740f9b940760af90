package main

import (
	"bytes"
	"encoding/json"
	"image"
	"image/color"
	"image/png"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/neurosurg/neurosurg/internal/testfixture"
)

// tinyVLMCkpt synthesises the test family through neurosurg synth (tinyVLMSource).
func tinyVLMCkpt(t *testing.T, dir string) string {
	t.Helper()
	src := tinyVLMSource(t, dir)
	out := filepath.Join(dir, "vlm")
	if _, errs, code := runCLI(t, "synth", src, "--dtype", "f32", "--seed", "5", "--out", out); code != 0 {
		t.Fatalf("synth: %s", errs)
	}
	return out
}

func pngFile(t *testing.T, path string, w, h int, tint uint8) {
	t.Helper()
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			img.Set(x, y, color.NRGBA{tint + uint8(9*x), uint8(7 * y), uint8(5 * (x + y)), 255})
		}
	}
	var b bytes.Buffer
	png.Encode(&b, img)
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// logits, generate and lens take an image through the family's prompt builder: the JSON
// prompt ids hold its expanded placeholders, and the image changes the logits.
func TestMediaFlags(t *testing.T) {
	dir := t.TempDir()
	ck := tinyVLMCkpt(t, dir)
	img := filepath.Join(dir, "red.png")
	pngFile(t, img, 9, 7, 200)
	out, errs, code := runCLI(t, "logits", ck, "--prompt", "The cat", "--image", img, "--top", "3", "--json")
	if code != 0 {
		t.Fatalf("logits --image: %s", errs)
	}
	var res struct {
		PromptIDs []int32 `json:"prompt_ids"`
		Top       []struct {
			ID    *int32   `json:"id"`
			Token *string  `json:"token"`
			Logit *float32 `json:"logit"`
		} `json:"top"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if len(res.PromptIDs) < 6 || res.PromptIDs[0] != 1 || !slices.Equal(res.PromptIDs[1:5], []int32{3, 3, 3, 3}) {
		t.Errorf("prompt_ids %v: want BOS and the image's 4 placeholders (id 3)", res.PromptIDs)
	}
	if len(res.Top) != 3 || res.Top[0].ID == nil || res.Top[0].Token == nil || res.Top[0].Logit == nil {
		t.Errorf("top %s", out)
	}
	text, _, _ := runCLI(t, "logits", ck, "--prompt", "The cat", "--top", "3", "--json")
	if text == out {
		t.Error("the image changed nothing in the logits")
	}
	out, errs, code = runCLI(t, "generate", ck, "--prompt", "The cat", "--image", img, "-n", "3", "--json")
	var gen struct {
		PromptIDs []int32 `json:"prompt_ids"`
		IDs       []int32 `json:"ids"`
		Text      string  `json:"text"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &gen) != nil || len(gen.IDs) == 0 || !strings.HasPrefix(gen.Text, "The cat") || !slices.Contains(gen.PromptIDs, 3) {
		t.Errorf("generate --image: exit %d %s %s", code, out, errs)
	}
	out, errs, code = runCLI(t, "lens", ck, "--prompt", "The cat", "--image", img, "--positions", "-1,2", "--json")
	var lens []struct {
		Layer, Position int
	}
	if code != 0 || json.Unmarshal([]byte(out), &lens) != nil || len(lens) == 0 {
		t.Errorf("lens --image: exit %d %s %s", code, out, errs)
	}
	for _, e := range lens {
		if e.Position != 2 && e.Position != len(res.PromptIDs)-1 {
			t.Errorf("lens position %d, want 2 or %d (the expanded prompt's last)", e.Position, len(res.PromptIDs)-1)
		}
	}

	// Bad media: a usage error exits 2 before anything is opened; a bad file exits 1 naming it.
	bad := filepath.Join(dir, "bad.png")
	os.WriteFile(bad, []byte("not a picture"), 0o644)
	frames := filepath.Join(dir, "frames")
	os.Mkdir(frames, 0o755)
	pngFile(t, filepath.Join(frames, "1.png"), 4, 4, 10)
	p := []string{"--prompt", "The cat"}
	for _, c := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"logits", ck, "--image", ""}, exitUsage, "--image: an empty path"},
		{[]string{"generate", ck, "--video", "a.png,,b.png"}, exitUsage, `--video: entry 2 of "a.png,,b.png" is empty`},
		{[]string{"lens", ck, "--image", filepath.Join(dir, "missing.png")}, exitError, filepath.Join(dir, "missing.png")},
		{[]string{"logits", ck, "--image", bad}, exitError, bad},
		{[]string{"logits", ck, "--image", frames}, exitError, frames + ": not a regular file"},
		{[]string{"logits", ck, "--audio", filepath.Join(dir, "s.wav")}, exitError, "prompt has audio input, but TinyVLMForConditionalGeneration takes text and image"},
		{[]string{"logits", ck, "--video", frames}, exitError, "prompt has video input"},
		{[]string{"logits", ck, "--image", img, "--image", img}, exitError, "prompt has more than one image"},
		{[]string{"logits", stories, "--image", img}, exitError, "takes text only"},
	} {
		_, errs, code := runCLI(t, append(c.args, p...)...)
		if code != c.code || !strings.Contains(errs, c.msg) || strings.Count(errs, "\n") != 1 {
			t.Errorf("%v: exit %d %q, want %d mentioning %q on one line", c.args, code, errs, c.code, c.msg)
		}
	}
}

// The MINER pipeline from the command line on image samples: record --miner, stats export
// --by-modality, locate --method miner, patch --op zero, verify, write; and DAPE per module
// with MMNeuron's module names.
func TestMINERImagesCLI(t *testing.T) {
	dir := t.TempDir()
	ck := tinyVLMCkpt(t, dir)
	data := filepath.Join(dir, "data")
	os.MkdirAll(filepath.Join(data, "pics"), 0o755)
	pngFile(t, filepath.Join(data, "pics", "red.png"), 9, 7, 200)
	pngFile(t, filepath.Join(data, "pics", "blue.png"), 6, 8, 5)
	sp := filepath.Join(data, "s.jsonl")
	os.WriteFile(sp, []byte(`{"id":"a","text":"Once upon a time","image":"pics/red.png","label":"red","answer":"there"}
{"id":"b","text":"The cat sat","image":"pics/blue.png","label":"blue"}
{"id":"c","text":"A little girl","image":"pics/red.png","label":"red"}
{"id":"d","text":"They played","image":"pics/blue.png","label":"blue","answer":"in the park"}
`), 0o644)
	st, nj, nsd, out := filepath.Join(dir, "m.st"), filepath.Join(dir, "m.json"), filepath.Join(dir, "m.nsd"), filepath.Join(dir, "out")
	rj, rnsd := filepath.Join(dir, "r.json"), filepath.Join(dir, "r.nsd")
	for _, args := range [][]string{
		{"record", ck, "--data", sp, "--miner", "--out", st},
		{"locate", "--method", "miner", "--ratio", "0.1", st, "--out", nj},
		{"locate", "--method", "random", "--like", nj, "--seed", "4", st, "--out", rj},
		{"patch", ck, "--neurons", nj, "--op", "zero", "--out", nsd},
		{"patch", ck, "--neurons", rj, "--op", "zero", "--out", rnsd},
		{"verify", ck, "--edit", nsd, "--random", rnsd, "--bench", sp, "--max-tokens", "3", "--json"},
		{"write", ck, "--edit", nsd, "--out", out},
	} {
		o, errs, code := runCLI(t, args...)
		if code != 0 {
			t.Fatalf("%v: exit %d: %s", args, code, errs)
		}
		if args[0] == "verify" {
			var rep struct {
				Variants []string                      `json:"variants"`
				Metrics  map[string]map[string]float64 `json:"metrics"`
			}
			if err := json.Unmarshal([]byte(o), &rep); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(rep.Variants, []string{"base", "edited", "random"}) {
				t.Errorf("verify variants %v, want base, edited, random", rep.Variants)
			}
			for _, v := range rep.Variants {
				for _, k := range []string{"anls", "exact_match", "contains", "ppl/red"} {
					if _, ok := rep.Metrics[v][k]; !ok {
						t.Errorf("verify %s on answered image samples: no %s", v, k)
					}
				}
			}
		}
	}
	csv, errs, code := runCLI(t, "stats", "export", st, "--by-modality")
	if code != 0 || !strings.HasPrefix(csv, "dataset,module,modality,layer,neuron,positions,probability,mean,max\n") {
		t.Fatalf("export --by-modality: exit %d %s %.200s", code, errs, csv)
	}
	// Datasets default to the labels; each label's 2 images fill 8 image positions a layer.
	for _, ds := range []string{"red", "blue"} {
		if !strings.Contains(csv, "\n"+ds+",llm,image,0,0,8,") {
			t.Errorf("no image row of dataset %s with 8 positions", ds)
		}
	}
	var set struct {
		Labels  []string `json:"labels"`
		Neurons []struct {
			Module string `json:"module"`
		} `json:"neurons"`
	}
	b, _ := os.ReadFile(nj)
	if json.Unmarshal(b, &set) != nil || !slices.Contains(set.Labels, "image") {
		t.Errorf("miner set labels %v", set.Labels)
	}
	// DAPE in every module (all), and in MMNeuron's names of the modules.
	plain := filepath.Join(dir, "plain.st")
	if _, errs, code := runCLI(t, "record", ck, "--data", sp, "--out", plain); code != 0 {
		t.Fatal(errs)
	}
	// The modules DAPE selected in: each has its own threshold τ in the set's params.
	modules := func(path string) []string {
		var s struct {
			Params struct {
				Tau map[string]float64 `json:"tau"`
			} `json:"params"`
			Neurons []struct {
				Module string `json:"module"`
			} `json:"neurons"`
		}
		b, _ := os.ReadFile(path)
		if err := json.Unmarshal(b, &s); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		var m []string
		for k := range s.Params.Tau {
			m = append(m, k)
		}
		for _, n := range s.Neurons {
			if _, ok := s.Params.Tau[n.Module]; !ok {
				t.Errorf("%s: neuron of module %s, not one selected in", path, n.Module)
			}
		}
		slices.Sort(m)
		return m
	}
	all, alias := filepath.Join(dir, "all.json"), filepath.Join(dir, "alias.json")
	for _, c := range []struct {
		out  string
		args []string
		want []string
	}{
		{all, []string{"--module", "all"}, []string{"llm", "projector", "vision"}},
		{alias, []string{"--module", "encoder", "--module", "mmproj"}, []string{"projector", "vision"}},
	} {
		args := append([]string{"locate", "--method", "dape", "--top-rate", "0.2", "--filter-rate", "0.5", "--activation-bar-ratio", "0.5", plain, "--out", c.out}, c.args...)
		if _, errs, code := runCLI(t, args...); code != 0 {
			t.Fatalf("%v: %s", args, errs)
		}
		if got := modules(c.out); !slices.Equal(got, c.want) {
			t.Errorf("%v: modules %v, want %v", c.args, got, c.want)
		}
	}
	if _, errs, code := runCLI(t, "locate", "--method", "miner", "--module", "all", st, "--out", filepath.Join(dir, "x.json")); code != exitUsage || !strings.Contains(errs, "dape only") {
		t.Errorf("miner --module all: exit %d %s", code, errs)
	}
}

// tinyVLMSource writes dir/src: testfixture.TinyVLMSource.
func tinyVLMSource(t *testing.T, dir string) string {
	t.Helper()
	src, err := testfixture.TinyVLMSource("../..", dir)
	if err != nil {
		t.Fatal(err)
	}
	return src
}
