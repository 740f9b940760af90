package model

// Mask edits chosen neurons' activations a_j at every position and decoding step without
// touching the weights: a_j := value (Set) or a_j := α·a_j (Scale). Setting a_j = 0 is exactly
// zeroing column j of down_proj; scaling is exactly scaling that column.
type Mask struct {
	sites map[Site][]maskEntry
}

type maskEntry struct {
	index int
	set   bool
	value float32 // the value (set) or the factor (scale)
}

// NewMask returns an empty mask.
func NewMask() *Mask { return &Mask{sites: map[Site][]maskEntry{}} }

// Set fixes neuron index of site to value.
func (m *Mask) Set(site Site, index int, value float32) {
	m.sites[site] = append(m.sites[site], maskEntry{index: index, set: true, value: value})
}

// Scale multiplies neuron index of site by alpha.
func (m *Mask) Scale(site Site, index int, alpha float32) {
	m.sites[site] = append(m.sites[site], maskEntry{index: index, value: alpha})
}

// Len is the number of masked neurons.
func (m *Mask) Len() int {
	n := 0
	for _, e := range m.sites {
		n += len(e)
	}
	return n
}

// apply edits act (rows × neurons) of site.
func (m *Mask) apply(site Site, act []float32, rows, neurons int) {
	if m == nil {
		return
	}
	es := m.sites[site]
	if len(es) == 0 {
		return
	}
	for r := 0; r < rows; r++ {
		a := act[r*neurons : (r+1)*neurons]
		for _, e := range es {
			if e.set {
				a[e.index] = e.value
			} else {
				a[e.index] *= e.value
			}
		}
	}
}

// validate checks every index against the model.
func (m *Mask) validate(cfg Config) error {
	if m == nil {
		return nil
	}
	for s, es := range m.sites {
		if s.Module != "llm" || s.Layer < 0 || s.Layer >= cfg.Layers {
			return errorf("mask: site %s/%d does not exist (module llm, layers 0..%d)", s.Module, s.Layer, cfg.Layers-1)
		}
		for _, e := range es {
			if e.index < 0 || e.index >= cfg.Intermediate {
				return errorf("mask: neuron %d of layer %d is out of range [0,%d)", e.index, s.Layer, cfg.Intermediate)
			}
		}
	}
	return nil
}
