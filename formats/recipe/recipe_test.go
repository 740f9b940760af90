package recipe

import (
	"errors"
	"strings"
	"testing"
)

const good = `model: ../testdata/stories260K
out: out/x
data: d.jsonl
locate: {method: contrib, top_k: 10}
patch: {ops: ["swap:Lily>Tim"]}
verify: {bench: b.jsonl, gates: ["kl<0.1"]}
`

func TestParse(t *testing.T) {
	r, err := Parse([]byte(good), "r.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if r.Locate.TopK != 10 || r.Patch.Ops[0] != "swap:Lily>Tim" || r.Verify.Gates[0] != "kl<0.1" {
		t.Errorf("%+v", r)
	}
	r, err = Parse([]byte(strings.Replace(good, "top_k: 10", "contrib_mode: per-sample, activation_bar_ratio: 0.9", 1)), "r.yaml")
	if err != nil || r.Locate.ContribMode != "per-sample" || r.Locate.ActivationBarRatio != 0.9 {
		t.Errorf("locate %+v, err %v", r.Locate, err)
	}
	r, err = Parse([]byte(strings.Replace(good, "{method: contrib, top_k: 10}", "{method: random, like: set.json, seed: 2}", 1)), "r.yaml")
	if err != nil || r.Locate.Like != "set.json" || r.Locate.Method != "random" {
		t.Errorf("locate %+v, err %v", r.Locate, err)
	}
	for bad, want := range map[string]string{
		strings.Replace(good, "top_k", "topk", 1):                        "topk",
		strings.Replace(good, "contrib", "magic", 1):                     "locate.method",
		strings.Replace(good, "model: ../testdata/stories260K\n", "", 1): "model is required",
		"model: [": "r.yaml",
		strings.Replace(good, "top_k: 10}", "top_k: 10}\nrecord: {coefficient: ua}", 1):         "record.coefficient",
		strings.Replace(good, "top_k: 10}", "top_k: 10}\nrecord: {concepts: [Lily, \" \"]}", 1): "empty word",
		strings.Replace(good, "gates:", "max_tokens: -1, gates:", 1):                            "max_tokens -1",
		good + "---\nmodel: other\n":                               "more than one YAML document",
		strings.Replace(good, "top_k: 10", "contrib_mode: sum", 1): "locate.contrib_mode",
	} {
		_, err := Parse([]byte(bad), "r.yaml")
		if !errors.Is(err, ErrRecipe) || !strings.Contains(err.Error(), want) {
			t.Errorf("err %v, want %q", err, want)
		}
	}
}

func FuzzRecipe(f *testing.F) {
	f.Add(good)
	f.Fuzz(func(t *testing.T, s string) {
		r, err := Parse([]byte(s), "fuzz")
		if err == nil && (r.Model == "" || len(r.Patch.Ops) == 0) {
			t.Fatal("accepted a recipe without model or ops")
		}
	})
}
