package surgery

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/neurosurg/neurosurg/formats/neuronset"
	"github.com/neurosurg/neurosurg/formats/recipe"
	"github.com/neurosurg/neurosurg/formats/safetensors"
	"github.com/neurosurg/neurosurg/verify"
)

// writeRecipe puts a copy of the domain-masking example in dir, pointing at the repo's files.
func writeRecipe(t *testing.T, dir, ops, gates string) string {
	t.Helper()
	abs, _ := filepath.Abs("../testdata")
	r := `model: ` + abs + `/stories260K
out: out/ckpt
data: ` + abs + `/samples/stories-animals-food.jsonl
locate: {method: dape, top_rate: 0.05, label: animals}
patch: {ops: [` + ops + `]}
verify: {max_tokens: 8, random_seed: 1, gates: [` + gates + `]}
`
	p := filepath.Join(dir, "r.yaml")
	if err := os.WriteFile(p, []byte(r), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestSurgeryIsReproducibleAndCached(t *testing.T) {
	var outs []string
	for i := 0; i < 2; i++ {
		dir := t.TempDir()
		res, err := Run(context.Background(), writeRecipe(t, dir, "zero", `"kl<1"`), Options{})
		if err != nil {
			t.Fatal(err)
		}
		if !res.Written || len(res.Cached) != 0 {
			t.Fatalf("run %d: written %v cached %v", i, res.Written, res.Cached)
		}
		outs = append(outs, res.Out)
	}
	for _, f := range []string{"model.safetensors", "README.md", "neurosurg.provenance.json", "config.json"} {
		a, _ := os.ReadFile(filepath.Join(outs[0], f))
		b, _ := os.ReadFile(filepath.Join(outs[1], f))
		if len(a) == 0 || !bytes.Equal(a, b) {
			t.Errorf("%s differs between two runs of the same recipe", f)
		}
	}
	// Changing only the op reuses record and locate.
	dir := filepath.Dir(filepath.Dir(outs[0]))
	os.RemoveAll(outs[0])
	p := writeRecipe(t, dir, `"scale:0.5"`, `"kl<1"`)
	res, err := Run(context.Background(), p, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.Cached, []string{"record", "locate"}) {
		t.Errorf("cached stages %v, want record and locate", res.Cached)
	}
}

func TestFailingGateWritesNothing(t *testing.T) {
	dir := t.TempDir()
	res, err := Run(context.Background(), writeRecipe(t, dir, "zero", `"kl<0.000001"`), Options{})
	if !errors.Is(err, verify.ErrGate) || !strings.Contains(err.Error(), "no checkpoint written") {
		t.Fatalf("err = %v", err)
	}
	if _, serr := os.Stat(res.Out); !os.IsNotExist(serr) {
		t.Error("a checkpoint was written although the gate failed")
	}
	// --force writes it and says so in the provenance.
	res, err = Run(context.Background(), writeRecipe(t, dir, "zero", `"kl<0.000001"`), Options{Force: true})
	if !errors.Is(err, verify.ErrGate) || !res.Written || !res.Forced {
		t.Fatalf("force: err %v written %v", err, res.Written)
	}
	prov, _ := os.ReadFile(filepath.Join(res.Out, "neurosurg.provenance.json"))
	if !strings.Contains(string(prov), `"forced": true`) {
		t.Error("provenance does not record --force")
	}
}

// The swap example on the real stories260K: the edited model stops writing the source name
// and writes the target, on held-out prompts, with small KL on unrelated prompts, and the same
// op on random neurons of the same per-layer size does not.
func TestStoriesSwapExample(t *testing.T) {
	dir := t.TempDir()
	b, err := os.ReadFile("../examples/stories-swap.yaml")
	if err != nil {
		t.Fatal(err)
	}
	abs, _ := filepath.Abs("..")
	r := strings.NewReplacer("model: ../testdata", "model: "+abs+"/testdata", "out: ../out/stories-lily-to-tim", "out: out/ckpt",
		"data: stories-", "data: "+abs+"/examples/stories-", "bench: stories-", "bench: "+abs+"/examples/stories-").Replace(string(b))
	p := filepath.Join(dir, "swap.yaml")
	os.WriteFile(p, []byte(r), 0o644)
	res, err := Run(context.Background(), p, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ed, rnd := res.Report.Metrics["edited"], res.Report.Metrics["random"]
	t.Logf("edited %v\nrandom %v", ed, rnd)
	if ed["source_positions"] < 10 {
		t.Fatalf("only %v source positions in the bench", ed["source_positions"])
	}
	if ed["efficacy"] < 0.9 || ed["swap_rate"] < 0.5 || ed["target_prob_rise"] <= 0 || ed["source_prob_drop"] <= 0 {
		t.Errorf("swap did not take: %v", ed)
	}
	if ed["generated_target"] <= ed["generated_source"] || ed["generated_source"] >= res.Report.Metrics["base"]["generated_source"] {
		t.Errorf("free generations: source %v target %v (base source %v)", ed["generated_source"], ed["generated_target"], res.Report.Metrics["base"]["generated_source"])
	}
	if ed["kl"] > 0.1 {
		t.Errorf("KL on control prompts %v", ed["kl"])
	}
	if rnd["efficacy"] >= ed["efficacy"] || rnd["swap_rate"] >= ed["swap_rate"] {
		t.Errorf("random baseline does as well: %v", rnd)
	}
}

// A bad value anywhere in the recipe fails before any stage runs: no work directory, no
// stats, and the message names the recipe and the value.
func TestRecipeCheckedBeforeAnyStage(t *testing.T) {
	abs, _ := filepath.Abs("../testdata")
	for _, c := range []struct {
		name, ops, gates, extra, msg string
	}{
		{"gate syntax", "zero", `"klx0.5"`, "", `gate "klx0.5"`},
		{"gate metric", "zero", `"kll<0.5"`, "", `no metric "kll"`},
		{"op", `"swap:Lily>Tim>Bob"`, "", "", "swap:Lily>Tim>Bob"},
		{"op kind", "zap", "", "", `"zap"`},
		{"swap word", `"swap:Lily>Zzyzx"`, "", "", `"Zzyzx": not one token`},
		{"set file", `"set:vectors.safetensors"`, "", "", "vectors.safetensors"},
		{"top_rate", "zero", "", "top_rate: 7", "top_rate 7"},
		{"another method's key", "zero", "", "top_k: 5", "top_k does not apply to method dape"},
		{"like file", "zero", "", "like: missing.json", "locate.like"},
		{"bench", "zero", "", "", "missing.jsonl"},
		{"out into the model", "zero", "", "", "is inside the input directory"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			locate := "{method: dape, label: animals}"
			if c.extra != "" {
				locate = "{method: dape, " + c.extra + "}"
			}
			out, verifyExtra := "out/ckpt", ""
			switch c.name {
			case "bench":
				verifyExtra = "bench: missing.jsonl, "
			case "out into the model":
				out = abs + "/stories260K/edited"
			}
			r := "model: " + abs + "/stories260K\nout: " + out + "\ndata: " + abs + "/samples/stories-animals-food.jsonl\n" +
				"locate: " + locate + "\npatch: {ops: [" + c.ops + "]}\nverify: {" + verifyExtra + "max_tokens: 4, gates: [" + c.gates + "]}\n"
			p := filepath.Join(dir, "r.yaml")
			os.WriteFile(p, []byte(r), 0o644)
			_, err := Run(context.Background(), p, Options{})
			if err == nil || !strings.Contains(err.Error(), c.msg) || !strings.Contains(err.Error(), "r.yaml") {
				t.Fatalf("err %v, want one naming r.yaml and %q", err, c.msg)
			}
			if _, err := os.Stat(filepath.Join(dir, "out")); !os.IsNotExist(err) {
				t.Error("the run created its output folder before failing")
			}
			if _, err := os.Stat(abs + "/stories260K/edited.surgery"); !os.IsNotExist(err) {
				t.Error("the run wrote into the model's folder")
			}
		})
	}
}

// set:FILE is resolved against the recipe's folder, not the working directory.
func TestSetPathRelativeToRecipe(t *testing.T) {
	dir := t.TempDir()
	vec := filepath.Join(dir, "vec.safetensors")
	if err := safetensors.WriteFile(vec, []safetensors.Tensor{{Info: safetensors.TensorInfo{Name: "llm.0.0", DType: safetensors.F32, Shape: []int64{1}}, Data: make([]byte, 4)}}, nil); err != nil {
		t.Fatal(err)
	}
	r, err := recipe.Parse([]byte("model: m\nout: o\ndata: d\nlocate: {method: dape}\npatch: {ops: [\"set:vec.safetensors\"]}\n"), "r.yaml")
	if err != nil {
		t.Fatal(err)
	}
	r.Dir = dir
	pl, err := check(r, filepath.Join(dir, "r.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if pl.ops[0].Path != vec {
		t.Errorf("set path %q, want %q", pl.ops[0].Path, vec)
	}
}

// locate.contrib_mode per-sample makes surgery record each sample's first generating step (a
// stats file of its own, not the pooled run's cache) and select one list per sample; a label
// filter keeps one sample's list.
func TestContribPerSampleRecipe(t *testing.T) {
	dir := t.TempDir()
	abs, _ := filepath.Abs("..")
	write := func(mode string) string {
		r := `model: ` + abs + `/testdata/stories260K
out: out/ckpt
data: ` + abs + `/examples/stories-generated.jsonl
record: {concepts: [Lily]}
locate: {method: contrib, top_k: 12, contrib_mode: ` + mode + `, label: "` + map[string]string{"pooled": "Lily", "per-sample": "Lily@gen-1"}[mode] + `"}
patch: {ops: [zero]}
verify: {bench: ` + abs + `/examples/stories-swap-bench.jsonl, max_tokens: 2, random_seed: 1}
`
		p := filepath.Join(dir, "r.yaml")
		if err := os.WriteFile(p, []byte(r), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	pooled, err := Run(context.Background(), write("pooled"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	os.RemoveAll(pooled.Out)
	res, err := Run(context.Background(), write("per-sample"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(res.Cached, "record") || res.Files["stats"] == pooled.Files["stats"] {
		t.Errorf("per-sample mode reused the pooled stats (cached %v)", res.Cached)
	}
	set, err := neuronset.ReadFile(res.Files["neurons"])
	if err != nil {
		t.Fatal(err)
	}
	if len(set.Neurons) != 12 || set.Neurons[0].Label != "Lily@gen-1" || set.Params["mode"] != "per-sample" {
		t.Errorf("%d neurons, label %q, params %v", len(set.Neurons), set.Neurons[0].Label, set.Params)
	}
}
