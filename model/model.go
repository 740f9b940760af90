package model

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/neurosurg/neurosurg/formats/hfdir"
	"github.com/neurosurg/neurosurg/formats/neuronset"
	"github.com/neurosurg/neurosurg/formats/safetensors"
	"github.com/neurosurg/neurosurg/model/archdef"
	"github.com/neurosurg/neurosurg/model/kernels"
	"github.com/neurosurg/neurosurg/model/tokenizer"
)

// TensorSource serves tensors by name: a checkpoint, or a checkpoint with an edit overlaid.
type TensorSource interface {
	Tensor(name string) (safetensors.TensorInfo, []byte, error)
	Has(name string) bool
}

// weight is a Linear weight [rows=out, cols=in] used in place in its stored dtype.
type weight struct {
	name       string
	b          []byte
	dt         kernels.DType
	rows, cols int
}

// Model is a decoder-only language model ready to run.
type Model struct {
	cfg       Config
	arch      *archdef.Arch
	ffn       []archdef.FFNGroup // every module's FFN geometry
	encoders  []mediaEncoder     // a multimodal family's encoders (with their projectors)
	prompts   promptBuilder      // a family's own prompt layout (BuildInput); nil: defaultInput
	bound     []boundTensor      // every tensor bound, in binding order (FirstNonFiniteWeight)
	embed     Embedding
	decoder   Decoder
	head      Head
	Tokenizer *tokenizer.Tokenizer // nil when the directory has none
	ckpt      *hfdir.Checkpoint    // set by Open
	dir       string
	spare     atomic.Pointer[scratch] // a finished forward's buffers, for the next one
}

// Open loads the checkpoint directory dir (config, weights memory-mapped, tokenizer if any).
func Open(dir string) (*Model, error) {
	c, err := hfdir.Open(dir)
	if err != nil {
		return nil, err
	}
	m, err := Load(c.ConfigJSON, c)
	if err != nil {
		c.Close()
		if errors.Is(err, ErrConfig) {
			return nil, fmt.Errorf("%s: %w", filepath.Join(dir, "config.json"), err)
		}
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	m.ckpt, m.dir = c, dir
	if hasTokenizer(dir) {
		tok, err := tokenizer.Load(dir)
		if err != nil {
			c.Close()
			return nil, err
		}
		m.Tokenizer = tok
	}
	return m, nil
}

func hasTokenizer(dir string) bool {
	for _, f := range []string{"tokenizer.json", "vocab.json"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
			return true
		}
	}
	return false
}

// Dir is the directory the model was opened from ("" for Load).
func (m *Model) Dir() string { return m.dir }

// Checkpoint is the checkpoint the model was opened from (nil for Load).
func (m *Model) Checkpoint() *hfdir.Checkpoint { return m.ckpt }

// Close releases the checkpoint's mappings when the model owns them.
func (m *Model) Close() error {
	if m.ckpt != nil {
		return m.ckpt.Close()
	}
	return nil
}

// Config returns the parsed configuration.
func (m *Model) Config() Config { return m.cfg }

// FFNSites lists the FFN neuron groups of every module, one per layer, in definition order.
func (m *Model) FFNSites() []Site {
	var s []Site
	for _, g := range m.ffn {
		for i := 0; i < g.Layers; i++ {
			s = append(s, Site{Module: g.Module, Layer: i})
		}
	}
	return s
}

// FFN is the FFN geometry of every module (archdef's groups: layers, neurons, activation,
// tensor templates).
func (m *Model) FFN() []archdef.FFNGroup { return append([]archdef.FFNGroup(nil), m.ffn...) }

// Geometry is the neuron geometry of the model's FFN groups, for checking a neuron set
// against it (neuronset.Set.CheckGeometry).
func (m *Model) Geometry() map[string]neuronset.Geometry {
	g := map[string]neuronset.Geometry{}
	for _, f := range m.ffn {
		g[f.Module] = neuronset.Geometry{Layers: f.Layers, Neurons: f.Neurons}
	}
	return g
}

var keepMapped atomic.Bool

// KeepMapped makes Load leave checkpoints in their file mappings (true) instead of copying
// them into aligned memory first (false, the default). The copy costs 0.2–3 s per GB at load
// on these VMs (first touch of fresh memory) and runs decode ~1.6× faster; a short command on
// a big model may prefer the mapping.
func KeepMapped(on bool) { keepMapped.Store(on) }

