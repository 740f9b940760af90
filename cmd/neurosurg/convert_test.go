package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestConvertCLI: the convert command maps the library's verdicts to exit codes and writes
// what formats/convert returns.
func TestConvertCLI(t *testing.T) {
	td := "../../formats/convert/testdata"
	out := filepath.Join(t.TempDir(), "tv.jsonl")
	stdout, stderr, code := runCLI(t, "convert", "textvqa", td+"/textvqa/TextVQA_0.5.1_val.json", "--images", td+"/textvqa/train_images", "--out", out, "--limit", "1", "--label", "ocr")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if !strings.Contains(stdout, "wrote 1 samples") {
		t.Errorf("stdout %q", stdout)
	}
	b, _ := os.ReadFile(out)
	want := `{"id":"textvqa-34602","text":"what is the brand of this camera?","image":"` + td + `/textvqa/train_images/003a8ae2ef43b901.jpg","label":"ocr","dataset":"text_vqa","answer":"dakota"}` + "\n"
	if string(b) != want {
		t.Errorf("wrote\n%s\nwant\n%s", b, want)
	}
	for _, c := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"convert", "textvqa"}, exitUsage, "FORMAT INPUT"},
		{[]string{"convert", "gqa", "x.json", "--out", out}, exitUsage, `unknown format "gqa"`},
		{[]string{"convert", "textvqa", "x.json"}, exitUsage, "--out is required"},
		{[]string{"convert", "textvqa", out, "--out", out}, exitUsage, "is the input"},
		{[]string{"convert", "textvqa", td + "/textvqa/TextVQA_0.5.1_val.json", "--images", t.TempDir(), "--out", out + "2"}, exitError, "TextVQA_0.5.1_val.json:3: image"},
	} {
		_, stderr, code := runCLI(t, c.args...)
		if code != c.code || !strings.Contains(stderr, c.msg) || strings.Count(stderr, "\n") != 1 {
			t.Errorf("%v: exit %d, stderr %q; want exit %d and one line with %q", c.args, code, stderr, c.code, c.msg)
		}
	}
	if _, err := os.Stat(out + "2"); err == nil {
		t.Error("a failed conversion left its output")
	}
}
