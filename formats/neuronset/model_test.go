package neuronset

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestCheckModel(t *testing.T) {
	llm := map[string]Geometry{"llm": {Layers: 5, Neurons: 172}}
	for _, c := range []struct {
		name string
		set  Set
		fp   string
		geom map[string]Geometry
		msg  string // "" = accepted
	}{
		{"hand-written", Set{}, "fp", llm, ""},
		{"same model", Set{ModelSHA256: "fp"}, "fp", llm, ""},
		{"same model with geometry", Set{ModelSHA256: "fp", Geometry: llm}, "fp", llm, ""},
		{"conversion: same geometry", Set{ModelSHA256: "other", Geometry: llm}, "fp", llm, ""},
		{"other model, no geometry", Set{ModelSHA256: "other"}, "fp", llm, "no geometry"},
		{"other geometry", Set{ModelSHA256: "other", Geometry: llm}, "fp", map[string]Geometry{"llm": {Layers: 24, Neurons: 4864}}, "5 layers × 172 neurons, this checkpoint's is 24 × 4864"},
		{"module missing", Set{ModelSHA256: "other", Geometry: map[string]Geometry{"vision": {1, 2}}}, "fp", llm, `module "vision"`},
		{"geometry only, mismatch", Set{Geometry: llm}, "fp", map[string]Geometry{"llm": {Layers: 5, Neurons: 171}}, "172"},
	} {
		err := c.set.CheckModel(c.fp, c.geom)
		if c.msg == "" {
			if err != nil {
				t.Errorf("%s: %v", c.name, err)
			}
			continue
		}
		if !errors.Is(err, ErrOtherModel) || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%s: %v, want %q", c.name, err, c.msg)
		}
	}
}

func TestGeometryRoundTrip(t *testing.T) {
	s := &Set{Version: Version, Method: "dape", ModelSHA256: "abc", Geometry: map[string]Geometry{"llm": {5, 172}},
		Neurons: []Neuron{{Module: "llm", Layer: 1, Index: 2, Score: 0.5}}}
	b, err := s.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	got, err := Unmarshal(b)
	if err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	if !reflect.DeepEqual(got, s) || !strings.Contains(string(b), `"geometry"`) {
		t.Errorf("round trip:\n%s\n%+v", b, got)
	}
}
