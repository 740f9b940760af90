package model

import "fmt"

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

// validate checks every site and index against the model's FFN groups.
func (m *Mask) validate(md *Model) error {
	if m == nil {
		return nil
	}
	geo := md.Geometry()
	for s, es := range m.sites {
		g, ok := geo[s.Module]
		if !ok || s.Layer < 0 || s.Layer >= g.Layers {
			return errorf("mask: site %s/%d does not exist (%s)", s.Module, s.Layer, sitesText(md))
		}
		for _, e := range es {
			if e.index < 0 || e.index >= g.Neurons {
				return errorf("mask: neuron %d of %s layer %d is out of range [0,%d)", e.index, s.Module, s.Layer, g.Neurons)
			}
		}
	}
	return nil
}

// sitesText lists the modules and their layers, for errors.
func sitesText(md *Model) string {
	s := ""
	for i, g := range md.ffn {
		if i > 0 {
			s += ", "
		}
		s += fmt.Sprintf("module %s, layers 0..%d", g.Module, g.Layers-1)
	}
	return s
}
