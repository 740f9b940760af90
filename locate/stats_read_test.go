package locate

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/neurosurg/neurosurg/formats/safetensors"
)

// statsFile writes a stats file of the given metadata and tensors (each a name and a shape,
// F64 unless dtype says otherwise) and returns its bytes.
func statsFile(t testing.TB, meta map[string]any, tensors ...safetensors.TensorInfo) []byte {
	t.Helper()
	mj, _ := json.Marshal(meta)
	var ts []safetensors.Tensor
	for _, info := range tensors {
		if info.DType == "" {
			info.DType = safetensors.F64
		}
		n := info.NumElements() * int64(info.DType.Size())
		ts = append(ts, safetensors.Tensor{Info: info, Data: make([]byte, n)})
	}
	path := filepath.Join(t.TempDir(), "s.st")
	if err := safetensors.WriteFile(path, ts, map[string]string{statsKey: string(mj)}); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	return b
}

func shaped(name string, shape ...int64) safetensors.TensorInfo {
	return safetensors.TensorInfo{Name: name, Shape: shape}
}

// goodStats is a 2-layer × 3-neuron stats file with a label, a concept and a MINER dataset.
func goodStats(t testing.TB) (map[string]any, []safetensors.TensorInfo) {
	meta := map[string]any{"version": 1, "module": "llm", "layers": 2, "neurons": 3, "model_sha256": "m", "data_sha256": "d",
		"labels": []string{"a"}, "samples": []float64{1}, "concepts": []map[string]any{{"word": "x", "token_id": 5, "steps": 2}},
		"sample_ids": []string{"s1"}, "ism_datasets": []string{"ds"}}
	ts := []safetensors.TensorInfo{shaped("label.0.positions", 2), shaped("label.0.fire", 2, 3), shaped("label.0.sum", 2, 3), shaped("label.0.max", 2, 3),
		shaped("concept.0.act_sum", 2, 3), shaped("concept.0.phi", 2, 3), shaped("ism.0.sum", 5, 7, 2, 3), shaped("ism.0.count", 7)}
	return meta, ts
}

func TestReadStatsRefusesWhatTheTensorsDoNotHold(t *testing.T) {
	with := func(k string, v any) map[string]any {
		m, _ := goodStats(t)
		m[k] = v
		return m
	}
	_, good := goodStats(t)
	replace := func(i int, info safetensors.TensorInfo) []safetensors.TensorInfo {
		ts := append([]safetensors.TensorInfo(nil), good...)
		ts[i] = info
		return ts
	}
	meta, _ := goodStats(t)
	cases := []struct {
		name    string
		meta    map[string]any
		tensors []safetensors.TensorInfo
		msg     string
	}{
		// The 160-byte file of issue #12: 10^6 × 10^6 neurons and no tensors.
		{"huge geometry, no tensors", map[string]any{"version": 1, "module": "llm", "layers": 1000000, "neurons": 1000000, "labels": []string{"a"}, "samples": []float64{1}}, nil, "layers"},
		{"plausible geometry, no tensors", with("layers", 4000), nil, "missing"},
		{"zero neurons", with("neurons", 0), good, "neurons"},
		{"negative layers", with("layers", -1), good, "layers"},
		{"no module", with("module", ""), good, "no module"},
		{"version 2", with("version", 2), good, "version 2"},
		{"unknown key", with("colour", "red"), good, "unknown field"},
		{"samples do not match labels", with("samples", []float64{1, 2}), good, "sample counts"},
		{"negative sample count", with("samples", []float64{-1}), good, "sample count"},
		{"label twice", func() map[string]any {
			m := with("labels", []string{"a", "a"})
			m["samples"] = []float64{1, 1}
			return m
		}(), good, "listed twice"},
		{"tensor of another shape, same size", meta, replace(1, shaped("label.0.fire", 3, 2)), "label.0.fire"},
		{"tensor of another dtype", meta, replace(0, safetensors.TensorInfo{Name: "label.0.positions", DType: safetensors.F32, Shape: []int64{4}}), "label.0.positions"},
		{"tensor missing", meta, good[1:], "label.0.positions"},
		{"tensor not described", meta, append(append([]safetensors.TensorInfo(nil), good...), shaped("label.1.fire", 2, 3)), "label.1.fire"},
		{"ism of another shape", meta, replace(6, shaped("ism.0.sum", 7, 5, 2, 3)), "ism.0.sum"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := statsFile(t, c.meta, c.tensors...)
			path := filepath.Join(t.TempDir(), "bad.st")
			os.WriteFile(path, b, 0o644)
			var a, z runtime.MemStats
			runtime.ReadMemStats(&a)
			_, err := ReadStats(path)
			runtime.ReadMemStats(&z)
			if !errors.Is(err, ErrStats) || !strings.Contains(err.Error(), c.msg) || !strings.Contains(err.Error(), path) {
				t.Fatalf("err = %v, want ErrStats naming %s and %q", err, path, c.msg)
			}
			if n := z.TotalAlloc - a.TotalAlloc; n > 1<<20 {
				t.Errorf("allocated %d KiB to refuse a %d-byte file", n>>10, len(b))
			}
		})
	}
	// The good file reads, with every array of its size.
	b := statsFile(t, meta, good...)
	path := filepath.Join(t.TempDir(), "good.st")
	os.WriteFile(path, b, 0o644)
	s, err := ReadStats(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Modules[0].ByLabel["a"].Fire) != 6 || len(s.Modules[0].Concepts[0].Phi) != 6 || len(s.Modules[0].ISMs[0].Sum) != 5*7*6 || s.Modules[0].Concepts[0].TokenID != 5 {
		t.Errorf("read %+v", s)
	}
}

