package neuronset

import (
	"errors"
	"strings"
	"testing"
)

func TestCanonicalModule(t *testing.T) {
	for in, want := range map[string]string{"lang": "llm", "mmproj": "projector", "encoder": "vision", " Encoder ": "vision",
		"llm": "llm", "QFORMER": "qformer", "query": "query", "audio": "audio", "my_module": "my_module", "all": "all"} {
		if got := CanonicalModule(in); got != want {
			t.Errorf("CanonicalModule(%q) = %q, want %q", in, got, want)
		}
	}
}

// A set written with MMNeuron's module names reads with ours, its geometry too; an alias
// beside the name it stands for is two entries for one module.
func TestUnmarshalModuleAliases(t *testing.T) {
	s, err := Unmarshal([]byte(`{"version":1,"method":"dape","geometry":{"lang":{"layers":2,"neurons":4},"encoder":{"layers":1,"neurons":3}},
		"neurons":[{"module":"lang","layer":1,"index":2,"score":1},{"module":"mmproj","layer":0,"index":0,"score":1}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if s.Neurons[0].Module != "llm" || s.Neurons[1].Module != "projector" || s.Geometry["llm"].Neurons != 4 || s.Geometry["vision"].Layers != 1 || len(s.Geometry) != 2 {
		t.Errorf("%+v", s)
	}
	_, err = Unmarshal([]byte(`{"version":1,"method":"dape","geometry":{"lang":{"layers":2,"neurons":4},"llm":{"layers":2,"neurons":4}},"neurons":[]}`))
	if !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), "names module llm twice") {
		t.Errorf("alias beside its module: %v", err)
	}
	// The same neuron under an alias and its name is listed twice.
	_, err = Unmarshal([]byte(`{"version":1,"method":"dape","neurons":[{"module":"lang","layer":0,"index":1,"score":1},{"module":"llm","layer":0,"index":1,"score":2}]}`))
	if !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), "both llm layer 0 index 1") {
		t.Errorf("duplicate through an alias: %v", err)
	}
}
