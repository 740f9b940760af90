package locate

import (
	"encoding/binary"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/neurosurg/neurosurg/formats/neuronset"
	"github.com/neurosurg/neurosurg/formats/safetensors"
)

// ErrStats reports a stats file that cannot be used.
var ErrStats = errors.New("locate: stats")

// LabelStats are the accumulators of one label over Layers × Neurons of one module.
type LabelStats struct {
	Samples   float64   // samples recorded
	Positions []float64 // [layer] positions seen
	Fire      []float64 // [layer*N+j] positions with a > 0
	Sum       []float64 // Σ a
	Max       []float64 // max a
	SumExact  []Fixed   // Σ a exactly (Sum is its rounding): what merging adds
}

// ConceptStats accumulate, for one concept token, the activation at every position whose
// next token is the concept (the step that generates it), and the neurons' direct logit
// weight Φ[j] = ⟨down_proj[:, j], unembed[w]⟩.
type ConceptStats struct {
	Word    string
	TokenID int32
	Steps   float64   // positions that generated the concept
	ActSum  []float64 // [layer*N+j] Σ a at those positions
	// ActSumExact is ActSum exactly (ActSum is its rounding): what merging adds.
	ActSumExact []Fixed
	Phi         []float64 // [layer*N+j]
	// First, recorded on request (RecordOptions.PerSample), holds for every sample that
	// generates the concept the activations at its first generating step [layer*N+j]: Pan et
	// al.'s official per-caption reading. FirstIDs names those samples, in the same order.
	First    [][]float64
	FirstIDs []string
}

// ModuleStats are the accumulators of one module (the language model "llm", an encoder
// "vision" or "audio", a "projector", …): Layers × Neurons FFN neurons per label, and for the
// language model the concepts and MINER's importance scores.
type ModuleStats struct {
	Module   string
	Layers   int
	Neurons  int
	Labels   []string
	ByLabel  map[string]*LabelStats
	Concepts []*ConceptStats
	ISMs     []*ISMStats // MINER, one per dataset
}

// Stats is the content of a stats file: the accumulators of every recorded module of one
// model, sorted by module name, and the provenance they share.
type Stats struct {
	ModelHash string
	DataHash  string
	SampleIDs []string
	Modules   []*ModuleStats
	// Shard, when not nil, says the stats are one shard of a sharded recording (record
	// --shard): merging every shard of it gives the stats of a single pass.
	Shard *Shard
}

// NewStats makes empty accumulators of one module.
func NewStats(module string, layers, neurons int) *Stats {
	return &Stats{Modules: []*ModuleStats{newModuleStats(module, layers, neurons)}}
}

// NewStatsFor makes empty accumulators of every module of geom (a model's FFN geometry).
func NewStatsFor(geom map[string]neuronset.Geometry) *Stats {
	s := &Stats{}
	for _, m := range slices.Sorted(maps.Keys(geom)) {
		s.Modules = append(s.Modules, newModuleStats(m, geom[m].Layers, geom[m].Neurons))
	}
	return s
}

func newModuleStats(module string, layers, neurons int) *ModuleStats {
	return &ModuleStats{Module: module, Layers: layers, Neurons: neurons, ByLabel: map[string]*LabelStats{}}
}

// Module is the named module's accumulators, or nil when the stats do not hold it.
func (s *Stats) Module(name string) *ModuleStats {
	for _, m := range s.Modules {
		if m.Module == name {
			return m
		}
	}
	return nil
}

// ModuleNames lists the modules the stats hold, in file order (sorted).
func (s *Stats) ModuleNames() []string {
	out := make([]string, len(s.Modules))
	for i, m := range s.Modules {
		out[i] = m.Module
	}
	return out
}

// Geometry is the FFN shape of every module the stats hold.
func (s *Stats) Geometry() map[string]neuronset.Geometry {
	g := map[string]neuronset.Geometry{}
	for _, m := range s.Modules {
		g[m.Module] = neuronset.Geometry{Layers: m.Layers, Neurons: m.Neurons}
	}
	return g
}

// module is the named module's accumulators, or an error listing the modules there are.
func (s *Stats) module(name string) (*ModuleStats, error) {
	if m := s.Module(name); m != nil {
		return m, nil
	}
	return nil, fmt.Errorf("%w: the stats hold no module %q (they hold %s)", ErrStats, name, strings.Join(s.ModuleNames(), ", "))
}

