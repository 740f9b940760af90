package locate

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/neurosurg/neurosurg/formats/neuronset"
	"github.com/neurosurg/neurosurg/formats/safetensors"
	"github.com/neurosurg/neurosurg/formats/samples"
	"github.com/neurosurg/neurosurg/model"
)

// twoModules is an "llm" of 1 layer × 4 neurons and a "vision" encoder of 2 layers × 2 neurons,
// each with labels a and b at 100 positions per layer, firing with probabilities P.
func twoModules() *Stats {
	s := NewStatsFor(map[string]neuronset.Geometry{"llm": {Layers: 1, Neurons: 4}, "vision": {Layers: 2, Neurons: 2}})
	fill := func(m *ModuleStats, P map[string][]float64) {
		for _, l := range []string{"a", "b"} {
			ls := m.label(l)
			ls.Samples = 3
			for i := range ls.Positions {
				ls.Positions[i] = 100
			}
			for i, p := range P[l] {
				ls.Fire[i] = p * 100
				ls.Sum[i] = p * 50
				ls.Max[i] = p * 2
			}
		}
	}
	// The llm's P is TestDAPEHandComputed's: τ = .3, neurons 0 and 3 go to a.
	fill(s.Module("llm"), map[string][]float64{"a": {0.9, 0.2, 0.4, 1.0}, "b": {0.1, 0.3, 0.5, 0}})
	// The encoder's pooled P sorted is 0 0 0 0 .1 .1 .1 .2: its own τ = bar = 4th smallest = 0,
	// so neurons 0 (.2, 0), 1 (0, .1) and 2 (.1, .1) are candidates, 3 is not; the top half
	// (2 of 4) by entropy are 0 and 1 (entropy 0), going to a and b. With the llm's τ of .3
	// no encoder neuron would be a candidate: each module has its own quantiles.
	fill(s.Module("vision"), map[string][]float64{"a": {0.2, 0, 0.1, 0}, "b": {0, 0.1, 0.1, 0}})
	s.ModelHash = "m"
	return s
}

func TestDAPEPerModule(t *testing.T) {
	s := twoModules()
	o := DAPEOptions{TopRate: 0.5, FilterRate: 0.5, ActivationBarRatio: 0.5}
	llm := []neuronset.Neuron{{Module: "llm", Layer: 0, Index: 0, Label: "a", Score: 0.325}, {Module: "llm", Layer: 0, Index: 3, Label: "a"}}
	vision := []neuronset.Neuron{{Module: "vision", Layer: 0, Index: 0, Label: "a"}, {Module: "vision", Layer: 0, Index: 1, Label: "b"}}
	cases := []struct {
		name     string
		modules  []string
		want     []neuronset.Neuron
		tau, bar any
	}{
		{"every module", nil, append(append([]neuronset.Neuron{}, llm...), vision...),
			map[string]any{"llm": float64(float32(0.3)), "vision": 0.0}, map[string]any{"llm": float64(float32(0.3)), "vision": 0.0}},
		{"the encoder alone", []string{"vision"}, vision, 0.0, 0.0},
		{"the decoder alone", []string{"llm"}, llm, float64(float32(0.3)), float64(float32(0.3))},
	}
	for _, c := range cases {
		o.Modules = c.modules
		set, err := DAPE(s, o)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		for i := range set.Neurons {
			set.Neurons[i].Score = math.Round(set.Neurons[i].Score*1000) / 1000
		}
		set.Sort()
		want := append([]neuronset.Neuron(nil), c.want...)
		(&neuronset.Set{Neurons: want}).Sort()
		if d := cmp.Diff(want, set.Neurons); d != "" {
			t.Errorf("%s: -want +got:\n%s", c.name, d)
		}
		if !cmp.Equal(set.Params["tau"], c.tau) || !cmp.Equal(set.Params["bar"], c.bar) {
			t.Errorf("%s: tau %v bar %v, want %v %v", c.name, set.Params["tau"], set.Params["bar"], c.tau, c.bar)
		}
		if !cmp.Equal(set.Labels, []string{"a", "b"}) {
			t.Errorf("%s: labels %v", c.name, set.Labels)
		}
	}
	if _, err := DAPE(s, DAPEOptions{Modules: []string{"audio"}}); !errors.Is(err, ErrStats) || !strings.Contains(err.Error(), `"audio"`) || !strings.Contains(err.Error(), "llm, vision") {
		t.Errorf("unknown module: %v", err)
	}
}

