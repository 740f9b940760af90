package hfdir

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/neurosurg/neurosurg/formats/atomicfile"
	"github.com/neurosurg/neurosurg/formats/safetensors"
)

// Files neurosurg adds to a written checkpoint.
const (
	ModelCardFile  = "README.md"
	ProvenanceFile = "neurosurg.provenance.json"
)

// hashedInputs counts input shards hashed (not served by the hash cache): a test hook.
var hashedInputs atomic.Int64

// ErrExists reports an output directory that already exists.
var ErrExists = errors.New("hfdir: output already exists")

// WriteOptions say how the written checkpoint differs from its base.
type WriteOptions struct {
	// Replace holds new bytes for some tensors; each must have the tensor's byte length.
	Replace map[string][]byte
	// Lazy holds replacements made only when the writer reaches the tensor and dropped after
	// it is written and hashed, so memory stays O(largest tensor).
	Lazy map[string]func() ([]byte, error)
	// Metadata keys are added to every shard's __metadata__. With none, and no edited tensor
	// in a shard, its header is copied byte for byte.
	Metadata map[string]string
	// Files adds or replaces tag-along files (name → content).
	Files map[string][]byte
	// BaseModel names the base in the model card (default: the base directory's name).
	BaseModel string
	// Tags go into the model card front-matter after "neurosurg".
	Tags []string
	// Description is Markdown placed in the model card body.
	Description string
	// Provenance holds extra fields for the provenance file (recipe, report, versions, …).
	Provenance map[string]any
	// Check, when set, sees the provenance (input and output hashes) before the output is
	// renamed into place; an error aborts the write and leaves nothing behind.
	Check func(*Provenance) error
	// Progress, when set, is called with the number of bytes written so far.
	Progress func(written int64)

	wrap func(io.Writer) io.Writer // test hook: e.g. a writer that fails like a full disk
}

// Provenance is the content of the provenance file.
type Provenance struct {
	Tool      string            `json:"tool"`
	BaseModel string            `json:"base_model"`
	Inputs    map[string]string `json:"inputs"`  // base file → sha256
	Outputs   map[string]string `json:"outputs"` // written file → sha256 (all but this file)
	Edited    []string          `json:"edited_tensors,omitempty"`
	Extra     map[string]any    `json:"extra,omitempty"`
}

