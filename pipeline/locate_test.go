package pipeline

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/neurosurg/neurosurg/formats/neuronset"
	"github.com/neurosurg/neurosurg/formats/samples"
	"github.com/neurosurg/neurosurg/locate"
	"github.com/neurosurg/neurosurg/model"
)

var (
	recordOnce sync.Once
	recorded   struct {
		m    *model.Model
		data []samples.Sample
		st   *locate.Stats
		hash string
		err  error
	}
)

// fixture records the stories260K checkpoint on the two-domain samples once, with everything
// every method reads: MINER's scores, the concept "cat" and its per-sample first steps.
func fixture(t *testing.T) (*model.Model, []samples.Sample, *locate.Stats, string) {
	t.Helper()
	recordOnce.Do(func() {
		r := &recorded
		if r.m, r.err = OpenModel("../testdata/stories260K"); r.err != nil {
			return
		}
		if r.data, r.err = samples.ReadFile("../testdata/samples/stories-animals-food.jsonl"); r.err != nil {
			return
		}
		st, err := locate.Record(context.Background(), r.m, r.data, nil, locate.RecordOptions{Concepts: []string{"cat"}, MINER: true, PerSample: true,
			ModelHash: r.m.Checkpoint().Fingerprint()})
		if err != nil {
			r.err = err
			return
		}
		p := filepath.Join(t.TempDir(), "stats.st")
		if r.err = st.WriteFile(p); r.err != nil {
			return
		}
		r.st, r.hash, r.err = ReadStats(p)
	})
	if recorded.err != nil {
		t.Fatal(recorded.err)
	}
	return recorded.m, recorded.data, recorded.st, recorded.hash
}

// Every method name runs through the one dispatch, gives a set under its own name, and is
// stamped with what it was selected from.
func TestLocateEveryMethod(t *testing.T) {
	m, data, st, hash := fixture(t)
	like := &neuronset.Set{Version: neuronset.Version, Method: "dape", Labels: []string{"animals"}, Neurons: []neuronset.Neuron{
		{Module: "llm", Layer: 0, Index: 3, Label: "animals"}, {Module: "llm", Layer: 0, Index: 7, Label: "animals"}, {Module: "llm", Layer: 4, Index: 1, Label: "animals"}}}
	for _, c := range []struct {
		p     LocateParams
		count int // 0: any number above 0
	}{
		{LocateParams{Method: "miner", Ratio: 0.05}, 0},
		{LocateParams{Method: "miner", Strategy: "random", Seed: 3, Weights: []float64{0, 1, 1, 1, 0}}, 0},
		{LocateParams{Method: "dape", TopRate: 0.05}, 0},
		{LocateParams{Method: "dape", TopRate: 0.05, Label: "animals"}, 0},
		{LocateParams{Method: "contrib", TopK: 9}, 9},
		{LocateParams{Method: "contrib", TopK: 4, Layers: []int{2}}, 4},
		{LocateParams{Method: "contrib", TopK: 3, ContribMode: locate.ContribPerSample}, 0},
		{LocateParams{Method: "ig", Concept: "cat", TopK: 5, Steps: 2, MaxOccurrences: 1}, 5},
		{LocateParams{Method: "random", Like: like, Seed: 1}, 3},
	} {
		t.Run(c.p.Method, func(t *testing.T) {
			set, err := Locate(context.Background(), c.p, LocateInputs{Stats: st, StatsSHA256: hash, Model: m, Data: data})
			if err != nil {
				t.Fatal(err)
			}
			if set.Method != c.p.Method || len(set.Neurons) == 0 || (c.count > 0 && len(set.Neurons) != c.count) {
				t.Fatalf("method %q, %d neurons, want %q and %d", set.Method, len(set.Neurons), c.p.Method, c.count)
			}
			if set.ModelSHA256 != m.Checkpoint().Fingerprint() || set.Geometry["llm"].Neurons != m.Config().Intermediate {
				t.Errorf("stamped with model %q geometry %v", set.ModelSHA256, set.Geometry)
			}
			if want := map[bool]string{true: hash, false: ""}[c.p.Method != "ig"]; set.StatsSHA256 != want {
				t.Errorf("stats_sha256 %q, want %q (ig reads no stats)", set.StatsSHA256, want)
			}
			for _, n := range set.Neurons {
				if c.p.Label != "" && n.Label != c.p.Label {
					t.Fatalf("label filter %q kept %+v", c.p.Label, n)
				}
				if len(c.p.Layers) > 0 && n.Layer != c.p.Layers[0] {
					t.Fatalf("layers %v kept %+v", c.p.Layers, n)
				}
			}
			// The same parameters and inputs select the same set, byte for byte.
			again, err := Locate(context.Background(), c.p, LocateInputs{Stats: st, StatsSHA256: hash, Model: m, Data: data})
			if err != nil {
				t.Fatal(err)
			}
			if c.p.Method == "ig" {
				// ig's scores vary in their last bits from run to run (the spago backward
				// of model/ig.go): the same neurons, not the same bytes.
				for i := range set.Neurons {
					a, b := set.Neurons[i], again.Neurons[i]
					if a.Layer != b.Layer || a.Index != b.Index {
						t.Fatalf("two runs selected %+v and %+v", a, b)
					}
				}
				return
			}
			a, _ := set.Marshal()
			b, _ := again.Marshal()
			if !bytes.Equal(a, b) {
				t.Error("two runs of the same parameters differ")
			}
		})
	}
}

