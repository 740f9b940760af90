// Package synth makes synthetic checkpoints from real configs: every tensor an architecture
// definition lists, with seeded random weights in any float dtype, optionally shrunk and
// sharded. Tests and benchmarks use it where no real weights can be had; users too.
package synth

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/neurosurg/neurosurg/dtype"
	"github.com/neurosurg/neurosurg/formats/atomicfile"
	"github.com/neurosurg/neurosurg/formats/hfdir"
	"github.com/neurosurg/neurosurg/formats/safetensors"
	"github.com/neurosurg/neurosurg/model/archdef"
)

// Options control Generate.
type Options struct {
	DType     safetensors.DType // F32, BF16 or F16 (default BF16)
	Set       map[string]any    // config overrides, e.g. {"num_hidden_layers": 2} to shrink
	ShardSize int64             // bytes per shard; 0 writes one model.safetensors
	Seed      uint64
	Std       float64 // weight standard deviation (default config initializer_range, else 0.02)
	Progress  func(written, total int64)
}

// Generate writes a synthetic checkpoint for the config at src (a config.json or a directory
// holding one; tag-along files of a directory are copied) into the new directory out.
func Generate(src, out string, opts Options) error {
	cfgPath, srcDir := src, ""
	if fi, err := os.Stat(src); err == nil && fi.IsDir() {
		cfgPath, srcDir = filepath.Join(src, "config.json"), src
	}
	raw, err := os.ReadFile(cfgPath)
	if err != nil {
		return fmt.Errorf("synth: %w", err)
	}
	var cfg map[string]any
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return fmt.Errorf("synth: %s: %w", cfgPath, err)
	}
	if opts.DType == "" {
		opts.DType = safetensors.BF16
	}
	names := map[safetensors.DType]string{safetensors.F32: "float32", safetensors.BF16: "bfloat16", safetensors.F16: "float16"}
	if names[opts.DType] == "" {
		return fmt.Errorf("synth: dtype %s: want F32, BF16 or F16", opts.DType)
	}
	for k, v := range opts.Set {
		if n, ok := v.(int64); ok && n < 0 {
			return fmt.Errorf("synth: set %s=%d: negative", k, n)
		}
		if n, ok := v.(int); ok && n < 0 {
			return fmt.Errorf("synth: set %s=%d: negative", k, n)
		}
		// A dotted key sets a sub-config's key (text_config.num_hidden_layers=1: a
		// multimodal checkpoint with its real encoders and a one-layer language model).
		obj, key := cfg, k
		if sub, rest, ok := strings.Cut(k, "."); ok {
			o, isObj := cfg[sub].(map[string]any)
			if !isObj {
				if cfg[sub] != nil {
					return fmt.Errorf("synth: set %s: %s is not an object", k, sub)
				}
				o = map[string]any{}
				cfg[sub] = o
			}
			if strings.Contains(rest, ".") || rest == "" {
				return fmt.Errorf("synth: set %s: one level of sub-config only", k)
			}
			obj, key = o, rest
		}
		obj[key] = v
	}
	cfg["torch_dtype"] = names[opts.DType]
	cfgJSON, _ := json.MarshalIndent(cfg, "", "  ")
	arch, err := archdef.ForConfig(cfgJSON)
	if err != nil {
		return fmt.Errorf("synth: %s: %w", cfgPath, err)
	}
	specs, err := arch.Tensors()
	if err != nil {
		return fmt.Errorf("synth: %s: %w", cfgPath, err)
	}
	std := opts.Std
	if std == 0 {
		std, _ = cfg["initializer_range"].(float64)
		if std == 0 {
			std = 0.02
		}
	}
	groups, err := arch.FFN()
	if err != nil {
		return fmt.Errorf("synth: %s: %w", cfgPath, err)
	}
	for _, g := range groups {
		if g.Layers < 1 || g.Neurons < 1 {
			return fmt.Errorf("synth: %s: the %s FFN would have %d layers × %d neurons", cfgPath, g.Module, g.Layers, g.Neurons)
		}
	}
	// Sizes are checked before anything is written: a negative or zero dimension, a shape
	// whose byte count overflows, or a checkpoint larger than the free space of out's disk.
	var need int64
	for _, sp := range specs {
		n := int64(opts.DType.Size())
		for _, d := range sp.Shape {
			if d <= 0 {
				return fmt.Errorf("synth: %s: tensor %q has shape %v: every size must be positive", cfgPath, sp.Name, sp.Shape)
			}
			if n > math.MaxInt64/d {
				return fmt.Errorf("synth: %s: tensor %q of shape %v is too large", cfgPath, sp.Name, sp.Shape)
			}
			n *= d
		}
		if need > math.MaxInt64-n {
			return fmt.Errorf("synth: %s: the checkpoint is too large", cfgPath)
		}
		need += n
	}
	if free, ok := freeBytes(filepath.Dir(filepath.Clean(out))); ok && need > free {
		return fmt.Errorf("synth: %s needs %.1f GB of weights, its disk has %.1f GB free", out, float64(need)/1e9, float64(free)/1e9)
	}
	if _, err := os.Lstat(out); err == nil {
		return fmt.Errorf("synth: %s: %w", out, hfdir.ErrExists)
	}
	tmp, unlock, err := atomicfile.MkdirTemp(out) // 0755, locked, leftovers of killed runs removed
	if err != nil {
		return err
	}
	defer unlock()
	defer os.RemoveAll(tmp)

	es := int64(opts.DType.Size())
	var shards [][]archdef.TensorSpec
	var cur int64
	for _, s := range specs {
		n := es
		for _, d := range s.Shape {
			n *= d
		}
		if len(shards) == 0 || (opts.ShardSize > 0 && cur > 0 && cur+n > opts.ShardSize) {
			shards = append(shards, nil)
			cur = 0
		}
		shards[len(shards)-1] = append(shards[len(shards)-1], s)
		cur += n
	}
	var total, written int64
	for _, s := range specs {
		n := es
		for _, d := range s.Shape {
			n *= d
		}
		total += n
	}
	weightMap := map[string]string{}
	for i, sh := range shards {
		name := "model.safetensors"
		if len(shards) > 1 {
			name = fmt.Sprintf("model-%05d-of-%05d.safetensors", i+1, len(shards))
		}
		if err := writeShard(filepath.Join(tmp, name), sh, opts, std, &written, total); err != nil {
			return fmt.Errorf("synth: %s: %w", name, err)
		}
		for _, s := range sh {
			weightMap[s.Name] = name
		}
	}
	if len(shards) > 1 {
		ix, _ := json.MarshalIndent(map[string]any{"metadata": map[string]any{"total_size": total}, "weight_map": weightMap}, "", "  ")
		if err := os.WriteFile(filepath.Join(tmp, hfdir.IndexFile), append(ix, '\n'), 0o644); err != nil {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(tmp, "config.json"), append(cfgJSON, '\n'), 0o644); err != nil {
		return err
	}
	if srcDir != "" {
		for _, f := range arch.Def.TagAlong {
			if f == "config.json" {
				continue
			}
			if b, err := os.ReadFile(filepath.Join(srcDir, f)); err == nil {
				// A tag-along file may sit in a folder (InstructBLIP's qformer_tokenizer/).
				if err := os.MkdirAll(filepath.Dir(filepath.Join(tmp, f)), 0o755); err != nil {
					return err
				}
				if err := os.WriteFile(filepath.Join(tmp, f), b, 0o644); err != nil {
					return err
				}
			}
		}
	}
	return os.Rename(tmp, out)
}

