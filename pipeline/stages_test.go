package pipeline

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/neurosurg/neurosurg/formats/neuronset"
	"github.com/neurosurg/neurosurg/patch"
	"github.com/neurosurg/neurosurg/verify"
	"github.com/neurosurg/neurosurg/verify/mmneurons"
)

func TestParseOps(t *testing.T) {
	ops, err := ParseOps([]string{"zero", "scale:0.5", "swap:Lily>Tim", "noise:0.1", "swap:cat>dog:0.5", "set:v.safetensors"}, 4,
		func(p string) string { return filepath.Join("/recipes", p) })
	if err != nil {
		t.Fatal(err)
	}
	if len(ops) != 6 || ops[1].Alpha != 0.5 || ops[3].Seed != 4 || ops[5].Path != "/recipes/v.safetensors" {
		t.Errorf("ops %+v", ops)
	}
	if sw := SwapOp(ops); sw == nil || sw.Src != "cat" || sw.Lambda != 0.5 {
		t.Errorf("swap op %+v, want the last swap", sw)
	}
	if ps := OpPaths(ops); len(ps) != 1 || ps[0] != "/recipes/v.safetensors" {
		t.Errorf("op paths %v", ps)
	}
	if SwapOp(ops[:2]) != nil {
		t.Error("a swap op found among zero and scale")
	}
	for _, c := range []struct{ op, want string }{
		{"zap", `"zap"`}, {"scale:x", `"x" is not a number`}, {"noise:-1", "σ must be ≥ 0"}, {"swap:Lily", "swap:Lily"}, {"set:", "set:FILE"},
	} {
		if _, err := ParseOps([]string{"zero", c.op}, 0, nil); !errors.Is(err, patch.ErrOp) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err %v, want patch.ErrOp naming %q", c.op, err, c.want)
		}
	}
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.safetensors")
	os.WriteFile(bad, []byte("not a safetensors file"), 0o644)
	for _, p := range []string{bad, filepath.Join(dir, "missing.safetensors")} {
		ops, _ := ParseOps([]string{"set:" + p}, 0, nil)
		if err := CheckOpFiles(ops); err == nil || !strings.Contains(err.Error(), p) {
			t.Errorf("set:%s: err %v, want one naming the file", p, err)
		}
	}
	if err := CheckOpFiles(ops[:4]); err != nil {
		t.Errorf("ops without files: %v", err)
	}
}

func TestVerifyOptions(t *testing.T) {
	swap := &patch.Op{Kind: "swap", Src: "Lily", Tgt: "Tim"}
	o, err := VerifyOptions(8, swap, nil, []string{"kl<0.5", "efficacy>0.9"})
	if err != nil || o.MaxTokens != 8 || o.Source != "Lily" || o.Target != "Tim" {
		t.Fatalf("%+v, %v", o, err)
	}
	for _, c := range []struct {
		max     int
		neurons *mmneurons.Options
		gates   []string
		want    string
	}{{-1, nil, nil, "max tokens -1"}, {4, nil, []string{"klx0.5"}, `"klx0.5"`}, {4, nil, []string{"kll<0.5"}, `"kll"`},
		{4, &mmneurons.Options{TopN: -1}, nil, "top-n -1"}} {
		if _, err := VerifyOptions(c.max, nil, c.neurons, c.gates); !errors.Is(err, verify.ErrOption) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%d %v: err %v, want verify.ErrOption naming %q", c.max, c.gates, err, c.want)
		}
	}
}

// An edited variant runs on the base's weights with the edit laid over them; a bad edit file
// is named in the error.
func TestOpenVariantAndVerify(t *testing.T) {
	m, _, st, hash := fixture(t)
	set, err := Locate(context.Background(), LocateParams{Method: "contrib", TopK: 30}, LocateInputs{Stats: st, StatsSHA256: hash})
	if err != nil {
		t.Fatal(err)
	}
	ops, _ := ParseOps([]string{"zero"}, 0, nil)
	e, err := Patch(m.Checkpoint(), m.Tokenizer, set, "set.json", ops, map[string]string{"neurosurg.ops": "zero"})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	ed := filepath.Join(dir, "e.nsd")
	if err := e.WriteFile(ed); err != nil {
		t.Fatal(err)
	}
	bench := recorded.data[:4]
	rep, err := Verify(context.Background(), m, []EditVariant{{Name: "edited", Edit: ed}}, bench, verify.Options{MaxTokens: 2})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Metrics["edited"]["kl"] <= 0 {
		t.Errorf("zeroing 30 neurons changed nothing: %v", rep.Metrics["edited"])
	}
	failed, err := Gates(rep, "edited", []string{"kl<0"})
	if err != nil || !errors.Is(failed, verify.ErrGate) {
		t.Errorf("gate kl<0: failed %v, err %v", failed, err)
	}
	if _, err := Gates(rep, "edited", []string{"efficacy>0.5"}); err == nil {
		t.Error("a gate on a metric the run does not have was answered")
	}
	stem := filepath.Join(dir, "report")
	if err := WriteReport(rep, stem); err != nil {
		t.Fatal(err)
	}
	for _, ext := range ReportExts {
		if fi, err := os.Stat(stem + ext); err != nil || fi.Size() == 0 {
			t.Errorf("%s: %v", ext, err)
		}
	}
	back, err := ReadReport(stem + ".json")
	if err != nil || back.Metrics["edited"]["kl"] != rep.Metrics["edited"]["kl"] {
		t.Errorf("read back %v, %v", back, err)
	}
	os.WriteFile(stem+".json", []byte(`{"metrics": {"base": {}}}`), 0o644)
	if _, err := ReadReport(stem + ".json"); err == nil || !strings.Contains(err.Error(), "no metrics of the edited model") {
		t.Errorf("a report without the edited model: %v", err)
	}
	os.WriteFile(ed, []byte("torn"), 0o644)
	if _, err := OpenVariant(m, ed); err == nil || !strings.Contains(err.Error(), ed) {
		t.Errorf("torn edit: %v", err)
	}
	// A set made on another model is refused by Patch, naming the set.
	set.ModelSHA256, set.Geometry["llm"] = "other", neuronset.Geometry{Layers: 99, Neurons: 1}
	if _, err := Patch(m.Checkpoint(), m.Tokenizer, set, "set.json", ops, nil); err == nil || !strings.HasPrefix(err.Error(), "set.json: ") {
		t.Errorf("set of another model: %v", err)
	}
}