func TestStatsRoundTrip(t *testing.T) {
	s := twoModules()
	s.DataHash, s.SampleIDs = "d", []string{"s1", "s2", "s3"}
	llm := s.Module("llm")
	llm.Concepts = []*ConceptStats{{Word: "x", TokenID: 1, Steps: 2, ActSum: []float64{1, 2, 3, 4}, Phi: []float64{4, 3, 2, 1},
		First: [][]float64{{1, 1, 1, 1}}, FirstIDs: []string{"s1"}}}
	llm.ism("ds").Count[6] = 3
	path := filepath.Join(t.TempDir(), "s.st")
	if err := s.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	back, err := ReadStats(path)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(s, back); d != "" {
		t.Errorf("round trip (-wrote +read):\n%s", d)
	}
	f, err := safetensors.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, name := range []string{"llm.label.0.fire", "llm.concept.0.first", "llm.ism.0.sum", "vision.label.1.max", "vision.label.0.positions",
		"llm.label.0.sum_exact", "llm.concept.0.act_sum_exact", "llm.ism.0.sum_exact"} {
		if _, ok := f.Tensor(name); !ok {
			t.Errorf("no tensor %q", name)
		}
	}
	var meta map[string]any
	json.Unmarshal([]byte(f.Metadata[statsKey]), &meta)
	if meta["version"] != float64(StatsVersion) || len(meta["modules"].([]any)) != 2 {
		t.Errorf("metadata %s", f.Metadata[statsKey])
	}
}

// A version-1 file (one module, unprefixed tensor names) reads as that one module.
func TestReadStatsVersion1IsOneModule(t *testing.T) {
	meta, ts := goodStats(t)
	path := filepath.Join(t.TempDir(), "v1.st")
	os.WriteFile(path, statsFile(t, meta, ts...), 0o644)
	s, err := ReadStats(path)
	if err != nil {
		t.Fatal(err)
	}
	if !cmp.Equal(s.ModuleNames(), []string{"llm"}) || s.ModelHash != "m" || !cmp.Equal(s.SampleIDs, []string{"s1"}) {
		t.Fatalf("modules %v, model %q, samples %v", s.ModuleNames(), s.ModelHash, s.SampleIDs)
	}
	m := s.Module("llm")
	if m.Layers != 2 || m.Neurons != 3 || len(m.ByLabel["a"].Fire) != 6 || len(m.Concepts) != 1 || len(m.ISMs) != 1 {
		t.Errorf("read %+v", m)
	}
	// Written again, it is a version-2 file of the same content.
	again := filepath.Join(t.TempDir(), "v2.st")
	if err := s.WriteFile(again); err != nil {
		t.Fatal(err)
	}
	back, err := ReadStats(again)
	if err != nil || !cmp.Equal(s, back) {
		t.Errorf("v1 → v2: %v", err)
	}
}

