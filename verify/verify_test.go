package verify

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/neurosurg/neurosurg/formats/hfdir"
	"github.com/neurosurg/neurosurg/formats/safetensors"
	"github.com/neurosurg/neurosurg/formats/samples"
	"github.com/neurosurg/neurosurg/model"
	"github.com/neurosurg/neurosurg/model/synth"
	"github.com/neurosurg/neurosurg/model/tokenizer"
)

func TestANLS(t *testing.T) {
	cases := []struct {
		pred, ans string
		want      float64
	}{
		{"Paris", "paris", 1},
		{"Pariss", "Paris", 1 - 1.0/6},
		{"London", "Paris", 0}, // NL = 6/6 ≥ 0.5
		{"", "", 1},
	}
	for _, c := range cases {
		if got := ANLS(c.pred, c.ans, 0.5); math.Abs(got-c.want) > 1e-12 {
			t.Errorf("ANLS(%q,%q) = %g, want %g", c.pred, c.ans, got, c.want)
		}
	}
}

func TestGates(t *testing.T) {
	r := &Report{Metrics: map[string]Metrics{"edited": {"kl": 0.02, "efficacy": 0.95}}}
	if err := r.CheckGates("edited", []string{"kl<0.05", "efficacy>0.9"}); err != nil || !r.Passed {
		t.Fatalf("err %v", err)
	}
	r.Gates = nil
	err := r.CheckGates("edited", []string{"kl<0.01"})
	if !errors.Is(err, ErrGate) || r.Passed || !strings.Contains(err.Error(), "kl<0.01 (is 0.02)") {
		t.Errorf("err %v", err)
	}
	if err := r.CheckGates("edited", []string{"klx<1"}); err == nil || !strings.Contains(err.Error(), "no metric") {
		t.Errorf("unknown metric: %v", err)
	}
	if err := r.CheckGates("edited", []string{"kl=1"}); err == nil {
		t.Error("malformed gate accepted")
	}
}

// Verifying a model against itself: KL 0, specificity 1, same perplexity, and multiple choice
// picks the continuation the model itself prefers.
func TestSelfVerify(t *testing.T) {
	m, err := model.Open("../testdata/stories260K")
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	bench := []samples.Sample{
		{ID: "a", Text: "Once upon a time, there was a little girl named", Label: "names"},
		{ID: "b", Text: "Once upon a time, there was a little girl named", Label: "mc", Choices: []string{"table", "Lily"}, Answer: "Lily"},
		{ID: "c", Text: "The dog ran", Label: "x", Control: true},
	}
	r, err := Run(context.Background(), m, []Variant{{Name: "same", Model: m}}, bench, Options{MaxTokens: 6, Source: "Lily", Target: "Tim"})
	if err != nil {
		t.Fatal(err)
	}
	s := r.Metrics["same"]
	if s["kl"] > 1e-9 || s["specificity"] != 1 || s["efficacy"] != 0 || s["mc_accuracy"] != 1 || s["source_positions"] < 1 {
		t.Errorf("self metrics %v", s)
	}
	if math.Abs(s["ppl/names"]-r.Metrics["base"]["ppl/names"]) > 1e-9 {
		t.Error("perplexity differs against itself")
	}
	if !strings.Contains(r.Markdown(), "| mc_accuracy | 1 | 1 |") {
		t.Errorf("markdown:\n%s", r.Markdown())
	}
}

func TestParseGate(t *testing.T) {
	for _, c := range []struct {
		in   string
		want Gate // zero: an error
	}{
		{"kl<0.05", Gate{Text: "kl<0.05", Metric: "kl", Less: true, Limit: 0.05}},
		{"efficacy > 0.9", Gate{Text: "efficacy > 0.9", Metric: "efficacy", Limit: 0.9}},
		{"ppl/animals<6", Gate{Text: "ppl/animals<6", Metric: "ppl/animals", Less: true, Limit: 6}},
		{"klx0.5", Gate{}},
		{"kl", Gate{}},
		{"<0.5", Gate{}},
		{"kl=0.5", Gate{}},
		{"kl<<0.5", Gate{}},
		{"kl<NaN", Gate{}},
		{"kl<inf", Gate{}},
		{"kl<", Gate{}},
		{"kll<0.1", Gate{}},
		{"ppl/<5", Gate{}},
	} {
		g, err := ParseGate(c.in)
		if c.want.Text == "" {
			if !errors.Is(err, ErrOption) || !strings.Contains(err.Error(), c.in) {
				t.Errorf("%q: %v, want an error naming it", c.in, err)
			}
			continue
		}
		if err != nil || g != c.want {
			t.Errorf("%q: %+v %v", c.in, g, err)
		}
	}
}

