package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/neurosurg/neurosurg/formats/neuronset"
)

// The CLI and a recipe go through the same stages (package pipeline): the same method and
// parameters on the same stats give the same neuron set byte for byte, and the same record
// options the same stats file. (They once disagreed: random meant a different draw in each,
// and ig existed only in recipes.)
func TestCLIAndRecipeAgree(t *testing.T) {
	abs, _ := filepath.Abs("../..")
	animals := abs + "/testdata/samples/stories-animals-food.jsonl"
	generated := abs + "/examples/stories-generated.jsonl"
	bench := abs + "/examples/stories-swap-bench.jsonl"
	tmp := t.TempDir()
	like := filepath.Join(tmp, "like.json") // the first case's set, the random case's like
	for _, c := range []struct {
		name, data, record, locate string
		recordFlags, locateFlags   []string
	}{
		{"dape", animals, "{}", "{method: dape, top_rate: 0.05, label: animals}",
			nil, []string{"--method", "dape", "--top-rate", "0.05", "--label", "animals"}},
		{"contrib", generated, "{concepts: [Lily], coefficient: au}", "{method: contrib, top_k: 20, layers: [3, 4]}",
			[]string{"--concept", "Lily", "--au"}, []string{"--method", "contrib", "--top-k", "20", "--layers", "3,4"}},
		{"contrib per-sample", generated, "{concepts: [Lily]}", "{method: contrib, top_k: 5, contrib_mode: per-sample, label: Lily@gen-1}",
			[]string{"--concept", "Lily", "--per-sample"}, []string{"--method", "contrib", "--top-k", "5", "--contrib-mode", "per-sample", "--label", "Lily@gen-1"}},
		{"miner", animals, "{miner: true}", "{method: miner, ratio: 0.03, strategy: LU_MA, weights: [0, 0.5, 0.5, 0, 0]}",
			[]string{"--miner"}, []string{"--method", "miner", "--ratio", "0.03", "--strategy", "LU_MA", "--weights", "0,0.5,0.5,0,0"}},
		{"random", animals, "{}", "{method: random, like: " + like + ", seed: 5}",
			nil, []string{"--method", "random", "--like", like, "--seed", "5"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			recipe := filepath.Join(dir, "r.yaml")
			os.WriteFile(recipe, []byte("model: "+abs+"/testdata/stories260K\nout: ed\ndata: "+c.data+"\nrecord: "+c.record+"\nlocate: "+c.locate+
				"\npatch: {ops: [zero]}\nverify: {bench: "+bench+", max_tokens: 1, random_seed: 3}\n"), 0o644)
			if _, errs, code := runCLI(t, "surgery", recipe); code != 0 {
				t.Fatalf("surgery: %d %s", code, errs)
			}
			work := filepath.Join(dir, "ed.surgery")
			stats := only(t, work, "stats-*.st")
			neurons := only(t, work, "neurons-[0-9a-f]*.json")
			random := only(t, work, "neurons-random-*.json")

			// record
			st := filepath.Join(dir, "cli.st")
			if _, errs, code := runCLI(t, append([]string{"record", stories, "--data", c.data, "--out", st}, c.recordFlags...)...); code != 0 {
				t.Fatalf("record: %d %s", code, errs)
			}
			same(t, "stats", st, stats)

			// locate, and the random baseline the recipe drew beside it
			out := filepath.Join(dir, "cli.json")
			if _, errs, code := runCLI(t, append([]string{"locate", stats, "--out", out}, c.locateFlags...)...); code != 0 {
				t.Fatalf("locate: %d %s", code, errs)
			}
			same(t, "neurons", out, neurons)
			rnd := filepath.Join(dir, "cli-random.json")
			if _, errs, code := runCLI(t, "locate", "--method", "random", "--like", out, "--seed", "3", stats, "--out", rnd); code != 0 {
				t.Fatalf("locate random: %d %s", code, errs)
			}
			same(t, "random baseline", rnd, random)
			if c.name == "dape" {
				b, _ := os.ReadFile(out)
				os.WriteFile(like, b, 0o644)
			}
		})
	}
}

// attribute is locate's method ig: the same neurons as a recipe's locate.method ig.
func TestAttributeIsRecipeIG(t *testing.T) {
	abs, _ := filepath.Abs("../..")
	dir := t.TempDir()
	// Two samples, two occurrences of the concept: ig costs a backward per layer, step and
	// occurrence.
	data := filepath.Join(dir, "lily.jsonl")
	os.WriteFile(data, []byte(`{"id": "a", "text": "There was a girl named Lily. She liked the sun.", "label": "s"}
{"id": "b", "text": "One day Lily went to the park.", "label": "s"}
`), 0o644)
	recipe := filepath.Join(dir, "r.yaml")
	os.WriteFile(recipe, []byte("model: "+abs+"/testdata/stories260K\nout: ed\ndata: "+data+
		"\nrecord: {concepts: [Lily]}\nlocate: {method: ig, top_k: 8}\npatch: {ops: [zero]}\nverify: {max_tokens: 1}\n"), 0o644)
	if _, errs, code := runCLI(t, "surgery", recipe); code != 0 {
		t.Fatalf("surgery: %d %s", code, errs)
	}
	out := filepath.Join(dir, "ig.json")
	if _, errs, code := runCLI(t, "attribute", stories, "--data", data, "--concept", "Lily", "--top-k", "8", "--out", out); code != 0 {
		t.Fatalf("attribute: %d %s", code, errs)
	}
	a, err := neuronset.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	b, err := neuronset.ReadFile(only(t, filepath.Join(dir, "ed.surgery"), "neurons-[0-9a-f]*.json"))
	if err != nil {
		t.Fatal(err)
	}
	// ig's scores differ in their last bits between runs (model/ig.go's spago backward), so
	// the sets agree on everything but those bits.
	if a.Method != "ig" || a.Method != b.Method || len(a.Neurons) != 8 || len(b.Neurons) != 8 || a.ModelSHA256 != b.ModelSHA256 || a.StatsSHA256 != b.StatsSHA256 {
		t.Fatalf("attribute %s %d %q %q, recipe %s %d %q %q", a.Method, len(a.Neurons), a.ModelSHA256, a.StatsSHA256, b.Method, len(b.Neurons), b.ModelSHA256, b.StatsSHA256)
	}
	for i := range a.Neurons {
		if x, y := a.Neurons[i], b.Neurons[i]; x.Layer != y.Layer || x.Index != y.Index || x.Label != y.Label {
			t.Errorf("neuron %d: attribute %+v, recipe %+v", i, x, y)
		}
	}
	if _, errs, code := runCLI(t, "locate", "--method", "ig", only(t, filepath.Join(dir, "ed.surgery"), "stats-*.st"), "--out", filepath.Join(dir, "x.json")); code != exitUsage || !strings.Contains(errs, "neurosurg attribute") {
		t.Errorf("locate --method ig: %d %s", code, errs)
	}
}

func only(t *testing.T, dir, pattern string) string {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join(dir, pattern))
	if len(m) != 1 {
		t.Fatalf("%s in %s: %v", pattern, dir, m)
	}
	return m[0]
}

func same(t *testing.T, what, cli, recipe string) {
	t.Helper()
	a, err := os.ReadFile(cli)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(recipe)
	if err != nil {
		t.Fatal(err)
	}
	if len(a) == 0 || !bytes.Equal(a, b) {
		t.Errorf("%s: the CLI's (%d bytes) and the recipe's (%d bytes) differ:\n%.600s\n%.600s", what, len(a), len(b), a, b)
	}
}