// A bad parameter fails before anything is read, wraps locate.ErrOption, and names itself.
func TestLocateParamsRefused(t *testing.T) {
	like := &neuronset.Set{Version: neuronset.Version}
	for _, c := range []struct {
		p    LocateParams
		want string
	}{
		{LocateParams{}, `method ""`},
		{LocateParams{Method: "magic"}, `method "magic": want one of miner, dape, contrib, ig, random`},
		{LocateParams{Method: "MINER"}, `method "MINER"`},
		{LocateParams{Method: "miner", Weights: []float64{1, 2}}, "weights takes 5 numbers"},
		{LocateParams{Method: "miner", Weights: []float64{1, -2, 0, 0, 0}}, "weight of mean -2"},
		{LocateParams{Method: "miner", Ratio: 1.5}, "ratio 1.5"},
		{LocateParams{Method: "miner", Strategy: "la_mu"}, `strategy "la_mu"`},
		{LocateParams{Method: "miner", Split: "text"}, `split "text"`},
		{LocateParams{Method: "miner", TopK: 5}, "top_k does not apply to method miner"},
		{LocateParams{Method: "dape", TopRate: 7}, "top_rate 7"},
		{LocateParams{Method: "dape", FilterRate: -1}, "filter_rate -1"},
		{LocateParams{Method: "dape", ActivationBarRatio: 2}, "activation_bar_ratio 2"},
		{LocateParams{Method: "dape", Seed: 1}, "seed does not apply to method dape"},
		{LocateParams{Method: "contrib", TopK: -1}, "top_k -1"},
		{LocateParams{Method: "contrib", Layers: []int{-2}}, "layer -2"},
		{LocateParams{Method: "contrib", ContribMode: "sum"}, `contrib_mode "sum"`},
		{LocateParams{Method: "contrib", Like: like}, "like does not apply to method contrib"},
		{LocateParams{Method: "contrib", Ratio: 0.1}, "ratio does not apply"},
		{LocateParams{Method: "ig"}, "no concept word"},
		{LocateParams{Method: "ig", Concept: "cat", Steps: -1}, "steps -1"},
		{LocateParams{Method: "ig", Concept: "cat", MaxOccurrences: -1}, "max_occurrences -1"},
		{LocateParams{Method: "ig", Concept: "cat", Layers: []int{1}}, "layers does not apply to method ig"},
		{LocateParams{Method: "random"}, "method random needs like"},
		{LocateParams{Method: "random", Like: like, TopK: 3}, "top_k does not apply to method random"},
		{LocateParams{Method: "miner", Modules: []string{"llm", "vision"}}, "miner selects in one module"},
		{LocateParams{Method: "contrib", Modules: []string{"vision"}}, "llm"},
		{LocateParams{Method: "random", Like: like, Modules: []string{"llm"}}, "module does not apply to method random"},
	} {
		_, err := NewLocator(c.p)
		if !errors.Is(err, locate.ErrOption) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: err %v, want locate.ErrOption naming %q", c.p, err, c.want)
		}
	}
}

