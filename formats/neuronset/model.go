package neuronset

import (
	"errors"
	"fmt"
	"sort"
)

// ErrOtherModel reports a set made on a model other than the one it is applied to.
var ErrOtherModel = errors.New("neuron set from another model")

// CheckModel refuses a set made on another model. A set whose model_sha256 is the checkpoint's
// fingerprint belongs to it; otherwise (a fine-tune, a dtype conversion) the set's recorded
// geometry must equal the checkpoint's, module by module. A set with neither (written by hand)
// passes: patch still checks every neuron's range.
func (s *Set) CheckModel(fingerprint string, geom map[string]Geometry) error {
	if s.ModelSHA256 == "" && len(s.Geometry) == 0 {
		return nil
	}
	if s.ModelSHA256 == fingerprint {
		return nil
	}
	if len(s.Geometry) == 0 {
		return fmt.Errorf("%w: it was made on model %.12s…, this checkpoint is %.12s…, and it records no geometry to compare; locate again on this checkpoint", ErrOtherModel, s.ModelSHA256, fingerprint)
	}
	var modules []string
	for m := range s.Geometry {
		modules = append(modules, m)
	}
	sort.Strings(modules)
	for _, m := range modules {
		want := s.Geometry[m]
		have, ok := geom[m]
		if !ok {
			return fmt.Errorf("%w: its model has an FFN module %q (%d layers × %d neurons), this checkpoint does not", ErrOtherModel, m, want.Layers, want.Neurons)
		}
		if have != want {
			return fmt.Errorf("%w: its model's %s FFN is %d layers × %d neurons, this checkpoint's is %d × %d", ErrOtherModel, m, want.Layers, want.Neurons, have.Layers, have.Neurons)
		}
	}
	return nil
}
