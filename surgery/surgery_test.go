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