// FuzzStats reads arbitrary stats files: no panic, an error wrapping ErrStats or a safetensors
// error, and whatever reads is self-consistent and survives a write/read round trip.
func FuzzStats(f *testing.F) {
	meta, ts := goodStats(f)
	f.Add(statsFile(f, meta, ts...))
	f.Add(statsFile(f, map[string]any{"version": 1, "module": "llm", "layers": 1000000, "neurons": 1000000, "labels": []string{"a"}, "samples": []float64{1}}))
	meta["layers"] = 3
	f.Add(statsFile(f, meta, ts...))
	s := statsFromP([]string{"a", "b"}, 1, 2, map[string][]float64{"a": {0.5, 1}, "b": {0, 0.25}})
	path := filepath.Join(f.TempDir(), "s.st")
	if err := s.WriteFile(path); err != nil {
		f.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	f.Add(b)
	f.Add(fuzzSeedStatsV2(f))
	f.Fuzz(func(t *testing.T, data []byte) {
		sf, err := safetensors.NewReader(bytes.NewReader(data), int64(len(data)), "fuzz.st")
		if err != nil {
			return
		}
		s, err := readStats(sf)
		if err != nil {
			if !errors.Is(err, ErrStats) {
				t.Fatalf("error without ErrStats: %v", err)
			}
			return
		}
		if err := checkSizes(s); err != nil {
			t.Fatal(err)
		}
		s.Export()
		ts, md := s.encode()
		infos := make([]safetensors.TensorInfo, len(ts))
		for i := range ts {
			infos[i] = ts[i].Info
		}
		var buf bytes.Buffer
		w, err := safetensors.NewWriter(&buf, infos, md)
		if err != nil {
			t.Fatal(err)
		}
		for _, x := range ts {
			w.Write(x.Data)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		rf, err := safetensors.NewReader(bytes.NewReader(buf.Bytes()), int64(buf.Len()), "round-trip")
		if err != nil {
			t.Fatal(err)
		}
		r, err := readStats(rf)
		if err != nil {
			t.Fatalf("written stats do not read back: %v", err)
		}
		if d := cmp.Diff(s, r, cmp.Comparer(func(a, b float64) bool { return a == b || a != a && b != b })); d != "" {
			t.Fatalf("round trip changed the stats:\n%s", d)
		}
	})
}

// A NaN in the data is the data's (another check's business); reading keeps it bit for bit.
func TestReadStatsKeepsValuesBitForBit(t *testing.T) {
	s := NewStats("llm", 1, 2)
	ls := s.Modules[0].label("a")
	ls.Sum[1] = math.Float64frombits(0x7ff8000000000123)
	path := filepath.Join(t.TempDir(), "s.st")
	if err := s.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	r, err := ReadStats(path)
	if err != nil {
		t.Fatal(err)
	}
	var got [8]byte
	binary.LittleEndian.PutUint64(got[:], math.Float64bits(r.Modules[0].ByLabel["a"].Sum[1]))
	if binary.LittleEndian.Uint64(got[:]) != 0x7ff8000000000123 {
		t.Error("value changed on read")
	}
}
