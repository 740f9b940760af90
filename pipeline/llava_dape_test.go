package pipeline

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/neurosurg/neurosurg/formats/edit"
	"github.com/neurosurg/neurosurg/formats/hfdir"
	"github.com/neurosurg/neurosurg/formats/safetensors"
	"github.com/neurosurg/neurosurg/formats/samples"
	"github.com/neurosurg/neurosurg/locate"
	"github.com/neurosurg/neurosurg/model/kernels"
	"github.com/neurosurg/neurosurg/model/synth"
)

// MMNeuron's setting on LLaVA-NeXT (issue #15's bar), on the CI-sized checkpoint from the
// reconstructed config: DAPE over two image domains, per module, selects neurons in the vision
// tower and the projector as well as the language model; zeroing them and writing gives a
// checkpoint whose forward equals the runtime mask on an image prompt.
func TestDAPEOnLlavaNextEveryModule(t *testing.T) {
	prev := kernels.Use(exactVariant())
	defer kernels.Use(prev)
	ctx := context.Background()
	dir := t.TempDir()
	ck := filepath.Join(dir, "next")
	if err := synth.Generate("../testdata/configs/llava-next-tiny", ck, synth.Options{DType: safetensors.F32, Seed: 11}); err != nil {
		t.Fatal(err)
	}
	// Two domains of pictures: warm, wide ones and cold, tall ones (different tile grids too).
	var lines string
	for i := range 4 {
		warm := filepath.Join(dir, "warm"+string(rune('a'+i))+".png")
		cold := filepath.Join(dir, "cold"+string(rune('a'+i))+".png")
		writePNG(t, warm, 24+4*i, 12+i, [3]int{220, 60 + 30*i, 20})
		writePNG(t, cold, 10+i, 22+3*i, [3]int{10, 40 + 20*i, 230})
		lines += `{"id":"w` + string(rune('0'+i)) + `","text":"Describe the picture.","image":"` + warm + `","label":"warm"}` + "\n"
		lines += `{"id":"c` + string(rune('0'+i)) + `","text":"Describe the picture.","image":"` + cold + `","label":"cold"}` + "\n"
	}
	sp := filepath.Join(dir, "s.jsonl")
	if err := os.WriteFile(sp, []byte(lines), 0o644); err != nil {
		t.Fatal(err)
	}
	ss, err := samples.ReadFile(sp)
	if err != nil {
		t.Fatal(err)
	}
	m, err := OpenModel(ck)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	st, err := Record(ctx, m, ss, nil, RecordParams{})
	if err != nil {
		t.Fatal(err)
	}
	statsPath := filepath.Join(dir, "st.st")
	if err := st.WriteFile(statsPath); err != nil {
		t.Fatal(err)
	}
	st, hash, err := ReadStats(statsPath)
	if err != nil {
		t.Fatal(err)
	}
	set, err := Locate(ctx, LocateParams{Method: "dape", Modules: []string{"all"}, TopRate: 0.2, FilterRate: 0.9}, LocateInputs{Stats: st, StatsSHA256: hash})
	if err != nil {
		t.Fatal(err)
	}
	perModule := map[string]int{}
	for _, n := range set.Neurons {
		perModule[n.Module]++
	}
	for _, mod := range []string{"vision", "projector", "llm"} {
		if perModule[mod] == 0 {
			t.Errorf("DAPE selected no %s neuron (per module: %v)", mod, perModule)
		}
	}
	ops, _ := ParseOps([]string{"zero"}, 0, nil)
	base, tok, err := OpenForPatch(ck, ops)
	if err != nil {
		t.Fatal(err)
	}
	defer base.Close()
	e, err := Patch(base, tok, set, "dape.json", ops, nil)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out")
	if _, err := edit.Apply(ctx, base, e, out, hfdir.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	written, err := OpenModel(out)
	if err != nil {
		t.Fatal(err)
	}
	defer written.Close()
	in, err := m.BuildInput("sample w0", locate.SamplePrompt(ss[0], false))
	if err != nil {
		t.Fatal(err)
	}
	worst, moved := writtenVsMask(t, m, written, in, set.Neurons)
	if worst > 1e-5 || moved < 1e-4 {
		t.Errorf("written vs runtime mask: %g apart (want ≤ 1e-5); the mask moved the logits by %g (want a change)", worst, moved)
	}
}
