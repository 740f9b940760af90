// Package patch turns a neuron set into weight edits: zero, scale, token-direction swap and
// seeded noise on the output vectors (down_proj / fc2 columns) of the selected neurons.
// Edits compose in order and stay in each tensor's dtype; only edited elements are re-encoded,
// rounding to nearest even.
//
// Every module's neurons are edited the same way, at their output column: down_proj of a gated
// FFN, fc2 of a plain MLP (an encoder's fc1 → act → fc2), as archdef's FFN groups name them.
// Zeroing fc2 column j is exactly a_j = 0 downstream (fc2's bias is not the neuron's and is
// left alone). The input side — fc1 row j and fc1 bias j, which give a_j = act(0) = 0 for
// GELU and its variants — would be the alternative for zero only, and is not implemented:
// scale, noise and set have no input-side equivalent. swap is defined only for the language
// model: it reflects a column along a direction of the unembedding, which only the decoder's
// columns live in.
package patch

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"strconv"
	"strings"

	"github.com/neurosurg/neurosurg/dtype"
	"github.com/neurosurg/neurosurg/formats/hfdir"
	"github.com/neurosurg/neurosurg/formats/neuronset"
	"github.com/neurosurg/neurosurg/formats/safetensors"
	"github.com/neurosurg/neurosurg/model"
	"github.com/neurosurg/neurosurg/model/archdef"
	"github.com/neurosurg/neurosurg/model/tokenizer"
)

// ErrOp reports an operation that cannot be parsed or applied.
var ErrOp = errors.New("patch: bad operation")

// Op is one edit operation.
type Op struct {
	Kind   string  // zero, scale, swap, noise
	Alpha  float64 // scale factor
	Src    string  // swap source word
	Tgt    string  // swap target word
	Lambda float64 // swap strength: 1 exchanges the two components exactly
	Sigma  float64 // noise standard deviation
	Seed   uint64
	Path   string // set: safetensors file with one F32 vector "MODULE.LAYER.INDEX" per neuron
}

func (o Op) String() string {
	switch o.Kind {
	case "scale":
		return "scale:" + strconv.FormatFloat(o.Alpha, 'g', -1, 64)
	case "swap":
		s := "swap:" + o.Src + ">" + o.Tgt
		if o.Lambda != 1 {
			s += ":" + strconv.FormatFloat(o.Lambda, 'g', -1, 64)
		}
		return s
	case "noise":
		return "noise:" + strconv.FormatFloat(o.Sigma, 'g', -1, 64)
	case "set":
		return "set:" + o.Path
	}
	return o.Kind
}

// ParseOp reads zero, scale:α, swap:SRC>TGT[:λ], noise:σ, set:FILE.
func ParseOp(s string) (Op, error) {
	kind, arg, _ := strings.Cut(s, ":")
	num := func(v string) (float64, error) {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			return 0, fmt.Errorf("%w: %q: %q is not a number", ErrOp, s, v)
		}
		return f, nil
	}
	var err error
	o := Op{Kind: kind, Lambda: 1}
	switch kind {
	case "zero":
		if arg != "" {
			return o, fmt.Errorf("%w: %q: zero takes no argument", ErrOp, s)
		}
	case "scale":
		o.Alpha, err = num(arg)
	case "noise":
		if o.Sigma, err = num(arg); err == nil && o.Sigma < 0 {
			err = fmt.Errorf("%w: %q: σ must be ≥ 0", ErrOp, s)
		}
	case "set":
		if arg == "" {
			return o, fmt.Errorf("%w: %q: want set:FILE.safetensors", ErrOp, s)
		}
		o.Path = arg
	case "swap":
		pair, lam, hasLam := strings.Cut(arg, ":")
		if o.Src, o.Tgt, err = ParseSwapPair(pair); err != nil {
			return o, fmt.Errorf("%w: %q: %v", ErrOp, s, err)
		}
		if hasLam {
			o.Lambda, err = num(lam)
		}
	default:
		return o, fmt.Errorf("%w: %q: want zero, scale:α, swap:SRC>TGT[:λ], noise:σ or set:FILE", ErrOp, s)
	}
	return o, err
}

