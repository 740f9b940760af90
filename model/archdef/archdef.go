// Package archdef describes model architectures as data: for each Hugging Face architecture,
// the tensors a checkpoint holds (names and shapes from config keys), which of them make the
// FFN neurons of each module, tied names and tag-along files. inspect, synth, record and patch
// read this table; nothing else in neurosurg lists tensor names.
package archdef

import (
	"bytes"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"sync"
)

//go:embed defs/*.json
var defsFS embed.FS

// ErrUnsupported reports an architecture with no definition.
var ErrUnsupported = errors.New("archdef: unsupported architecture")

// TensorTemplate is one tensor of a definition. Name may hold "{i}" for the layer index;
// Shape entries are config keys or products of them ("num_attention_heads*head_dim").
type TensorTemplate struct {
	Name   string   `json:"name"`
	Shape  []string `json:"shape"`
	If     string   `json:"if,omitempty"`      // config key that must be true for the tensor to exist
	Init   string   `json:"init,omitempty"`    // "ones" for norm weights (synthetic checkpoints)
	TiedTo string   `json:"tied_to,omitempty"` // absent when tie_word_embeddings is true
}

// FFNTemplate names the tensors that make one module's FFN neurons.
type FFNTemplate struct {
	Module  string `json:"module"`
	Layers  string `json:"layers"`
	Neurons string `json:"neurons"`
	Act     string `json:"act"`
	Gate    string `json:"gate,omitempty"` // empty for a plain MLP
	Up      string `json:"up"`             // fc1 for a plain MLP
	Down    string `json:"down"`           // fc2 for a plain MLP
}

// Definition is one architecture's JSON definition.
type Definition struct {
	Architectures []string         `json:"architectures"`
	ModelTypes    []string         `json:"model_types"`
	Layers        string           `json:"layers"`
	Pre           []TensorTemplate `json:"pre"`
	Layer         []TensorTemplate `json:"layer"`
	Post          []TensorTemplate `json:"post"`
	FFN           []FFNTemplate    `json:"ffn"`
	FinalNorm     string           `json:"final_norm"`
	Unembed       string           `json:"unembed"`
	TagAlong      []string         `json:"tag_along"`
}

var (
	mu     sync.RWMutex // guards byArch and byType: RegisterDefinition may run after init
	byArch = map[string]*Definition{}
	byType = map[string]*Definition{}
)

func init() {
	ents, _ := defsFS.ReadDir("defs")
	for _, e := range ents {
		b, _ := defsFS.ReadFile("defs/" + e.Name())
		if err := RegisterDefinition(b); err != nil {
			panic(fmt.Sprintf("archdef: %s: %v", e.Name(), err))
		}
	}
}

// RegisterDefinition adds an architecture definition (the JSON of defs/*.json) to the table:
// what a test family or a plugin uses to describe a checkpoint neurosurg does not ship. The
// definition must name at least one architecture, none already defined, and every FFN group
// must name its module, its geometry keys and its up and down tensors.
func RegisterDefinition(b []byte) error {
	var d Definition
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&d); err != nil {
		return fmt.Errorf("archdef: definition: %w", err)
	}
	if len(d.Architectures) == 0 || d.Layers == "" {
		return fmt.Errorf("archdef: definition: no architectures or no layers key")
	}
	modules := map[string]bool{}
	for i, f := range d.FFN {
		if f.Module == "" || f.Layers == "" || f.Neurons == "" || f.Up == "" || f.Down == "" || modules[f.Module] {
			return fmt.Errorf("archdef: definition %s: FFN group %d (module %q) needs a unique module, layers, neurons, up and down", d.Architectures[0], i, f.Module)
		}
		modules[f.Module] = true
	}
	mu.Lock()
	defer mu.Unlock()
	for _, a := range d.Architectures {
		if byArch[a] != nil {
			return fmt.Errorf("archdef: architecture %s is defined twice", a)
		}
	}
	for _, a := range d.Architectures {
		byArch[a] = &d
	}
	for _, t := range d.ModelTypes {
		if byType[t] == nil {
			byType[t] = &d
		}
	}
	return nil
}

// Supported lists the architectures with a definition.
func Supported() []string {
	mu.RLock()
	defer mu.RUnlock()
	var out []string
	for a := range byArch {
		out = append(out, a)
	}
	sort.Strings(out)
	return out
}

// TensorSpec is a concrete tensor of an architecture.
type TensorSpec struct {
	Name  string
	Shape []int64
	Init  string
}

// FFNGroup is the FFN geometry of one module: Layers layers of Neurons neurons, with the
// names of the tensors of layer i given by the templates.
type FFNGroup struct {
	Module  string
	Layers  int
	Neurons int
	Act     string
	Gate    string
	Up      string
	Down    string
}

// TensorName fills a layer template.
func TensorName(template string, layer int) string {
	return strings.ReplaceAll(template, "{i}", strconv.Itoa(layer))
}

// Arch is a definition bound to a config.
type Arch struct {
	Name   string
	Def    *Definition
	Config map[string]any
}

