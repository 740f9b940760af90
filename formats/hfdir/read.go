package hfdir

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/neurosurg/neurosurg/formats/safetensors"
)

// ErrNoWeights reports a directory with neither model.safetensors nor an index.
var ErrNoWeights = errors.New("hfdir: no model.safetensors or model.safetensors.index.json")

// Checkpoint is an open checkpoint directory. Only headers are read on Open; tensor bytes are
// memory-mapped.
type Checkpoint struct {
	Dir        string
	ConfigJSON []byte              // raw config.json
	Shards     []*safetensors.File // in shard-name order
	where      map[string]int      // tensor name -> shard
}

// Open opens dir.
func Open(dir string) (*Checkpoint, error) {
	cfg, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		return nil, fmt.Errorf("open checkpoint %s: %w", dir, err)
	}
	c := &Checkpoint{Dir: dir, ConfigJSON: cfg, where: map[string]int{}}
	var shardNames []string
	idx := filepath.Join(dir, "model.safetensors.index.json")
	if b, err := os.ReadFile(idx); err == nil {
		var ix struct {
			WeightMap map[string]string `json:"weight_map"`
		}
		if err := json.Unmarshal(b, &ix); err != nil {
			return nil, fmt.Errorf("%s: %w", idx, err)
		}
		seen := map[string]bool{}
		for _, s := range ix.WeightMap {
			if !seen[s] {
				seen[s] = true
				shardNames = append(shardNames, s)
			}
		}
		sort.Strings(shardNames)
	} else if _, err := os.Stat(filepath.Join(dir, "model.safetensors")); err == nil {
		shardNames = []string{"model.safetensors"}
	} else {
		return nil, fmt.Errorf("%s: %w", dir, ErrNoWeights)
	}
	for i, s := range shardNames {
		f, err := safetensors.Open(filepath.Join(dir, s))
		if err != nil {
			c.Close()
			return nil, err
		}
		c.Shards = append(c.Shards, f)
		for _, t := range f.Tensors {
			c.where[t.Name] = i
		}
	}
	return c, nil
}

// Tensor returns the info and raw bytes (zero-copy) of the named tensor.
func (c *Checkpoint) Tensor(name string) (safetensors.TensorInfo, []byte, error) {
	i, ok := c.where[name]
	if !ok {
		return safetensors.TensorInfo{}, nil, fmt.Errorf("%s: no tensor %q", c.Dir, name)
	}
	t, _ := c.Shards[i].Tensor(name)
	b, err := c.Shards[i].Bytes(name)
	return t, b, err
}

// Has reports whether the checkpoint holds the named tensor.
func (c *Checkpoint) Has(name string) bool { _, ok := c.where[name]; return ok }

// TensorNames lists every tensor, shard by shard in data order.
func (c *Checkpoint) TensorNames() []string {
	var names []string
	for _, f := range c.Shards {
		for _, t := range f.Tensors {
			names = append(names, t.Name)
		}
	}
	return names
}

// Close unmaps every shard.
func (c *Checkpoint) Close() error {
	var first error
	for _, f := range c.Shards {
		if err := f.Close(); err != nil && first == nil {
			first = err
		}
	}
	c.Shards = nil
	return first
}
