package main

import (
	"context"
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/neurosurg/neurosurg/formats/edit"
	"github.com/neurosurg/neurosurg/formats/hfdir"
	"github.com/neurosurg/neurosurg/formats/neuronset"
)

// Bad inputs of the kinds issue #12 lists end with the documented exit code and a message
// that names the problem: never exit 0 with garbage, never a panic.
func TestNonFiniteBattery(t *testing.T) {
	tmp := t.TempDir()
	base, err := hfdir.Open(stories)
	if err != nil {
		t.Fatal(err)
	}
	defer base.Close()
	// A checkpoint and an edit whose down_proj of layer 1 is all NaN.
	const nanTensor = "model.layers.1.mlp.down_proj.weight"
	_, b, _ := base.Tensor(nanTensor)
	nan := make([]byte, len(b))
	for i := 0; i < len(nan); i += 4 {
		binary.LittleEndian.PutUint32(nan[i:], math.Float32bits(float32(math.NaN())))
	}
	nanCkpt := filepath.Join(tmp, "nan")
	if _, err := hfdir.Write(context.Background(), base, nanCkpt, hfdir.WriteOptions{Replace: map[string][]byte{nanTensor: nan}}); err != nil {
		t.Fatal(err)
	}
	e, err := edit.Build(base, map[string][]byte{nanTensor: nan}, nil)
	if err != nil {
		t.Fatal(err)
	}
	nanEdit := filepath.Join(tmp, "nan.nsd")
	if err := e.WriteFile(nanEdit); err != nil {
		t.Fatal(err)
	}
	zero, _ := edit.Build(base, map[string][]byte{nanTensor: make([]byte, len(b))}, nil)
	zeroEdit := filepath.Join(tmp, "zero.nsd")
	zero.WriteFile(zeroEdit)
	samples := filepath.Join(tmp, "s.jsonl")
	os.WriteFile(samples, []byte(`{"id":"cat","text":"The cat sat on the mat.","label":"animals"}`+"\n"), 0o644)
	long := strings.Repeat("Once upon a time there was a cat. ", 200) // ~1800 tokens, max_position_embeddings 512
	longSamples := filepath.Join(tmp, "long.jsonl")
	os.WriteFile(longSamples, []byte(`{"id":"short","text":"The cat."}`+"\n"+`{"id":"the-long-one","text":"`+long+`"}`+"\n"), 0o644)
	neurons := filepath.Join(tmp, "n.json")
	set := &neuronset.Set{Version: 1, Method: "manual", Neurons: []neuronset.Neuron{{Module: "llm", Layer: 1, Index: 3}}}
	nb, err := set.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(neurons, nb, 0o644)

	for _, c := range []struct {
		name string
		args []string
		code int
		msg  []string
	}{
		{"generate on NaN weights", []string{"generate", "--prompt", "Lily", nanCkpt}, exitError, []string{"non-finite", nanTensor}},
		{"logits on NaN weights", []string{"logits", "--prompt", "Lily", nanCkpt}, exitError, []string{"non-finite", nanTensor}},
		{"lens on NaN weights", []string{"lens", "--prompt", "Lily", nanCkpt}, exitError, []string{"non-finite"}},
		{"record on NaN weights", []string{"record", nanCkpt, "--data", samples, "--out", filepath.Join(tmp, "st.st")}, exitError, []string{"sample cat", "non-finite"}},
		{"verify gate on a NaN edit", []string{"verify", stories, "--edit", nanEdit, "--bench", samples, "--max-tokens", "4", "--gate", "specificity>0.9"}, exitError, []string{"non-finite", nanTensor}},
		{"patch scale past float32", []string{"patch", stories, "--neurons", neurons, "--op", "scale:1e45", "--out", filepath.Join(tmp, "e.nsd")}, exitError, []string{"non-finite", "scale:1e+45"}},
		{"generate past max_position_embeddings", []string{"generate", "--prompt", long, stories}, exitError, []string{"max_position_embeddings"}},
		{"record past max_position_embeddings", []string{"record", stories, "--data", longSamples, "--out", filepath.Join(tmp, "st2.st")}, exitError, []string{"sample the-long-one", "max_position_embeddings"}},
		{"verify past max_position_embeddings", []string{"verify", stories, "--edit", zeroEdit, "--bench", longSamples, "--max-tokens", "4"}, exitError, []string{"sample the-long-one", "max_position_embeddings"}},
		{"gate with an infinite limit", []string{"verify", stories, "--edit", zeroEdit, "--bench", samples, "--max-tokens", "4", "--gate", "kl<inf"}, exitUsage, []string{"finite"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, errs, code := runCLI(t, c.args...)
			if code != c.code {
				t.Errorf("exit %d, want %d: %s", code, c.code, errs)
			}
			for _, m := range c.msg {
				if !strings.Contains(errs, m) {
					t.Errorf("stderr %q does not mention %q", errs, m)
				}
			}
		})
	}
	for _, f := range []string{"st.st", "st2.st", "e.nsd"} {
		if _, err := os.Stat(filepath.Join(tmp, f)); !os.IsNotExist(err) {
			t.Errorf("%s written by a failed command", f)
		}
	}
}