// Load builds a model from a config and a tensor source. The source must stay open while the
// model is used: weights are used in place. A source that can copy itself out of its file
// mapping into aligned memory (an hfdir.Checkpoint: MakeResident) is asked to first; decode
// read the mapping's 8-aligned weights ~1.6× slower. An overlay on it then shares its copy.
func Load(configJSON []byte, src TensorSource) (*Model, error) {
	a, err := archdef.ForConfig(configJSON)
	if err != nil {
		if errors.Is(err, archdef.ErrUnsupported) {
			arch, mt := archNames(configJSON)
			return nil, unsupported(arch, mt)
		}
		return nil, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	fam, ok := family(a.Name)
	if !ok {
		arch, mt := archNames(configJSON)
		return nil, unsupported(arch, mt)
	}
	cfg, err := parseModuleConfig(a, configJSON)
	if err != nil {
		return nil, err
	}
	if err := checkLayerCount(a, src); err != nil {
		return nil, err
	}
	if r, ok := src.(interface{ MakeResident() error }); ok && !keepMapped.Load() {
		if err := r.MakeResident(); err != nil {
			return nil, err
		}
	}
	m := &Model{cfg: cfg, arch: a}
	if m.ffn, err = a.FFN(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	if err := fam.Build(&Binder{Model: m, Arch: a, src: src}); err != nil {
		return nil, err
	}
	return m, nil
}

// parseModuleConfig parses the language model's config: the "llm" module's keys (the top
// level, or text_config with its fallback).
func parseModuleConfig(a *archdef.Arch, configJSON []byte) (Config, error) {
	llm := a.Module("llm")
	if llm == nil {
		return Config{}, fmt.Errorf("%w: archdef %s has no llm module", ErrConfig, a.Name)
	}
	j := configJSON
	if llm.Module.Config != "" || len(a.Def.Defaults) > 0 {
		// The module's view: its sub-object, or the top level with the definition's defaults
		// for the keys config.json leaves out (mPLUG-Owl2's LlamaConfig defaults).
		j = llm.ConfigJSON()
	}
	cfg, err := ParseConfig(j)
	if err != nil {
		return cfg, err
	}
	if cfg.Architecture == "" || llm.Module.Config != "" {
		cfg.Architecture = a.Name
	}
	return cfg, nil
}

// archNames reads architectures[0] and model_type for an error message.
func archNames(configJSON []byte) (string, string) {
	var r struct {
		Architectures []string `json:"architectures"`
		ModelType     string   `json:"model_type"`
	}
	_ = json.Unmarshal(configJSON, &r)
	if len(r.Architectures) > 0 {
		return r.Architectures[0], r.ModelType
	}
	return "", r.ModelType
}

type loader struct {
	src TensorSource
	err error
}

// dim is a size from the config and the key(s) it comes from.
type dim struct {
	n   int
	key string
}

// checkLayerCount compares each module's layer count with the layers the checkpoint holds,
// both ways: a config with more layers than the tensors would fail on a missing tensor, one
// with fewer would silently run a truncated model. Sources that cannot list their tensors are
// skipped.
func checkLayerCount(a *archdef.Arch, src TensorSource) error {
	lister, ok := src.(interface{ TensorNames() []string })
	if !ok {
		return nil
	}
	names := lister.TensorNames()
	for _, mod := range a.Modules() {
		if mod.Module.Layers == "" || !strings.Contains(mod.Module.LayerPrefix, "{i}") {
			continue
		}
		n, err := mod.LayerCount()
		if err != nil {
			return fmt.Errorf("%w: %v", ErrConfig, err)
		}
		re := regexp.MustCompile("^" + strings.Replace(regexp.QuoteMeta(mod.Module.LayerPrefix), `\{i\}`, `(\d+)`, 1))
		top, name := -1, ""
		for _, t := range names {
			m := re.FindStringSubmatch(t)
			if m == nil {
				continue
			}
			i, err := strconv.Atoi(m[1])
			if err != nil || i > maxLayers {
				i = maxLayers // beyond any config; the name says which
			}
			if i > top {
				top, name = i, t
			}
		}
		key := mod.Module.Layers
		switch {
		case top+1 < n:
			return configError(key, "%d, but the checkpoint holds layers 0..%d only", n, top)
		case top+1 > n:
			return configError(key, "%d, but the checkpoint holds %s, beyond layer %d", n, name, n-1)
		}
	}
	return nil
}

// kernelDType reports whether the kernels compute on weights of dtype d.
func kernelDType(d safetensors.DType) (kernels.DType, bool) {
	switch d {
	case kernels.F32, kernels.BF16, kernels.F16:
		return d, true
	}
	return "", false
}

// weight binds a tensor of N ≥ 2 dimensions (a matrix, or a convolution's [out, in, k…]) as
// the 2-D weight [shape[0], product of the rest] it is in memory, checking every dimension
// against dims.
func (l *loader) weight(name string, dims []dim) weight {
	if l.err != nil {
		return weight{}
	}
	info, b, err := l.src.Tensor(name)
	if err != nil {
		l.err = fmt.Errorf("missing tensor: %w", err)
		return weight{}
	}
	dt, ok := kernelDType(info.DType)
	if !ok {
		l.err = fmt.Errorf("tensor %q: dtype %s is not supported by the runtime (F32, BF16, F16)", name, info.DType)
		return weight{}
	}
	keys, want := make([]string, len(dims)), make([]int64, len(dims))
	same := len(info.Shape) == len(dims) && len(dims) >= 2
	cols := 1
	for i, d := range dims {
		keys[i], want[i] = d.key, int64(d.n)
		same = same && info.Shape[i] == int64(d.n)
		if i > 0 {
			cols *= d.n
		}
	}
	if !same {
		l.err = configError(strings.Join(keys, ", "), "tensor %q is %v, the config says %v", name, info.Shape, want)
		return weight{}
	}
	return weight{name: name, b: b, dt: dt, rows: dims[0].n, cols: cols}
}

// vector converts a small 1-d tensor (norm weight, bias) to f32 once.
func (l *loader) vector(name string, n dim) []float32 {
	if l.err != nil {
		return nil
	}
	info, b, err := l.src.Tensor(name)
	if err != nil {
		l.err = fmt.Errorf("missing tensor: %w", err)
		return nil
	}
	if len(info.Shape) != 1 || info.Shape[0] != int64(n.n) {
		l.err = configError(n.key, "tensor %q is %v, the config says [%d]", name, info.Shape, n.n)
		return nil
	}
	dt, ok := kernelDType(info.DType)
	if !ok {
		l.err = fmt.Errorf("tensor %q: dtype %s is not supported by the runtime", name, info.DType)
		return nil
	}
	v := make([]float32, n.n)
	kernels.ToFloat32(v, b, dt)
	return v
}

// row returns row r of w as f32 into dst.
func (w *weight) row(dst []float32, r int) {
	es := w.dt.Size()
	kernels.ToFloat32(dst[:w.cols], w.b[r*w.cols*es:(r+1)*w.cols*es], w.dt)
}

// UnembedRow returns the output-embedding row of token id (lm_head, or the tied embedding).
func (m *Model) UnembedRow(id int32) []float32 {
	v := make([]float32, m.cfg.Hidden)
	m.head.unembed.row(v, int(id))
	return v
}

// FinalNormWeight returns the final RMSNorm weight.
func (m *Model) FinalNormWeight() []float32 { return append([]float32(nil), m.head.norm.w...) }

// DownColumn returns column j of the down_proj weight of site's layer: the output vector of
// neuron j.
func (m *Model) DownColumn(site Site, j int) []float32 {
	w := &m.decoder.layers[site.Layer].mlp.down.w
	v := make([]float32, w.rows)
	es := w.dt.Size()
	tmp := make([]float32, 1)
	for r := 0; r < w.rows; r++ {
		o := (r*w.cols + j) * es
		kernels.ToFloat32(tmp, w.b[o:o+es], w.dt)
		v[r] = tmp[0]
	}
	return v
}

// LensLogits applies the final norm and the unembedding to a hidden state (the logit lens).
func (m *Model) LensLogits(hidden []float32) []float32 {
	x := make([]float32, m.cfg.Hidden)
	kernels.RMSNorm(x, hidden, m.head.norm.w, m.head.norm.eps)
	out := make([]float32, m.cfg.Vocab)
	kernels.MatMul(out, x, m.head.unembed.b, m.head.unembed.dt, 1, m.cfg.Vocab, m.cfg.Hidden)
	return out
}

// DirectLogitWeights returns Φ[j] = ⟨down_proj[:, j], unembed[id]⟩ for every neuron j of site's
// layer: each neuron's direct contribution per unit activation to the logit of id.
func (m *Model) DirectLogitWeights(site Site, id int32) []float32 {
	w := &m.decoder.layers[site.Layer].mlp.down.w
	e := m.UnembedRow(id)
	phi := make([]float32, w.cols)
	row := make([]float32, w.cols)
	for r := 0; r < w.rows; r++ {
		w.row(row, r)
		kernels.Axpy(e[r], row, phi)
	}
	return phi
}
