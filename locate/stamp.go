package locate

import "github.com/neurosurg/neurosurg/formats/neuronset"

// Stamp records in set the model the stats were recorded on, its fingerprint and FFN
// geometry, which patch checks before it edits a checkpoint with the set.
func (s *Stats) Stamp(set *neuronset.Set) {
	set.ModelSHA256 = s.ModelHash
	set.Geometry = s.Geometry()
}
