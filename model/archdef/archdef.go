// Package archdef describes model architectures as data: for each Hugging Face architecture,
// its modules (language model, encoders, projectors), the tensors a checkpoint holds for each
// (names and shapes from config keys), which of them make the FFN neurons of each module, tied
// names and tag-along files. inspect, synth, record, patch and the runtime's weight binding
// (model.Binder: a family's Go file names templates, this table gives names and shapes) read
// this table; nothing else in neurosurg formats tensor names.
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

// TensorTemplate is one tensor of a module. In a module's layer list Name is relative to the
// module's layer prefix; in pre and post it is the full name. Shape entries are config keys
// (read in the module's config) or products of them ("num_attention_heads*head_dim").
type TensorTemplate struct {
	Name   string   `json:"name"`
	Shape  []string `json:"shape"`
	If     string   `json:"if,omitempty"`      // config key that must be true for the tensor to exist
	Init   string   `json:"init,omitempty"`    // "ones" for norm weights (synthetic checkpoints)
	TiedTo string   `json:"tied_to,omitempty"` // absent when tie_word_embeddings is true: that tensor serves
	// Every is a config key k: the layer tensor exists only in layers i with i % k == 0
	// (InstructBLIP's Q-Former has cross-attention every cross_attention_frequency layers).
	Every string `json:"every,omitempty"`
}

// FFNTemplate names the tensors that make one module's FFN neurons, relative to the module's
// layer prefix.
type FFNTemplate struct {
	Neurons string `json:"neurons"`
	Act     string `json:"act"`
	Gate    string `json:"gate,omitempty"` // empty for a plain MLP
	Up      string `json:"up"`             // fc1 for a plain MLP
	Down    string `json:"down"`           // fc2 for a plain MLP
}

// Module is one part of an architecture: a language decoder ("llm"), a vision or audio
// encoder, a projector. Its sizes are read from its config object: the top level, or a
// sub-object (vision_config, text_config) whose missing keys fall back to the top level when
// Fallback is set (LLaVA's text_config omits the defaults). Defaults are the values of keys
// the config leaves out, as the module's transformers config class defaults them (Qwen2-Audio's
// text_config omits Qwen2-7B's sizes, which Qwen2Config's constructor supplies): they apply
// after the fallback, to keys neither object has (LLaVA's text_config names only what differs
// from LlamaConfig, its vision_config what differs from CLIPVisionConfig). Any key the config
// gives wins.
type Module struct {
	Name        string           `json:"name"`
	Config      string           `json:"config,omitempty"`
	Fallback    bool             `json:"fallback,omitempty"`
	Defaults    map[string]any   `json:"defaults,omitempty"`
	Layers      string           `json:"layers,omitempty"` // layer-count key; "" for a module without layers
	LayerPrefix string           `json:"layer_prefix,omitempty"`
	Pre         []TensorTemplate `json:"pre,omitempty"`
	Layer       []TensorTemplate `json:"layer,omitempty"`
	Post        []TensorTemplate `json:"post,omitempty"`
	FFN         *FFNTemplate     `json:"ffn,omitempty"`
}