func writeShard(path string, specs []archdef.TensorSpec, opts Options, std float64, written *int64, total int64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	infos := make([]safetensors.TensorInfo, len(specs))
	for i, s := range specs {
		infos[i] = safetensors.TensorInfo{Name: s.Name, DType: opts.DType, Shape: s.Shape}
	}
	// Safetensors files list tensors sorted by name, as the reference writer does.
	sort.Slice(infos, func(i, j int) bool { return infos[i].Name < infos[j].Name })
	init := map[string]string{}
	for _, s := range specs {
		init[s.Name] = s.Init
	}
	w, err := safetensors.NewWriter(f, infos, map[string]string{"format": "pt"})
	if err != nil {
		return err
	}
	const rows = 1 << 16
	vals := make([]float32, rows)
	buf := make([]byte, rows*opts.DType.Size())
	for _, t := range infos {
		rng := newRNG(opts.Seed, t.Name)
		a := float32(std * math.Sqrt(3)) // uniform [-a, a] has the wanted std
		scale, offset := a, float32(0)
		switch {
		case init[t.Name] == "ones":
			scale, offset = 0.1*a, 1
		case strings.HasSuffix(t.Name, ".bias"):
			scale = 0.1
		}
		for left := t.NumElements(); left > 0; {
			n := min(left, rows)
			for i := range vals[:n] {
				vals[i] = offset + scale*rng.sym()
			}
			b := buf[:int(n)*opts.DType.Size()]
			if err := dtype.FromFloat32(b, vals[:n], opts.DType); err != nil {
				return err
			}
			if _, err := w.Write(b); err != nil {
				return err
			}
			*written += int64(len(b))
			if opts.Progress != nil {
				opts.Progress(*written, total)
			}
			left -= n
		}
	}
	if err := w.Close(); err != nil {
		return err
	}
	return f.Close()
}