func (s *ModuleStats) label(l string) *LabelStats {
	ls := s.ByLabel[l]
	if ls == nil {
		n := s.Layers * s.Neurons
		ls = &LabelStats{Positions: make([]float64, s.Layers), Fire: make([]float64, n), Sum: make([]float64, n), Max: make([]float64, n), SumExact: make([]Fixed, n)}
		for i := range ls.Max {
			ls.Max[i] = math.Inf(-1)
		}
		s.ByLabel[l] = ls
		s.Labels = append(s.Labels, l)
		sort.Strings(s.Labels)
	}
	return ls
}

// Prob is the activation probability P[label][layer*N+j] = fire / positions.
func (s *ModuleStats) Prob(label string) []float64 {
	ls := s.ByLabel[label]
	p := make([]float64, s.Layers*s.Neurons)
	for l := 0; l < s.Layers; l++ {
		if ls.Positions[l] == 0 {
			continue
		}
		for j := 0; j < s.Neurons; j++ {
			p[l*s.Neurons+j] = ls.Fire[l*s.Neurons+j] / ls.Positions[l]
		}
	}
	return p
}

// prob32 is Prob in float32 as the official DAPE code computes it: torch divides the integer
// counts as float32 (float32(fire) / float32(positions), one correctly rounded division), so
// its quantiles and comparisons decide on these values.
func (s *ModuleStats) prob32(label string) []float32 {
	ls := s.ByLabel[label]
	p := make([]float32, s.Layers*s.Neurons)
	for l := 0; l < s.Layers; l++ {
		if ls.Positions[l] == 0 {
			continue
		}
		for j := 0; j < s.Neurons; j++ {
			p[l*s.Neurons+j] = float32(ls.Fire[l*s.Neurons+j]) / float32(ls.Positions[l])
		}
	}
	return p
}

// Merge adds other's accumulators into s: the same model, the same modules of the same
// shapes, module by module.
func (s *Stats) Merge(o *Stats) error {
	if s.ModelHash != o.ModelHash {
		return fmt.Errorf("%w: cannot merge stats of different models (%.12s vs %.12s)", ErrStats, s.ModelHash, o.ModelHash)
	}
	if !maps.Equal(s.Geometry(), o.Geometry()) {
		return fmt.Errorf("%w: cannot merge stats of different modules (%s vs %s)", ErrStats, describe(s), describe(o))
	}
	for _, om := range o.Modules {
		s.Module(om.Module).merge(om)
	}
	s.SampleIDs = append(s.SampleIDs, o.SampleIDs...)
	return nil
}

// describe names every module with its shape: "llm 5×172, vision 2×64".
func describe(s *Stats) string {
	var parts []string
	for _, m := range s.Modules {
		parts = append(parts, fmt.Sprintf("%s %d×%d", m.Module, m.Layers, m.Neurons))
	}
	if len(parts) == 0 {
		return "no module"
	}
	return strings.Join(parts, ", ")
}

// merge adds o into s. Counts are integers and maxima exact; sums add through their exact
// accumulators, so merging in any grouping and order gives the same bits.
func (s *ModuleStats) merge(o *ModuleStats) {
	s.ensureExact()
	o.ensureExact()
	for _, l := range o.Labels {
		a, b := s.label(l), o.ByLabel[l]
		a.Samples += b.Samples
		for i := range a.Positions {
			a.Positions[i] += b.Positions[i]
		}
		for i := range a.Fire {
			a.Fire[i] += b.Fire[i]
			a.Max[i] = math.Max(a.Max[i], b.Max[i])
		}
		addExact(a.Sum, a.SumExact, b.Sum, b.SumExact)
	}
	for _, oc := range o.Concepts {
		c := s.concept(oc.Word, oc.TokenID, oc.Phi)
		c.Steps += oc.Steps
		addExact(c.ActSum, c.ActSumExact, oc.ActSum, oc.ActSumExact)
		c.First = append(c.First, oc.First...)
		c.FirstIDs = append(c.FirstIDs, oc.FirstIDs...)
	}
	for _, od := range o.ISMs {
		d := s.ism(od.Dataset) // a new one has empty raw sums
		addExact(d.Sum, d.SumExact, od.Sum, od.SumExact)
		for i := range d.Count {
			d.Count[i] += od.Count[i]
		}
		// The raw per-modality sums exist only while every sample of the dataset had them.
		switch {
		case od.Raw == nil:
			d.Raw = nil
		case d.Raw != nil:
			d.Raw.merge(od.Raw)
		}
	}
}