// Write writes base, with opts applied, as a new checkpoint directory out. Everything is
// written into a temporary directory beside out and renamed into place at the end, so out
// is either complete or absent. Untouched tensors are streamed from the mapping.
func Write(ctx context.Context, base *Checkpoint, out string, opts WriteOptions) (*Provenance, error) {
	if _, err := os.Lstat(out); err == nil {
		return nil, fmt.Errorf("write %s: %w", out, ErrExists)
	}
	for name, b := range opts.Replace {
		t, ok := base.Info(name)
		if !ok {
			return nil, fmt.Errorf("write %s: replacement for tensor %q, which %s does not have", out, name, base.Dir)
		}
		if int64(len(b)) != t.ByteSize() {
			return nil, fmt.Errorf("write %s: tensor %q: replacement has %d bytes, want %d", out, name, len(b), t.ByteSize())
		}
	}
	// A hidden directory beside out, 0755, locked while this process writes it; leftovers of
	// killed writes of out go first (atomicfile.MkdirTemp).
	tmp, unlock, err := atomicfile.MkdirTemp(out)
	if err != nil {
		return nil, fmt.Errorf("write %s: %w", out, err)
	}
	defer unlock()
	done := false
	defer func() {
		if !done {
			os.RemoveAll(tmp)
		}
	}()
	prov := &Provenance{Tool: "neurosurg", BaseModel: opts.BaseModel, Inputs: map[string]string{}, Outputs: map[string]string{}, Extra: opts.Provenance}
	if prov.BaseModel == "" {
		prov.BaseModel = filepath.Base(filepath.Clean(base.Dir))
	}
	for n := range opts.Replace {
		prov.Edited = append(prov.Edited, n)
	}
	for n := range opts.Lazy {
		if !base.Has(n) {
			return nil, fmt.Errorf("write %s: replacement for tensor %q, which %s does not have", out, n, base.Dir)
		}
		prov.Edited = append(prov.Edited, n)
	}
	sort.Strings(prov.Edited)

	// Shards are written in parallel, one worker per core.
	type shardResult struct {
		in, out string
		err     error
	}
	results := make([]shardResult, len(base.Shards))
	var written atomic.Int64
	sem := make(chan struct{}, runtime.GOMAXPROCS(0))
	var wg sync.WaitGroup
	for i, f := range base.Shards {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			name := base.ShardNames[i]
			// A panic here (a bug, or in a Lazy replacement) would end the process before the
			// temporary directory is removed; it becomes this shard's error instead.
			defer func() {
				if r := recover(); r != nil {
					results[i].err = fmt.Errorf("write %s: internal error (a bug, please report it): %v", filepath.Join(out, name), r)
				}
			}()
			o := opts
			var last int64
			o.Progress = func(n int64) {
				if opts.Progress != nil {
					opts.Progress(written.Add(n - last))
				}
				last = n
			}
			in, outSum, _, err := writeShard(ctx, f, filepath.Join(tmp, name), &o)
			if err != nil {
				err = fmt.Errorf("write %s: %w", filepath.Join(out, name), err)
			}
			results[i] = shardResult{in, outSum, err}
		}()
	}
	wg.Wait()
	for i, r := range results {
		if r.err != nil {
			return nil, r.err
		}
		prov.Inputs[base.ShardNames[i]], prov.Outputs[base.ShardNames[i]] = r.in, r.out
	}
	// Index and tag-along files are byte copies (or given replacements).
	files, err := TagAlongFiles(base.Dir)
	if err != nil {
		return nil, err
	}
	if base.IndexJSON != nil {
		files = append(files, IndexFile)
	}
	for _, name := range files {
		b, err := os.ReadFile(filepath.Join(base.Dir, name))
		if err != nil {
			return nil, fmt.Errorf("write %s: %w", out, err)
		}
		prov.Inputs[name] = sum(b)
		if r, ok := opts.Files[name]; ok {
			b = r
		}
		if err := writeSmall(filepath.Join(tmp, name), b, &opts); err != nil {
			return nil, fmt.Errorf("write %s: %w", filepath.Join(out, name), err)
		}
		prov.Outputs[name] = sum(b)
	}
	for name, b := range opts.Files {
		if _, ok := prov.Outputs[name]; ok {
			continue
		}
		if err := writeSmall(filepath.Join(tmp, name), b, &opts); err != nil {
			return nil, fmt.Errorf("write %s: %w", filepath.Join(out, name), err)
		}
		prov.Outputs[name] = sum(b)
	}
	card := ModelCard(prov.BaseModel, opts.Tags, opts.Description)
	if err := writeSmall(filepath.Join(tmp, ModelCardFile), card, &opts); err != nil {
		return nil, fmt.Errorf("write %s: %w", filepath.Join(out, ModelCardFile), err)
	}
	prov.Outputs[ModelCardFile] = sum(card)
	pj, err := json.MarshalIndent(prov, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := writeSmall(filepath.Join(tmp, ProvenanceFile), append(pj, '\n'), &opts); err != nil {
		return nil, fmt.Errorf("write %s: %w", filepath.Join(out, ProvenanceFile), err)
	}
	if opts.Check != nil {
		if err := opts.Check(prov); err != nil {
			return nil, err
		}
	}
	if err := os.Rename(tmp, out); err != nil {
		return nil, fmt.Errorf("write %s: %w", out, err)
	}
	done = true
	// The new shards' hashes were computed from the bytes written (and checked): the next
	// apply onto them need not read them.
	c := sharedCache()
	for _, name := range base.ShardNames {
		c.put(filepath.Join(out, name), prov.Outputs[name])
	}
	c.save()
	return prov, nil
}

