package locate

import (
	"errors"
	"math"
	"testing"
)

func TestOptionsValidate(t *testing.T) {
	nan := math.NaN()
	for _, c := range []struct {
		name string
		v    interface{ Validate() error }
		ok   bool
	}{
		{"dape defaults", DAPEOptions{}, true},
		{"dape set", DAPEOptions{TopRate: 0.05, FilterRate: 0.9}, true},
		{"dape top_rate 7", DAPEOptions{TopRate: 7}, false},
		{"dape top_rate -0.1", DAPEOptions{TopRate: -0.1}, false},
		{"dape top_rate NaN", DAPEOptions{TopRate: nan}, false},
		{"dape filter_rate 1.5", DAPEOptions{FilterRate: 1.5}, false},
		{"miner defaults", MINEROptions{}, true},
		{"miner set", MINEROptions{Ratio: 0.1, Strategy: "uniform", Split: "prompt", Weights: [5]float64{0, 1, 1, 1, 0}}, true},
		{"miner ratio -0.5", MINEROptions{Ratio: -0.5}, false},
		{"miner ratio 2", MINEROptions{Ratio: 2}, false},
		{"miner weight NaN", MINEROptions{Weights: [5]float64{nan}}, false},
		{"miner weight -1", MINEROptions{Weights: [5]float64{0, -1}}, false},
		{"miner weight Inf", MINEROptions{Weights: [5]float64{0, 0, math.Inf(1)}}, false},
		{"miner strategy", MINEROptions{Strategy: "la_mu"}, false},
		{"miner split", MINEROptions{Split: "text"}, false},
		{"contrib defaults", ContribOptions{}, true},
		{"contrib top_k -1", ContribOptions{TopK: -1}, false},
		{"contrib layer -1", ContribOptions{Layers: []int{0, -1}}, false},
		{"ig", IGOptions{Concept: "Lily", TopK: 40}, true},
		{"ig no concept", IGOptions{Concept: " "}, false},
		{"ig top_k -1", IGOptions{Concept: "Lily", TopK: -1}, false},
		{"ig steps -1", IGOptions{Concept: "Lily", Steps: -1}, false},
		{"ig max_occurrences -1", IGOptions{Concept: "Lily", MaxOccurrences: -1}, false},
	} {
		err := c.v.Validate()
		if (err == nil) != c.ok || (err != nil && !errors.Is(err, ErrOption)) {
			t.Errorf("%s: %v", c.name, err)
		}
	}
}

// The methods check their options before they read the stats.
func TestMethodsRefuseBadOptions(t *testing.T) {
	s := NewStats("llm", 2, 4)
	if _, err := DAPE(s, DAPEOptions{TopRate: 7}); !errors.Is(err, ErrOption) {
		t.Errorf("DAPE top_rate 7: %v", err)
	}
	if _, err := MINER(s, MINEROptions{Ratio: -0.5}); !errors.Is(err, ErrOption) {
		t.Errorf("MINER ratio -0.5: %v", err)
	}
	if _, err := Contrib(s, ContribOptions{TopK: -1}); !errors.Is(err, ErrOption) {
		t.Errorf("Contrib top_k -1: %v", err)
	}
	if _, err := Contrib(s, ContribOptions{Layers: []int{2}}); !errors.Is(err, ErrOption) {
		t.Errorf("Contrib layer 2 of 2: %v", err)
	}
}
