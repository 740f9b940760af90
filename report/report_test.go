package report

import (
	"bytes"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/neurosurg/neurosurg/formats/neuronset"
	"github.com/neurosurg/neurosurg/locate"
	"github.com/neurosurg/neurosurg/verify"
)

// join rebuilds one side of a diff: the new text (all but "del") or the base (all but "ins").
func join(spans []Span, drop string) string {
	var b strings.Builder
	for _, s := range spans {
		if s.Op != drop {
			b.WriteString(s.Text)
		}
	}
	return b.String()
}

func TestWordDiff(t *testing.T) {
	for _, tc := range []struct {
		base, text    string
		wantIns       []string
		wantDel       []string
		wantSrc, want []string // texts marked src / tgt
	}{
		{base: "Lily went home.", text: "Lily went home.", wantSrc: []string{"Lily "}},
		{base: "Lily went to the park.", text: "Tim went to the park.", wantIns: []string{"Tim "}, wantDel: []string{"Lily "}, wantSrc: []string{"Lily "}, want: []string{"Tim "}},
		{base: "She saw Lily's mom.", text: "She saw a big box.", wantIns: []string{"a big box."}, wantDel: []string{"Lily's ", "mom."}, wantSrc: []string{"Lily's "}},
		{base: "", text: "new words", wantIns: []string{"new words"}},
		{base: "old words", text: "", wantDel: []string{"old words"}},
		{base: "Lilyan is not Lily", text: "Lilyan is not Lily", wantSrc: []string{"Lily"}},
	} {
		spans := WordDiff(tc.base, tc.text, "Lily", "Tim")
		if got := join(spans, "del"); got != tc.text {
			t.Errorf("%q→%q: new side %q", tc.base, tc.text, got)
		}
		if got := join(spans, "ins"); got != tc.base {
			t.Errorf("%q→%q: base side %q", tc.base, tc.text, got)
		}
		var ins, del, src, tgt []string
		for _, s := range spans {
			switch s.Op {
			case "ins":
				ins = append(ins, s.Text)
			case "del":
				del = append(del, s.Text)
			}
			switch s.Word {
			case "src":
				src = append(src, s.Text)
			case "tgt":
				tgt = append(tgt, s.Text)
			}
		}
		if strings.Join(ins, "|") != strings.Join(tc.wantIns, "|") || strings.Join(del, "|") != strings.Join(tc.wantDel, "|") ||
			strings.Join(src, "|") != strings.Join(tc.wantSrc, "|") || strings.Join(tgt, "|") != strings.Join(tc.want, "|") {
			t.Errorf("%q→%q: ins %q del %q src %q tgt %q", tc.base, tc.text, ins, del, src, tgt)
		}
	}
}

func noSpace(s string) string {
	return strings.Join(strings.Fields(s), "")
}

func FuzzWordDiff(f *testing.F) {
	f.Add("Lily went home.", "Tim went home.")
	f.Add("", " a  b\n")
	f.Add("x\u00a0y", "x y")
	f.Fuzz(func(t *testing.T, base, text string) {
		spans := WordDiff(base, text, "Lily", "Tim")
		// The new side exactly; the base's characters but spaces (equal words show the new
		// text's spacing).
		if join(spans, "del") != text || noSpace(join(spans, "ins")) != noSpace(base) {
			t.Fatalf("%q→%q: spans %q do not rebuild both sides", base, text, spans)
		}
	})
}

