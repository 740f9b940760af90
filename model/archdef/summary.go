package archdef

import (
	"encoding/json"
	"fmt"
	"sort"

	"github.com/neurosurg/neurosurg/formats/hfdir"
)

// Summary is what `neurosurg inspect` reports about a checkpoint.
type Summary struct {
	Dir          string         `json:"dir"`
	Architecture string         `json:"architecture"`
	Supported    bool           `json:"supported"`
	Parameters   int64          `json:"parameters"`
	SizeBytes    int64          `json:"size_bytes"`
	Tensors      int            `json:"tensors"`
	DTypes       map[string]int `json:"dtypes"` // dtype → tensor count
	Shards       []string       `json:"shards"`
	FFN          []FFNGroup     `json:"ffn,omitempty"`
	Missing      []string       `json:"missing,omitempty"`    // tensors the definition wants and the checkpoint lacks
	Unexpected   []string       `json:"unexpected,omitempty"` // tensors the checkpoint has and the definition does not list
}

// Summarize describes c. An architecture without a definition is reported, not an error; a
// config of a known architecture whose sizes cannot be read (or are absurd) is an error naming
// the key.
func Summarize(c *hfdir.Checkpoint) (*Summary, error) {
	s := &Summary{Dir: c.Dir, SizeBytes: c.Size(), Shards: c.ShardNames, DTypes: map[string]int{}}
	for _, n := range c.TensorNames() {
		info, _ := c.Info(n)
		s.Tensors++
		s.Parameters += info.NumElements()
		s.DTypes[string(info.DType)]++
	}
	a, err := ForConfig(c.ConfigJSON)
	if err != nil {
		s.Architecture = archName(c.ConfigJSON)
		return s, nil
	}
	s.Architecture, s.Supported = a.Name, true
	if s.FFN, err = a.FFN(); err != nil {
		return nil, fmt.Errorf("%s: %w", c.Dir, err)
	}
	specs, err := a.Tensors()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", c.Dir, err)
	}
	want := map[string]bool{}
	for _, t := range specs {
		want[t.Name] = true
		if !c.Has(t.Name) {
			s.Missing = append(s.Missing, t.Name)
		}
	}
	for _, n := range c.TensorNames() {
		if !want[n] {
			s.Unexpected = append(s.Unexpected, n)
		}
	}
	sort.Strings(s.Unexpected)
	return s, nil
}

func archName(cfg []byte) string {
	a, err := ForConfig(cfg)
	if err == nil {
		return a.Name
	}
	var m struct {
		Architectures []string `json:"architectures"`
		ModelType     string   `json:"model_type"`
	}
	_ = json.Unmarshal(cfg, &m)
	if len(m.Architectures) > 0 {
		return m.Architectures[0]
	}
	return m.ModelType
}