// ensureExact gives every sum of s its exact accumulator where it has none (stats made by
// hand, or read from a version 2 file), rounding the sum to it.
func (s *ModuleStats) ensureExact() {
	for _, l := range s.Labels {
		ls := s.ByLabel[l]
		ensureExact(ls.Sum, &ls.SumExact)
	}
	for _, c := range s.Concepts {
		ensureExact(c.ActSum, &c.ActSumExact)
	}
	for _, d := range s.ISMs {
		ensureExact(d.Sum, &d.SumExact)
		if d.Raw != nil {
			ensureExact(d.Raw.Sum, &d.Raw.SumExact)
		}
	}
}

// ism is the dataset's MINER accumulators, new (with raw per-modality sums) if it has none.
func (s *ModuleStats) ism(dataset string) *ISMStats {
	for _, d := range s.ISMs {
		if d.Dataset == dataset {
			return d
		}
	}
	n := 5 * 7 * s.Layers * s.Neurons
	d := &ISMStats{Dataset: dataset, Sum: make([]float64, n), Count: make([]float64, 7), SumExact: make([]Fixed, n),
		Raw: newModalityRaw(s.Layers, s.Neurons)}
	s.ISMs = append(s.ISMs, d)
	return d
}

func (s *ModuleStats) concept(word string, id int32, phi []float64) *ConceptStats {
	for _, c := range s.Concepts {
		if c.Word == word {
			return c
		}
	}
	c := &ConceptStats{Word: word, TokenID: id, ActSum: make([]float64, s.Layers*s.Neurons), Phi: phi, ActSumExact: make([]Fixed, s.Layers*s.Neurons)}
	s.Concepts = append(s.Concepts, c)
	return c
}

// StatsVersion is the stats file version this package writes. Version 4 adds the raw
// activations of MINER's datasets per modality ("ism.i.raw_…", listed in "ism_raw"); version 3
// the exact accumulators of the sums (I64 tensors "…sum_exact") and the shard a file is;
// versions 3, 2 (the same without them) and 1 (one module, tensor names without a module
// prefix) are still read.
const StatsVersion = 4

// statsMeta is the file's metadata: version 2 lists the modules; version 1 held one module's
// fields at the top level (kept here only to read such files).
type statsMeta struct {
	Version   int          `json:"version"`
	ModelHash string       `json:"model_sha256"`
	DataHash  string       `json:"data_sha256"`
	SampleIDs []string     `json:"sample_ids"`
	Shard     *Shard       `json:"shard,omitempty"`
	Modules   []moduleMeta `json:"modules,omitempty"`
	moduleMeta
}

// moduleMeta is what one module's tensors are: its shape and what its labels, concepts and
// MINER datasets are called.
type moduleMeta struct {
	Module   string        `json:"module,omitempty"`
	Layers   int           `json:"layers,omitempty"`
	Neurons  int           `json:"neurons,omitempty"`
	Labels   []string      `json:"labels,omitempty"`
	Samples  []float64     `json:"samples,omitempty"`
	Concepts []conceptMeta `json:"concepts,omitempty"`
	Datasets []string      `json:"ism_datasets,omitempty"`
	// Raw says, per dataset, whether its raw per-modality tensors are in the file (version 4).
	Raw []bool `json:"ism_raw,omitempty"`
}

type conceptMeta struct {
	Word         string   `json:"word"`
	TokenID      int32    `json:"token_id"`
	Steps        float64  `json:"steps"`
	FirstSamples []string `json:"first_samples,omitempty"` // rows of concept.i.first
}

const statsKey = "neurosurg.stats"

// WriteFile saves s as a safetensors file of F64 accumulators.
func (s *Stats) WriteFile(path string) error {
	ts, md := s.encode()
	return safetensors.WriteFile(path, ts, md)
}