// rng is splitmix64 seeded per tensor, so a tensor's values do not depend on shard layout.
type rng struct{ s uint64 }

func newRNG(seed uint64, name string) *rng {
	h := fnv.New64a()
	h.Write([]byte(name))
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], seed)
	h.Write(b[:])
	return &rng{s: h.Sum64()}
}

func (r *rng) next() uint64 {
	r.s += 0x9e3779b97f4a7c15
	z := r.s
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return z ^ z>>31
}

// sym is uniform in [-1, 1).
func (r *rng) sym() float32 { return float32(r.next()>>40)/(1<<23) - 1 }

// Convert writes a copy of the checkpoint src whose float tensors are stored as dt (rounded to
// nearest even); other tensors and all tag-along files are copied unchanged.
func Convert(ctx context.Context, src, out string, dt safetensors.DType) error {
	if dt != safetensors.F32 && dt != safetensors.BF16 && dt != safetensors.F16 {
		return fmt.Errorf("convert: dtype %s: want F32, BF16 or F16", dt)
	}
	c, err := hfdir.Open(src)
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := os.Lstat(out); err == nil {
		return fmt.Errorf("convert: %s: %w", out, hfdir.ErrExists)
	}
	tmp, unlock, err := atomicfile.MkdirTemp(out) // 0755, locked, leftovers of killed runs removed
	if err != nil {
		return err
	}
	defer unlock()
	defer os.RemoveAll(tmp)
	for i, f := range c.Shards {
		var ts []safetensors.Tensor
		for _, k := range f.HeaderKeys {
			info, ok := f.Tensor(k)
			if !ok {
				continue
			}
			b, _ := f.Bytes(k)
			if info.DType.IsFloat() && info.DType != dt {
				v := make([]float32, info.NumElements())
				if err := dtype.ToFloat32(v, b, info.DType); err != nil {
					return err
				}
				b = make([]byte, len(v)*dt.Size())
				dtype.FromFloat32(b, v, dt)
				info.DType = dt
			}
			ts = append(ts, safetensors.Tensor{Info: info, Data: b})
		}
		if err := safetensors.WriteFile(filepath.Join(tmp, c.ShardNames[i]), ts, f.Metadata); err != nil {
			return err
		}
	}
	files, _ := hfdir.TagAlongFiles(src)
	if c.IndexJSON != nil {
		files = append(files, hfdir.IndexFile)
	}
	for _, name := range files {
		b, err := os.ReadFile(filepath.Join(src, name))
		if err != nil {
			return err
		}
		if name == "config.json" {
			var cfg map[string]any
			if json.Unmarshal(b, &cfg) == nil {
				cfg["torch_dtype"] = map[safetensors.DType]string{safetensors.F32: "float32", safetensors.BF16: "bfloat16", safetensors.F16: "float16"}[dt]
				b, _ = json.MarshalIndent(cfg, "", "  ")
			}
		}
		if err := os.MkdirAll(filepath.Dir(filepath.Join(tmp, name)), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(tmp, name), b, 0o644); err != nil {
			return err
		}
	}
	return os.Rename(tmp, out)
}