// What a checked method cannot know until it sees its inputs is refused then, naming it.
func TestLocateInputsRefused(t *testing.T) {
	m, data, st, hash := fixture(t)
	far := &neuronset.Set{Version: neuronset.Version, Neurons: []neuronset.Neuron{{Module: "llm", Layer: 9, Index: 0, Label: "a"}}}
	other := &neuronset.Set{Version: neuronset.Version, Neurons: []neuronset.Neuron{{Module: "vision", Layer: 0, Index: 0, Label: "a"}}}
	for _, c := range []struct {
		p    LocateParams
		in   LocateInputs
		want string
	}{
		{LocateParams{Method: "random", Like: far}, LocateInputs{Stats: st, StatsSHA256: hash}, "llm layer 9 index 0): the model has layers 0..4"},
		{LocateParams{Method: "random", Like: other}, LocateInputs{Stats: st, StatsSHA256: hash}, "vision layer 0"},
		{LocateParams{Method: "contrib", Layers: []int{9}}, LocateInputs{Stats: st}, "layer 9: the stats have 5 layers"},
		{LocateParams{Method: "dape", Label: "plants"}, LocateInputs{Stats: st}, `no neuron of label "plants" (its labels: animals, food)`},
		{LocateParams{Method: "dape"}, LocateInputs{Model: m, Data: data}, "selects from recorded statistics and got none"},
		{LocateParams{Method: "ig", Concept: "cat"}, LocateInputs{Stats: st}, "runs the model on samples and got none"},
		{LocateParams{Method: "ig", Concept: "cat"}, LocateInputs{Model: m}, "runs the model on samples and got none"},
	} {
		_, err := Locate(context.Background(), c.p, c.in)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: err %v, want one naming %q", c.p, err, c.want)
		}
	}
}

// The random baseline is the method random with like = the set: the same count per label,
// module and layer, seeded, and stamped like the set.
func TestRandomBaseline(t *testing.T) {
	_, _, st, hash := fixture(t)
	set, err := Locate(context.Background(), LocateParams{Method: "contrib", TopK: 20}, LocateInputs{Stats: st, StatsSHA256: hash})
	if err != nil {
		t.Fatal(err)
	}
	rnd, err := RandomBaseline(context.Background(), set, st, hash, 7)
	if err != nil {
		t.Fatal(err)
	}
	count := func(s *neuronset.Set) map[[2]any]int {
		c := map[[2]any]int{}
		for _, n := range s.Neurons {
			c[[2]any{n.Label, n.Layer}]++
		}
		return c
	}
	a, b := count(set), count(rnd)
	if len(a) != len(b) {
		t.Fatalf("per-layer counts %v, random %v", a, b)
	}
	for k, v := range a {
		if b[k] != v {
			t.Errorf("%v: %d neurons, random %d", k, v, b[k])
		}
	}
	if rnd.Method != "random" || rnd.StatsSHA256 != hash || rnd.ModelSHA256 != set.ModelSHA256 {
		t.Errorf("random set %q stamped %q/%q", rnd.Method, rnd.StatsSHA256, rnd.ModelSHA256)
	}
	other, _ := RandomBaseline(context.Background(), set, st, hash, 8)
	x, _ := rnd.Marshal()
	y, _ := other.Marshal()
	if bytes.Equal(x, y) {
		t.Error("two seeds drew the same neurons")
	}
}
