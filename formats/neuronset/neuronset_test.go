package neuronset

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

const good = `{
  "version": 1, "method": "dape", "params": {"top_rate": 0.05},
  "labels": ["animals", "food"],
  "neurons": [
    {"module":"llm","layer":0,"index":17,"label":"animals","score":0.12},
    {"module":"llm","layer":4,"index":171,"label":"food","score":0.5},
    {"module":"llm","layer":4,"index":171,"label":"animals","score":0.5}
  ]
}`

func TestUnmarshalRefuses(t *testing.T) {
	cases := []struct{ name, file, msg string }{
		{"not JSON", `{`, "unexpected EOF"},
		{"two objects", `{"version":1,"neurons":[]} {}`, "after the JSON object"},
		{"unknown key", `{"version":1,"neurons":[],"colour":"red"}`, "unknown field"},
		{"version", `{"version":2,"neurons":[]}`, "version 2"},
		{"negative layer", `{"version":1,"neurons":[{"module":"llm","layer":-1,"index":0}]}`, "layer -1"},
		{"negative index", `{"version":1,"neurons":[{"module":"llm","layer":0,"index":-3}]}`, "index -3"},
		{"no module", `{"version":1,"neurons":[{"layer":0,"index":0}]}`, `module ""`},
		{"index beyond int", `{"version":1,"neurons":[{"module":"llm","layer":0,"index":1e30}]}`, "index"},
		{"repeated", `{"version":1,"neurons":[{"module":"llm","layer":1,"index":2,"label":"a"},{"module":"llm","layer":1,"index":2,"label":"a","score":3}]}`, "both llm layer 1 index 2"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Unmarshal([]byte(c.file))
			if !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), c.msg) {
				t.Fatalf("err = %v, want ErrFormat mentioning %q", err, c.msg)
			}
		})
	}
	path := filepath.Join(t.TempDir(), "n.json")
	os.WriteFile(path, []byte(`{"version":3,"neurons":[]}`), 0o644)
	if _, err := ReadFile(path); err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("ReadFile error %v does not name the file", err)
	}
}

func TestCheckGeometry(t *testing.T) {
	s, err := Unmarshal([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		geo  map[string]Geometry
		msg  string // "" = fits
	}{
		{"fits", map[string]Geometry{"llm": {5, 172}}, ""},
		{"layer 4 of a 4-layer model", map[string]Geometry{"llm": {4, 172}}, "layers 0..3"},
		{"index 171 of 171 neurons", map[string]Geometry{"llm": {5, 171}}, "neurons 0..170"},
		{"no such module", map[string]Geometry{"vision": {5, 172}}, `no module "llm"`},
		{"no modules", nil, `no module "llm"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := s.CheckGeometry("m", c.geo)
			if c.msg == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, ErrGeometry) || !strings.Contains(err.Error(), c.msg) {
				t.Fatalf("err = %v, want ErrGeometry mentioning %q", err, c.msg)
			}
		})
	}
}

// FuzzNeuronSet: whatever parses re-encodes to a file that parses to the same set, and
// encoding is deterministic.
func FuzzNeuronSet(f *testing.F) {
	f.Add([]byte(good))
	f.Add([]byte(`{"version":1,"method":"x","neurons":[{"module":"llm","layer":5,"index":3,"score":1}]}`))
	f.Add([]byte(`{"version":1,"neurons":[]}`))
	f.Add([]byte(`{"version":1,"neurons":null,"extra":{"a":"b"},"params":{"k":[1,2,{"x":null}]}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := Unmarshal(data)
		if err != nil {
			if !errors.Is(err, ErrFormat) {
				t.Fatalf("error without ErrFormat: %v", err)
			}
			return
		}
		s.CheckGeometry("m", map[string]Geometry{"llm": {5, 172}}) // must not panic
		m1, err := s.Marshal()
		if err != nil {
			return // params holding values JSON cannot encode back are the caller's
		}
		s2, err := Unmarshal(m1)
		if err != nil {
			t.Fatalf("re-encoded set does not parse: %v\n%s", err, m1)
		}
		m2, err := s2.Marshal()
		if err != nil || !bytes.Equal(m1, m2) {
			t.Fatalf("encoding not stable: %v\n%s\n%s", err, m1, m2)
		}
		if len(s.Neurons) != len(s2.Neurons) || (len(s.Neurons) > 0 && !reflect.DeepEqual(s.Neurons, s2.Neurons)) {
			t.Fatal("neurons changed in the round trip")
		}
	})
}