// encode lays the accumulators out as the stats file's tensors and metadata: each module's
// tensors are named after it ("vision.label.0.fire").
func (s *Stats) encode() ([]safetensors.Tensor, map[string]string) {
	meta := statsMeta{Version: StatsVersion, ModelHash: s.ModelHash, DataHash: s.DataHash, SampleIDs: s.SampleIDs, Shard: s.Shard}
	var ts []safetensors.Tensor
	for _, m := range s.Modules {
		m.ensureExact()
		mm, mts := m.encode(m.Module + ".")
		meta.Modules = append(meta.Modules, mm)
		ts = append(ts, mts...)
	}
	mj, _ := json.Marshal(meta)
	return ts, map[string]string{statsKey: string(mj)}
}

func (s *ModuleStats) encode(prefix string) (moduleMeta, []safetensors.Tensor) {
	meta := moduleMeta{Module: s.Module, Layers: s.Layers, Neurons: s.Neurons, Labels: s.Labels}
	var ts []safetensors.Tensor
	f64 := func(name string, v []float64, shape ...int64) {
		b := make([]byte, 8*len(v))
		for i, x := range v {
			binary.LittleEndian.PutUint64(b[8*i:], math.Float64bits(x))
		}
		ts = append(ts, safetensors.Tensor{Info: safetensors.TensorInfo{Name: prefix + name, DType: safetensors.F64, Shape: shape}, Data: b})
	}
	// An exact accumulator is an I64 tensor of the sum's shape with a last axis of 2: the
	// integer part and the fraction (in units of 2⁻⁶⁴, as a two's-complement int64).
	i64 := func(name string, v []Fixed, shape ...int64) {
		b := make([]byte, 16*len(v))
		for i, x := range v {
			binary.LittleEndian.PutUint64(b[16*i:], uint64(x.Hi))
			binary.LittleEndian.PutUint64(b[16*i+8:], x.Lo)
		}
		ts = append(ts, safetensors.Tensor{Info: safetensors.TensorInfo{Name: prefix + name, DType: safetensors.I64, Shape: append(shape, 2)}, Data: b})
	}
	L, N := int64(s.Layers), int64(s.Neurons)
	for i, l := range s.Labels {
		ls := s.ByLabel[l]
		meta.Samples = append(meta.Samples, ls.Samples)
		p := fmt.Sprintf("label.%d.", i)
		f64(p+"positions", ls.Positions, L)
		f64(p+"fire", ls.Fire, L, N)
		f64(p+"sum", ls.Sum, L, N)
		f64(p+"max", ls.Max, L, N)
		i64(p+"sum_exact", ls.SumExact, L, N)
	}
	for i, c := range s.Concepts {
		meta.Concepts = append(meta.Concepts, conceptMeta{c.Word, c.TokenID, c.Steps, c.FirstIDs})
		p := fmt.Sprintf("concept.%d.", i)
		f64(p+"act_sum", c.ActSum, L, N)
		f64(p+"phi", c.Phi, L, N)
		i64(p+"act_sum_exact", c.ActSumExact, L, N)
		if len(c.First) > 0 {
			f64(p+"first", slices.Concat(c.First...), int64(len(c.First)), L, N)
		}
	}
	for i, d := range s.ISMs {
		meta.Datasets = append(meta.Datasets, d.Dataset)
		meta.Raw = append(meta.Raw, d.Raw != nil)
		f64(fmt.Sprintf("ism.%d.sum", i), d.Sum, 5, 7, L, N)
		f64(fmt.Sprintf("ism.%d.count", i), d.Count, 7)
		i64(fmt.Sprintf("ism.%d.sum_exact", i), d.SumExact, 5, 7, L, N)
		if r := d.Raw; r != nil {
			p := fmt.Sprintf("ism.%d.raw_", i)
			f64(p+"positions", r.Positions, 7, L)
			f64(p+"fire", r.Fire, 7, L, N)
			f64(p+"sum", r.Sum, 7, L, N)
			f64(p+"max", r.Max, 7, L, N)
			i64(p+"sum_exact", r.SumExact, 7, L, N)
		}
	}
	if !slices.Contains(meta.Raw, true) {
		meta.Raw = nil
	}
	return meta, ts
}

// Bounds on a stats file's geometry, far above any model's (layers × FFN width, modules).
const (
	maxStatsLayers  = 1 << 12
	maxStatsNeurons = 1 << 22
	maxStatsModules = 64
)