func sampleInput() *Input {
	set := &neuronset.Set{Version: 1, Method: "dape", Params: map[string]any{"top_rate": 0.05}, Neurons: []neuronset.Neuron{
		{Module: "llm", Layer: 0, Index: 3, Label: "animals", Score: 0.9},
		{Module: "llm", Layer: 1, Index: 7, Label: "food", Score: 0.5},
		{Module: "vision", Layer: 2, Index: 40, Label: "<script>alert(1)</script>", Score: 0.1},
	}}
	rnd := &neuronset.Set{Version: 1, Method: "random", Neurons: []neuronset.Neuron{
		{Module: "llm", Layer: 0, Index: 5, Label: "animals"}, {Module: "llm", Layer: 1, Index: 1, Label: "food"},
		{Module: "vision", Layer: 2, Index: 2, Label: "<script>alert(1)</script>"},
	}}
	rep := &verify.Report{Variants: []string{"base", "edited", "random"}, Passed: false, Source: "Lily", Target: "Tim",
		Metrics:     map[string]verify.Metrics{"base": {"kl": 0, "ppl/animals": 5}, "edited": {"kl": 0.7, "ppl/animals": 6}, "random": {"kl": 0.1, "ppl/animals": 4.5}},
		Gates:       []verify.GateResult{{Gate: "kl<0.5", Value: 0.7, Passed: false}},
		Generations: []verify.Generation{{ID: "g0", Label: "animals", Prompt: "A girl named", Text: map[string]string{"base": "Lily. She", "edited": "Tim. She", "random": "Lily. He"}}},
	}
	return &Input{Title: "t", Recipe: "model: x\n", Verify: rep, Neurons: set, Random: rnd, Out: "out/x", Ops: []string{"zero"}}
}

func TestHTMLShowsWhatItHas(t *testing.T) {
	page, err := HTML(sampleInput())
	if err != nil {
		t.Fatal(err)
	}
	s := string(page)
	for _, want := range []string{`class="verdict fail"`, "FAIL — no checkpoint written", `id="verify"`, `id="generations"`, `id="map"`, `id="layers"`, `id="top"`,
		`<code>vision</code>: 3 layers × 41 neurons`, `<span class="w-src">Lily. </span>`, "&lt;script&gt;alert(1)&lt;/script&gt;", "kl&lt;0.5"} {
		if !strings.Contains(s, want) {
			t.Errorf("page lacks %s", want)
		}
	}
	if strings.Contains(strings.ToLower(s), "<script") {
		t.Error("the page has a script (or an unescaped label)")
	}
	again, _ := HTML(sampleInput())
	if !bytes.Equal(page, again) {
		t.Error("two renderings of the same input differ")
	}

	empty, err := HTML(&Input{})
	if err != nil || !strings.Contains(string(empty), "Nothing to show") || strings.Contains(string(empty), `id="map"`) {
		t.Errorf("empty input: %v\n%s", err, empty)
	}
}

func TestHTMLRefusesAbsurdLayers(t *testing.T) {
	in := &Input{Neurons: &neuronset.Set{Version: 1, Method: "x", Neurons: []neuronset.Neuron{{Module: "llm", Layer: 1 << 40, Index: 0}}}}
	if _, err := HTML(in); !errors.Is(err, ErrInput) || !strings.Contains(err.Error(), "layer") {
		t.Errorf("err %v", err)
	}
	// A huge index is binned, not allocated.
	in.Neurons.Neurons[0].Layer, in.Neurons.Neurons[0].Index = 2, 1<<40
	if _, err := HTML(in); err != nil {
		t.Error(err)
	}
}