// ModelCard renders a README.md with Hugging Face front-matter.
func ModelCard(baseModel string, tags []string, description string) []byte {
	var b strings.Builder
	b.WriteString("---\nbase_model: " + yamlString(baseModel) + "\ntags:\n- neurosurg\n")
	for _, t := range tags {
		b.WriteString("- " + yamlString(t) + "\n")
	}
	b.WriteString("---\n\n# " + baseModel + " (edited with neurosurg)\n\n")
	b.WriteString("This checkpoint is `" + baseModel + "` with FFN neurons edited by neurosurg. Every tensor not\n" +
		"listed in `" + ProvenanceFile + "` under `edited_tensors` is a byte copy of the base; the same file\n" +
		"holds the sha256 of every input and output file.\n")
	if description != "" {
		b.WriteString("\n" + description + "\n")
	}
	return []byte(b.String())
}

func yamlString(s string) string {
	q, _ := json.Marshal(s) // a JSON string is a valid YAML scalar
	return string(q)
}

func sum(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

func writeSmall(path string, b []byte, opts *WriteOptions) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil { // a tokenizer folder's file
		return err
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644) // 0644, not Create's 0666, less the umask
	if err != nil {
		return err
	}
	var w io.Writer = f
	if opts.wrap != nil {
		w = opts.wrap(f)
	}
	_, err = w.Write(b)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// ShardHeader returns the header block a shard gets when extra metadata is added.
// With no extra metadata it is the stored header, byte for byte.
func ShardHeader(f *safetensors.File, extra map[string]string) []byte {
	if len(extra) == 0 {
		h := make([]byte, 8, 8+len(f.Header))
		for i := 0; i < 8; i++ {
			h[i] = byte(uint64(f.HeaderSize) >> (8 * i))
		}
		return append(h, f.Header...)
	}
	md := map[string]string{}
	for k, v := range f.Metadata {
		md[k] = v
	}
	for k, v := range extra {
		md[k] = v
	}
	h := &safetensors.Header{Metadata: md, MetadataKeys: f.MetadataKeys}
	for _, k := range f.HeaderKeys {
		if t, ok := f.Tensor(k); ok {
			h.Tensors = append(h.Tensors, t)
		}
	}
	return h.Encode()
}

const chunk = 8 << 20

// writeShard streams one shard to path and returns the sha256 of the input and output files.
// Untouched tensors are copied file to file (copy_file_range where the kernel has it). The
// input is hashed from the mapping in a goroutine meanwhile (unless the stat-keyed cache knows
// it). The output is hashed in another goroutine from exactly the bytes sent to the file, in
// order: the header, each replacement as the writer hands it over, and the mapping's bytes of
// the runs it copies. A shard with no replacement and no added metadata is a byte copy of the
// input, so its output hash is the input's.
func writeShard(ctx context.Context, f *safetensors.File, path string, opts *WriteOptions) (inSum, outSum string, n int64, err error) {
	src, err := os.Open(f.Path)
	if err != nil {
		return "", "", 0, err
	}
	defer src.Close()
	file, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return "", "", 0, err
	}
	defer func() {
		if cerr := file.Close(); err == nil && cerr != nil {
			err = cerr
		}
	}()
	var w io.Writer = file
	if opts.wrap != nil {
		w = opts.wrap(file)
	}
	inHeader, outHeader := ShardHeader(f, nil), ShardHeader(f, opts.Metadata)
	touched := len(opts.Metadata) > 0
	for _, t := range f.Tensors {
		if opts.replaced(t.Name) {
			touched = true
		}
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	cache := sharedCache()
	// The hashers write only these; the results are set from them after wg.Wait.
	var inHash, outHash string
	cached, hit := cache.get(f.Path)
	if hit {
		inHash = cached
	} else {
		key, keyOK := statKey(f.Path)
		wg.Add(1)
		go func() {
			defer wg.Done()
			hashedInputs.Add(1)
			h := sha256.New()
			h.Write(inHeader)
			for _, t := range f.Tensors {
				b, _ := f.Bytes(t.Name)
				for off := 0; off < len(b); off += chunk {
					end := min(off+chunk, len(b))
					h.Write(b[off:end])
					f.Release(t.Offsets[0]+int64(off), int64(end-off))
				}
			}
			inHash = hex.EncodeToString(h.Sum(nil))
			if keyOK {
				cache.putIfUnchanged(f.Path, key, inHash)
			}
		}()
	}
	// replacements carries each replaced tensor's bytes, in shard order, from the writer to the
	// output hasher; closed when the writer stops, so the hasher never outlives it.
	var replacements chan []byte
	closeReplacements := func() {
		if replacements != nil {
			close(replacements)
			replacements = nil
		}
	}
	defer closeReplacements() // before wg.Wait (deferred first, so run after)
	if touched {
		repl := make(chan []byte, 1)
		replacements = repl
		wg.Add(1)
		go func() {
			defer wg.Done()
			h := sha256.New()
			h.Write(outHeader)
			for _, t := range f.Tensors {
				if opts.replaced(t.Name) {
					r, ok := <-repl
					if !ok {
						return // the writer failed; its error is what is reported
					}
					h.Write(r)
					continue
				}
				b, _ := f.Bytes(t.Name)
				for off := 0; off < len(b); off += chunk {
					end := min(off+chunk, len(b))
					h.Write(b[off:end])
					f.Release(t.Offsets[0]+int64(off), int64(end-off))
				}
			}
			outHash = hex.EncodeToString(h.Sum(nil))
		}()
	}
	if _, err := w.Write(outHeader); err != nil {
		return "", "", 0, err
	}
	n = int64(len(outHeader))
	dataStart := 8 + f.HeaderSize
	for i := 0; i < len(f.Tensors); {
		if err := ctx.Err(); err != nil {
			return "", "", n, err
		}
		t := f.Tensors[i]
		if opts.replaced(t.Name) {
			r, ok := opts.Replace[t.Name]
			if !ok {
				var err error
				if r, err = opts.Lazy[t.Name](); err != nil {
					return "", "", n, err
				}
				if int64(len(r)) != t.ByteSize() {
					return "", "", n, fmt.Errorf("tensor %q: replacement has %d bytes, want %d", t.Name, len(r), t.ByteSize())
				}
			}
			replacements <- r // hashed while it is written; neither changes it
			if _, err := w.Write(r); err != nil {
				return "", "", n, err
			}
			n += int64(len(r))
			i++
		} else {
			// Copy the run of untouched tensors starting here in one go.
			j := i
			for j < len(f.Tensors) {
				if opts.replaced(f.Tensors[j].Name) {
					break
				}
				j++
			}
			start, end := f.Tensors[i].Offsets[0], f.Tensors[j-1].Offsets[1]
			for off := start; off < end; off += 256 << 20 {
				m := min(256<<20, end-off)
				if _, err := src.Seek(dataStart+off, io.SeekStart); err != nil {
					return "", "", n, err
				}
				if _, err := io.CopyN(w, src, m); err != nil {
					return "", "", n, err
				}
				n += m
				if opts.Progress != nil {
					opts.Progress(n)
				}
			}
			i = j
		}
	}
	closeReplacements()
	wg.Wait()
	if !touched {
		outHash = inHash
	}
	return inHash, outHash, n, nil
}

func (o *WriteOptions) replaced(name string) bool {
	if _, ok := o.Replace[name]; ok {
		return true
	}
	_, ok := o.Lazy[name]
	return ok
}