// Definition is one architecture's JSON definition.
type Definition struct {
	Architectures []string `json:"architectures"`
	ModelTypes    []string `json:"model_types"`
	Modules       []Module `json:"modules"`
	FinalNorm     string   `json:"final_norm"`
	Unembed       string   `json:"unembed"`
	TagAlong      []string `json:"tag_along"`
	// Defaults are the values of the transformers config classes for keys a config.json may
	// leave out: a top-level key, or an object of defaults for a sub-config (vision_config)
	// whose missing keys they fill. ForConfig applies them.
	Defaults map[string]any `json:"defaults,omitempty"`
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
// definition must name at least one architecture, none already defined, and at least one
// module; module names are unique, and every FFN group names its neurons key and its up and
// down tensors.
func RegisterDefinition(b []byte) error {
	var d Definition
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&d); err != nil {
		return fmt.Errorf("archdef: definition: %w", err)
	}
	if len(d.Architectures) == 0 || len(d.Modules) == 0 {
		return fmt.Errorf("archdef: definition: no architectures or no modules")
	}
	if err := d.check(); err != nil {
		return fmt.Errorf("archdef: definition %s: %w", d.Architectures[0], err)
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

// check refuses a definition the rest of the package cannot use.
func (d *Definition) check() error {
	seen := map[string]bool{}
	for _, m := range d.Modules {
		if m.Name == "" || seen[m.Name] {
			return fmt.Errorf("module name %q empty or repeated", m.Name)
		}
		seen[m.Name] = true
		if (m.Layers == "") != (len(m.Layer) == 0) || (len(m.Layer) > 0 && m.Layers != "1" && !strings.Contains(m.LayerPrefix, "{i}")) {
			return fmt.Errorf("module %s: layers, layer_prefix with {i} (unless layers is \"1\") and layer tensors go together", m.Name)
		}
		if f := m.FFN; f != nil && (m.Layers == "" || f.Neurons == "" || f.Up == "" || f.Down == "") {
			return fmt.Errorf("module %s: an FFN group needs layers, neurons, up and down", m.Name)
		}
	}
	return nil
}

// TensorSpec is a concrete tensor of an architecture.
type TensorSpec struct {
	Name  string
	Shape []int64
	Init  string
	Keys  []string // the config expressions Shape comes from, for errors
	Alias string   // when tied: the tensor that serves for this one (it is not stored)
}

// FFNGroup is the FFN geometry of one module: Layers layers of Neurons neurons, with the
// names of the tensors of layer i given by the templates (full names with "{i}").
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

// Bound is one module of an architecture bound to its config: Config holds the module's keys
// (its sub-object, with the top level's where it falls back).
type Bound struct {
	Arch
	Module *Module
}

// Modules lists the architecture's modules, each bound to its config.
func (a *Arch) Modules() []*Bound {
	var out []*Bound
	for i := range a.Def.Modules {
		out = append(out, a.bind(&a.Def.Modules[i]))
	}
	return out
}

// Module returns the named module, nil when the architecture has none.
func (a *Arch) Module(name string) *Bound {
	for i := range a.Def.Modules {
		if a.Def.Modules[i].Name == name {
			return a.bind(&a.Def.Modules[i])
		}
	}
	return nil
}

func (a *Arch) bind(m *Module) *Bound {
	b := &Bound{Arch: Arch{Name: a.Name, Def: a.Def, Config: a.Config}, Module: m}
	if m.Config == "" && len(m.Defaults) == 0 {
		return b
	}
	cfg := map[string]any{}
	for k, v := range m.Defaults {
		cfg[k] = v
	}
	if m.Config == "" {
		for k, v := range a.Config {
			cfg[k] = v
		}
		b.Config = cfg
		return b
	}
	sub := configObject(a.Config, m.Config)
	if m.Fallback {
		for k, v := range a.Config {
			cfg[k] = v
		}
	}
	for k, v := range sub {
		cfg[k] = v
	}
	b.Config = cfg
	return b
}

// configObject is the sub-object at a module's config path: a key of the top level
// ("vision_config") or a dotted path into nested objects ("visual_config.visual_model": mPLUG-Owl2
// nests its vision and abstractor configs in one object). Nil when any step is missing.
func configObject(cfg map[string]any, path string) map[string]any {
	for _, k := range strings.Split(path, ".") {
		cfg, _ = cfg[k].(map[string]any)
	}
	return cfg
}

// ConfigJSON is the module's config as a JSON object (for a family's own config parser).
func (b *Bound) ConfigJSON() []byte {
	j, _ := json.Marshal(b.Config)
	return j
}

// LayerCount reads the module's layer count (0 for a module without layers).
func (b *Bound) LayerCount() (int, error) {
	if b.Module.Layers == "" {
		return 0, nil
	}
	n, err := b.layers(b.Module.Layers)
	return int(n), err
}

// Tensor finds the tensor a family asks for by its template name: a layer tensor (relative to
// the layer prefix) when layer ≥ 0, a pre or post tensor (full name) when layer < 0. ok is
// false when the definition says the tensor is absent under this config (an "if" key that is
// false); a name the module does not define is an error.
func (b *Bound) Tensor(name string, layer int) (spec TensorSpec, ok bool, err error) {
	list := append(append([]TensorTemplate(nil), b.Module.Pre...), b.Module.Post...)
	if layer >= 0 {
		list = b.Module.Layer
	}
	for _, t := range list {
		if t.Name != name {
			continue
		}
		if t.If != "" && !b.Bool(t.If) {
			return TensorSpec{}, false, nil
		}
		if in, err := b.inLayer(t, layer); err != nil || !in {
			return TensorSpec{}, false, err
		}
		s, err := b.spec(t, layer)
		if err != nil {
			return s, false, err
		}
		if t.TiedTo != "" && b.Bool("tie_word_embeddings") {
			s.Alias = t.TiedTo
		}
		return s, true, nil
	}
	return TensorSpec{}, false, fmt.Errorf("archdef: module %s of %s defines no tensor %q", b.Module.Name, b.Name, name)
}

// inLayer reports whether a layer tensor with an "every" key exists in layer (pre and post
// tensors, layer < 0, always do). The key must be a positive count.
func (b *Bound) inLayer(t TensorTemplate, layer int) (bool, error) {
	if t.Every == "" || layer < 0 {
		return true, nil
	}
	n, err := b.Int(t.Every)
	if err != nil {
		return false, err
	}
	if n < 1 {
		return false, fmt.Errorf("config.json: %s is %d, want at least 1", t.Every, n)
	}
	return int64(layer)%n == 0, nil
}

// LayerName is the full name of a layer tensor template.
func (b *Bound) LayerName(name string, layer int) string {
	return TensorName(b.Module.LayerPrefix+name, layer)
}

func (b *Bound) spec(t TensorTemplate, layer int) (TensorSpec, error) {
	name := t.Name
	if layer >= 0 {
		name = b.LayerName(t.Name, layer)
	}
	s := TensorSpec{Name: name, Init: t.Init, Keys: t.Shape}
	for _, e := range t.Shape {
		d, err := b.dim(e)
		if err != nil {
			return s, fmt.Errorf("tensor %s: %w", s.Name, err)
		}
		s.Shape = append(s.Shape, d)
	}
	return s, nil
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
	applyDefaults(cfg, d.Defaults)
	return &Arch{Name: name, Def: d, Config: cfg}, nil
}

// applyDefaults fills the keys cfg lacks (or has as null) from defaults; an object of
// defaults fills a sub-config key by key (a missing or null sub-config becomes the defaults).
func applyDefaults(cfg map[string]any, defaults map[string]any) {
	for k, dv := range defaults {
		sub, isObj := dv.(map[string]any)
		cur, has := cfg[k]
		switch {
		case isObj:
			obj, ok := cur.(map[string]any)
			if !ok {
				if has && cur != nil {
					continue // a config's non-object value is its own; Int reports it where used
				}
				obj = map[string]any{}
				cfg[k] = obj
			}
			applyDefaults(obj, sub)
		case !has || cur == nil:
			cfg[k] = dv
		}
	}
}

// MaxLayers bounds a config's layer count: far above any model's, low enough that listing
// every layer's tensors stays small.
const MaxLayers = 1 << 12

// maxDim bounds any integer config value (a size, a count, a dimension).
const maxDim = 1 << 31

// Int reads an integer config key, with the derived defaults transformers uses. The value must
// be a whole number in 0..2^31. A key may be a literal count ("1") or a dotted path into a
// sub-object ("vision_config.hidden_size": a projector's sizes come from the modules it joins).
func (a *Arch) Int(key string) (int64, error) {
	if n, err := strconv.Atoi(key); err == nil && n >= 0 {
		return int64(n), nil
	}
	if sub, rest, ok := strings.Cut(key, "."); ok {
		// A sub-object a module reads is read as that module sees it: with its defaults (an
		// absent one is all defaults, as transformers builds it).
		if a.Def != nil {
			for i := range a.Def.Modules {
				_, isObj := a.Config[sub].(map[string]any)
				if m := &a.Def.Modules[i]; m.Config == sub && (isObj || a.Config[sub] == nil && len(m.Defaults) > 0) {
					n, err := a.bind(m).Int(rest)
					if err != nil {
						return 0, fmt.Errorf("%s: %w", sub, err)
					}
					return n, nil
				}
			}
		}
		obj, _ := a.Config[sub].(map[string]any)
		if obj == nil {
			return 0, fmt.Errorf("config.json: missing object %q (for %s)", sub, key)
		}
		inner := Arch{Name: a.Name, Def: a.Def, Config: obj}
		n, err := inner.Int(rest)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", sub, err)
		}
		return n, nil
	}
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
	case "grid_positions":
		// mPLUG-Owl2's abstractor: k_pos_embed has a row per cell of its grid_size² grid and one
		// for the class token.
		g, err := a.Int("grid_size")
		if err != nil {
			return 0, err
		}
		if g > 1<<15 {
			return 0, fmt.Errorf("config.json: grid_size is %d, want at most %d", g, 1<<15)
		}
		return g*g + 1, nil
	case "num_patches", "num_positions":
		// A ViT's patch grid: (image_size // patch_size)², plus the class token's position.
		s, err := a.Int("image_size")
		if err != nil {
			return 0, err
		}
		p, err := a.Int("patch_size")
		if err != nil {
			return 0, err
		}
		if p == 0 {
			return 0, fmt.Errorf("config.json: patch_size is 0 (%s = (image_size / patch_size)², +1 for num_positions)", key)
		}
		n := (s / p) * (s / p)
		if key == "num_positions" {
			n++
		}
		return n, nil
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

// Tensors lists every tensor the checkpoint must hold, module by module in definition order.
func (a *Arch) Tensors() ([]TensorSpec, error) {
	var out []TensorSpec
	for _, b := range a.Modules() {
		layers, err := b.LayerCount()
		if err != nil {
			return nil, err
		}
		add := func(t TensorTemplate, i int) error {
			if t.If != "" && !b.Bool(t.If) {
				return nil
			}
			if in, err := b.inLayer(t, i); err != nil || !in {
				return err
			}
			if t.TiedTo != "" && b.Bool("tie_word_embeddings") {
				return nil
			}
			s, err := b.spec(t, i)
			if err != nil {
				return err
			}
			out = append(out, s)
			return nil
		}
		for _, t := range b.Module.Pre {
			if err := add(t, -1); err != nil {
				return nil, err
			}
		}
		for i := 0; i < layers; i++ {
			for _, t := range b.Module.Layer {
				if err := add(t, i); err != nil {
					return nil, err
				}
			}
		}
		for _, t := range b.Module.Post {
			if err := add(t, -1); err != nil {
				return nil, err
			}
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

// FFN lists the FFN geometry of every module that has neurons.
func (a *Arch) FFN() ([]FFNGroup, error) {
	var out []FFNGroup
	for _, b := range a.Modules() {
		f := b.Module.FFN
		if f == nil {
			continue
		}
		l, err := b.LayerCount()
		if err != nil {
			return nil, err
		}
		n, err := b.dim(f.Neurons) // a key or a product of keys (embed_dim*mlp_ratio)
		if err != nil {
			return nil, err
		}
		act, _ := b.Config[f.Act].(string)
		g := FFNGroup{Module: b.Module.Name, Layers: l, Neurons: int(n), Act: act, Up: b.Module.LayerPrefix + f.Up, Down: b.Module.LayerPrefix + f.Down}
		if f.Gate != "" {
			g.Gate = b.Module.LayerPrefix + f.Gate
		}
		out = append(out, g)
	}
	return out, nil
}

// UnembedName is the tensor holding the output embedding (the input embedding when tied).
func (a *Arch) UnembedName() string {
	for _, b := range a.Modules() {
		for _, t := range b.Module.Post {
			if t.Name == a.Def.Unembed && t.TiedTo != "" && b.Bool("tie_word_embeddings") {
				return t.TiedTo
			}
		}
	}
	return a.Def.Unembed
}

// Defines reports whether architecture has a definition.
func Defines(architecture string) bool { return byArch[architecture] != nil }

// ArchitectureOf is the architecture a model_type stands for ("" if none): what a config
// without architectures means.
func ArchitectureOf(modelType string) string {
	if d := byType[modelType]; d != nil {
		return d.Architectures[0]
	}
	return ""
}

// HasTemplate reports whether the module defines a tensor template name (a layer template
// when layer ≥ 0, pre/post otherwise), whatever the config says about its presence.
func (b *Bound) HasTemplate(name string, layer int) bool {
	list := append(append([]TensorTemplate(nil), b.Module.Pre...), b.Module.Post...)
	if layer >= 0 {
		list = b.Module.Layer
	}
	for _, t := range list {
		if t.Name == name {
			return true
		}
	}
	return false
}