// ParseSwapPair reads SOURCE>TARGET: two words, neither empty nor containing '>'
// ("Lily>Tim>Bob" is refused rather than read as Lily → "Tim>Bob").
func ParseSwapPair(s string) (src, tgt string, err error) {
	src, tgt, ok := strings.Cut(s, ">")
	src, tgt = strings.TrimSpace(src), strings.TrimSpace(tgt)
	if !ok || src == "" || tgt == "" || strings.Contains(tgt, ">") {
		return "", "", fmt.Errorf("want SOURCE>TARGET, two words (got %q)", s)
	}
	if src == tgt {
		return "", "", fmt.Errorf("%q: source and target are the same word", s)
	}
	return src, tgt, nil
}

// Inputs is what Apply needs besides the neurons.
type Inputs struct {
	Base      *hfdir.Checkpoint
	Tokenizer *tokenizer.Tokenizer // for swap
}

// Apply edits the columns of the selected neurons and returns the new bytes of every edited
// tensor. Neurons outside the model are an error naming them.
func Apply(in Inputs, set *neuronset.Set, ops []Op) (map[string][]byte, error) {
	a, err := archdef.ForConfig(in.Base.ConfigJSON)
	if err != nil {
		return nil, err
	}
	groups, err := a.FFN()
	if err != nil {
		return nil, err
	}
	geom := geometry(groups)
	if err := set.CheckModel(in.Base.Fingerprint(), geom); err != nil {
		return nil, err
	}
	if err := set.CheckGeometry(in.Base.Dir, geom); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrOp, err)
	}
	byModule := map[string]archdef.FFNGroup{}
	for _, g := range groups {
		byModule[g.Module] = g
	}
	if err := checkSwapModules(set, ops); err != nil {
		return nil, err
	}
	cols := map[string][]int{} // tensor -> columns
	var names []string
	for _, n := range set.Neurons {
		g := byModule[n.Module]
		name := archdef.TensorName(g.Down, n.Layer)
		if _, ok := cols[name]; !ok {
			names = append(names, name)
		}
		cols[name] = append(cols[name], n.Index)
	}
	sort.Strings(names)
	dirs := map[int][]float64{}
	sets := map[int]*safetensors.File{}
	defer func() {
		for _, f := range sets {
			f.Close()
		}
	}()
	for i, op := range ops {
		if op.Kind == "set" {
			f, err := safetensors.Open(op.Path)
			if err != nil {
				return nil, err
			}
			sets[i] = f
		}
		if op.Kind == "swap" {
			w, err := swapDirection(in, a, op)
			if err != nil {
				return nil, err
			}
			dirs[i] = w
		}
	}
	neuronOf := map[string]neuronset.Neuron{} // tensor/column -> neuron, for set's vector names
	for _, n := range set.Neurons {
		neuronOf[archdef.TensorName(byModule[n.Module].Down, n.Layer)+"/"+strconv.Itoa(n.Index)] = n
	}
	out := map[string][]byte{}
	for _, name := range names {
		info, orig, err := in.Base.Tensor(name)
		if err != nil {
			return nil, err
		}
		if !info.DType.IsFloat() || len(info.Shape) != 2 {
			return nil, fmt.Errorf("%w: tensor %q is %s %v, not a float matrix", ErrOp, name, info.DType, info.Shape)
		}
		rows, n := int(info.Shape[0]), int(info.Shape[1])
		es := info.DType.Size()
		nb := append([]byte(nil), orig...)
		js := dedupe(cols[name])
		col := make([]float32, rows)
		one := make([]float32, 1)
		for _, j := range js {
			for r := 0; r < rows; r++ {
				o := (r*n + j) * es
				dtype.ToFloat32(one, orig[o:o+es], info.DType)
				col[r] = one[0]
			}
			v := make([]float64, rows)
			for r := range v {
				v[r] = float64(col[r])
			}
			for i, op := range ops {
				switch op.Kind {
				case "zero":
					clear(v)
				case "scale":
					for r := range v {
						v[r] *= op.Alpha
					}
				case "swap":
					w := dirs[i]
					if len(w) != rows {
						return nil, fmt.Errorf("%w: swap direction has %d dims, %s has %d rows", ErrOp, len(w), name, rows)
					}
					var dot float64
					for r := range v {
						dot += w[r] * v[r]
					}
					for r := range v {
						v[r] -= 2 * op.Lambda * dot * w[r]
					}
				case "set":
					n := neuronOf[name+"/"+strconv.Itoa(j)]
					vec := fmt.Sprintf("%s.%d.%d", n.Module, n.Layer, n.Index)
					info, ok := sets[i].Tensor(vec)
					if !ok || info.DType != safetensors.F32 || info.NumElements() != int64(rows) {
						return nil, fmt.Errorf("%w: %s: want an F32 tensor %q of %d values", ErrOp, op.Path, vec, rows)
					}
					b, _ := sets[i].Bytes(vec)
					f := make([]float32, rows)
					dtype.ToFloat32(f, b, safetensors.F32)
					for r := range v {
						v[r] = float64(f[r])
					}
				case "noise":
					// One stream per (seed, tensor, column): the same neuron gets the same noise.
					rng := rand.New(rand.NewPCG(op.Seed, uint64(j)^hashName(name)))
					for r := range v {
						v[r] += op.Sigma * rng.NormFloat64()
					}
				}
			}
			for r := range v {
				o := (r*n + j) * es
				one[0] = float32(v[r])
				dtype.FromFloat32(nb[o:o+es], one, info.DType)
				// What the tensor will hold must be finite: scale:1e39 overflows F32, 1e5
				// overflows F16, and a NaN in the base stays NaN through scale and noise.
				dtype.ToFloat32(one, nb[o:o+es], info.DType)
				if f := float64(one[0]); math.IsNaN(f) || math.IsInf(f, 0) {
					return nil, fmt.Errorf("%w: %s would write %v into %s[%d, %d] (%s; base value %v): refusing a non-finite weight",
						ErrOp, opList(ops), one[0], name, r, j, info.DType, col[r])
				}
			}
		}
		out[name] = nb
	}
	return out, nil
}

