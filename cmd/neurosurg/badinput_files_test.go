package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/neurosurg/neurosurg/formats/edit"
	"github.com/neurosurg/neurosurg/formats/hfdir"
	"github.com/neurosurg/neurosurg/formats/safetensors"
)

// zeroFrame is a zstd frame of n zero bytes made of RLE blocks: a multi-GB bomb in a few KB.
func zeroFrame(n int64) []byte {
	b := binary.LittleEndian.AppendUint32(nil, 0xFD2FB528)
	b = append(b, 0x00, 13<<3)
	for n > 0 {
		k := min(n, 128<<10)
		n -= k
		h := uint32(k)<<3 | 1<<1
		if n == 0 {
			h |= 1
		}
		b = append(b, byte(h), byte(h>>8), byte(h>>16), 0)
	}
	return b
}

// TestBadInputBattery runs the bad files of issue #12 through the CLI: each exits 1 with a
// one-line error naming the file, quickly, and leaves no output and no temporary directory.
func TestBadFilesBattery(t *testing.T) {
	tmp := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(tmp, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	base, err := hfdir.Open(stories)
	if err != nil {
		t.Fatal(err)
	}
	defer base.Close()
	_, nw, _ := base.Tensor("model.norm.weight")
	nb := append([]byte(nil), nw...)
	nb[5] ^= 3
	editedDir := filepath.Join(tmp, "edited")
	if _, err := hfdir.Write(context.Background(), base, editedDir, hfdir.WriteOptions{Replace: map[string][]byte{"model.norm.weight": nb}, Metadata: map[string]string{"neurosurg.version": "test"}}); err != nil {
		t.Fatal(err)
	}
	edited, err := hfdir.Open(editedDir)
	if err != nil {
		t.Fatal(err)
	}
	defer edited.Close()
	nsd := func(name string, mod func(*edit.Edit)) string {
		e, err := edit.Diff(base, edited)
		if err != nil {
			t.Fatal(err)
		}
		mod(e)
		m, err := e.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		return write(name, m)
	}
	runsOverflow := nsd("runs-overflow.nsd", func(e *edit.Edit) {
		e.Tensors[0].Layout, e.Tensors[0].Index, e.Tensors[0].Values = edit.LayoutRuns, []int64{1<<62 + 1, 1<<62 - 1}, make([]byte, 4)
	})
	tamperedResult := nsd("tampered-result.nsd", func(e *edit.Edit) { e.Shards[0].ResultSHA256 = strings.Repeat("0", 64) })
	tamperedMeta := nsd("tampered-metadata.nsd", func(e *edit.Edit) { e.Metadata["neurosurg.version"] = "9.9.9" })
	zeros := write("zeros.nsd", zeroFrame(3<<30))
	mj, _ := json.Marshal(map[string]any{"version": 1, "module": "llm", "layers": 1000000, "neurons": 1000000, "labels": []string{"a"}, "samples": []float64{1}})
	stPath := filepath.Join(tmp, "huge.st")
	if err := safetensors.WriteFile(stPath, nil, map[string]string{"neurosurg.stats": string(mj)}); err != nil {
		t.Fatal(err)
	}
	layer5 := write("layer5.json", []byte(`{"version":1,"method":"x","neurons":[{"module":"llm","layer":5,"index":3,"score":1}]}`))
	ckpt := func(name string, set map[string]any) string {
		dir := filepath.Join(tmp, name)
		os.MkdirAll(dir, 0o755)
		b, _ := os.ReadFile(filepath.Join(stories, "config.json"))
		var m map[string]any
		json.Unmarshal(b, &m)
		for k, v := range set {
			m[k] = v
		}
		b, _ = json.Marshal(m)
		os.WriteFile(filepath.Join(dir, "config.json"), b, 0o644)
		for _, f := range []string{"model.safetensors", "tokenizer.json", "tokenizer_config.json"} {
			abs, _ := filepath.Abs(filepath.Join(stories, f))
			os.Symlink(abs, filepath.Join(dir, f))
		}
		return dir
	}
	layers1e12 := ckpt("layers-1e12", map[string]any{"num_hidden_layers": 1e12})
	epsNeg := ckpt("eps-neg", map[string]any{"rms_norm_eps": -1})
	thetaZero := ckpt("theta-zero", map[string]any{"rope_theta": 0})
	fewer := ckpt("fewer-layers", map[string]any{"num_hidden_layers": 4})

	outParent := filepath.Join(tmp, "outs")
	os.MkdirAll(outParent, 0o755)
	out := filepath.Join(outParent, "out")
	cases := []struct {
		name string
		args []string
		msg  []string
	}{
		{"zero-filled edit", []string{"apply", stories, zeros, "--out", out}, []string{zeros, "header length 0"}},
		{"run index overflow", []string{"apply", stories, runsOverflow, "--out", out}, []string{runsOverflow, "run ("}},
		{"tampered result_sha256", []string{"apply", stories, tamperedResult, "--out", out}, []string{tamperedResult, "the edit promises 000000000000"}},
		{"tampered metadata", []string{"apply", stories, tamperedMeta, "--out", out}, []string{tamperedMeta, "as written has sha256"}},
		{"zero-filled edit, verify", []string{"verify", stories, "--edit", zeros, "--bench", "../../testdata/samples/stories-animals-food.jsonl"}, []string{zeros}},
		{"8 TB stats", []string{"stats", "export", stPath}, []string{stPath, "1000000 layers"}},
		{"10^12 layers, inspect", []string{"inspect", layers1e12}, []string{layers1e12, "num_hidden_layers"}},
		{"10^12 layers, logits", []string{"logits", layers1e12, "--prompt", "Once"}, []string{filepath.Join(layers1e12, "config.json"), "num_hidden_layers"}},
		{"negative eps", []string{"logits", epsNeg, "--prompt", "Once"}, []string{filepath.Join(epsNeg, "config.json"), "rms_norm_eps"}},
		{"zero rope_theta", []string{"logits", thetaZero, "--prompt", "Once"}, []string{filepath.Join(thetaZero, "config.json"), "rope_theta"}},
		{"fewer layers than the checkpoint", []string{"logits", fewer, "--prompt", "Once"}, []string{filepath.Join(fewer, "config.json"), "num_hidden_layers"}},
		{"layer 5 of a 5-layer model", []string{"neurons", "show", layer5, "--ckpt", stories}, []string{layer5, "layers 0..4"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			start := time.Now()
			_, errs, code := runCLI(t, c.args...)
			if code != exitError {
				t.Errorf("exit %d, want %d: %s", code, exitError, errs)
			}
			for _, m := range c.msg {
				if !strings.Contains(errs, m) {
					t.Errorf("error %q does not mention %q", errs, m)
				}
			}
			if strings.Count(strings.TrimSpace(errs), "\n") != 0 {
				t.Errorf("error is not one line: %q", errs)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("took %v", d)
			}
			if ents, _ := os.ReadDir(outParent); len(ents) != 0 {
				t.Errorf("left behind: %v", ents)
			}
		})
	}
}
