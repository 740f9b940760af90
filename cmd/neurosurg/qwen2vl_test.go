package main

import (
	"image"
	"image/color"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The CI-sized Qwen2-VL: synth builds the shrunk real config (with its processor config and
// tokenizer), inspect lists the three FFN groups, and record runs an image sample and a text
// sample through the chat template with MINER's scores, recording every module's neurons.
func TestQwen2VLTinySynthInspectRecord(t *testing.T) {
	dir := t.TempDir()
	ck := filepath.Join(dir, "q2vl")
	if _, errs, code := runCLI(t, "synth", "../../testdata/configs/qwen2-vl-tiny", "--out", ck); code != 0 {
		t.Fatalf("synth: exit %d: %s", code, errs)
	}
	for _, f := range []string{"preprocessor_config.json", "chat_template.json", "vocab.json", "merges.txt", "tokenizer_config.json"} {
		if _, err := os.Stat(filepath.Join(ck, f)); err != nil {
			t.Errorf("synth did not carry %s: %v", f, err)
		}
	}
	out, errs, code := runCLI(t, "inspect", ck)
	if code != 0 {
		t.Fatalf("inspect: exit %d: %s", code, errs)
	}
	for _, want := range []string{"Qwen2VLForConditionalGeneration", "ffn vision    2 layers × 128 neurons", "ffn projector 1 layers × 128 neurons", "ffn llm       2 layers × 48 neurons"} {
		if !strings.Contains(out, want) {
			t.Errorf("inspect lacks %q:\n%s", want, out)
		}
	}
	img := image.NewNRGBA(image.Rect(0, 0, 90, 60))
	for y := range 60 {
		for x := range 90 {
			img.Set(x, y, color.NRGBA{uint8(3 * x), uint8(4 * y), uint8(x ^ y), 255})
		}
	}
	f, err := os.Create(filepath.Join(dir, "pic.png"))
	if err != nil {
		t.Fatal(err)
	}
	png.Encode(f, img)
	f.Close()
	data := filepath.Join(dir, "s.jsonl")
	os.WriteFile(data, []byte(`{"id":"a","text":"What is this?","image":"`+filepath.Join(dir, "pic.png")+`","label":"img"}
{"id":"b","text":"Just text.","label":"txt"}
`), 0o644)
	st := filepath.Join(dir, "st.st")
	if _, errs, code := runCLI(t, "record", ck, "--data", data, "--chat", "--miner", "--out", st); code != 0 {
		t.Fatalf("record: exit %d: %s", code, errs)
	}
	csv, errs, code := runCLI(t, "stats", "export", st, "--csv")
	if code != 0 {
		t.Fatalf("stats export: exit %d: %s", code, errs)
	}
	for _, want := range []string{"vision,img,1,", "projector,img,0,", "llm,img,1,", "llm,txt,0,"} {
		if !strings.Contains(csv, want) {
			t.Errorf("stats lack rows %q", want)
		}
	}
	// MINER's chain on the CI-sized Qwen2-VL: the image positions are their own modality (by
	// the config's image_token_id), the located neurons are zeroed, verified and written.
	bym, errs, code := runCLI(t, "stats", "export", st, "--by-modality")
	if code != 0 {
		t.Fatalf("stats export --by-modality: exit %d: %s", code, errs)
	}
	if !strings.Contains(bym, ",image,") || !strings.Contains(bym, ",text,") {
		t.Errorf("--by-modality lacks image or text rows:\n%.400s", bym)
	}
	set := filepath.Join(dir, "n.json")
	if _, errs, code := runCLI(t, "locate", "--method", "miner", st, "--out", set); code != 0 {
		t.Fatalf("locate miner: exit %d: %s", code, errs)
	}
	edit := filepath.Join(dir, "e.nsd")
	if _, errs, code := runCLI(t, "patch", ck, "--neurons", set, "--op", "zero", "--out", edit); code != 0 {
		t.Fatalf("patch: exit %d: %s", code, errs)
	}
	if _, errs, code := runCLI(t, "verify", ck, "--edit", edit, "--bench", data); code != 0 {
		t.Fatalf("verify: exit %d: %s", code, errs)
	}
	written := filepath.Join(dir, "w")
	if _, errs, code := runCLI(t, "write", ck, "--edit", edit, "--out", written); code != 0 {
		t.Fatalf("write: exit %d: %s", code, errs)
	}
	// The written checkpoint takes the image prompt as the base did.
	if out, errs, code := runCLI(t, "logits", written, "--chat", "--image", filepath.Join(dir, "pic.png"), "--prompt", "What is this?", "--json"); code != 0 || !strings.Contains(out, "prompt_ids") {
		t.Fatalf("logits on the written checkpoint: exit %d: %s %.200s", code, errs, out)
	}
}
