package locate

import (
	"context"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/neurosurg/neurosurg/formats/neuronset"
	"github.com/neurosurg/neurosurg/formats/samples"
	"github.com/neurosurg/neurosurg/model"
	"github.com/neurosurg/neurosurg/model/kernels"
)

// On the F32 stories260K every neuron set that record + locate produce under the default
// kernel variant equals the one under the f32-exact variant (avx512): the default must not
// round an F32 checkpoint's activations (it once rounded prefill attention to bf16, which
// moved firing counts and changed DAPE and contribution selections).
func TestStoriesSetsSameUnderDefaultAndExactVariant(t *testing.T) {
	if !slices.Contains(kernels.Variants(), "avx512") {
		t.Skip("no AVX-512 on this CPU: the default variant is already f32-exact")
	}
	m, err := model.Open("../testdata/stories260K")
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	domains, err := samples.ReadFile("../testdata/samples/stories-animals-food.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	generated, err := samples.ReadFile("../examples/stories-generated.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	type result struct {
		stats []*Stats
		sets  map[string]*neuronset.Set
	}
	run := func(variant string) result {
		prev := kernels.Use(variant)
		defer kernels.Use(prev)
		ctx := context.Background()
		dom, err := Record(ctx, m, domains, nil, RecordOptions{MINER: true})
		if err != nil {
			t.Fatal(err)
		}
		lily, err := Record(ctx, m, generated, nil, RecordOptions{Concepts: []string{"Lily"}, PerSample: true})
		if err != nil {
			t.Fatal(err)
		}
		lilyAU, err := Record(ctx, m, generated, nil, RecordOptions{Concepts: []string{"Lily"}, Product: true})
		if err != nil {
			t.Fatal(err)
		}
		r := result{stats: []*Stats{dom, lily, lilyAU}, sets: map[string]*neuronset.Set{}}
		add := func(name string, s *neuronset.Set, err error) {
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			r.sets[name] = s
		}
		for name, o := range map[string]DAPEOptions{"dape": {}, "dape top .05": {TopRate: 0.05}, "dape filter .9": {FilterRate: 0.9}} {
			s, err := DAPE(dom, o)
			add(name, s, err)
		}
		for _, st := range []string{"LA_MU", "adaptive", "LU_MA", "uniform"} {
			s, err := MINER(dom, MINEROptions{Strategy: st})
			add("miner "+st, s, err)
		}
		s, err := Contrib(lily, ContribOptions{TopK: 120})
		add("contrib a", s, err)
		s, err = Contrib(lilyAU, ContribOptions{TopK: 120})
		add("contrib au", s, err)
		s, err = Contrib(lily, ContribOptions{TopK: 120, Mode: ContribPerSample})
		add("contrib per-sample", s, err)
		return r
	}
	// The variant that rounds against BF16 weights (the default on such CPUs, whatever variant
	// CI forces for the rest of the suite) must leave an F32 model exactly f32.
	rounding := "avx512bf16"
	if !slices.Contains(kernels.Variants(), rounding) {
		t.Skip("no AVX512_BF16 on this CPU: no variant rounds activations")
	}
	def, exact := run(rounding), run("avx512")
	for i := range exact.stats {
		if !cmp.Equal(def.stats[i], exact.stats[i]) {
			t.Errorf("stats %d recorded under %s differ from avx512's", i, rounding)
		}
	}
	for name, want := range exact.sets {
		if len(want.Neurons) == 0 {
			t.Errorf("%s selected nothing", name)
		}
		if d := cmp.Diff(want, def.sets[name]); d != "" {
			t.Errorf("%s under %s vs avx512 (-avx512 +%s):\n%s", name, rounding, rounding, d)
		}
	}
}
