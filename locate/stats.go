package locate

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"

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
}

// ConceptStats accumulate, for one concept token, the activation at every position whose
// next token is the concept (the step that generates it), and the neurons' direct logit
// weight Φ[j] = ⟨down_proj[:, j], unembed[w]⟩.
type ConceptStats struct {
	Word    string
	TokenID int32
	Steps   float64   // positions that generated the concept
	ActSum  []float64 // [layer*N+j] Σ a at those positions
	Phi     []float64 // [layer*N+j]
	// First, recorded on request (RecordOptions.PerSample), holds for every sample that
	// generates the concept the activations at its first generating step [layer*N+j]: Pan et
	// al.'s official per-caption reading. FirstIDs names those samples, in the same order.
	First    [][]float64
	FirstIDs []string
}

// Stats is the content of a stats file: one module ("llm") of one model.
type Stats struct {
	Module    string
	Layers    int
	Neurons   int
	ModelHash string
	DataHash  string
	Labels    []string
	ByLabel   map[string]*LabelStats
	Concepts  []*ConceptStats
	ISMs      []*ISMStats // MINER, one per dataset
	SampleIDs []string
}

// NewStats makes empty accumulators.
func NewStats(module string, layers, neurons int) *Stats {
	return &Stats{Module: module, Layers: layers, Neurons: neurons, ByLabel: map[string]*LabelStats{}}
}