func TestReadStatsV2Refuses(t *testing.T) {
	mod := func(name string) map[string]any {
		return map[string]any{"module": name, "layers": 1, "neurons": 2, "labels": []string{"a"}, "samples": []float64{1}}
	}
	tensors := func(prefix string) []safetensors.TensorInfo {
		return []safetensors.TensorInfo{shaped(prefix+"label.0.positions", 1), shaped(prefix+"label.0.fire", 1, 2), shaped(prefix+"label.0.sum", 1, 2), shaped(prefix+"label.0.max", 1, 2)}
	}
	both := append(tensors("llm."), tensors("vision.")...)
	many := []any{}
	for i := 0; i < maxStatsModules+1; i++ {
		many = append(many, mod(string(rune('a'+i%26))+strings.Repeat("x", i/26)))
	}
	cases := []struct {
		name    string
		meta    map[string]any
		tensors []safetensors.TensorInfo
		msg     string
	}{
		{"good", map[string]any{"version": 2, "modules": []any{mod("llm"), mod("vision")}}, both, ""},
		{"no modules", map[string]any{"version": 2}, nil, "0 modules"},
		{"too many modules", map[string]any{"version": 2, "modules": many}, nil, "65 modules"},
		{"module twice", map[string]any{"version": 2, "modules": []any{mod("llm"), mod("llm")}}, tensors("llm."), "listed twice"},
		{"a dot in a module name", map[string]any{"version": 2, "modules": []any{mod("llm.label")}}, nil, "module name"},
		{"empty module name", map[string]any{"version": 2, "modules": []any{mod("")}}, nil, "module name"},
		{"v1 fields in v2", map[string]any{"version": 2, "module": "llm", "modules": []any{mod("llm")}}, tensors("llm."), "top level"},
		{"module list in v1", map[string]any{"version": 1, "module": "llm", "layers": 1, "neurons": 2, "modules": []any{mod("llm")}}, nil, "no module list"},
		{"unprefixed tensors", map[string]any{"version": 2, "modules": []any{mod("llm")}}, tensors(""), `"label.0`},
		{"a module's tensors missing", map[string]any{"version": 2, "modules": []any{mod("llm"), mod("vision")}}, tensors("llm."), "vision.label.0"},
		{"a module's geometry absurd", map[string]any{"version": 2, "modules": []any{mod("llm"), map[string]any{"module": "vision", "layers": 1 << 20, "neurons": 1 << 20}}}, both, "module vision"},
		{"version 5", map[string]any{"version": 5, "modules": []any{mod("llm")}}, tensors("llm."), "version 5"},
		{"version 3 without exact sums", map[string]any{"version": 3, "modules": []any{mod("llm")}}, tensors("llm."), "sum_exact"},
	}
	for _, c := range cases {
		path := filepath.Join(t.TempDir(), "s.st")
		os.WriteFile(path, statsFile(t, c.meta, c.tensors...), 0o644)
		s, err := ReadStats(path)
		if c.msg == "" {
			if err != nil || !cmp.Equal(s.ModuleNames(), []string{"llm", "vision"}) {
				t.Errorf("%s: %v", c.name, err)
			}
			continue
		}
		if !errors.Is(err, ErrStats) || !strings.Contains(err.Error(), c.msg) || !strings.Contains(err.Error(), path) {
			t.Errorf("%s: err = %v, want ErrStats naming the file and %q", c.name, err, c.msg)
		}
	}
}

func TestMergeByModule(t *testing.T) {
	a, b := twoModules(), twoModules()
	b.SampleIDs = []string{"t"}
	if err := a.Merge(b); err != nil {
		t.Fatal(err)
	}
	for _, m := range a.Modules {
		if ls := m.ByLabel["a"]; ls.Samples != 6 || ls.Positions[0] != 200 {
			t.Errorf("%s: samples %v positions %v", m.Module, ls.Samples, ls.Positions)
		}
	}
	if a.Module("vision").ByLabel["b"].Fire[1] != 20 || !cmp.Equal(a.SampleIDs, []string{"t"}) {
		t.Errorf("vision fire %v, samples %v", a.Module("vision").ByLabel["b"].Fire, a.SampleIDs)
	}
	for name, o := range map[string]*Stats{
		"a module fewer": func() *Stats { s := NewStats("llm", 1, 4); s.ModelHash = "m"; return s }(),
		"another shape":  func() *Stats { s := twoModules(); s.Modules[1].Layers = 3; return s }(),
		"another model":  func() *Stats { s := twoModules(); s.ModelHash = "n"; return s }(),
	} {
		if err := twoModules().Merge(o); !errors.Is(err, ErrStats) {
			t.Errorf("%s: merged (%v)", name, err)
		}
	}
}