func TestOptionsValidate(t *testing.T) {
	for _, c := range []struct {
		o  Options
		ok bool
	}{
		{Options{}, true},
		{Options{MaxTokens: 8, Source: "Lily", Target: "Tim"}, true},
		{Options{MaxTokens: -1}, false},
		{Options{Source: "Lily"}, false},
		{Options{Target: "Tim"}, false},
	} {
		if err := c.o.Validate(); (err == nil) != c.ok {
			t.Errorf("%+v: %v", c.o, err)
		}
	}
}

func FuzzParseGate(f *testing.F) {
	for _, s := range []string{"kl<0.05", "efficacy>0.9", "ppl/animals<6", "klx0.5", "kl<<1", "kl<NaN"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		g, err := ParseGate(s)
		if err != nil {
			if !errors.Is(err, ErrOption) {
				t.Fatalf("%q: %v does not wrap ErrOption", s, err)
			}
			return
		}
		if math.IsNaN(g.Limit) || math.IsInf(g.Limit, 0) || g.Metric == "" || g.Text != s {
			t.Fatalf("%q: accepted %+v", s, g)
		}
	})
}
func TestGatesNeverPassNaN(t *testing.T) {
	r := &Report{Metrics: map[string]Metrics{"edited": {"specificity": math.NaN(), "ppl/all": math.Inf(1)}}}
	for _, g := range []string{"specificity>0.9", "specificity<0.9", "ppl/all<100"} {
		r.Gates = nil
		if err := r.CheckGates("edited", []string{g}); !errors.Is(err, ErrGate) || r.Passed {
			t.Errorf("gate %s on %v passed (err %v)", g, r.Metrics["edited"], err)
		}
	}
	for _, g := range []string{"kl<inf", "kl<NaN", "specificity>-Inf"} {
		if err := r.CheckGates("edited", []string{g}); err == nil || errors.Is(err, ErrGate) {
			t.Errorf("gate %s: err %v, want a refused limit", g, err)
		}
	}
}

// Reports hold +Inf perplexities (and would hold NaN) through JSON, which has no such numbers.
func TestReportJSONKeepsNonFinite(t *testing.T) {
	r := &Report{Variants: []string{"base", "edited"}, Metrics: map[string]Metrics{"base": {"ppl/all": 3.5}, "edited": {"ppl/all": math.Inf(1), "kl": math.NaN(), "x": math.Inf(-1), "tiny": 1e-300}},
		Gates: []GateResult{{Gate: "ppl/all<10", Value: math.Inf(1)}}}
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	e := back.Metrics["edited"]
	if !math.IsInf(e["ppl/all"], 1) || !math.IsNaN(e["kl"]) || !math.IsInf(e["x"], -1) || e["tiny"] != 1e-300 || back.Metrics["base"]["ppl/all"] != 3.5 || !math.IsInf(back.Gates[0].Value, 1) {
		t.Errorf("round trip %s -> %v %v", b, back.Metrics, back.Gates)
	}
	if err := json.Unmarshal([]byte(`{"metrics":{"edited":{"kl":"lots"}}}`), &back); err == nil {
		t.Error("a string that is no number was read as a metric")
	}
}

// An edited model whose weights are NaN does not get a report (its argmax would agree with
// the base's token 0 everywhere: specificity 1): verify fails naming the tensor.
func TestNaNModelFailsVerify(t *testing.T) {
	c, err := hfdir.Open("../testdata/stories260K")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	base, err := model.Load(c.ConfigJSON, c)
	if err != nil {
		t.Fatal(err)
	}
	base.Tokenizer, _ = tokenizer.Load(c.Dir)
	const name = "model.layers.1.mlp.down_proj.weight"
	_, b, _ := c.Tensor(name)
	nan := make([]byte, len(b))
	for i := 0; i < len(nan); i += 4 {
		binary.LittleEndian.PutUint32(nan[i:], math.Float32bits(float32(math.NaN())))
	}
	ed, err := model.Load(c.ConfigJSON, nanSource{c, name, nan})
	if err != nil {
		t.Fatal(err)
	}
	bench := []samples.Sample{{ID: "c", Text: "The dog ran", Control: true}}
	_, err = Run(context.Background(), base, []Variant{{Name: "edited", Model: ed}}, bench, Options{MaxTokens: 4})
	if !errors.Is(err, model.ErrNonFinite) || !strings.Contains(err.Error(), name) || !strings.Contains(err.Error(), "edited model, sample c") {
		t.Fatalf("err = %v, want non-finite logits blaming %s", err, name)
	}
}

