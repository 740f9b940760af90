// Package benchfwd measures forward-pass throughput: prefill and decode tokens/s on a
// checkpoint (by default a synthetic one with Qwen2-0.5B's exact shapes in BF16), with peak RSS.
package benchfwd

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/neurosurg/neurosurg/formats/hfdir"
	"github.com/neurosurg/neurosurg/formats/safetensors"
	"github.com/neurosurg/neurosurg/model"
	"github.com/neurosurg/neurosurg/model/synth"
)

// Result is one measurement.
type Result struct {
	Name       string  `json:"name"`
	Tokens     int     `json:"tokens"`
	Seconds    float64 `json:"seconds"`
	TokensPerS float64 `json:"tokens_per_s"`
	PeakRSSMiB float64 `json:"peak_rss_mib"`
}

// Options for Run.
type Options struct {
	Checkpoint string // existing checkpoint; empty: synthesise from Config
	Config     string // default testdata/configs/Qwen2-0.5B
	Dir        string
	Log        func(string)
}

// Run measures prefill 1×512, prefill 8×128 and decode of 64 tokens after a 128-token prompt.
func Run(ctx context.Context, o Options) ([]Result, int64, error) {
	log := o.Log
	if log == nil {
		log = func(string) {}
	}
	dir := o.Checkpoint
	if dir == "" {
		scratch, err := os.MkdirTemp(o.Dir, "neurosurg-bench-fwd-")
		if err != nil {
			return nil, 0, err
		}
		defer os.RemoveAll(scratch)
		dir = filepath.Join(scratch, "m")
		log("generating " + dir)
		if err := synth.Generate(o.Config, dir, synth.Options{DType: safetensors.BF16, Seed: 1}); err != nil {
			return nil, 0, err
		}
	}
	c, err := hfdir.Open(dir)
	if err != nil {
		return nil, 0, err
	}
	defer c.Close()
	m, err := model.Load(c.ConfigJSON, c)
	if err != nil {
		return nil, 0, err
	}
	vocab := m.Config().Vocab
	seq := func(n, salt int) []int32 {
		s := make([]int32, n)
		for i := range s {
			s[i] = int32((i*7919 + salt*104729) % vocab)
		}
		return s
	}
	// Untimed warm-up: the first touch of each weight page faults it in from the page cache
	// (~2 GB/s here); the timed runs measure the steady state a recording loop lives in.
	if _, err := m.Forward(ctx, [][]int32{seq(16, 99)}, model.ForwardOptions{}); err != nil {
		return nil, 0, err
	}
	var out []Result
	// resetPeak returns freed memory and restarts the kernel's peak-RSS count (Linux ≥ 4.0).
	resetPeak := func() {
		debug.FreeOSMemory()
		os.WriteFile("/proc/self/clear_refs", []byte("5"), 0)
	}
	measure := func(name string, tokens int, f func() error) error {
		resetPeak()
		s, _, err := Timed(f, 1)
		if err != nil {
			return err
		}
		out = append(out, Result{Name: name, Tokens: tokens, Seconds: s, TokensPerS: float64(tokens) / s, PeakRSSMiB: PeakMiB()})
		log(name + " done")
		return nil
	}
	if err := measure("prefill 1×512", 512, func() error {
		_, err := m.Forward(ctx, [][]int32{seq(512, 0)}, model.ForwardOptions{})
		return err
	}); err != nil {
		return nil, 0, err
	}
	if err := measure("prefill 8×128", 1024, func() error {
		var b [][]int32
		for i := 0; i < 8; i++ {
			b = append(b, seq(128, i+1))
		}
		_, err := m.Forward(ctx, b, model.ForwardOptions{})
		return err
	}); err != nil {
		return nil, 0, err
	}
	// Decode: the best 65-token generation minus the best 1-token one (the 128-token prefill
	// and the first token), as PyTorch's side takes the best of its decode runs.
	generate := func(n int) func() error {
		return func() error {
			_, err := m.Generate(ctx, [][]int32{seq(128, 9)}, model.GenerateOptions{MaxTokens: n})
			return err
		}
	}
	resetPeak()
	_, first, err := Timed(generate(1), 1)
	if err != nil {
		return nil, 0, err
	}
	_, all, err := Timed(generate(65), 1)
	if err != nil {
		return nil, 0, err
	}
	out = append(out, Result{Name: "decode 64 after 128", Tokens: 64, Seconds: all - first, TokensPerS: 64 / (all - first), PeakRSSMiB: PeakMiB()})
	log("decode 64 after 128 done")
	return out, c.Size(), nil
}

// Timed repeats f as PyTorch's side does (bench/pytorch_bench.py, pytorch_encoders.py): one
// untimed run, then runs until minSeconds have passed (at least two); it returns the mean and
// the best seconds of a run.
func Timed(f func() error, minSeconds float64) (mean, best float64, err error) {
	if err := f(); err != nil {
		return 0, 0, err
	}
	best = math.Inf(1)
	n, t0 := 0, time.Now()
	for n < 2 || time.Since(t0).Seconds() < minSeconds {
		t := time.Now()
		if err := f(); err != nil {
			return 0, 0, err
		}
		best = min(best, time.Since(t).Seconds())
		n++
	}
	return time.Since(t0).Seconds() / float64(n), best, nil
}

// PeakMiB is the process's peak resident set (VmHWM) in MiB; 0 where /proc is absent.
func PeakMiB() float64 {
	b, _ := os.ReadFile("/proc/self/status")
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmHWM:") {
			kb, _ := strconv.ParseFloat(strings.Fields(line)[1], 64)
			return kb / 1024
		}
	}
	return 0
}