func (s *Stats) label(l string) *LabelStats {
	ls := s.ByLabel[l]
	if ls == nil {
		n := s.Layers * s.Neurons
		ls = &LabelStats{Positions: make([]float64, s.Layers), Fire: make([]float64, n), Sum: make([]float64, n), Max: make([]float64, n)}
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
func (s *Stats) Prob(label string) []float64 {
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
func (s *Stats) prob32(label string) []float32 {
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

// Merge adds other's accumulators into s (same model and module).
func (s *Stats) Merge(o *Stats) error {
	if s.Module != o.Module || s.Layers != o.Layers || s.Neurons != o.Neurons || s.ModelHash != o.ModelHash {
		return fmt.Errorf("%w: cannot merge stats of different models or modules (%s %dx%d %.12s vs %s %dx%d %.12s)", ErrStats, s.Module, s.Layers, s.Neurons, s.ModelHash, o.Module, o.Layers, o.Neurons, o.ModelHash)
	}
	for _, l := range o.Labels {
		a, b := s.label(l), o.ByLabel[l]
		a.Samples += b.Samples
		for i := range a.Positions {
			a.Positions[i] += b.Positions[i]
		}
		for i := range a.Fire {
			a.Fire[i] += b.Fire[i]
			a.Sum[i] += b.Sum[i]
			a.Max[i] = math.Max(a.Max[i], b.Max[i])
		}
	}
	for _, oc := range o.Concepts {
		c := s.concept(oc.Word, oc.TokenID, oc.Phi)
		c.Steps += oc.Steps
		for i := range c.ActSum {
			c.ActSum[i] += oc.ActSum[i]
		}
		c.First = append(c.First, oc.First...)
		c.FirstIDs = append(c.FirstIDs, oc.FirstIDs...)
	}
	for _, od := range o.ISMs {
		d := s.ism(od.Dataset)
		for i := range d.Sum {
			d.Sum[i] += od.Sum[i]
		}
		for i := range d.Count {
			d.Count[i] += od.Count[i]
		}
	}
	s.SampleIDs = append(s.SampleIDs, o.SampleIDs...)
	return nil
}

func (s *Stats) ism(dataset string) *ISMStats {
	for _, d := range s.ISMs {
		if d.Dataset == dataset {
			return d
		}
	}
	d := &ISMStats{Dataset: dataset, Sum: make([]float64, 5*7*s.Layers*s.Neurons), Count: make([]float64, 7)}
	s.ISMs = append(s.ISMs, d)
	return d
}

func (s *Stats) concept(word string, id int32, phi []float64) *ConceptStats {
	for _, c := range s.Concepts {
		if c.Word == word {
			return c
		}
	}
	c := &ConceptStats{Word: word, TokenID: id, ActSum: make([]float64, s.Layers*s.Neurons), Phi: phi}
	s.Concepts = append(s.Concepts, c)
	return c
}

type statsMeta struct {
	Version   int           `json:"version"`
	Module    string        `json:"module"`
	Layers    int           `json:"layers"`
	Neurons   int           `json:"neurons"`
	ModelHash string        `json:"model_sha256"`
	DataHash  string        `json:"data_sha256"`
	Labels    []string      `json:"labels"`
	Samples   []float64     `json:"samples"`
	Concepts  []conceptMeta `json:"concepts"`
	SampleIDs []string      `json:"sample_ids"`
	Datasets  []string      `json:"ism_datasets,omitempty"`
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

// encode lays the accumulators out as the stats file's tensors and metadata.
func (s *Stats) encode() ([]safetensors.Tensor, map[string]string) {
	meta := statsMeta{Version: 1, Module: s.Module, Layers: s.Layers, Neurons: s.Neurons, ModelHash: s.ModelHash, DataHash: s.DataHash, Labels: s.Labels, SampleIDs: s.SampleIDs}
	var ts []safetensors.Tensor
	f64 := func(name string, v []float64, shape ...int64) {
		b := make([]byte, 8*len(v))
		for i, x := range v {
			binary.LittleEndian.PutUint64(b[8*i:], math.Float64bits(x))
		}
		ts = append(ts, safetensors.Tensor{Info: safetensors.TensorInfo{Name: name, DType: safetensors.F64, Shape: shape}, Data: b})
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
	}
	for i, c := range s.Concepts {
		meta.Concepts = append(meta.Concepts, conceptMeta{c.Word, c.TokenID, c.Steps, c.FirstIDs})
		p := fmt.Sprintf("concept.%d.", i)
		f64(p+"act_sum", c.ActSum, L, N)
		f64(p+"phi", c.Phi, L, N)
		if len(c.First) > 0 {
			f64(p+"first", slices.Concat(c.First...), int64(len(c.First)), L, N)
		}
	}
	for i, d := range s.ISMs {
		meta.Datasets = append(meta.Datasets, d.Dataset)
		f64(fmt.Sprintf("ism.%d.sum", i), d.Sum, 5, 7, L, N)
		f64(fmt.Sprintf("ism.%d.count", i), d.Count, 7)
	}
	mj, _ := json.Marshal(meta)
	return ts, map[string]string{statsKey: string(mj)}
}

// Bounds on a stats file's geometry, far above any model's (layers × FFN width).
const (
	maxStatsLayers  = 1 << 12
	maxStatsNeurons = 1 << 22
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
	if meta.Version != 1 {
		return nil, bad("version %d, this neurosurg reads 1", meta.Version)
	}
	if meta.Module == "" {
		return nil, bad("no module")
	}
	L, N := meta.Layers, meta.Neurons
	if L < 1 || L > maxStatsLayers || N < 1 || N > maxStatsNeurons {
		return nil, bad("%d layers × %d neurons (want 1..%d × 1..%d)", L, N, maxStatsLayers, maxStatsNeurons)
	}
	if len(meta.Samples) != len(meta.Labels) {
		return nil, bad("%d sample counts for %d labels", len(meta.Samples), len(meta.Labels))
	}
	for i, v := range meta.Samples {
		if !(v >= 0) || math.IsInf(v, 0) {
			return nil, bad("label %q: sample count %v", meta.Labels[i], v)
		}
	}
	for _, c := range meta.Concepts {
		if !(c.Steps >= 0) || math.IsInf(c.Steps, 0) {
			return nil, bad("concept %q: step count %v", c.Word, c.Steps)
		}
	}
	if err := unique("label", meta.Labels); err != nil {
		return nil, bad("%v", err)
	}
	words := make([]string, len(meta.Concepts))
	for i, c := range meta.Concepts {
		words[i] = c.Word
	}
	if err := unique("concept", words); err != nil {
		return nil, bad("%v", err)
	}
	if err := unique("dataset", meta.Datasets); err != nil {
		return nil, bad("%v", err)
	}
	// The tensors the metadata implies, each with its exact shape; the file must hold exactly
	// these.
	want := map[string][]int64{}
	l, n := int64(L), int64(N)
	for i := range meta.Labels {
		p := fmt.Sprintf("label.%d.", i)
		want[p+"positions"] = []int64{l}
		for _, k := range []string{"fire", "sum", "max"} {
			want[p+k] = []int64{l, n}
		}
	}
	for i := range meta.Concepts {
		p := fmt.Sprintf("concept.%d.", i)
		want[p+"act_sum"], want[p+"phi"] = []int64{l, n}, []int64{l, n}
		if S := len(meta.Concepts[i].FirstSamples); S > 0 {
			want[p+"first"] = []int64{int64(S), l, n}
		}
	}
	for i := range meta.Datasets {
		want[fmt.Sprintf("ism.%d.sum", i)] = []int64{5, 7, l, n}
		want[fmt.Sprintf("ism.%d.count", i)] = []int64{7}
	}
	for _, t := range f.Tensors {
		if _, ok := want[t.Name]; !ok {
			return nil, fmt.Errorf("%w: tensor %q is not one the metadata describes", ErrStats, t.Name)
		}
	}
	for name, shape := range want {
		info, ok := f.Tensor(name)
		if !ok || info.DType != safetensors.F64 || !equalShape(info.Shape, shape) {
			return nil, fmt.Errorf("%w: tensor %q missing or not F64%v (have %s%v)", ErrStats, name, shape, info.DType, info.Shape)
		}
	}
	// Every size below is now that of a tensor the file holds.
	get := func(name string) ([]float64, error) {
		b, err := f.Bytes(name)
		if err != nil {
			return nil, err
		}
		v := make([]float64, len(b)/8)
		for i := range v {
			v[i] = math.Float64frombits(binary.LittleEndian.Uint64(b[8*i:]))
		}
		return v, nil
	}
	s := NewStats(meta.Module, L, N)
	s.ModelHash, s.DataHash, s.SampleIDs = meta.ModelHash, meta.DataHash, meta.SampleIDs
	var err error
	for i, lab := range meta.Labels {
		ls := &LabelStats{Samples: meta.Samples[i]}
		p := fmt.Sprintf("label.%d.", i)
		for _, t := range []struct {
			dst  *[]float64
			name string
		}{{&ls.Positions, "positions"}, {&ls.Fire, "fire"}, {&ls.Sum, "sum"}, {&ls.Max, "max"}} {
			if *t.dst, err = get(p + t.name); err != nil {
				return nil, err
			}
		}
		s.ByLabel[lab] = ls
		s.Labels = append(s.Labels, lab)
	}
	sort.Strings(s.Labels)
	for i, c := range meta.Concepts {
		p := fmt.Sprintf("concept.%d.", i)
		act, err := get(p + "act_sum")
		if err != nil {
			return nil, err
		}
		phi, err := get(p + "phi")
		if err != nil {
			return nil, err
		}
		cs := &ConceptStats{Word: c.Word, TokenID: c.TokenID, Steps: c.Steps, ActSum: act, Phi: phi}
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
	for i, name := range meta.Datasets {
		sum, err := get(fmt.Sprintf("ism.%d.sum", i))
		if err != nil {
			return nil, err
		}
		cnt, err := get(fmt.Sprintf("ism.%d.count", i))
		if err != nil {
			return nil, err
		}
		s.ISMs = append(s.ISMs, &ISMStats{Dataset: name, Sum: sum, Count: cnt})
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

func equalShape(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// ExportRow is one neuron's statistics under one label.
type ExportRow struct {
	Label       string  `json:"label"`
	Layer       int     `json:"layer"`
	Neuron      int     `json:"neuron"`
	Probability float64 `json:"probability"`
	Mean        float64 `json:"mean"`
	Max         float64 `json:"max"`
}

// Export lists per-neuron activation probability, mean and max for every label.
func (s *Stats) Export() []ExportRow {
	var out []ExportRow
	for _, l := range s.Labels {
		ls := s.ByLabel[l]
		p := s.Prob(l)
		for i := range p {
			layer := i / s.Neurons
			r := ExportRow{Label: l, Layer: layer, Neuron: i % s.Neurons, Probability: p[i], Max: ls.Max[i]}
			if ls.Positions[layer] > 0 {
				r.Mean = ls.Sum[i] / ls.Positions[layer]
			}
			out = append(out, r)
		}
	}
	return out
}
