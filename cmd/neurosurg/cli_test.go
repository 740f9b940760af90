package main

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files")

const stories = "../../testdata/stories260K"

func runCLI(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), append([]string{"neurosurg"}, args...), &out, &errb)
	return out.String(), errb.String(), code
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		os.MkdirAll("testdata", 0o755)
		os.WriteFile(path, []byte(got), 0o644)
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs from golden:\n got %s\nwant %s", name, got, want)
	}
}

func TestJSONGoldens(t *testing.T) {
	for _, c := range []struct {
		name string
		args []string
	}{
		{"inspect.json", []string{"inspect", "--json", stories}},
		{"logits.json", []string{"logits", "--json", "--top", "5", "--prompt", "Once upon a time", stories}},
		{"tokenize.json", []string{"tokenize", "--json", stories, "The cat sat."}},
		{"generate.json", []string{"generate", "--json", "-n", "12", "--prompt", "Lily", stories}},
	} {
		t.Run(c.name, func(t *testing.T) {
			out, errs, code := runCLI(t, c.args...)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, errs)
			}
			golden(t, c.name, strings.ReplaceAll(out, stories, "STORIES"))
		})
	}
}

func TestExitCodes(t *testing.T) {
	tmp := t.TempDir()
	bad := filepath.Join(tmp, "bad")
	os.MkdirAll(bad, 0o755)
	os.WriteFile(filepath.Join(bad, "config.json"), []byte(`{}`), 0o644)
	os.WriteFile(filepath.Join(bad, "model.safetensors"), []byte("short"), 0o644)
	cases := []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"inspect"}, exitUsage, "one argument"},
		{[]string{"inspect", bad}, exitError, "model.safetensors"},
		{[]string{"synth", "--dtype", "q4", stories, "-o", filepath.Join(tmp, "x")}, exitUsage, "dtype"},
		{[]string{"apply", stories, filepath.Join(tmp, "missing.nsd"), "--out", filepath.Join(tmp, "y")}, exitError, "missing.nsd"},
		{[]string{"nope"}, exitUsage, ""},
		{[]string{"--kernels", "sse9", "inspect", stories}, exitUsage, "--kernels sse9"},
		{[]string{"report", "--html", filepath.Join(tmp, "r.html")}, exitUsage, "one or more files"},
		{[]string{"report", "--html", filepath.Join(tmp, "r.html"), filepath.Join(bad, "config.json")}, exitError, "config.json: neither a neuron set"},
	}
	for _, c := range cases {
		_, errs, code := runCLI(t, c.args...)
		if code != c.code || !strings.Contains(errs, c.msg) {
			t.Errorf("%v: exit %d (%q), want %d mentioning %q", c.args, code, errs, c.code, c.msg)
		}
	}
}

// diff → apply through the CLI reproduces the edited checkpoint byte for byte; a second apply
// into the same directory is refused.
func TestDiffApplyCLI(t *testing.T) {
	tmp := t.TempDir()
	recipe := filepath.Join(tmp, "r.yaml")
	abs, _ := filepath.Abs("../../testdata")
	os.WriteFile(recipe, []byte("model: "+abs+"/stories260K\nout: ed\ndata: "+abs+"/samples/stories-animals-food.jsonl\nlocate: {method: dape, top_rate: 0.05}\npatch: {ops: [zero]}\nverify: {max_tokens: 4}\n"), 0o644)
	if _, errs, code := runCLI(t, "surgery", recipe); code != 0 {
		t.Fatalf("surgery: %d %s", code, errs)
	}
	edited := filepath.Join(tmp, "ed")
	// The report verb makes the page from the surgery's stage files.
	files, _ := filepath.Glob(filepath.Join(tmp, "ed.surgery", "*.json"))
	page := filepath.Join(tmp, "page.html")
	if _, errs, code := runCLI(t, append([]string{"report", "--ckpt", stories, "--html", page}, files...)...); code != 0 {
		t.Fatalf("report %v: %d %s", files, code, errs)
	}
	if b, _ := os.ReadFile(page); !bytes.Contains(b, []byte(`id="map"`)) || !bytes.Contains(b, []byte(`id="verify"`)) {
		t.Errorf("report page lacks the neuron map or verify:\n%.2000s", b)
	}
	nsd := filepath.Join(tmp, "e.nsd")
	if _, errs, code := runCLI(t, "diff", stories, edited, "--out", nsd); code != 0 {
		t.Fatalf("diff: %s", errs)
	}
	out, _, _ := runCLI(t, "diff", stories, edited, "--stat")
	if !strings.Contains(out, "down_proj") || !strings.Contains(out, "cols") {
		t.Errorf("--stat:\n%s", out)
	}
	applied := filepath.Join(tmp, "applied")
	if _, errs, code := runCLI(t, "apply", stories, nsd, "--out", applied); code != 0 {
		t.Fatalf("apply: %s", errs)
	}
	a, _ := os.ReadFile(filepath.Join(edited, "model.safetensors"))
	b, _ := os.ReadFile(filepath.Join(applied, "model.safetensors"))
	if !bytes.Equal(a, b) {
		t.Error("apply did not reproduce the surgery's checkpoint")
	}
	if _, errs, code := runCLI(t, "apply", stories, nsd, "--out", applied); code != exitError || !strings.Contains(errs, "exists") {
		t.Errorf("apply into an existing dir: %d %s", code, errs)
	}
	if _, errs, code := runCLI(t, "apply", edited, nsd, "--out", filepath.Join(tmp, "z")); code != exitError || !strings.Contains(errs, "does not match") {
		t.Errorf("apply onto another base: %d %s", code, errs)
	}
}

// stats export names each row's module first, in CSV and JSON.
func TestStatsExportModuleColumn(t *testing.T) {
	tmp := t.TempDir()
	st := filepath.Join(tmp, "s.st")
	if _, errs, code := runCLI(t, "record", stories, "--data", "../../testdata/samples/stories-animals-food.jsonl", "--out", st); code != 0 {
		t.Fatal(errs)
	}
	out, errs, code := runCLI(t, "stats", "export", st, "--csv")
	if code != 0 {
		t.Fatal(errs)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	// stories260K: 5 layers × 172 neurons, 2 labels.
	if lines[0] != "module,label,layer,neuron,probability,mean,max" || len(lines) != 1+2*5*172 || !strings.HasPrefix(lines[1], "llm,animals,0,0,") {
		t.Errorf("csv: %d lines, header %q, first row %q", len(lines), lines[0], lines[1])
	}
	out, errs, code = runCLI(t, "stats", "export", st, "--json")
	if code != 0 || !strings.Contains(out, `"module": "llm",`) {
		t.Errorf("json (exit %d, %s): %.200s", code, errs, out)
	}
}