type nanSource struct {
	*hfdir.Checkpoint
	name string
	b    []byte
}

func (s nanSource) Tensor(name string) (safetensors.TensorInfo, []byte, error) {
	info, b, err := s.Checkpoint.Tensor(name)
	if name == s.name {
		b = s.b
	}
	return info, b, err
}

// Image samples go through the model's prompt builder: on InstructBLIP (whose layout puts the
// query rows before BOS and whose Q-Former reads the text) verify runs them, a model against
// itself measures nothing, another model's weights something.
func TestVerifyInstructBLIPImages(t *testing.T) {
	dir := t.TempDir()
	open := func(seed uint64) *model.Model {
		out := filepath.Join(dir, fmt.Sprint("ib", seed))
		if err := synth.Generate("../testdata/configs/instructblip-tiny", out, synth.Options{DType: safetensors.F32, Seed: seed, Std: 0.3}); err != nil {
			t.Fatal(err)
		}
		m, err := model.Open(out)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { m.Close() })
		return m
	}
	base, other := open(1), open(2)
	pic := filepath.Join(dir, "pic.png")
	img := image.NewNRGBA(image.Rect(0, 0, 9, 6))
	for i := range img.Pix {
		img.Pix[i] = uint8(i * 37)
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pic, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	bench := []samples.Sample{
		{ID: "a", Text: "what is in the image?", Image: pic, Label: "x"},
		{ID: "b", Text: "describe this photo", Image: pic, Label: "y"},
	}
	r, err := Run(context.Background(), base, []Variant{{Name: "same", Model: base}, {Name: "other", Model: other}}, bench, Options{MaxTokens: 3})
	if err != nil {
		t.Fatal(err)
	}
	if kl := r.Metrics["same"]["kl"]; kl > 1e-9 {
		t.Errorf("kl against itself %g", kl)
	}
	if kl := r.Metrics["other"]["kl"]; !(kl > 1e-3) {
		t.Errorf("kl against other weights %g", kl)
	}
}

// ANLS on answers, each worked by hand: NL = Levenshtein / max length of the normalised
// strings (lower case, spaces collapsed), 1 − NL below the threshold, 0 at or above it.
func TestANLSHandComputed(t *testing.T) {
	cases := []struct {
		pred, ans string
		threshold float64
		want      float64
	}{
		{"kitten", "sitting", 0.5, 1 - 3.0/7}, // k→s, e→i, +g: 3 edits over 7
		{"  The   Cat ", "the cat", 0.5, 1},   // normalised away
		{"ab", "abcd", 0.5, 0},                // NL = 2/4 = 0.5: at the threshold, 0
		{"abc", "abcd", 0.5, 0.75},            // NL = 1/4
		{"café", "cafe", 0.5, 0.75},           // runes, not bytes: 1 edit over 4
		{"12 June 2020", "12 june 2021", 0.5, 1 - 1.0/12},
		{"", "yes", 0.5, 0}, // NL = 3/3
		{"yes", "", 0.5, 0},
		{"no", "yes", 0.9, 0},   // n→y, o→e, +s: NL = 3/3 ≥ 0.9
		{"yes", "yes.", 0.1, 0}, // NL = 1/4 ≥ 0.1: a strict threshold
	}
	for _, c := range cases {
		if got := ANLS(c.pred, c.ans, c.threshold); math.Abs(got-c.want) > 1e-12 {
			t.Errorf("ANLS(%q, %q, %g) = %g, want %g", c.pred, c.ans, c.threshold, got, c.want)
		}
	}
	for _, c := range []struct {
		a, b string
		want int
	}{{"kitten", "sitting", 3}, {"flaw", "lawn", 2}, {"", "abc", 3}, {"abc", "abc", 0}, {"intention", "execution", 5}} {
		if got := levenshtein([]rune(c.a), []rune(c.b)); got != c.want {
			t.Errorf("levenshtein(%q, %q) = %d, want %d", c.a, c.b, got, c.want)
		}
	}
}
