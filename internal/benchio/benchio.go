// Package benchio measures checkpoint writing and applying against a plain cp of the same
// files, in one run, with peak resident memory.
package benchio

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/neurosurg/neurosurg/formats/edit"
	"github.com/neurosurg/neurosurg/formats/hfdir"
	"github.com/neurosurg/neurosurg/formats/safetensors"
	"github.com/neurosurg/neurosurg/model/archdef"
	"github.com/neurosurg/neurosurg/model/synth"
)

// Result is one measured operation.
type Result struct {
	Name       string  `json:"name"`
	Bytes      int64   `json:"bytes"`
	Seconds    float64 `json:"seconds"`
	GBps       float64 `json:"gb_per_s"`
	VsCp       float64 `json:"vs_cp"`        // throughput / cp throughput
	PeakRSSMiB float64 `json:"peak_rss_mib"` // of this process during the operation (0 for cp)
}

// Options for Run.
type Options struct {
	Config    string // config.json or dir (default: TinyLlama-1.1B, ~2.2 GB in bf16)
	Dir       string // scratch directory (default: os.TempDir())
	ShardSize int64
	Log       func(string)
}

// Run generates a synthetic bf16 checkpoint, then times cp, an unedited write, and applying
// an edit (2% of the FFN columns of every layer), and removes everything it made.
func Run(ctx context.Context, o Options) ([]Result, error) {
	if o.ShardSize == 0 {
		o.ShardSize = 1 << 30
	}
	log := o.Log
	if log == nil {
		log = func(string) {}
	}
	scratch, err := os.MkdirTemp(o.Dir, "neurosurg-bench-io-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(scratch)
	base := filepath.Join(scratch, "base")
	log("generating " + base)
	if err := synth.Generate(o.Config, base, synth.Options{DType: safetensors.BF16, ShardSize: o.ShardSize, Seed: 1}); err != nil {
		return nil, err
	}
	c, err := hfdir.Open(base)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	size := c.Size()
	// Warm the page cache for every contestant alike.
	exec.Command("sh", "-c", "cat \"$0\"/* > /dev/null", base).Run()

	var out []Result
	cpRun := func(name string) (Result, error) {
		dst := filepath.Join(scratch, name)
		t0 := time.Now()
		if err := exec.CommandContext(ctx, "cp", "-r", base, dst).Run(); err != nil {
			return Result{}, fmt.Errorf("cp: %w", err)
		}
		r := Result{Name: "cp -r", Bytes: size, Seconds: time.Since(t0).Seconds()}
		os.RemoveAll(dst)
		return r, nil
	}
	cp1, err := cpRun("cp1")
	if err != nil {
		return nil, err
	}
	log("cp done")
	writeRun := func(name string) (Result, error) {
		resetPeak()
		t0 := time.Now()
		if _, err := hfdir.Write(ctx, c, filepath.Join(scratch, "copy"), hfdir.WriteOptions{}); err != nil {
			return Result{}, err
		}
		r := Result{Name: name, Bytes: size, Seconds: time.Since(t0).Seconds(), PeakRSSMiB: peakMiB()}
		os.RemoveAll(filepath.Join(scratch, "copy"))
		log(name + " done")
		return r, nil
	}
	// The first write hashes the new base; the hash cache serves the later ones.
	wrCold, err := writeRun("write, unedited (cold: hashes the base)")
	if err != nil {
		return nil, err
	}
	wr, err := writeRun("write, unedited (base hashes cached)")
	if err != nil {
		return nil, err
	}

	// An edit: scale 2% of the columns of every down_proj by 0.5.
	a, err := archdef.ForConfig(c.ConfigJSON)
	if err != nil {
		return nil, err
	}
	ffn, _ := a.FFN()
	changed := map[string][]byte{}
	for l := 0; l < ffn[0].Layers; l++ {
		name := archdef.TensorName(ffn[0].Down, l)
		info, b, _ := c.Tensor(name)
		nb := append([]byte(nil), b...)
		rows, cols := info.Shape[0], info.Shape[1]
		for j := int64(0); j < cols; j += 50 {
			for r := int64(0); r < rows; r++ {
				o := 2 * (r*cols + j)
				nb[o+1] ^= 0x01
			}
		}
		changed[name] = nb
	}
	e, err := edit.Build(c, changed, map[string]string{"neurosurg.bench": "1"})
	if err != nil {
		return nil, err
	}
	changed = nil
	editPath := filepath.Join(scratch, "e.nsd")
	if err := e.WriteFile(editPath); err != nil {
		return nil, err
	}
	e, err = edit.ReadFile(editPath, c)
	if err != nil {
		return nil, err
	}
	resetPeak()
	t0 := time.Now()
	if _, err := edit.Apply(ctx, c, e, filepath.Join(scratch, "applied"), hfdir.WriteOptions{}); err != nil {
		return nil, err
	}
	ap := Result{Name: "apply, 2% FFN columns (base hashes cached)", Bytes: size, Seconds: time.Since(t0).Seconds(), PeakRSSMiB: peakMiB()}
	os.RemoveAll(filepath.Join(scratch, "applied"))
	log("apply done")
	cp2, err := cpRun("cp2")
	if err != nil {
		return nil, err
	}
	cp := cp1
	if cp2.Seconds < cp.Seconds {
		cp = cp2 // the faster cp: the stricter comparison
	}
	for _, r := range []Result{cp, wrCold, wr, ap} {
		r.GBps = float64(r.Bytes) / r.Seconds / 1e9
		r.VsCp = cp.Seconds / r.Seconds
		out = append(out, r)
	}
	return out, nil
}

// resetPeak resets the kernel's peak-RSS counter of this process (Linux ≥ 4.0).
func resetPeak() {
	debug.FreeOSMemory()
	os.WriteFile("/proc/self/clear_refs", []byte("5"), 0)
}

func peakMiB() float64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmHWM:") {
			f := strings.Fields(line)
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	return 0
}
