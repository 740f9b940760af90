// Package testfixture builds the small checkpoints several packages' tests share.
package testfixture

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/neurosurg/neurosurg/formats/safetensors"
	"github.com/neurosurg/neurosurg/model/synth"
)

// TinyVLMSource writes dir/src: the test family's config (testdata/configs/tiny-vlm) with its
// text vocabulary widened to the stories tokenizer's 512 ids, beside that tokenizer. root is
// the repository's root as seen from the calling test's package ("../..").
func TinyVLMSource(root, dir string) (string, error) {
	raw, err := os.ReadFile(filepath.Join(root, "testdata/configs/tiny-vlm/config.json"))
	if err != nil {
		return "", err
	}
	var cfg map[string]any
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return "", err
	}
	text, ok := cfg["text_config"].(map[string]any)
	if !ok {
		return "", fmt.Errorf("tiny-vlm config: no text_config")
	}
	text["vocab_size"] = 512
	src := filepath.Join(dir, "src")
	if err := os.MkdirAll(src, 0o755); err != nil {
		return "", err
	}
	if raw, err = json.Marshal(cfg); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(src, "config.json"), raw, 0o644); err != nil {
		return "", err
	}
	for _, f := range []string{"tokenizer.json", "tokenizer_config.json"} {
		b, err := os.ReadFile(filepath.Join(root, "testdata/stories260K", f))
		if err != nil {
			return "", err
		}
		if err := os.WriteFile(filepath.Join(src, f), b, 0o644); err != nil {
			return "", err
		}
	}
	return src, nil
}

// TinyVLM synthesises TinyVLMSource's checkpoint into dir/vlm (F32, seed 5, weights of std 0.3:
// large enough that masks move the logits) and returns its directory.
func TinyVLM(root, dir string) (string, error) {
	src, err := TinyVLMSource(root, dir)
	if err != nil {
		return "", err
	}
	out := filepath.Join(dir, "vlm")
	if err := synth.Generate(src, out, synth.Options{DType: safetensors.F32, Seed: 5, Std: 0.3}); err != nil {
		return "", err
	}
	return out, nil
}
