package main

import (
	"crypto/sha256"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// copyDir copies the regular files of src into a new directory dst.
func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	if err := os.MkdirAll(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if e.Type().IsRegular() {
			b, _ := os.ReadFile(filepath.Join(src, e.Name()))
			os.WriteFile(filepath.Join(dst, e.Name()), b, 0o644)
		}
	}
}

// treeSum fingerprints every file under dir (names and contents).
func treeSum(t *testing.T, dir string) string {
	t.Helper()
	h := sha256.New()
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fmt.Fprintln(h, p)
		if d.Type().IsRegular() {
			b, _ := os.ReadFile(p)
			h.Write(b)
		}
		return nil
	})
	return fmt.Sprintf("%x", h.Sum(nil))
}

// The bad-input battery: every bad invocation exits with its documented code and one line
// on stderr naming the problem, prints no help, panics never, hangs never, and leaves the
// inputs as they were.
func TestBadInvocations(t *testing.T) {
	tmp := t.TempDir()
	ckpt := filepath.Join(tmp, "ckpt")
	copyDir(t, stories, ckpt)
	data := filepath.Join(tmp, "data.jsonl")
	b, _ := os.ReadFile("../../testdata/samples/stories-animals-food.jsonl")
	os.WriteFile(data, b, 0o644)
	st, nj, nsd := filepath.Join(tmp, "s.st"), filepath.Join(tmp, "n.json"), filepath.Join(tmp, "e.nsd")
	for _, args := range [][]string{
		{"record", ckpt, "--data", data, "--out", st},
		{"locate", "--method", "dape", "--top-rate", "0.05", st, "--out", nj},
		{"patch", ckpt, "--neurons", nj, "--op", "zero", "--out", nsd},
	} {
		if _, errs, code := runCLI(t, args...); code != 0 {
			t.Fatalf("%v: %s", args, errs)
		}
	}
	// Inputs that are broken in one way each.
	other := filepath.Join(tmp, "other.json")
	os.WriteFile(other, []byte(`{"version":1,"method":"dape","model_sha256":"0123456789abcdef","geometry":{"llm":{"layers":24,"neurons":4864}},"neurons":[{"module":"llm","layer":0,"index":1,"score":1}]}`), 0o644)
	badUTF8 := filepath.Join(tmp, "utf8.jsonl")
	os.WriteFile(badUTF8, []byte("{\"text\":\"caf\xe9\"}\n"), 0o644)
	twoObjects := filepath.Join(tmp, "two.jsonl")
	os.WriteFile(twoObjects, []byte(`{"text":"a"} {"text":"b"}`+"\n"), 0o644)
	empty := filepath.Join(tmp, "empty.jsonl")
	os.WriteFile(empty, nil, 0o644)
	fifoCkpt := filepath.Join(tmp, "fifo-ckpt")
	copyDir(t, stories, fifoCkpt)
	os.Remove(filepath.Join(fifoCkpt, "model.safetensors"))
	if err := syscall.Mkfifo(filepath.Join(fifoCkpt, "model.safetensors"), 0o644); err != nil {
		t.Fatal(err)
	}
	dirCkpt := filepath.Join(tmp, "dir-ckpt")
	copyDir(t, stories, dirCkpt)
	os.Remove(filepath.Join(dirCkpt, "model.safetensors"))
	os.Mkdir(filepath.Join(dirCkpt, "model.safetensors"), 0o755)
	dotCkpt := filepath.Join(tmp, "dot-ckpt")
	copyDir(t, stories, dotCkpt)
	os.WriteFile(filepath.Join(dotCkpt, "model.safetensors.index.json"), []byte(`{"weight_map":{"model.norm.weight":"."}}`), 0o644)

	before := treeSum(t, ckpt)
	p := []string{"--prompt", "Lily", ckpt}
	cases := []struct {
		args []string
		code int
		msg  string
	}{
		// urfave/cli's own usage errors: one line, no help.
		{[]string{"record", ckpt, "--bogus"}, exitUsage, "record: flag provided but not defined: -bogus"},
		{[]string{"record", ckpt, "--data", data}, exitUsage, `record: Required flag "out" not set`},
		{[]string{"stats", "merge", st, st}, exitUsage, `stats merge: Required flag "out" not set`},
		{[]string{"nope"}, exitUsage, `unknown command "nope"`},
		{[]string{"stats", "nope"}, exitUsage, `stats: unknown command "nope"`},
		{append([]string{"generate", "-n", "abc"}, p...), exitUsage, `invalid value "abc" for flag -n`},
		{[]string{"--bogus"}, exitUsage, "flag provided but not defined: -bogus"},
		// Negative and out-of-range values.
		{append([]string{"generate", "-n", "-5"}, p...), exitUsage, "max tokens -5 is negative"},
		{append([]string{"generate", "--top-k", "-1"}, p...), exitUsage, "top-k -1"},
		{append([]string{"generate", "--top-p", "2"}, p...), exitUsage, "top-p 2"},
		{append([]string{"generate", "--temperature", "-1"}, p...), exitUsage, "temperature -1"},
		{append([]string{"logits", "--top", "-1"}, p...), exitUsage, "top -1"},
		{append([]string{"lens", "--top", "-1"}, p...), exitUsage, "top -1"},
		{[]string{"locate", "--method", "dape", "--top-rate", "7", st, "--out", filepath.Join(tmp, "x.json")}, exitUsage, "top_rate 7"},
		{[]string{"locate", "--method", "miner", "--ratio", "-0.5", st, "--out", filepath.Join(tmp, "x.json")}, exitUsage, "ratio -0.5"},
		{[]string{"locate", "--method", "miner", "--strategy", "la_mu", st, "--out", filepath.Join(tmp, "x.json")}, exitUsage, `strategy "la_mu"`},
		{[]string{"locate", "--method", "miner", "--weights", "1,2", st, "--out", filepath.Join(tmp, "x.json")}, exitUsage, "weights takes 5 numbers"},
		{[]string{"locate", "--method", "contrib", "--top-k", "-1", st, "--out", filepath.Join(tmp, "x.json")}, exitUsage, "top_k -1"},
		{[]string{"locate", "--method", "magic", st, "--out", filepath.Join(tmp, "x.json")}, exitUsage, `method "magic"`},
		{[]string{"locate", "--method", "contrib", "--module", "vision", st, "--out", filepath.Join(tmp, "x.json")}, exitUsage, "only the language model (llm)"},
		{[]string{"locate", "--method", "miner", "--module", "llm", "--module", "vision", st, "--out", filepath.Join(tmp, "x.json")}, exitUsage, "selects in one module"},
		{[]string{"attribute", "--top-k", "-1", ckpt, "--data", data, "--concept", "Lily", "--out", filepath.Join(tmp, "ig.json")}, exitUsage, "top_k -1"},
		{[]string{"attribute", "--steps", "-1", ckpt, "--data", data, "--concept", "Lily", "--out", filepath.Join(tmp, "ig.json")}, exitUsage, "steps -1"},
		{[]string{"neurons", "show", "--top", "-1", nj}, exitUsage, "top -1"},
		{[]string{"neurons", "show", "--limit", "-1", nj}, exitUsage, "--limit -1"},
		{[]string{"verify", ckpt, "--edit", nsd, "--bench", data, "--max-tokens", "-1"}, exitUsage, "max tokens -1"},
		{[]string{"synth", ckpt, "--shard-size", "-1", "--out", filepath.Join(tmp, "sy")}, exitUsage, `size "-1"`},
		{[]string{"record", ckpt, "--data", data, "--shard", "4/4", "--out", filepath.Join(tmp, "sh.st")}, exitUsage, "--shard: locate: shard: 4/4: want 0 ≤ index < count"},
		{[]string{"record", ckpt, "--data", data, "--shard", "-1/4", "--out", filepath.Join(tmp, "sh.st")}, exitUsage, "--shard: locate: shard: -1/4"},
		{[]string{"record", ckpt, "--data", data, "--shard", "two", "--out", filepath.Join(tmp, "sh.st")}, exitUsage, `"two" is not INDEX/COUNT`},
		// Gates, ops and swaps are checked before anything runs.
		{[]string{"verify", ckpt, "--edit", nsd, "--bench", data, "--gate", "klx0.5"}, exitUsage, `gate "klx0.5": want METRIC<VALUE`},
		{[]string{"verify", ckpt, "--edit", nsd, "--bench", data, "--gate", "kll<0.5"}, exitUsage, `no metric "kll"`},
		{[]string{"verify", ckpt, "--edit", nsd, "--bench", data, "--swap", "Lily>Tim>Bob"}, exitUsage, "want SOURCE>TARGET"},
		{[]string{"patch", ckpt, "--neurons", nj, "--op", "swap:Lily>Tim>Bob", "--out", filepath.Join(tmp, "s.nsd")}, exitUsage, "want SOURCE>TARGET"},
		{[]string{"patch", ckpt, "--neurons", nj, "--op", "zap", "--out", filepath.Join(tmp, "s.nsd")}, exitUsage, `"zap"`},
		{[]string{"patch", ckpt, "--neurons", nj, "--op", "noise:-1", "--out", filepath.Join(tmp, "s.nsd")}, exitUsage, "σ must be ≥ 0"},
		// Swap words that are not one token: refused with their pieces.
		{[]string{"patch", ckpt, "--neurons", nj, "--op", "swap:Lily>Zzyzx", "--out", filepath.Join(tmp, "s.nsd")}, exitError, `swap target "Zzyzx": not one token: it is 6 tokens (▁|Z|z|y|z|x)`},
		{[]string{"patch", ckpt, "--neurons", nj, "--op", "swap:Lily>Bartholomew", "--out", filepath.Join(tmp, "s.nsd")}, exitError, `"Bartholomew": not one token: it is 9 tokens (▁B|`},
		{[]string{"verify", ckpt, "--edit", nsd, "--bench", data, "--swap", "Lily>Zzyzx"}, exitError, `"Zzyzx": not one token`},
		// A neuron set made on another model.
		{[]string{"patch", ckpt, "--neurons", other, "--op", "zero", "--out", filepath.Join(tmp, "o.nsd")}, exitError, "neuron set from another model: its model's llm FFN is 24 layers × 4864 neurons, this checkpoint's is 5 × 172"},
		{[]string{"neurons", "show", "--ckpt", ckpt, other}, exitError, "neuron set from another model"},
		// Outputs that would overwrite or nest into an input.
		{[]string{"record", ckpt, "--data", data, "--out", filepath.Join(ckpt, "model.safetensors")}, exitUsage, "is inside the input directory"},
		{[]string{"record", ckpt, "--data", data, "--out", data}, exitUsage, "is the input"},
		{[]string{"verify", ckpt, "--edit", nsd, "--bench", data, "--out", filepath.Join(ckpt, "config")}, exitUsage, "config.json is inside the input directory"},
		{[]string{"patch", ckpt, "--neurons", nj, "--op", "zero", "--out", filepath.Join(ckpt, "tokenizer.json")}, exitUsage, "is inside the input directory"},
		{[]string{"patch", ckpt, "--neurons", nj, "--op", "zero", "--out", nj}, exitUsage, "is the input"},
		{[]string{"write", ckpt, "--edit", nsd, "--out", filepath.Join(ckpt, "edited")}, exitUsage, "is inside the input directory"},
		{[]string{"apply", ckpt, nsd, "--out", filepath.Join(ckpt, "edited")}, exitUsage, "is inside the input directory"},
		{[]string{"diff", ckpt, ckpt, "--out", filepath.Join(ckpt, "x.nsd")}, exitUsage, "is inside the input directory"},
		{[]string{"stats", "merge", st, st, "--out", st}, exitUsage, "is the input"},
		{[]string{"locate", "--method", "dape", st, "--out", st}, exitUsage, "is the input"},
		{[]string{"locate", "--method", "dape", st, "--out", filepath.Join(tmp, "y.json"), "--plot", st}, exitUsage, "is the input"},
		{[]string{"attribute", ckpt, "--data", data, "--concept", "Lily", "--out", filepath.Join(ckpt, "ig.json")}, exitUsage, "is inside the input directory"},
		{[]string{"synth", ckpt, "--out", filepath.Join(ckpt, "synth")}, exitUsage, "is inside the input directory"},
		{[]string{"synth", "--convert", "bf16", ckpt, "--out", filepath.Join(ckpt, "bf16")}, exitUsage, "is inside the input directory"},
		// Bad samples, each with FILE:LINE.
		{[]string{"record", ckpt, "--data", badUTF8, "--out", filepath.Join(tmp, "u.st")}, exitError, badUTF8 + ":1: samples: invalid line: invalid UTF-8 at byte 13"},
		{[]string{"record", ckpt, "--data", twoObjects, "--out", filepath.Join(tmp, "u.st")}, exitError, twoObjects + ":1: samples: invalid line: more after the JSON object"},
		{[]string{"record", ckpt, "--data", empty, "--out", filepath.Join(tmp, "u.st")}, exitError, empty + ": samples: invalid line: no samples"},
		{[]string{"record", ckpt, "--data", dirCkpt + "/model.safetensors", "--out", filepath.Join(tmp, "u.st")}, exitError, "a directory, not a samples file"},
		// Files that are not regular files, and a shard named ".".
		{[]string{"inspect", fifoCkpt}, exitError, "model.safetensors: not a regular file: it is a named pipe"},
		{[]string{"inspect", dirCkpt}, exitError, "model.safetensors: not a regular file: it is a directory"},
		{[]string{"inspect", dotCkpt}, exitError, `model.safetensors.index.json: hfdir: index does not match the shards: shard name "."`},
		{[]string{"locate", "--method", "contrib", "--layers", "9", st, "--out", filepath.Join(tmp, "x.json")}, exitError, "layer 9: the stats have 5 layers"},
		{[]string{"locate", "--method", "dape", "--module", "vision", st, "--out", filepath.Join(tmp, "x.json")}, exitError, `no module "vision" (they hold llm)`},
		{[]string{"locate", "--method", "dape", "--module", "encoder", st, "--out", filepath.Join(tmp, "x.json")}, exitError, `no module "vision" (they hold llm)`},
		{[]string{"locate", "--method", "miner", "--module", "all", st, "--out", filepath.Join(tmp, "x.json")}, exitUsage, "module all selects in every recorded module"},
		{[]string{"locate", "--method", "dape", "--module", "all", "--module", "llm", st, "--out", filepath.Join(tmp, "x.json")}, exitUsage, "dape only, and alone"},
		{[]string{"stats", "export", st, "--by-modality"}, exitError, st + ": locate: stats: no MINER scores recorded (record --miner)"},
		// Media options: a flag that names no file is a usage error; media a text model
		// cannot take, or a file that is missing, an error naming it.
		{append([]string{"logits", "--image", ""}, p...), exitUsage, "--image: an empty path"},
		{append([]string{"generate", "--video", "f1.png,,f3.png"}, p...), exitUsage, `--video: entry 2 of "f1.png,,f3.png" is empty`},
		{append([]string{"lens", "--video", ","}, p...), exitUsage, "--video: entry 1"},
		{append([]string{"logits", "--image", filepath.Join(tmp, "cat.png")}, p...), exitError, "prompt has image input, but LlamaForCausalLM takes text only"},
		{append([]string{"generate", "--audio", filepath.Join(tmp, "a.wav")}, p...), exitError, "prompt has audio input"},
	}
	for _, c := range cases {
		type result struct {
			out, errs string
			code      int
		}
		done := make(chan result, 1)
		go func() {
			out, errs, code := runCLI(t, c.args...)
			done <- result{out, errs, code}
		}()
		var r result
		select {
		case r = <-done:
		case <-time.After(30 * time.Second):
			t.Fatalf("%v: hangs", c.args)
		}
		if r.code != c.code || !strings.Contains(r.errs, c.msg) {
			t.Errorf("%v: exit %d %q, want %d mentioning %q", c.args, r.code, r.errs, c.code, c.msg)
			continue
		}
		if n := strings.Count(r.errs, "\n"); n != 1 || !strings.HasPrefix(r.errs, "neurosurg: ") {
			t.Errorf("%v: stderr is %d lines, want one:\n%s", c.args, n, r.errs)
		}
		if c.code == exitUsage && (r.out != "" || !strings.HasPrefix(r.errs, "neurosurg: usage: ")) {
			t.Errorf("%v: a usage error printed %q on stdout, %q on stderr", c.args, r.out, r.errs)
		}
	}
	if treeSum(t, ckpt) != before {
		t.Error("the battery changed the input checkpoint")
	}
	for _, f := range []string{nj, st, data} {
		if fi, err := os.Stat(f); err != nil || fi.Size() == 0 {
			t.Errorf("input %s lost: %v", f, err)
		}
	}
}