// ForConfig finds the definition for a config.json (architectures[0], then model_type).
func ForConfig(configJSON []byte) (*Arch, error) {
	var cfg map[string]any
	if err := json.Unmarshal(configJSON, &cfg); err != nil {
		return nil, fmt.Errorf("config.json: %w", err)
	}
	var name string
	if as, ok := cfg["architectures"].([]any); ok && len(as) > 0 {
		name, _ = as[0].(string)
	}
	mt, _ := cfg["model_type"].(string)
	mu.RLock()
	d, byName := byArch[name], true
	if d == nil {
		d, byName = byType[mt], false
	}
	mu.RUnlock()
	if d == nil {
		return nil, fmt.Errorf("%w: architectures %q, model_type %q (supported: %s)", ErrUnsupported, name, mt, strings.Join(Supported(), ", "))
	}
	if !byName && name == "" {
		name = d.Architectures[0]
	}
	return &Arch{Name: name, Def: d, Config: cfg}, nil
}

// MaxLayers bounds a config's layer count: far above any model's, low enough that listing
// every layer's tensors stays small.
const MaxLayers = 1 << 12

// maxDim bounds any integer config value (a size, a count, a dimension).
const maxDim = 1 << 31

// Int reads an integer config key, with the derived defaults transformers uses. The value must
// be a whole number in 0..2^31.
func (a *Arch) Int(key string) (int64, error) {
	if v, ok := a.Config[key]; ok && v != nil {
		f, ok := v.(float64)
		if !ok {
			return 0, fmt.Errorf("config.json: %s is %v, not a number", key, v)
		}
		if f != math.Trunc(f) || f < 0 || f > maxDim {
			return 0, fmt.Errorf("config.json: %s is %v, want a whole number in 0..%d", key, v, int64(maxDim))
		}
		return int64(f), nil
	}
	switch key {
	case "head_dim":
		h, err := a.Int("hidden_size")
		if err != nil {
			return 0, err
		}
		n, err := a.Int("num_attention_heads")
		if err != nil || n == 0 {
			return 0, fmt.Errorf("config.json: head_dim: %v", err)
		}
		return h / n, nil
	case "num_key_value_heads":
		return a.Int("num_attention_heads")
	}
	return 0, fmt.Errorf("config.json: missing key %q", key)
}

// Bool reads a boolean config key (false when absent).
func (a *Arch) Bool(key string) bool {
	v, _ := a.Config[key].(bool)
	return v
}

func (a *Arch) dim(expr string) (int64, error) {
	n := int64(1)
	for _, k := range strings.Split(expr, "*") {
		v, err := a.Int(k)
		if err != nil {
			return 0, err
		}
		if v != 0 && n > (1<<62)/v {
			return 0, fmt.Errorf("config.json: %s overflows", expr)
		}
		n *= v
	}
	return n, nil
}

// Tensors lists every tensor the checkpoint must hold, in definition order.
func (a *Arch) Tensors() ([]TensorSpec, error) {
	layers, err := a.layers(a.Def.Layers)
	if err != nil {
		return nil, err
	}
	var out []TensorSpec
	add := func(t TensorTemplate, i int) error {
		if t.If != "" && !a.Bool(t.If) {
			return nil
		}
		if t.TiedTo != "" && a.Bool("tie_word_embeddings") {
			return nil
		}
		s := TensorSpec{Name: TensorName(t.Name, i), Init: t.Init}
		for _, e := range t.Shape {
			d, err := a.dim(e)
			if err != nil {
				return fmt.Errorf("tensor %s: %w", s.Name, err)
			}
			s.Shape = append(s.Shape, d)
		}
		out = append(out, s)
		return nil
	}
	for _, t := range a.Def.Pre {
		if err := add(t, 0); err != nil {
			return nil, err
		}
	}
	for i := 0; i < int(layers); i++ {
		for _, t := range a.Def.Layer {
			if err := add(t, i); err != nil {
				return nil, err
			}
		}
	}
	for _, t := range a.Def.Post {
		if err := add(t, 0); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// layers reads a layer-count key: 1..MaxLayers.
func (a *Arch) layers(key string) (int64, error) {
	n, err := a.Int(key)
	if err != nil {
		return 0, err
	}
	if n < 1 || n > MaxLayers {
		return 0, fmt.Errorf("config.json: %s is %d, want 1..%d", key, n, MaxLayers)
	}
	return n, nil
}

// FFN lists the FFN geometry of every module.
func (a *Arch) FFN() ([]FFNGroup, error) {
	var out []FFNGroup
	for _, f := range a.Def.FFN {
		l, err := a.layers(f.Layers)
		if err != nil {
			return nil, err
		}
		n, err := a.Int(f.Neurons)
		if err != nil {
			return nil, err
		}
		act, _ := a.Config[f.Act].(string)
		out = append(out, FFNGroup{Module: f.Module, Layers: int(l), Neurons: int(n), Act: act, Gate: f.Gate, Up: f.Up, Down: f.Down})
	}
	return out, nil
}

// UnembedName is the tensor holding the output embedding (the input embedding when tied).
func (a *Arch) UnembedName() string {
	for _, t := range a.Def.Post {
		if t.Name == a.Def.Unembed && t.TiedTo != "" && a.Bool("tie_word_embeddings") {
			return t.TiedTo
		}
	}
	return a.Def.Unembed
}