func TestCard(t *testing.T) {
	in := sampleInput()
	in.Forced = true
	c := Card(in, CardFile)
	for _, want := range []string{"[`neurosurg.report.html`](neurosurg.report.html)", "**FAIL** (written with --force)", "✗ `kl<0.5` (0.7)",
		"| llm | animals | L0: 1 |", "| vision | <script>alert(1)</script> | L2: 1 |", "| animals | llm | 0 | 3 | 0.9 |"} {
		if !strings.Contains(c, want) {
			t.Errorf("card lacks %q:\n%s", want, c)
		}
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	sel := write("sel.json", `{"version":1,"method":"dape","model_sha256":"abc","neurons":[{"module":"llm","layer":0,"index":1,"label":"a","score":1}]}`)
	rnd := write("rnd.json", `{"version":1,"method":"random","neurons":[{"module":"llm","layer":0,"index":2,"label":"a","score":0}]}`)
	rep := write("rep.json", `{"variants":["base","edited"],"metrics":{"base":{"kl":0},"edited":{"kl":0.1}},"labels":[],"passed":true}`)
	recipe := write("r.yaml", "model: m\n")
	bad := write("bad.json", `{"version":1}`)
	notJSON := write("x.jsonl", "{}\n{}\n")
	badRep := write("badrep.json", `{"variants":["base","edited"],"metrics":{"base":{}},"passed":true}`)
	nanRep := write("nan.json", `{"variants":["base"],"metrics":{"base":{"kl":"x"}}}`)

	in, err := Load([]string{rnd, rep, sel, recipe})
	if err != nil {
		t.Fatal(err)
	}
	if in.Neurons.Method != "dape" || in.Random.Method != "random" || in.Verify == nil || in.Recipe != "model: m\n" || in.ModelHash != "abc" {
		t.Errorf("loaded %+v", in)
	}
	if in, err := Load([]string{rnd}); err != nil || in.Neurons == nil || in.Random != nil {
		t.Errorf("a random set alone is the selection: %v %+v", err, in)
	}
	for _, tc := range []struct {
		paths []string
		want  string
	}{
		{[]string{sel, sel}, "both selections"},
		{[]string{sel, rnd, rnd}, "3 neuron sets"},
		{[]string{rep, rep}, "both verify reports"},
		{[]string{recipe, recipe}, "both recipes"},
		{[]string{bad}, "neither a neuron set"},
		{[]string{notJSON}, "not a stats file"},
		{[]string{badRep}, `variant "edited" has no metrics`},
		{[]string{nanRep}, "verify report"},
		{[]string{filepath.Join(dir, "missing.json")}, "no such file"},
		{[]string{write("s.st", "not safetensors")}, "s.st"},
	} {
		_, err := Load(tc.paths)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: err %v, want %q", tc.paths, err, tc.want)
		}
	}
}

func FuzzParseVerify(f *testing.F) {
	f.Add([]byte(`{"variants":["base","edited"],"metrics":{"base":{"kl":0},"edited":{"kl":0.1,"ppl/a":3}},"gates":[{"gate":"kl","value":1}],"generations":[{"id":"a","prompt":"p","text":{"base":"x"}}]}`))
	f.Add([]byte(`{"variants":["base"],"metrics":{"base":{}}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		rep, err := ParseVerify(b)
		if err != nil {
			return
		}
		// Whatever parses renders.
		if _, err := HTML(&Input{Verify: rep}); err != nil {
			t.Fatal(err)
		}
	})
}

func TestFormatNum(t *testing.T) {
	for v, want := range map[float64]string{0: "0", 0.034151: "0.03415", 1e6: "1e+06", 2e-5: "2e-05", 12: "12"} {
		if got := formatNum(v); got != want {
			t.Errorf("%v: %q, want %q", v, got, want)
		}
	}
	if formatNum(math.NaN()) != "–" {
		t.Error("NaN")
	}
}

// A stats file of several modules gives each module its geometry and its neurons' statistics;
// every module gets its own per-layer chart.
func TestHTMLStatsOfSeveralModules(t *testing.T) {
	in := sampleInput()
	in.Stats = locate.NewStatsFor(map[string]neuronset.Geometry{"llm": {Layers: 2, Neurons: 8}, "vision": {Layers: 4, Neurons: 64}})
	v := in.Stats.Module("vision")
	ls := &locate.LabelStats{Samples: 1, Positions: make([]float64, 4), Fire: make([]float64, 4*64), Sum: make([]float64, 4*64), Max: make([]float64, 4*64)}
	ls.Positions[2], ls.Fire[2*64+40], ls.Sum[2*64+40], ls.Max[2*64+40] = 10, 4, 5, 3
	v.Labels, v.ByLabel["animals"] = []string{"animals"}, ls
	page, err := HTML(in)
	if err != nil {
		t.Fatal(err)
	}
	s := string(page)
	for _, want := range []string{`<code>vision</code>: 4 layers × 64 neurons`, "per layer (vision)", "per layer (llm)"} {
		if !strings.Contains(s, want) {
			t.Errorf("page lacks %s", want)
		}
	}
	st, _ := in.statsOf(neuronset.Neuron{Module: "vision", Layer: 2, Index: 40})
	if len(st) != 1 || st[0].Prob != 0.4 || st[0].Mean != 0.5 || st[0].Mx != 3 {
		t.Errorf("vision neuron's stats %+v", st)
	}
	if st, _ := in.statsOf(neuronset.Neuron{Module: "audio", Layer: 0, Index: 0}); st != nil {
		t.Errorf("stats of a module not recorded: %+v", st)
	}
}
