package hfdir

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/neurosurg/neurosurg/formats/safetensors"
)

// Files neurosurg adds to a written checkpoint.
const (
	ModelCardFile  = "README.md"
	ProvenanceFile = "neurosurg.provenance.json"
)

// ErrExists reports an output directory that already exists.
var ErrExists = errors.New("hfdir: output already exists")

// WriteOptions say how the written checkpoint differs from its base.
type WriteOptions struct {
	// Replace holds new bytes for some tensors; each must have the tensor's byte length.
	Replace map[string][]byte
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
	parent := filepath.Dir(filepath.Clean(out))
	tmp, err := os.MkdirTemp(parent, "."+filepath.Base(out)+".tmp-")
	if err != nil {
		return nil, fmt.Errorf("write %s: %w", out, err)
	}
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
	sort.Strings(prov.Edited)

	var written int64
	for i, f := range base.Shards {
		name := base.ShardNames[i]
		in, outSum, n, err := writeShard(ctx, f, filepath.Join(tmp, name), &opts, written)
		if err != nil {
			return nil, fmt.Errorf("write %s: %w", filepath.Join(out, name), err)
		}
		written += n
		prov.Inputs[name], prov.Outputs[name] = in, outSum
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
	f, err := os.Create(path)
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

const chunk = 4 << 20

// writeShard streams one shard to path, returning the sha256 of the input and output files.
// Both hashes are computed in goroutines beside the write, so hashing costs no extra pass.
func writeShard(ctx context.Context, f *safetensors.File, path string, opts *WriteOptions, before int64) (inSum, outSum string, n int64, err error) {
	file, err := os.Create(path)
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
	inH, outH := newAsyncHash(), newAsyncHash()
	defer inH.stop()
	defer outH.stop()

	inHeader := ShardHeader(f, nil)
	outHeader := ShardHeader(f, opts.Metadata)
	inH.add(inHeader)
	outH.add(outHeader)
	if _, err := w.Write(outHeader); err != nil {
		return "", "", 0, err
	}
	n = int64(len(outHeader))
	for _, t := range f.Tensors {
		if err := ctx.Err(); err != nil {
			return "", "", n, err
		}
		orig, err := f.Bytes(t.Name)
		if err != nil {
			return "", "", n, err
		}
		rep, replaced := opts.Replace[t.Name]
		for off := 0; off < len(orig); off += chunk {
			end := min(off+chunk, len(orig))
			inH.add(orig[off:end])
			src := orig[off:end]
			if replaced {
				src = rep[off:end]
			}
			outH.add(src)
			if _, err := w.Write(src); err != nil {
				return "", "", n, err
			}
			n += int64(end - off)
			if opts.Progress != nil {
				opts.Progress(before + n)
			}
		}
	}
	return inH.sum(), outH.sum(), n, nil
}

// asyncHash hashes byte slices in a goroutine. The slices must stay valid and unchanged until
// sum returns (they come from the mapping or from replacement buffers).
type asyncHash struct {
	ch   chan []byte
	done chan string
	h    hash.Hash
}

func newAsyncHash() *asyncHash {
	ch := make(chan []byte, 64)
	a := &asyncHash{ch: ch, done: make(chan string, 1), h: sha256.New()}
	go func() {
		for b := range ch {
			a.h.Write(b)
		}
		a.done <- hex.EncodeToString(a.h.Sum(nil))
	}()
	return a
}

func (a *asyncHash) add(b []byte) { a.ch <- b }

func (a *asyncHash) sum() string {
	close(a.ch)
	a.ch = nil
	return <-a.done
}

func (a *asyncHash) stop() {
	if a.ch != nil {
		close(a.ch)
		a.ch = nil
		<-a.done
	}
}