// ReadStats loads a stats file. Everything the metadata claims is checked against the
// tensors the file holds (each present, F64, of the exact shape, and no other) before anything
// sized by the metadata is allocated, so the file's own size bounds what reading it costs.
func ReadStats(path string) (*Stats, error) {
	f, err := safetensors.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	s, err := readStats(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}

func readStats(f *safetensors.File) (*Stats, error) {
	raw, ok := f.Metadata[statsKey]
	if !ok {
		return nil, fmt.Errorf("%w: not a neurosurg stats file (no %q metadata)", ErrStats, statsKey)
	}
	var meta statsMeta
	d := json.NewDecoder(strings.NewReader(raw))
	d.DisallowUnknownFields()
	if err := d.Decode(&meta); err != nil {
		return nil, fmt.Errorf("%w: metadata %q: %v", ErrStats, statsKey, err)
	}
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: metadata %q: %s", ErrStats, statsKey, fmt.Sprintf(format, a...))
	}
	// mods are the modules with the prefix of their tensor names.
	var mods []moduleMeta
	var prefixes []string
	switch meta.Version {
	case 1:
		if meta.Modules != nil {
			return nil, bad("version 1 has no module list")
		}
		if meta.Module == "" {
			return nil, bad("no module")
		}
		mods, prefixes = []moduleMeta{meta.moduleMeta}, []string{""}
	case 2, 3, 4:
		if !reflect.DeepEqual(meta.moduleMeta, moduleMeta{}) {
			return nil, bad("version 2 lists its modules under \"modules\", not at the top level")
		}
		if len(meta.Modules) < 1 || len(meta.Modules) > maxStatsModules {
			return nil, bad("%d modules (want 1..%d)", len(meta.Modules), maxStatsModules)
		}
		for _, m := range meta.Modules {
			if !validModuleName(m.Module) {
				return nil, bad("module name %q (want 1..64 letters, digits, '_' or '-')", m.Module)
			}
			prefixes = append(prefixes, m.Module+".")
		}
		mods = meta.Modules
		names := make([]string, len(mods))
		for i, m := range mods {
			names[i] = m.Module
		}
		if err := unique("module", names); err != nil {
			return nil, bad("%v", err)
		}
	default:
		return nil, bad("version %d, this neurosurg reads 1 to 4", meta.Version)
	}
	if meta.Shard != nil && (meta.Version < 3 || meta.Shard.Check() != nil) {
		return nil, bad("shard %d/%d (want 0 ≤ index < count ≤ %d, version 3)", meta.Shard.Index, meta.Shard.Count, MaxShards)
	}
	exact := meta.Version >= 3
	for _, m := range mods {
		if m.Raw != nil && (meta.Version < 4 || len(m.Raw) != len(m.Datasets)) {
			return nil, bad("module %s: %d raw flags for %d MINER datasets (version %d)", m.Module, len(m.Raw), len(m.Datasets), meta.Version)
		}
	}
	// The tensors the metadata implies, each with its exact shape; the file must hold exactly
	// these.
	want := map[string][]int64{}
	for i, m := range mods {
		if err := m.check(prefixes[i], exact, want); err != nil {
			return nil, bad("%v", err)
		}
	}
	for _, t := range f.Tensors {
		if _, ok := want[t.Name]; !ok {
			return nil, fmt.Errorf("%w: tensor %q is not one the metadata describes", ErrStats, t.Name)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(want)) {
		shape := want[name]
		info, ok := f.Tensor(name)
		dt := safetensors.F64
		if strings.HasSuffix(name, "_exact") {
			dt = safetensors.I64
		}
		if !ok || info.DType != dt || !slices.Equal(info.Shape, shape) {
			return nil, fmt.Errorf("%w: tensor %q missing or not %s%v (have %s%v)", ErrStats, name, dt, shape, info.DType, info.Shape)
		}
	}
	// Every size below is now that of a tensor the file holds.
	s := &Stats{ModelHash: meta.ModelHash, DataHash: meta.DataHash, SampleIDs: meta.SampleIDs, Shard: meta.Shard}
	for i, m := range mods {
		ms, err := m.read(f, prefixes[i], exact)
		if err != nil {
			return nil, err
		}
		s.Modules = append(s.Modules, ms)
	}
	sort.Slice(s.Modules, func(a, b int) bool { return s.Modules[a].Module < s.Modules[b].Module })
	return s, nil
}

// validModuleName accepts names that make unambiguous tensor-name prefixes (no '.').
func validModuleName(s string) bool {
	if len(s) < 1 || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}

// check validates one module's metadata and adds the tensors it implies to want.
func (m moduleMeta) check(prefix string, exact bool, want map[string][]int64) error {
	L, N := m.Layers, m.Neurons
	if L < 1 || L > maxStatsLayers || N < 1 || N > maxStatsNeurons {
		return fmt.Errorf("module %s: %d layers × %d neurons (want 1..%d × 1..%d)", m.Module, L, N, maxStatsLayers, maxStatsNeurons)
	}
	if len(m.Samples) != len(m.Labels) {
		return fmt.Errorf("module %s: %d sample counts for %d labels", m.Module, len(m.Samples), len(m.Labels))
	}
	for i, v := range m.Samples {
		if !(v >= 0) || math.IsInf(v, 0) {
			return fmt.Errorf("module %s: label %q: sample count %v", m.Module, m.Labels[i], v)
		}
	}
	for _, c := range m.Concepts {
		if !(c.Steps >= 0) || math.IsInf(c.Steps, 0) {
			return fmt.Errorf("module %s: concept %q: step count %v", m.Module, c.Word, c.Steps)
		}
	}
	if err := unique("label", m.Labels); err != nil {
		return fmt.Errorf("module %s: %v", m.Module, err)
	}
	words := make([]string, len(m.Concepts))
	for i, c := range m.Concepts {
		words[i] = c.Word
	}
	if err := unique("concept", words); err != nil {
		return fmt.Errorf("module %s: %v", m.Module, err)
	}
	if err := unique("dataset", m.Datasets); err != nil {
		return fmt.Errorf("module %s: %v", m.Module, err)
	}
	l, n := int64(L), int64(N)
	for i := range m.Labels {
		p := fmt.Sprintf("%slabel.%d.", prefix, i)
		want[p+"positions"] = []int64{l}
		for _, k := range []string{"fire", "sum", "max"} {
			want[p+k] = []int64{l, n}
		}
		if exact {
			want[p+"sum_exact"] = []int64{l, n, 2}
		}
	}
	for i := range m.Concepts {
		p := fmt.Sprintf("%sconcept.%d.", prefix, i)
		want[p+"act_sum"], want[p+"phi"] = []int64{l, n}, []int64{l, n}
		if exact {
			want[p+"act_sum_exact"] = []int64{l, n, 2}
		}
		if S := len(m.Concepts[i].FirstSamples); S > 0 {
			want[p+"first"] = []int64{int64(S), l, n}
		}
	}
	for i := range m.Datasets {
		want[fmt.Sprintf("%sism.%d.sum", prefix, i)] = []int64{5, 7, l, n}
		want[fmt.Sprintf("%sism.%d.count", prefix, i)] = []int64{7}
		if exact {
			want[fmt.Sprintf("%sism.%d.sum_exact", prefix, i)] = []int64{5, 7, l, n, 2}
		}
		if i < len(m.Raw) && m.Raw[i] {
			p := fmt.Sprintf("%sism.%d.raw_", prefix, i)
			want[p+"positions"] = []int64{7, l}
			for _, k := range []string{"fire", "sum", "max"} {
				want[p+k] = []int64{7, l, n}
			}
			want[p+"sum_exact"] = []int64{7, l, n, 2}
		}
	}
	return nil
}

// read loads one module's tensors, already checked against its metadata.
func (m moduleMeta) read(f *safetensors.File, prefix string, exact bool) (*ModuleStats, error) {
	get := func(name string) ([]float64, error) {
		b, err := f.Bytes(prefix + name)
		if err != nil {
			return nil, err
		}
		v := make([]float64, len(b)/8)
		for i := range v {
			v[i] = math.Float64frombits(binary.LittleEndian.Uint64(b[8*i:]))
		}
		return v, nil
	}
	// getExact reads the exact accumulator of the sum view: view must be its rounding, unless
	// the element fell back to float64 (exact 0; exact.go). Version 2 files have none (nil).
	getExact := func(name string, view []float64) ([]Fixed, error) {
		if !exact {
			return nil, nil
		}
		b, err := f.Bytes(prefix + name)
		if err != nil {
			return nil, err
		}
		x := make([]Fixed, len(b)/16)
		for i := range x {
			x[i] = Fixed{int64(binary.LittleEndian.Uint64(b[16*i:])), binary.LittleEndian.Uint64(b[16*i+8:])}
			if v := view[i]; x[i] != (Fixed{}) && math.Float64bits(x[i].Float()) != math.Float64bits(v) {
				return nil, fmt.Errorf("%w: tensor %q: element %d is %v, the sum says %v", ErrStats, prefix+name, i, x[i].Float(), v)
			}
		}
		return x, nil
	}
	L, N := m.Layers, m.Neurons
	s := newModuleStats(m.Module, L, N)
	var err error
	for i, lab := range m.Labels {
		ls := &LabelStats{Samples: m.Samples[i]}
		p := fmt.Sprintf("label.%d.", i)
		for _, t := range []struct {
			dst  *[]float64
			name string
		}{{&ls.Positions, "positions"}, {&ls.Fire, "fire"}, {&ls.Sum, "sum"}, {&ls.Max, "max"}} {
			if *t.dst, err = get(p + t.name); err != nil {
				return nil, err
			}
		}
		if ls.SumExact, err = getExact(p+"sum_exact", ls.Sum); err != nil {
			return nil, err
		}
		s.ByLabel[lab] = ls
		s.Labels = append(s.Labels, lab)
	}
	sort.Strings(s.Labels)
	for i, c := range m.Concepts {
		p := fmt.Sprintf("concept.%d.", i)
		act, err := get(p + "act_sum")
		if err != nil {
			return nil, err
		}
		phi, err := get(p + "phi")
		if err != nil {
			return nil, err
		}
		actX, err := getExact(p+"act_sum_exact", act)
		if err != nil {
			return nil, err
		}
		cs := &ConceptStats{Word: c.Word, TokenID: c.TokenID, Steps: c.Steps, ActSum: act, Phi: phi, ActSumExact: actX}
		if S := len(c.FirstSamples); S > 0 {
			first, err := get(p + "first")
			if err != nil {
				return nil, err
			}
			nn := L * N
			for k := 0; k < S; k++ {
				cs.First = append(cs.First, first[k*nn:(k+1)*nn:(k+1)*nn])
			}
			cs.FirstIDs = c.FirstSamples
		}
		s.Concepts = append(s.Concepts, cs)
	}
	for i, name := range m.Datasets {
		sum, err := get(fmt.Sprintf("ism.%d.sum", i))
		if err != nil {
			return nil, err
		}
		cnt, err := get(fmt.Sprintf("ism.%d.count", i))
		if err != nil {
			return nil, err
		}
		sumX, err := getExact(fmt.Sprintf("ism.%d.sum_exact", i), sum)
		if err != nil {
			return nil, err
		}
		d := &ISMStats{Dataset: name, Sum: sum, Count: cnt, SumExact: sumX}
		if i < len(m.Raw) && m.Raw[i] {
			p := fmt.Sprintf("ism.%d.raw_", i)
			r := &ModalityRaw{}
			for _, t := range []struct {
				dst  *[]float64
				name string
			}{{&r.Positions, "positions"}, {&r.Fire, "fire"}, {&r.Sum, "sum"}, {&r.Max, "max"}} {
				if *t.dst, err = get(p + t.name); err != nil {
					return nil, err
				}
			}
			if r.SumExact, err = getExact(p+"sum_exact", r.Sum); err != nil {
				return nil, err
			}
			d.Raw = r
		}
		s.ISMs = append(s.ISMs, d)
	}
	return s, nil
}

// unique reports the first repeated name.
func unique(what string, names []string) error {
	seen := map[string]bool{}
	for _, n := range names {
		if seen[n] {
			return fmt.Errorf("%s %q listed twice", what, n)
		}
		seen[n] = true
	}
	return nil
}

// ExportRow is one neuron's statistics under one label.
type ExportRow struct {
	Module      string  `json:"module"`
	Label       string  `json:"label"`
	Layer       int     `json:"layer"`
	Neuron      int     `json:"neuron"`
	Probability float64 `json:"probability"`
	Mean        float64 `json:"mean"`
	Max         float64 `json:"max"`
}

// Export lists per-neuron activation probability, mean and max for every module and label.
func (s *Stats) Export() []ExportRow {
	var out []ExportRow
	for _, m := range s.Modules {
		for _, l := range m.Labels {
			ls := m.ByLabel[l]
			p := m.Prob(l)
			for i := range p {
				layer := i / m.Neurons
				r := ExportRow{Module: m.Module, Label: l, Layer: layer, Neuron: i % m.Neurons, Probability: p[i], Max: ls.Max[i]}
				if ls.Positions[layer] > 0 {
					r.Mean = ls.Sum[i] / ls.Positions[layer]
				}
				out = append(out, r)
			}
		}
	}
	return out
}

// ExportColumns are the CSV columns of Export's rows, the module first.
var ExportColumns = []string{"module", "label", "layer", "neuron", "probability", "mean", "max"}

// WriteExportCSV writes rows as CSV under a header of ExportColumns.
func WriteExportCSV(w io.Writer, rows []ExportRow) error {
	cw := csv.NewWriter(w)
	cw.Write(ExportColumns)
	for _, r := range rows {
		cw.Write([]string{r.Module, r.Label, strconv.Itoa(r.Layer), strconv.Itoa(r.Neuron), fmt.Sprint(r.Probability), fmt.Sprint(r.Mean), fmt.Sprint(r.Max)})
	}
	cw.Flush()
	return cw.Error()
}

// ModalityRow is one neuron's activations over one modality's positions of one MINER dataset
// (the language model's prefill): the raw firing probability, mean and max, not MINER's
// per-sample normalised scores.
type ModalityRow struct {
	Dataset     string  `json:"dataset"`
	Module      string  `json:"module"`
	Modality    string  `json:"modality"`
	Layer       int     `json:"layer"`
	Neuron      int     `json:"neuron"`
	Positions   float64 `json:"positions"`
	Probability float64 `json:"probability"`
	Mean        float64 `json:"mean"`
	Max         float64 `json:"max"`
}

// ExportByModality lists, per MINER dataset, module, modality with positions, layer and
// neuron, the raw firing probability, mean and max over that modality's positions. Stats
// without MINER scores, or with a dataset recorded before version 4, are an error saying so.
func (s *Stats) ExportByModality() ([]ModalityRow, error) {
	var out []ModalityRow
	for _, m := range s.Modules {
		L, N := m.Layers, m.Neurons
		for _, d := range m.ISMs {
			r := d.Raw
			if r == nil {
				return nil, fmt.Errorf("%w: module %s, dataset %q: no raw per-modality activations (recorded before stats version 4, or merged with such stats): record --miner again", ErrStats, m.Module, d.Dataset)
			}
			for mo, name := range Modalities {
				for l := 0; l < L; l++ {
					pos := r.Positions[mo*L+l]
					if pos == 0 {
						continue
					}
					base := (mo*L + l) * N
					for j := 0; j < N; j++ {
						out = append(out, ModalityRow{Dataset: d.Dataset, Module: m.Module, Modality: name, Layer: l, Neuron: j, Positions: pos,
							Probability: r.Fire[base+j] / pos, Mean: r.Sum[base+j] / pos, Max: r.Max[base+j]})
					}
				}
			}
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: no MINER scores recorded (record --miner)", ErrStats)
	}
	return out, nil
}

// ModalityColumns are the CSV columns of ExportByModality's rows.
var ModalityColumns = []string{"dataset", "module", "modality", "layer", "neuron", "positions", "probability", "mean", "max"}

// WriteModalityCSV writes rows as CSV under a header of ModalityColumns.
func WriteModalityCSV(w io.Writer, rows []ModalityRow) error {
	cw := csv.NewWriter(w)
	cw.Write(ModalityColumns)
	for _, r := range rows {
		cw.Write([]string{r.Dataset, r.Module, r.Modality, strconv.Itoa(r.Layer), strconv.Itoa(r.Neuron), fmt.Sprint(r.Positions),
			fmt.Sprint(r.Probability), fmt.Sprint(r.Mean), fmt.Sprint(r.Max)})
	}
	cw.Flush()
	return cw.Error()
}