func TestExportHasModuleColumn(t *testing.T) {
	s := twoModules()
	rows := s.Export()
	// llm: 2 labels × 4 neurons; vision: 2 labels × 2 layers × 2 neurons.
	per := map[string]int{}
	for _, r := range rows {
		per[r.Module]++
	}
	if len(rows) != 16 || per["llm"] != 8 || per["vision"] != 8 {
		t.Fatalf("rows per module %v", per)
	}
	var buf bytes.Buffer
	if err := WriteExportCSV(&buf, rows); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if lines[0] != "module,label,layer,neuron,probability,mean,max" || len(lines) != 17 {
		t.Fatalf("csv header %q, %d lines", lines[0], len(lines))
	}
	// vision, label a, layer 0, neuron 0: P .2, mean .2·50/100, max .4.
	if !strings.Contains(buf.String(), "\nvision,a,0,0,0.2,0.1,0.4\n") {
		t.Errorf("no vision row:\n%s", buf.String())
	}
	j, _ := json.Marshal(rows[0])
	if !strings.HasPrefix(string(j), `{"module":"llm","label":"a"`) {
		t.Errorf("json row %s", j)
	}
}

func TestRandomPerModuleAndLayer(t *testing.T) {
	geom := map[string]neuronset.Geometry{"llm": {Layers: 3, Neurons: 10}, "vision": {Layers: 2, Neurons: 4}}
	like := &neuronset.Set{Method: "dape", Labels: []string{"a", "b"}}
	for _, n := range []struct {
		mod          string
		layer, count int
		label        string
	}{{"vision", 0, 3, "a"}, {"vision", 1, 1, "a"}, {"llm", 2, 2, "a"}, {"vision", 1, 4, "b"}, {"llm", 0, 1, "b"}} {
		for i := 0; i < n.count; i++ {
			like.Neurons = append(like.Neurons, neuronset.Neuron{Module: n.mod, Layer: n.layer, Index: i, Label: n.label})
		}
	}
	type key struct {
		label, mod string
		layer      int
	}
	counts := func(s *neuronset.Set) map[key]int {
		c := map[key]int{}
		for _, n := range s.Neurons {
			c[key{n.Label, n.Module, n.Layer}]++
		}
		return c
	}
	for seed := uint64(0); seed < 5; seed++ {
		r, err := Random(like, geom, seed)
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(counts(like), counts(r)); d != "" {
			t.Errorf("seed %d: counts (-like +random):\n%s", seed, d)
		}
		if err := r.CheckGeometry("model", geom); err != nil {
			t.Error(err)
		}
		seen := map[neuronset.Neuron]bool{}
		for _, n := range r.Neurons {
			n.Score = 0
			if seen[n] {
				t.Errorf("seed %d: %+v drawn twice", seed, n)
			}
			seen[n] = true
		}
	}
	for name, g := range map[string]map[string]neuronset.Geometry{
		"module missing": {"llm": geom["llm"]},
		"layer outside":  {"llm": geom["llm"], "vision": {Layers: 1, Neurons: 4}},
	} {
		if _, err := Random(like, g, 1); !errors.Is(err, neuronset.ErrGeometry) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestContribAndMINERModules(t *testing.T) {
	s := twoModules()
	if _, err := Contrib(s, ContribOptions{Module: "vision"}); !errors.Is(err, ErrOption) || !strings.Contains(err.Error(), "only the language model") {
		t.Errorf("contrib in an encoder: %v", err)
	}
	enc := NewStats("vision", 1, 2)
	if _, err := Contrib(enc, ContribOptions{}); !errors.Is(err, ErrStats) || !strings.Contains(err.Error(), `"llm"`) {
		t.Errorf("contrib without a decoder: %v", err)
	}
	if _, err := MINER(enc, MINEROptions{}); !errors.Is(err, ErrStats) || !strings.Contains(err.Error(), `"llm"`) {
		t.Errorf("miner without a decoder: %v", err)
	}
	if _, err := MINER(s, MINEROptions{Module: "vision"}); !errors.Is(err, ErrStats) || !strings.Contains(err.Error(), "module vision") {
		t.Errorf("miner in an encoder without scores: %v", err)
	}
}

// Each module counts its own positions: an encoder's patches, the decoder's tokens. Events of
// a module or shape the stats do not hold are an error, not silently dropped.
func TestRecorderCountsEachModule(t *testing.T) {
	s := NewStatsFor(map[string]neuronset.Geometry{"llm": {Layers: 1, Neurons: 2}, "vision": {Layers: 2, Neurons: 3}})
	r := newRecorder(s)
	r.startSample("a")
	r.ids = []int32{1, 2, 3}
	for _, e := range []model.FFNEvent{
		{Site: model.Site{Module: "vision", Layer: 0}, Rows: 4, Neurons: 3, Act: []float32{1, 0, 0, 1, 0, 0, 1, 0, 0, 1, 0, 0}},
		{Site: model.Site{Module: "vision", Layer: 1}, Rows: 4, Neurons: 3, Act: []float32{0, 2, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0}},
		{Site: model.Site{Module: "llm", Layer: 0}, Rows: 3, Neurons: 2, Act: []float32{1, 0, 1, 0, 0, 5}},
	} {
		r.FFN(&e)
	}
	r.endSample()
	if r.err != nil {
		t.Fatal(r.err)
	}
	v, l := s.Module("vision").ByLabel["a"], s.Module("llm").ByLabel["a"]
	if !cmp.Equal(v.Positions, []float64{4, 4}) || !cmp.Equal(l.Positions, []float64{3}) || v.Samples != 1 || l.Samples != 1 {
		t.Errorf("positions vision %v llm %v, samples %v %v", v.Positions, l.Positions, v.Samples, l.Samples)
	}
	if !cmp.Equal(v.Fire, []float64{4, 0, 0, 0, 2, 0}) || !cmp.Equal(l.Fire, []float64{2, 1}) || !cmp.Equal(l.Max, []float64{1, 5}) {
		t.Errorf("fire vision %v llm %v, max llm %v", v.Fire, l.Fire, l.Max)
	}
	for _, e := range []model.FFNEvent{
		{Site: model.Site{Module: "audio", Layer: 0}, Rows: 1, Neurons: 3, Act: make([]float32, 3)},
		{Site: model.Site{Module: "vision", Layer: 2}, Rows: 1, Neurons: 3, Act: make([]float32, 3)},
		{Site: model.Site{Module: "vision", Layer: 0}, Rows: 1, Neurons: 4, Act: make([]float32, 4)},
	} {
		r := newRecorder(s)
		r.startSample("a")
		r.FFN(&e)
		if !errors.Is(r.err, ErrStats) || !strings.Contains(r.err.Error(), e.Site.Module) {
			t.Errorf("%+v: %v", e.Site, r.err)
		}
	}
}

func TestPlotLayersOneChartPerModule(t *testing.T) {
	s := twoModules()
	set, err := DAPE(s, DAPEOptions{TopRate: 0.5, FilterRate: 0.5, ActivationBarRatio: 0.5})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "p.svg")
	if err := PlotLayers(set, s.Geometry(), path); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	svg := string(b)
	li, vi := strings.Index(svg, "per layer (llm)"), strings.Index(svg, "per layer (vision)")
	if li < 0 || vi < li || strings.Count(svg, "<svg") != 3 {
		t.Errorf("want the llm chart, then the vision chart, in one file:\n%.400s", svg)
	}
	if err := PlotLayers(set, map[string]neuronset.Geometry{"llm": {Layers: 1, Neurons: 4}}, path); err == nil || !strings.Contains(err.Error(), "vision") {
		t.Errorf("plot of a module the model lacks: %v", err)
	}
}

// A samples file with an image on a text-only model fails naming the sample, before anything
// is recorded: never a silent text-only run of its text.
func TestRecordRefusesMediaOnTextModel(t *testing.T) {
	m, err := model.Open("../testdata/stories260K")
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ss := []samples.Sample{{ID: "t1", Text: "Once upon a time"}, {ID: "img7", Text: "What is in the picture?", Image: "cat.png"}}
	_, err = Record(context.Background(), m, ss, nil, RecordOptions{})
	if !errors.Is(err, model.ErrMedia) || !strings.Contains(err.Error(), "sample img7 has image input") {
		t.Fatalf("err %v, want model.ErrMedia naming sample img7", err)
	}
}
