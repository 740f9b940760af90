package model

import (
	"fmt"
	"strings"

	"github.com/neurosurg/neurosurg/model/archdef"
	"github.com/neurosurg/neurosurg/model/kernels"
)

// Binder hands a family's Build the weights of its modules by their archdef template names:
// the definition gives each tensor's full name and shape (from config keys), so a family file
// names roles ("self_attn.q_proj.weight" of layer i), never formats tensor names. The first
// error sticks; later calls return zero values, and Build returns Err at the end.
type Binder struct {
	Model *Model
	Arch  *archdef.Arch
	src   TensorSource
	err   error
}

// Module is one bound module of the architecture.
type Module struct {
	b   *Binder
	def *archdef.Bound
}

// Module returns the named module of the definition; a name the definition lacks is an error
// (reported by Err).
func (b *Binder) Module(name string) *Module {
	d := b.Arch.Module(name)
	if d == nil && b.err == nil {
		b.err = fmt.Errorf("archdef: %s defines no module %q", b.Arch.Name, name)
	}
	return &Module{b: b, def: d}
}

// Err is the first error of the binding.
func (b *Binder) Err() error { return b.err }

// Fail records err unless an error is already recorded (for a family's own checks).
func (b *Binder) Fail(err error) {
	if b.err == nil {
		b.err = err
	}
}

// Config is the module's config keys (its sub-object, with the top level's where the
// definition says it falls back).
func (m *Module) Config() *archdef.Bound { return m.def }

// Int is a whole-number key of the module's config (its defaults applied); a missing or bad
// one is an ErrConfig naming the config object, reported by Err.
func (m *Module) Int(key string) int {
	if m.def == nil {
		return 0
	}
	n, err := m.def.Int(key)
	if err != nil {
		m.b.Fail(fmt.Errorf("%w: %s: %v", ErrConfig, m.def.Module.Config, err))
	}
	return int(n)
}

// Eps is the module config's layer_norm_eps, def when absent (def ≤ 0: required); a value
// that is not a number in (0, 1) is an ErrConfig naming the config object, reported by Err.
func (m *Module) Eps(def float64) float32 {
	if m.def == nil {
		return 0
	}
	v, ok := m.def.Config["layer_norm_eps"]
	if (!ok || v == nil) && def > 0 {
		return float32(def)
	}
	e, isNum := v.(float64)
	if !isNum || !(e > 0 && e < 1) {
		m.b.Fail(configError(m.def.Module.Config+".layer_norm_eps", "%v, want a number in (0, 1)", v))
		return 0
	}
	return float32(e)
}

// Layers is the module's layer count.
func (m *Module) Layers() int {
	if m.def == nil {
		return 0
	}
	n, err := m.def.LayerCount()
	m.b.Fail(err)
	return n
}

// spec finds a tensor of the definition: layer ≥ 0 for a layer tensor, -1 for pre/post.
func (m *Module) spec(name string, layer int) (archdef.TensorSpec, bool) {
	if m.b.err != nil || m.def == nil {
		return archdef.TensorSpec{}, false
	}
	s, ok, err := m.def.Tensor(name, layer)
	if err != nil {
		m.b.err = err
		return s, false
	}
	return s, ok
}

// Weight binds a 2-D tensor used as a Linear weight (or an embedding table), in place. A tied
// tensor binds to the tensor it is tied to: the same bytes, no copy.
func (m *Module) Weight(name string, layer int) weight { return m.weight(name, layer, false) }

// FlatWeight binds an N-D tensor (N ≥ 2) in place as the 2-D weight [shape[0], product of
// the rest]: a Conv1d/Conv2d/Conv3d kernel [out, in, k…] is, row by row, the weight of the
// matrix product over unfolded patches (in-channel major, then the kernel's dimensions in
// order), which is how Conv1D and patch embeddings use it.
func (m *Module) FlatWeight(name string, layer int) weight { return m.weight(name, layer, true) }