// checkSwapModules refuses a swap of a neuron outside the language model: the swap direction
// is a difference of unembedding rows, a vector of the decoder's hidden space, and the logits
// it moves are the decoder's.
func checkSwapModules(set *neuronset.Set, ops []Op) error {
	for _, op := range ops {
		if op.Kind != "swap" {
			continue
		}
		for i, n := range set.Neurons {
			if n.Module != "llm" {
				return fmt.Errorf("%w: %s: neuron %d is in module %q: a swap reflects a decoder neuron's down_proj column along the unembedding, which only the language model (llm) has; use zero, scale, noise or set for %s neurons", ErrOp, op, i, n.Module, n.Module)
			}
		}
	}
	return nil
}

// CheckSet refuses a neuron set made on a model other than base (neuronset.CheckModel) or
// naming a neuron base does not have (neuronset.CheckGeometry): what Apply checks, for the
// commands that only read a set against a model.
func CheckSet(set *neuronset.Set, base *hfdir.Checkpoint) error {
	g, err := Geometry(base)
	if err != nil {
		return err
	}
	if err := set.CheckModel(base.Fingerprint(), g); err != nil {
		return err
	}
	return set.CheckGeometry(base.Dir, g)
}

// Geometry is the FFN shape, per module, of base: what a neuron set records of its model.
func Geometry(base *hfdir.Checkpoint) (map[string]neuronset.Geometry, error) {
	a, err := archdef.ForConfig(base.ConfigJSON)
	if err != nil {
		return nil, err
	}
	groups, err := a.FFN()
	if err != nil {
		return nil, err
	}
	return geometry(groups), nil
}

func geometry(groups []archdef.FFNGroup) map[string]neuronset.Geometry {
	g := map[string]neuronset.Geometry{}
	for _, f := range groups {
		g[f.Module] = neuronset.Geometry{Layers: f.Layers, Neurons: f.Neurons}
	}
	return g
}

func opList(ops []Op) string {
	s := make([]string, len(ops))
	for i, o := range ops {
		s[i] = o.String()
	}
	return strings.Join(s, ", ")
}

func dedupe(js []int) []int {
	sort.Ints(js)
	out := js[:0]
	for i, j := range js {
		if i == 0 || j != js[i-1] {
			out = append(out, j)
		}
	}
	return out
}

func hashName(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h = (h ^ uint64(s[i])) * 1099511628211
	}
	return h
}

// CheckOps checks what ParseOp cannot know: that each swap word is one token of the
// checkpoint's tokenizer. Apply checks the same; callers check first to fail before work.
func CheckOps(in Inputs, ops []Op) error {
	for _, op := range ops {
		if op.Kind == "swap" {
			if _, _, err := swapTokens(in, op); err != nil {
				return err
			}
		}
	}
	return nil
}

