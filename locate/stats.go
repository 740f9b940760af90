package locate

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"

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
	return safetensors.WriteFile(path, ts, map[string]string{statsKey: string(mj)})
}

// ReadStats loads a stats file.
func ReadStats(path string) (*Stats, error) {
	f, err := safetensors.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var meta statsMeta
	if err := json.Unmarshal([]byte(f.Metadata[statsKey]), &meta); err != nil || meta.Version != 1 {
		return nil, fmt.Errorf("%s: %w: not a neurosurg stats file (metadata %q)", path, ErrStats, statsKey)
	}
	// Every accumulator is read from a tensor whose size is checked first, so a header's
	// dimensions cannot make the reader allocate more than the file holds.
	if meta.Layers < 1 || meta.Neurons < 1 || int64(meta.Layers)*int64(meta.Neurons) > 1<<40 {
		return nil, fmt.Errorf("%s: %w: %d layers × %d neurons", path, ErrStats, meta.Layers, meta.Neurons)
	}
	s := NewStats(meta.Module, meta.Layers, meta.Neurons)
	s.ModelHash, s.DataHash, s.SampleIDs = meta.ModelHash, meta.DataHash, meta.SampleIDs
	n := meta.Layers * meta.Neurons
	get := func(name string, want int) ([]float64, error) {
		info, ok := f.Tensor(name)
		if !ok || info.DType != safetensors.F64 || info.NumElements() != int64(want) {
			return nil, fmt.Errorf("%s: %w: tensor %q missing or not F64[%d]", path, ErrStats, name, want)
		}
		b, _ := f.Bytes(name)
		v := make([]float64, want)
		for i := range v {
			v[i] = math.Float64frombits(binary.LittleEndian.Uint64(b[8*i:]))
		}
		return v, nil
	}
	if len(meta.Samples) != len(meta.Labels) {
		return nil, fmt.Errorf("%s: %w: %d sample counts for %d labels", path, ErrStats, len(meta.Samples), len(meta.Labels))
	}
	for i, l := range meta.Labels {
		if s.ByLabel[l] != nil {
			return nil, fmt.Errorf("%s: %w: label %q twice", path, ErrStats, l)
		}
		ls := &LabelStats{Samples: meta.Samples[i]}
		p := fmt.Sprintf("label.%d.", i)
		if ls.Positions, err = get(p+"positions", meta.Layers); err != nil {
			return nil, err
		}
		if ls.Fire, err = get(p+"fire", n); err != nil {
			return nil, err
		}
		if ls.Sum, err = get(p+"sum", n); err != nil {
			return nil, err
		}
		if ls.Max, err = get(p+"max", n); err != nil {
			return nil, err
		}
		s.ByLabel[l], s.Labels = ls, append(s.Labels, l)
	}
	sort.Strings(s.Labels)
	for i, c := range meta.Concepts {
		p := fmt.Sprintf("concept.%d.", i)
		act, err := get(p+"act_sum", n)
		if err != nil {
			return nil, err
		}
		phi, err := get(p+"phi", n)
		if err != nil {
			return nil, err
		}
		cs := &ConceptStats{Word: c.Word, TokenID: c.TokenID, Steps: c.Steps, ActSum: act, Phi: phi}
		if S := len(c.FirstSamples); S > 0 {
			first, err := get(p+"first", S*n)
			if err != nil {
				return nil, err
			}
			for k := 0; k < S; k++ {
				cs.First = append(cs.First, first[k*n:(k+1)*n:(k+1)*n])
			}
			cs.FirstIDs = c.FirstSamples
		}
		s.Concepts = append(s.Concepts, cs)
	}
	for i, name := range meta.Datasets {
		sum, err := get(fmt.Sprintf("ism.%d.sum", i), 35*n)
		if err != nil {
			return nil, err
		}
		cnt, err := get(fmt.Sprintf("ism.%d.count", i), 7)
		if err != nil {
			return nil, err
		}
		s.ISMs = append(s.ISMs, &ISMStats{Dataset: name, Sum: sum, Count: cnt})
	}
	return s, nil
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
