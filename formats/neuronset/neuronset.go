// Package neuronset reads and writes neuron-set files: the JSON list of selected neurons that
// locate writes and patch reads, with the provenance of the selection.
package neuronset

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
)

// Sentinel errors.
var (
	ErrFormat   = errors.New("neuronset: invalid file")
	ErrGeometry = errors.New("neuronset: neuron outside the model")
)

// Version is the file version this package writes.
const Version = 1

// Neuron is one selected FFN neuron. Module names the FFN group ("llm" for the language
// decoder, "vision", "audio", "projector", ...); Layer and Index address the neuron: column
// Index of that layer's down_proj (or fc2) weight.
type Neuron struct {
	Module string  `json:"module"`
	Layer  int     `json:"layer"`
	Index  int     `json:"index"`
	Label  string  `json:"label,omitempty"`
	Score  float64 `json:"score"`
}

// Geometry is the FFN shape of one module of the model a set was made on.
type Geometry struct {
	Layers  int `json:"layers"`
	Neurons int `json:"neurons"` // per layer
}

// Set is a neuron-set file.
type Set struct {
	Version     int               `json:"version"`
	Method      string            `json:"method"`
	Params      map[string]any    `json:"params,omitempty"`
	StatsSHA256 string            `json:"stats_sha256,omitempty"`
	ModelSHA256 string            `json:"model_sha256,omitempty"`
	Labels      []string          `json:"labels,omitempty"`
	Extra       map[string]string `json:"extra,omitempty"`

	// Geometry is the FFN shape, per module, of the model the set was made on.
	Geometry map[string]Geometry `json:"geometry,omitempty"`

	Neurons []Neuron `json:"neurons"`
}

// Sort orders neurons by label, module, layer, index so files are stable under diff.
func (s *Set) Sort() {
	sort.SliceStable(s.Neurons, func(i, j int) bool {
		a, b := s.Neurons[i], s.Neurons[j]
		if a.Label != b.Label {
			return a.Label < b.Label
		}
		if a.Module != b.Module {
			return a.Module < b.Module
		}
		if a.Layer != b.Layer {
			return a.Layer < b.Layer
		}
		return a.Index < b.Index
	})
}

// Marshal encodes s (sorted, indented, one neuron per line).
func (s *Set) Marshal() ([]byte, error) {
	s.Sort()
	head := *s
	head.Neurons = nil
	hb, err := json.MarshalIndent(head, "", "  ")
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	// Drop the closing "}" and the empty neurons entry to append one neuron per line.
	hb = bytes.TrimSuffix(bytes.TrimSpace(hb), []byte("}"))
	hb = bytes.TrimSpace(hb)
	hb = bytes.TrimSuffix(hb, []byte(`"neurons": null`))
	hb = bytes.TrimSpace(hb)
	buf.Write(hb)
	if !bytes.HasSuffix(hb, []byte("{")) && !bytes.HasSuffix(hb, []byte(",")) {
		buf.WriteString(",")
	}
	buf.WriteString("\n  \"neurons\": [")
	for i, n := range s.Neurons {
		nb, err := json.Marshal(n)
		if err != nil {
			return nil, err
		}
		if i > 0 {
			buf.WriteString(",")
		}
		buf.WriteString("\n    ")
		buf.Write(nb)
	}
	if len(s.Neurons) > 0 {
		buf.WriteString("\n  ")
	}
	buf.WriteString("]\n}\n")
	return buf.Bytes(), nil
}

// Unmarshal decodes and validates a neuron-set file: one JSON object, known keys only, every
// neuron with a module, a layer and an index ≥ 0, no neuron listed twice under one label.
// Whether the neurons exist in a given model is CheckGeometry's question.
func Unmarshal(b []byte) (*Set, error) {
	var s Set
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrFormat, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%w: data after the JSON object", ErrFormat)
	}
	if s.Version != Version {
		return nil, fmt.Errorf("%w: version %d, want %d", ErrFormat, s.Version, Version)
	}
	// MMNeuron's module names read as ours: a set is compared and applied by canonical names.
	if s.Geometry != nil {
		g := make(map[string]Geometry, len(s.Geometry))
		for m, v := range s.Geometry {
			c := CanonicalModule(m)
			if _, dup := g[c]; dup {
				return nil, fmt.Errorf("%w: geometry names module %s twice (as %q and an alias)", ErrFormat, c, m)
			}
			g[c] = v
		}
		s.Geometry = g
	}
	for i := range s.Neurons {
		s.Neurons[i].Module = CanonicalModule(s.Neurons[i].Module)
	}
	seen := make(map[Neuron]int, len(s.Neurons))
	for i, n := range s.Neurons {
		if n.Module == "" || n.Layer < 0 || n.Index < 0 {
			return nil, fmt.Errorf("%w: neuron %d: module %q layer %d index %d", ErrFormat, i, n.Module, n.Layer, n.Index)
		}
		key := Neuron{Module: n.Module, Layer: n.Layer, Index: n.Index, Label: n.Label}
		if j, dup := seen[key]; dup {
			return nil, fmt.Errorf("%w: neurons %d and %d are both %s layer %d index %d under label %q", ErrFormat, j, i, n.Module, n.Layer, n.Index, n.Label)
		}
		seen[key] = i
	}
	return &s, nil
}

// CheckGeometry is where a set meets a model (patch, neurons show, masks, …): it returns an
// error wrapping ErrGeometry for the first neuron whose module the model lacks or whose layer
// or index is outside the module's geometry. model names the model in the message.
func (s *Set) CheckGeometry(model string, byModule map[string]Geometry) error {
	var modules []string
	for m := range byModule {
		modules = append(modules, m)
	}
	sort.Strings(modules)
	for i, n := range s.Neurons {
		g, ok := byModule[n.Module]
		switch {
		case !ok:
			return fmt.Errorf("%w: neuron %d (%s layer %d index %d): %s has no module %q (it has %v)", ErrGeometry, i, n.Module, n.Layer, n.Index, model, n.Module, modules)
		case n.Layer < 0 || n.Layer >= g.Layers:
			return fmt.Errorf("%w: neuron %d (%s layer %d index %d): %s has layers 0..%d", ErrGeometry, i, n.Module, n.Layer, n.Index, model, g.Layers-1)
		case n.Index < 0 || n.Index >= g.Neurons:
			return fmt.Errorf("%w: neuron %d (%s layer %d index %d): %s has neurons 0..%d per layer", ErrGeometry, i, n.Module, n.Layer, n.Index, model, g.Neurons-1)
		}
	}
	return nil
}

// ReadFile reads and validates path.
func ReadFile(path string) (*Set, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	s, err := Unmarshal(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}