// swapTokens returns the token of each swap word. Each word must be one token: the direction
// of a word's first piece ("▁B" for "Bartholomew") would move every word that starts with it.
func swapTokens(in Inputs, op Op) (src, tgt int32, err error) {
	if in.Tokenizer == nil {
		return 0, 0, fmt.Errorf("%w: swap needs the checkpoint's tokenizer", ErrOp)
	}
	if src, err = in.Tokenizer.WordID(op.Src); err != nil {
		return 0, 0, fmt.Errorf("%w: swap source %w", ErrOp, err)
	}
	if tgt, err = in.Tokenizer.WordID(op.Tgt); err != nil {
		return 0, 0, fmt.Errorf("%w: swap target %w", ErrOp, err)
	}
	if src == tgt {
		return 0, 0, fmt.Errorf("%w: %q and %q are the same token", ErrOp, op.Src, op.Tgt)
	}
	return src, tgt, nil
}

// SwapDirection is the unit vector w = (ê_s − ê_t)/‖ê_s − ê_t‖, where ê is a token's
// unembedding row with the final RMSNorm weight folded in, normalised.
func swapDirection(in Inputs, a *archdef.Arch, op Op) ([]float64, error) {
	s, t, err := swapTokens(in, op)
	if err != nil {
		return nil, err
	}
	info, U, err := in.Base.Tensor(a.UnembedName())
	if err != nil {
		return nil, err
	}
	d := int(info.Shape[1])
	_, nw, err := in.Base.Tensor(a.Def.FinalNorm)
	if err != nil {
		return nil, err
	}
	normInfo, _ := in.Base.Info(a.Def.FinalNorm)
	g := make([]float32, d)
	dtype.ToFloat32(g, nw, normInfo.DType)
	es := info.DType.Size()
	unit := func(tok int32) []float64 {
		row := make([]float32, d)
		dtype.ToFloat32(row, U[int(tok)*d*es:(int(tok)+1)*d*es], info.DType)
		v := make([]float64, d)
		var n float64
		for i := range v {
			v[i] = float64(row[i]) * float64(g[i])
			n += v[i] * v[i]
		}
		for i := range v {
			v[i] /= math.Sqrt(n)
		}
		return v
	}
	es1, et := unit(s), unit(t)
	w := make([]float64, d)
	var n float64
	for i := range w {
		w[i] = es1[i] - et[i]
		n += w[i] * w[i]
	}
	// A zero (or non-finite) unembedding row, or two rows pointing the same way, leave no
	// direction to swap along: dividing by its norm would write NaN into every column.
	if !(n > 1e-12) || math.IsInf(n, 0) {
		return nil, fmt.Errorf("%w: swap %s>%s: the two tokens' output directions are the same, zero or not finite (norm² %v)", ErrOp, op.Src, op.Tgt, n)
	}
	for i := range w {
		w[i] /= math.Sqrt(n)
	}
	return w, nil
}

// RuntimeMask is the run-time equivalent of applying ops to set's neurons: a mask that sets
// a_j = 0 (zero) or a_j = α·a_j (scale) at every position, which is exactly what zeroing or
// scaling the neuron's down_proj / fc2 column does to the output. Only zero and scale have such
// an equivalent (swap, noise and set change the column's direction); the neurons are checked
// against geom (a model's FFN geometry, per module) first.
func RuntimeMask(set *neuronset.Set, ops []Op, geom map[string]neuronset.Geometry) (*model.Mask, error) {
	if err := set.CheckGeometry("the model", geom); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrOp, err)
	}
	for _, op := range ops {
		if op.Kind != "zero" && op.Kind != "scale" {
			return nil, fmt.Errorf("%w: %s has no run-time mask equivalent (only zero and scale edit a neuron's activation alone)", ErrOp, op)
		}
	}
	mask := model.NewMask()
	seen := map[neuronset.Neuron]bool{}
	for _, n := range set.Neurons {
		// A neuron listed under several labels is one column: edited once.
		key := neuronset.Neuron{Module: n.Module, Layer: n.Layer, Index: n.Index}
		if seen[key] {
			continue
		}
		seen[key] = true
		site := model.Site{Module: n.Module, Layer: n.Layer}
		for _, op := range ops {
			if op.Kind == "zero" {
				mask.Set(site, n.Index, 0)
			} else {
				mask.Scale(site, n.Index, float32(op.Alpha))
			}
		}
	}
	return mask, nil
}