// Floats binds a small N-D tensor (N ≥ 2: a class token, a position table, learned queries)
// as its values in f32, converted once: rows a forward pass adds or copies, never multiplies.
func (m *Module) Floats(name string, layer int) []float32 {
	w := m.FlatWeight(name, layer)
	if m.b.err != nil {
		return nil
	}
	out := make([]float32, w.rows*w.cols)
	kernels.ToFloat32(out, w.b, w.dt)
	return out
}

// weight is Weight (flat false: the definition's shape must be 2-D) and FlatWeight.
func (m *Module) weight(name string, layer int, flat bool) weight {
	s, ok := m.spec(name, layer)
	if !ok {
		if m.b.err == nil {
			m.b.err = fmt.Errorf("archdef: tensor %q of module %s is absent under this config", name, m.def.Module.Name)
		}
		return weight{}
	}
	switch {
	case flat && len(s.Shape) < 2:
		m.b.Fail(fmt.Errorf("archdef: tensor %q has fewer than 2 dimensions in the definition", s.Name))
		return weight{}
	case !flat && len(s.Shape) != 2:
		m.b.Fail(fmt.Errorf("archdef: tensor %q is not 2-D in the definition", s.Name))
		return weight{}
	}
	dims := make([]dim, len(s.Shape))
	for i := range s.Shape {
		dims[i] = dim{int(s.Shape[i]), keyName(s.Keys[i])}
	}
	from := s.Name
	if s.Alias != "" {
		from = s.Alias
	}
	l := loader{src: m.b.src}
	w := l.weight(from, dims)
	m.b.Fail(l.err)
	if l.err == nil && s.Alias == "" {
		m.b.Model.bound = append(m.b.Model.bound, boundTensor{name: s.Name, w: w})
	}
	return w
}

// Vector binds a required 1-D tensor (a norm weight, a bias), converted to f32 once.
func (m *Module) Vector(name string, layer int) []float32 {
	v, ok := m.OptVector(name, layer)
	if !ok && m.b.err == nil {
		m.b.err = fmt.Errorf("archdef: tensor %q of module %s is absent under this config", name, m.def.Module.Name)
	}
	return v
}

// OptVector binds a 1-D tensor the definition may leave out under this config (a bias behind
// an "if" key): nil, false when absent.
func (m *Module) OptVector(name string, layer int) ([]float32, bool) {
	s, ok := m.spec(name, layer)
	if !ok {
		return nil, false
	}
	if len(s.Shape) != 1 {
		m.b.Fail(fmt.Errorf("archdef: tensor %q is not 1-D in the definition", s.Name))
		return nil, false
	}
	l := loader{src: m.b.src}
	v := l.vector(s.Name, dim{int(s.Shape[0]), keyName(s.Keys[0])})
	m.b.Fail(l.err)
	if l.err == nil {
		m.b.Model.bound = append(m.b.Model.bound, boundTensor{name: s.Name, v: v})
	}
	return v, l.err == nil
}

// Linear binds name.weight and, when the definition has it under this config, name.bias.
func (m *Module) Linear(name string, layer int) Linear {
	w := m.Weight(name+".weight", layer)
	var b []float32
	if m.def != nil && m.def.HasTemplate(name+".bias", layer) {
		b, _ = m.OptVector(name+".bias", layer)
	}
	return Linear{w: w, b: b}
}

// LayerNorm binds name.weight and name.bias as a LayerNorm with eps.
func (m *Module) LayerNorm(name string, layer int, eps float32) LayerNorm {
	return LayerNorm{m.Vector(name+".weight", layer), m.Vector(name+".bias", layer), eps}
}

// keyName writes a shape expression as the config keys it multiplies.
func keyName(expr string) string { return strings.ReplaceAll(expr, "*", "×") }

// boundTensor is a tensor the model uses, in the order its family bound it (the forward
// pass's order): a weight in place, or a vector converted to f32.
type boundTensor struct {
	name string
	w    weight
	v    []float32
}
