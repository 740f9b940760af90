package hfdir

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/neurosurg/neurosurg/formats/regfile"
	"github.com/neurosurg/neurosurg/formats/safetensors"
)

// Sentinel errors.
var (
	ErrNoWeights = errors.New("hfdir: no model.safetensors or model.safetensors.index.json")
	ErrIndex     = errors.New("hfdir: index does not match the shards")
)

// maxJSON bounds config.json and the index; real ones are kilobytes (a 7B index ~30 KB).
const maxJSON = 64 << 20

// IndexFile is the name of the shard index.
const IndexFile = "model.safetensors.index.json"

// Checkpoint is an open checkpoint directory. Only headers are read on Open; tensor bytes are
// memory-mapped.
type Checkpoint struct {
	Dir        string
	ConfigJSON []byte              // raw config.json
	Shards     []*safetensors.File // in shard-name order
	ShardNames []string            // file names, parallel to Shards
	IndexJSON  []byte              // raw index file, nil for a single-file checkpoint
	where      map[string]int      // tensor name -> shard
}

// Open opens dir, reading config.json and every shard header, and checks the index against
// the shards.
func Open(dir string) (*Checkpoint, error) {
	cfgPath := filepath.Join(dir, "config.json")
	cfg, err := regfile.ReadFile(cfgPath, maxJSON)
	if err != nil {
		return nil, fmt.Errorf("open checkpoint %s: %w", dir, err)
	}
	if !json.Valid(cfg) {
		return nil, fmt.Errorf("%s: not valid JSON", cfgPath)
	}
	c := &Checkpoint{Dir: dir, ConfigJSON: cfg, where: map[string]int{}}
	var weightMap map[string]string
	idx := filepath.Join(dir, IndexFile)
	if _, err := os.Lstat(idx); err == nil {
		b, err := regfile.ReadFile(idx, maxJSON)
		if err != nil {
			return nil, err
		}
		var ix struct {
			WeightMap map[string]string `json:"weight_map"`
		}
		if err := json.Unmarshal(b, &ix); err != nil {
			return nil, fmt.Errorf("%s: %w", idx, err)
		}
		if len(ix.WeightMap) == 0 {
			return nil, fmt.Errorf("%s: %w: empty weight_map", idx, ErrIndex)
		}
		c.IndexJSON = b
		weightMap = ix.WeightMap
		seen := map[string]bool{}
		for _, s := range ix.WeightMap {
			if strings.ContainsAny(s, `/\`) || s == ".." || s == "." || s == "" {
				return nil, fmt.Errorf("%s: %w: shard name %q is not a plain file name", idx, ErrIndex, s)
			}
			if !seen[s] {
				seen[s] = true
				c.ShardNames = append(c.ShardNames, s)
			}
		}
		sort.Strings(c.ShardNames)
	} else if _, err := os.Stat(filepath.Join(dir, "model.safetensors")); err == nil {
		c.ShardNames = []string{"model.safetensors"}
	} else {
		return nil, fmt.Errorf("%s: %w", dir, ErrNoWeights)
	}
	for i, s := range c.ShardNames {
		f, err := safetensors.Open(filepath.Join(dir, s))
		if err != nil {
			c.Close()
			if errors.Is(err, os.ErrNotExist) {
				return nil, fmt.Errorf("%s: %w: shard %s is missing", idx, ErrIndex, s)
			}
			return nil, err
		}
		c.Shards = append(c.Shards, f)
		for _, t := range f.Tensors {
			if j, dup := c.where[t.Name]; dup {
				c.Close()
				return nil, fmt.Errorf("%s: tensor %q is in both %s and %s", dir, t.Name, c.ShardNames[j], s)
			}
			c.where[t.Name] = i
		}
	}
	if weightMap != nil {
		for name, s := range weightMap {
			i, ok := c.where[name]
			if !ok || c.ShardNames[i] != s {
				c.Close()
				return nil, fmt.Errorf("%s: %w: tensor %q is not in shard %s", idx, ErrIndex, name, s)
			}
		}
		for name, i := range c.where {
			if _, ok := weightMap[name]; !ok {
				c.Close()
				return nil, fmt.Errorf("%s: %w: tensor %q of %s is not listed", idx, ErrIndex, name, c.ShardNames[i])
			}
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

// Info returns the info of the named tensor.
func (c *Checkpoint) Info(name string) (safetensors.TensorInfo, bool) {
	i, ok := c.where[name]
	if !ok {
		return safetensors.TensorInfo{}, false
	}
	return c.Shards[i].Tensor(name)
}

// ShardOf returns the file name of the shard holding name.
func (c *Checkpoint) ShardOf(name string) (string, bool) {
	i, ok := c.where[name]
	if !ok {
		return "", false
	}
	return c.ShardNames[i], true
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

// Size is the total size of the shard files in bytes.
func (c *Checkpoint) Size() int64 {
	var n int64
	for _, f := range c.Shards {
		n += 8 + f.HeaderSize + f.DataSection().Size()
	}
	return n
}

// MakeResident copies every shard into memory the process owns (see
// safetensors.File.MakeResident): what the runtime does before it computes with the weights.
func (c *Checkpoint) MakeResident() error {
	for _, f := range c.Shards {
		if err := f.MakeResident(); err != nil {
			return err
		}
	}
	return nil
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

// TagAlongFiles lists the top-level files of dir that travel with the weights (config,
// tokenizer, processor, chat template, generation config, …): every file that is not a weight
// file, the index, a model card or a provenance file, and the files of a "*_tokenizer" folder
// ("qformer_tokenizer/vocab.txt"). Symbolic links count as the files they
// point to: a Hugging Face cache snapshot (models--org--name/snapshots/REV/) is all links into
// ../../blobs, and skipping them wrote checkpoints without config or tokenizer. A link that
// points nowhere (a download that did not finish) is an error, not a file to leave out.
func TagAlongFiles(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		n := e.Name()
		if isWeightFile(n) || n == IndexFile || n == ModelCardFile || n == ProvenanceFile {
			continue
		}
		if e.IsDir() && strings.HasSuffix(n, "_tokenizer") {
			// A second tokenizer's folder (InstructBLIP's qformer_tokenizer/): its files
			// travel too, named by their path below dir.
			sub, err := TagAlongFiles(filepath.Join(dir, n))
			if err != nil {
				return nil, err
			}
			for _, f := range sub {
				if !strings.Contains(f, "/") {
					out = append(out, n+"/"+f)
				}
			}
			continue
		}
		if e.Type()&os.ModeSymlink != 0 {
			st, err := os.Stat(filepath.Join(dir, n))
			if err != nil {
				return nil, fmt.Errorf("%s: symbolic link to a missing file (an unfinished download?): %w", filepath.Join(dir, n), err)
			}
			if !st.Mode().IsRegular() {
				continue
			}
		} else if !e.Type().IsRegular() {
			continue
		}
		out = append(out, n)
	}
	return out, nil
}

func isWeightFile(n string) bool {
	for _, ext := range []string{".safetensors", ".bin", ".pt", ".pth", ".gguf", ".ckpt", ".h5", ".msgpack"} {
		if strings.HasSuffix(n, ext) {
			return true
		}
	}
	return strings.HasSuffix(n, ".index.json")
}

// Fingerprint is the sha256 of config.json and every shard's header: it names the model's
// structure and tensor layout without reading the weights.
func (c *Checkpoint) Fingerprint() string {
	h := sha256.New()
	h.Write(c.ConfigJSON)
	for i, f := range c.Shards {
		h.Write([]byte(c.ShardNames[i]))
		h.Write(f.Header)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Release drops this process's mapped pages of the named tensor (see safetensors.File.Release).
func (c *Checkpoint) Release(name string) {
	if i, ok := c.where[name]; ok {
		t, _ := c.Shards[i].Tensor(name)
		c.Shards[i].Release(t.Offsets[0], t.ByteSize())
	}
}
