package audiofeat

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
)

func qwenConfig(t testing.TB) Config {
	t.Helper()
	c, err := LoadConfig("testdata/preprocessor_config.json")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func newExtractor(t testing.TB, c Config) *Extractor {
	t.Helper()
	e, err := NewExtractor(c)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// TestGolden checks tone.wav against the reference log-mel of Qwen2-Audio-7B-Instruct's
// WhisperFeatureExtractor (testdata/whisper_tone.json tells how it was made and cross-checked).
func TestGolden(t *testing.T) {
	var meta struct {
		Shape        [2]int `json:"shape"`
		ValidFrames  int    `json:"valid_frames"`
		AudioTokens  int    `json:"qwen2_audio_num_audio_tokens"`
		SHA256       string `json:"sha256_f32"`
		NSamplesIn   int64  `json:"n_samples_in"`
		LogMaxBefore float64
	}
	b, err := os.ReadFile("testdata/whisper_tone.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &meta); err != nil {
		t.Fatal(err)
	}
	comp, err := os.ReadFile("testdata/whisper_tone.f32.bin.zst")
	if err != nil {
		t.Fatal(err)
	}
	dec, err := zstd.NewReader(nil, zstd.WithDecoderMaxMemory(8<<20))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := dec.DecodeAll(comp, nil)
	dec.Close()
	if err != nil {
		t.Fatal(err)
	}
	if sum := sha256.Sum256(raw); hex.EncodeToString(sum[:]) != meta.SHA256 {
		t.Fatalf("golden sha256 %x does not match the JSON's %s", sum, meta.SHA256)
	}
	golden := make([]float32, len(raw)/4)
	for i := range golden {
		golden[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
	}

	c := qwenConfig(t)
	f, err := newExtractor(t, c).ExtractFile("testdata/tone.wav")
	if err != nil {
		t.Fatal(err)
	}
	if f.NMels != meta.Shape[0] || f.Frames != meta.Shape[1] || len(f.Mel) != len(golden) {
		t.Fatalf("shape [%d %d] (%d values), want %v (%d values)", f.NMels, f.Frames, len(f.Mel), meta.Shape, len(golden))
	}
	if f.ValidFrames != meta.ValidFrames || f.ValidFrames != 100 {
		t.Errorf("valid frames %d, want %d (100)", f.ValidFrames, meta.ValidFrames)
	}
	if f.AudioTokens != meta.AudioTokens || f.AudioTokens != 25 {
		t.Errorf("audio tokens %d, want %d (25)", f.AudioTokens, meta.AudioTokens)
	}
	if f.Samples != meta.NSamplesIn || f.Truncated {
		t.Errorf("samples %d truncated %v, want %d false", f.Samples, f.Truncated, meta.NSamplesIn)
	}
	var worst float64
	at := 0
	for i := range golden {
		if d := math.Abs(float64(f.Mel[i]) - float64(golden[i])); d > worst || math.IsNaN(d) {
			worst, at = d, i
		}
	}
	t.Logf("max |ours - golden| = %.3g at [%d,%d]", worst, at/f.Frames, at%f.Frames)
	if !(worst <= 1e-5) {
		t.Errorf("max |ours - golden| = %g at [%d,%d] (ours %v, golden %v), want <= 1e-5",
			worst, at/f.Frames, at%f.Frames, f.Mel[at], golden[at])
	}
}

// Independent reference: the definitions written out directly (naive DFT, slaney formulas), with
// none of the code under test.

func refHzToMel(hz float64) float64 {
	const linear = 200.0 / 3 // Hz per mel below 1 kHz
	if hz < 1000 {
		return hz / linear
	}
	return 1000/linear + math.Log(hz/1000)/(math.Log(6.4)/27)
}

func refMelToHz(mel float64) float64 {
	const linear = 200.0 / 3
	if mel < 1000/linear {
		return mel * linear
	}
	return 1000 * math.Pow(6.4, (mel-1000/linear)/27)
}

// refFilters is the dense [mel][bin] slaney filter bank for bins at k·rate/nfft Hz.
func refFilters(nMels, nfft, rate int) [][]float64 {
	top := refHzToMel(8000)
	edges := make([]float64, nMels+2)
	for i := range edges {
		edges[i] = refMelToHz(top * float64(i) / float64(nMels+1))
	}
	out := make([][]float64, nMels)
	for m := range out {
		out[m] = make([]float64, nfft/2+1)
		lo, mid, hi := edges[m], edges[m+1], edges[m+2]
		for k := range out[m] {
			f := float64(k) * float64(rate) / float64(nfft)
			var tri float64
			switch {
			case f > lo && f <= mid:
				tri = (f - lo) / (mid - lo)
			case f > mid && f < hi:
				tri = (hi - f) / (hi - mid)
			}
			out[m][k] = tri * 2 / (hi - lo)
		}
	}
	return out
}

// refFeatures computes the features by the definitions, in float64.
func refFeatures(x []float32, c Config) []float32 {
	n := c.ChunkLength * c.SamplingRate
	at := func(i int) float64 { // the truncated, zero-padded waveform, reflected at both ends
		if i < 0 {
			i = -i
		}
		if i >= n {
			i = 2*(n-1) - i
		}
		if i < len(x) {
			return float64(x[i])
		}
		return 0
	}
	filt := refFilters(c.FeatureSize, c.NFFT, c.SamplingRate)
	frames := n / c.HopLength // the STFT has one more; it is dropped
	logs := make([][]float64, c.FeatureSize)
	for m := range logs {
		logs[m] = make([]float64, frames)
	}
	cosT := make([]float64, c.NFFT)
	sinT := make([]float64, c.NFFT)
	for j := range cosT {
		cosT[j] = math.Cos(2 * math.Pi * float64(j) / float64(c.NFFT))
		sinT[j] = math.Sin(2 * math.Pi * float64(j) / float64(c.NFFT))
	}
	seg := make([]float64, c.NFFT)
	pw := make([]float64, c.NFFT/2+1)
	hi := math.Inf(-1)
	for t := range frames {
		centre := t * c.HopLength
		for j := range seg {
			hann := math.Pow(math.Sin(math.Pi*float64(j)/float64(c.NFFT)), 2)
			seg[j] = hann * at(centre-c.NFFT/2+j)
		}
		for k := range pw {
			var re, im float64
			for j, v := range seg {
				idx := (k * j) % c.NFFT
				re += v * cosT[idx]
				im -= v * sinT[idx]
			}
			pw[k] = re*re + im*im
		}
		for m := range logs {
			var s float64
			for k, w := range filt[m] {
				s += w * pw[k]
			}
			logs[m][t] = math.Log10(math.Max(s, 1e-10))
			hi = math.Max(hi, logs[m][t])
		}
	}
	out := make([]float32, 0, c.FeatureSize*frames)
	for m := range logs {
		for _, v := range logs[m] {
			out = append(out, float32((math.Max(v, hi-8)+4)/4))
		}
	}
	return out
}

// testSignal is a deterministic chirp plus noise plus a few clicks.
func testSignal(n int, seed uint32) []float32 {
	x := make([]float32, n)
	s := seed
	for i := range x {
		s = s*1664525 + 1013904223
		noise := float64(s>>8)/float64(1<<24) - 0.5
		tt := float64(i) / 16000
		x[i] = float32(0.3*math.Sin(2*math.Pi*(200+1500*tt)*tt) + 0.05*noise)
		if i%5000 == 17 {
			x[i] = 0.9
		}
	}
	return x
}

func TestAgainstDirectReference(t *testing.T) {
	cases := []struct {
		name string
		cfg  Config
		n    int
	}{
		{"whisper-shape-padded", Config{FeatureSize: 40, SamplingRate: 16000, HopLength: 160, ChunkLength: 1, NFFT: 400}, 12345},
		{"whisper-shape-full", Config{FeatureSize: 80, SamplingRate: 16000, HopLength: 160, ChunkLength: 1, NFFT: 400}, 16000},
		{"whisper-shape-truncated", Config{FeatureSize: 128, SamplingRate: 16000, HopLength: 160, ChunkLength: 1, NFFT: 400}, 20000},
		{"pow2-fft", Config{FeatureSize: 64, SamplingRate: 16000, HopLength: 128, ChunkLength: 1, NFFT: 512}, 9000},
		{"odd-radix-fft", Config{FeatureSize: 24, SamplingRate: 16000, HopLength: 100, ChunkLength: 1, NFFT: 210}, 15999},
		{"tiny", Config{FeatureSize: 10, SamplingRate: 16000, HopLength: 160, ChunkLength: 1, NFFT: 400}, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			x := testSignal(tc.n, uint32(tc.n))
			got, err := newExtractor(t, tc.cfg).Extract(x)
			if err != nil {
				t.Fatal(err)
			}
			want := refFeatures(x, tc.cfg)
			if len(got.Mel) != len(want) {
				t.Fatalf("%d values, want %d", len(got.Mel), len(want))
			}
			var worst float64
			for i := range want {
				worst = max(worst, math.Abs(float64(got.Mel[i])-float64(want[i])))
			}
			if !(worst <= 1e-6) {
				t.Errorf("max |fast - reference| = %g, want <= 1e-6", worst)
			}
		})
	}
}

func TestMelFilterBankAgainstFormula(t *testing.T) {
	for _, c := range []struct{ mels, nfft, rate int }{{128, 400, 16000}, {80, 400, 16000}, {64, 512, 16000}, {40, 1024, 22050 - 50}} {
		ref := refFilters(c.mels, c.nfft, c.rate)
		bank := melFilterBank(c.nfft/2+1, c.mels, c.rate)
		for m := range ref {
			for k, want := range ref[m] {
				var got float64
				if j := k - bank[m].first; j >= 0 && j < len(bank[m].weights) {
					got = bank[m].weights[j]
				}
				if math.Abs(got-want) > 1e-12*max(1, math.Abs(want)) {
					t.Fatalf("%+v: filter %d bin %d = %g, want %g", c, m, k, got, want)
				}
			}
		}
	}
}

// TestTruncation: HF truncates to 30 s before anything else, so a click after 30 s changes
// nothing, while one just before 30 s does.
func TestTruncation(t *testing.T) {
	c := qwenConfig(t)
	e := newExtractor(t, c)
	n := c.NSamples()
	base := testSignal(n, 7)
	for i := range base {
		base[i] *= 0.01
	}
	ref, err := e.Extract(base)
	if err != nil {
		t.Fatal(err)
	}
	late := append(append([]float32(nil), base...), make([]float32, 16000)...)
	late[n+100] = 1
	got, err := e.Extract(late)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Truncated || got.Samples != int64(n+16000) || got.ValidFrames != 3000 || got.AudioTokens != 750 {
		t.Errorf("truncated %v samples %d valid %d tokens %d, want true %d 3000 750", got.Truncated, got.Samples, got.ValidFrames, got.AudioTokens, n+16000)
	}
	for i := range ref.Mel {
		if math.Float32bits(ref.Mel[i]) != math.Float32bits(got.Mel[i]) {
			t.Fatalf("a click after 30 s changed value %d: %v -> %v", i, ref.Mel[i], got.Mel[i])
		}
	}
	early := append([]float32(nil), late...)
	early[n-1000] = 1
	changed, err := e.Extract(early)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(f32bytes(changed.Mel), f32bytes(ref.Mel)) {
		t.Error("a click before 30 s changed nothing: the comparison above proves nothing")
	}

	// The same through a WAV file: only the first 30 s are decoded.
	path := filepath.Join(t.TempDir(), "31s.wav")
	writePCM16(t, path, 16000, late)
	fromFile, err := e.ExtractFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want, err := e.Extract(quantize16(late))
	if err != nil {
		t.Fatal(err)
	}
	if !fromFile.Truncated || fromFile.Samples != int64(len(late)) || !bytes.Equal(f32bytes(fromFile.Mel), f32bytes(want.Mel)) {
		t.Errorf("file: truncated %v samples %d; features equal: %v", fromFile.Truncated, fromFile.Samples, bytes.Equal(f32bytes(fromFile.Mel), f32bytes(want.Mel)))
	}
}

func f32bytes(x []float32) []byte {
	b := make([]byte, 4*len(x))
	for i, v := range x {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
	}
	return b
}

// quantize16 is what a 16-bit WAV of x reads back as.
func quantize16(x []float32) []float32 {
	out := make([]float32, len(x))
	for i, v := range x {
		out[i] = float32(to16(v)) / 32768
	}
	return out
}

func to16(v float32) int16 {
	return int16(max(-32768, min(32767, math.Round(float64(v)*32768))))
}

// writePCM16 writes a mono 16-bit WAV file.
func writePCM16(t *testing.T, path string, rate int, x []float32) {
	t.Helper()
	var b bytes.Buffer
	le := binary.LittleEndian
	b.WriteString("RIFF")
	binary.Write(&b, le, uint32(36+2*len(x)))
	b.WriteString("WAVEfmt ")
	binary.Write(&b, le, []uint32{16})
	binary.Write(&b, le, []uint16{1, 1})
	binary.Write(&b, le, []uint32{uint32(rate), uint32(2 * rate)})
	binary.Write(&b, le, []uint16{2, 16})
	b.WriteString("data")
	binary.Write(&b, le, uint32(2*len(x)))
	data := make([]byte, 2*len(x))
	for i, v := range x {
		le.PutUint16(data[2*i:], uint16(to16(v)))
	}
	b.Write(data)
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestSilence: every mel is at the 1e-10 floor, so the global max is −10 and every value is
// (−10 + 4)/4.
func TestSilence(t *testing.T) {
	c := qwenConfig(t)
	f, err := newExtractor(t, c).Extract(make([]float32, 16000))
	if err != nil {
		t.Fatal(err)
	}
	want := float32((math.Log10(1e-10) + 4) / 4)
	for i, v := range f.Mel {
		if v != want {
			t.Fatalf("value %d = %v, want %v", i, v, want)
		}
	}
	if f.ValidFrames != 100 || f.AudioTokens != 25 {
		t.Errorf("valid %d tokens %d, want 100 25", f.ValidFrames, f.AudioTokens)
	}
}

// TestClampFloor: nothing is below the global max − 8 (in log10 units before (x+4)/4), and the
// padding frames of a short sound sit exactly at that floor.
func TestClampFloor(t *testing.T) {
	c := qwenConfig(t)
	f, err := newExtractor(t, c).Extract(testSignal(8000, 3))
	if err != nil {
		t.Fatal(err)
	}
	hi := float32(math.Inf(-1))
	for _, v := range f.Mel {
		hi = max(hi, v)
	}
	floor := hi - 2 // (max − 8 + 4)/4 = (max + 4)/4 − 2
	for i, v := range f.Mel {
		if v < floor-1e-6 {
			t.Fatalf("value %d = %v below the floor %v", i, v, floor)
		}
	}
	if last := f.Mel[f.Frames-1]; math.Abs(float64(last-floor)) > 1e-6 {
		t.Errorf("a padding frame = %v, want the floor %v", last, floor)
	}
}

// TestPureTone: a sine at an exact FFT bin k0 with amplitude A has, under a periodic Hann window of
// N samples, |X[k0]| = A·N/4, |X[k0±1]| = A·N/8 and nothing else. Its loudest mel filter is the
// one whose centre is nearest the tone, and every mel of a frame inside the tone equals the
// filter bank applied to that three-bin spectrum.
func TestPureTone(t *testing.T) {
	c := qwenConfig(t)
	e := newExtractor(t, c)
	filt := refFilters(c.FeatureSize, c.NFFT, c.SamplingRate)
	for _, tc := range []struct {
		hz   float64
		peak int // mel filter index: the filter peaking at mel point peak+1
	}{
		// Mel points are spaced 45.2456/129 = 0.35074 mels apart.
		{440, 18},   // 440 Hz = 6.6 mels = point 18.82 → nearest point 19
		{1000, 42},  // 1000 Hz = 15 mels = point 42.77 → 43
		{4000, 99},  // 4000 Hz = 35.164 mels = point 100.26 → 100
		{6000, 116}, // 6000 Hz = 41.062 mels = point 117.07 → 117
	} {
		const amp = 0.5
		x := make([]float32, c.SamplingRate)
		for i := range x {
			x[i] = float32(amp * math.Sin(2*math.Pi*tc.hz*float64(i)/float64(c.SamplingRate)))
		}
		f, err := e.Extract(x)
		if err != nil {
			t.Fatal(err)
		}
		const frame = 50 // samples 7800..8199: inside the tone
		best := 0
		for m := range f.NMels {
			if f.Mel[m*f.Frames+frame] > f.Mel[best*f.Frames+frame] {
				best = m
			}
		}
		if best != tc.peak {
			t.Errorf("%v Hz: loudest mel %d, want %d", tc.hz, best, tc.peak)
		}
		k0 := int(tc.hz * float64(c.NFFT) / float64(c.SamplingRate))
		main := amp * float64(c.NFFT) / 4
		side := main / 2
		floor := f.Mel[0]
		for _, v := range f.Mel {
			floor = min(floor, v)
		}
		for m := range f.NMels {
			e := filt[m][k0-1]*side*side + filt[m][k0]*main*main + filt[m][k0+1]*side*side
			want := max((math.Log10(max(e, 1e-10))+4)/4, float64(floor))
			if got := float64(f.Mel[m*f.Frames+frame]); math.Abs(got-want) > 2e-6 {
				t.Errorf("%v Hz: mel %d = %v, want %v", tc.hz, m, got, want)
			}
		}
	}
}

func TestQwen2AudioTokens(t *testing.T) {
	// ((v−1)//2+1 − 2)//2 + 1 with floor division, worked by hand.
	for _, tc := range []struct{ valid, tokens int }{
		{0, 0}, {1, 0}, {2, 0}, {3, 1}, {4, 1}, {5, 1}, {6, 1}, {7, 2}, {99, 25}, {100, 25}, {101, 25}, {102, 25}, {103, 26}, {2999, 750}, {3000, 750},
	} {
		if got := Qwen2AudioTokens(tc.valid); got != tc.tokens {
			t.Errorf("Qwen2AudioTokens(%d) = %d, want %d", tc.valid, got, tc.tokens)
		}
	}
}

func TestValidFrames(t *testing.T) {
	c := DefaultConfig()
	for _, tc := range []struct {
		n    int64
		want int
	}{{1, 1}, {160, 1}, {161, 2}, {16000, 100}, {16001, 101}, {479999, 3000}, {480000, 3000}, {10_000_000, 3000}} {
		if got := c.ValidFrames(tc.n); got != tc.want {
			t.Errorf("ValidFrames(%d) = %d, want %d", tc.n, got, tc.want)
		}
	}
}

func TestParseConfig(t *testing.T) {
	if got, want := qwenConfig(t), (Config{FeatureSize: 128, SamplingRate: 16000, HopLength: 160, ChunkLength: 30, NFFT: 400}); got != want {
		t.Errorf("Qwen2-Audio config %+v, want %+v", got, want)
	}
	ok := []struct {
		json string
		want Config
	}{
		{`{}`, DefaultConfig()},
		{`{"feature_size": 128, "dither": 0.0, "processor_class": "X", "return_attention_mask": true}`,
			Config{FeatureSize: 128, SamplingRate: 16000, HopLength: 160, ChunkLength: 30, NFFT: 400}},
		{`{"n_samples": 480000, "nb_max_frames": 3000, "padding_value": 0.5}`,
			Config{FeatureSize: 80, SamplingRate: 16000, HopLength: 160, ChunkLength: 30, NFFT: 400, PaddingValue: 0.5}},
	}
	for _, tc := range ok {
		got, err := ParseConfig([]byte(tc.json))
		if err != nil || got != tc.want {
			t.Errorf("%s: %+v, %v; want %+v", tc.json, got, err, tc.want)
		}
	}
	bad := []struct{ json, want string }{
		{`{"feature_extractor_type": "SeamlessM4TFeatureExtractor"}`, "feature_extractor_type"},
		{`{"dither": 1.0}`, "dither"},
		{`{"padding_side": "left"}`, "padding_side"},
		{`{"n_samples": 16000}`, "n_samples 16000"},
		{`{"nb_max_frames": 1500}`, "nb_max_frames 1500"},
		{`{"n_fft": 401}`, "n_fft 401"},
		{`{"hop_length": 7}`, "hops"},
		{`{"hop_length": 0}`, "hop_length 0"},
		{`{"chunk_length": 0}`, "chunk_length 0"},
		{`{"chunk_length": 100000}`, "limit"},
		{`{"feature_size": 0}`, "feature_size 0"},
		{`{"feature_size": 30.5}`, "feature_size"},
		{`{"feature_size": "128"}`, "feature_size"},
		{`{"sampling_rate": -1}`, "sampling_rate -1"},
		{`{"chunk_length": 1, "sampling_rate": 100, "n_fft": 400, "hop_length": 10}`, "too few"},
		{`{} {}`, "trailing"},
		{`not json`, "invalid"},
	}
	for _, tc := range bad {
		_, err := ParseConfig([]byte(tc.json))
		if err == nil || !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want ErrConfig mentioning %q", tc.json, err, tc.want)
		}
	}
	path := filepath.Join(t.TempDir(), "preprocessor_config.json")
	os.WriteFile(path, []byte(`{"dither": 4}`), 0o644)
	if _, err := LoadConfig(path); err == nil || !strings.HasPrefix(err.Error(), path+": ") {
		t.Errorf("LoadConfig error %v does not start with the path", err)
	}
}

func TestExtractErrors(t *testing.T) {
	c := qwenConfig(t)
	e := newExtractor(t, c)
	dir := t.TempDir()
	path := filepath.Join(dir, "44k.wav")
	writePCM16(t, path, 44100, make([]float32, 100))
	_, err := e.ExtractFile(path)
	if err == nil || !errors.Is(err, ErrAudio) {
		t.Fatalf("44.1 kHz accepted: %v", err)
	}
	for _, want := range []string{path + ": ", "44100 Hz", "16000 Hz", "ffmpeg -i " + path + " -ar 16000 -ac 1 out.wav"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	empty := filepath.Join(dir, "empty.wav")
	writePCM16(t, empty, 16000, nil)
	if _, err := e.ExtractFile(empty); err == nil || !errors.Is(err, ErrAudio) || !strings.HasPrefix(err.Error(), empty+": ") {
		t.Errorf("empty WAV: %v", err)
	}
	if _, err := e.Extract([]float32{0, float32(math.Inf(1))}); err == nil || !errors.Is(err, ErrAudio) {
		t.Errorf("Inf sample: %v", err)
	}
	if _, err := NewExtractor(Config{}); err == nil {
		t.Error("zero config accepted")
	}
}

// FuzzConfig parses arbitrary JSON: no panic; whatever parses validates, and a small one builds
// an extractor that runs.
func FuzzConfig(f *testing.F) {
	if b, err := os.ReadFile("testdata/preprocessor_config.json"); err == nil {
		f.Add(b)
	}
	f.Add([]byte(`{"feature_size": 10, "chunk_length": 1, "n_fft": 64, "hop_length": 16}`))
	f.Add([]byte(`{"dither": 0, "padding_side": "right", "n_samples": 480000}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseConfig(data)
		if err != nil {
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("parsed config does not validate: %v", err)
		}
		if c.NSamples() > 1<<16 || c.FeatureSize*c.NFFT > 1<<16 {
			return
		}
		e, err := NewExtractor(c)
		if err != nil {
			t.Fatal(err)
		}
		feat, err := e.Extract([]float32{0.5, -0.25, 1})
		if err != nil {
			t.Fatal(err)
		}
		if len(feat.Mel) != c.FeatureSize*c.NFrames() {
			t.Fatalf("%d values for %d×%d", len(feat.Mel), c.FeatureSize, c.NFrames())
		}
	})
}

// BenchmarkExtract30s times the features of a full 30 s chunk (every frame has sound).
func BenchmarkExtract30s(b *testing.B) {
	c := qwenConfig(b)
	e := newExtractor(b, c)
	x := testSignal(c.NSamples(), 1)
	b.ResetTimer()
	for b.Loop() {
		if _, err := e.Extract(x); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkExtract1s times 1 s of sound padded to 30 s (silent frames skip the FFT).
func BenchmarkExtract1s(b *testing.B) {
	c := qwenConfig(b)
	e := newExtractor(b, c)
	x := testSignal(c.SamplingRate, 1)
	for b.Loop() {
		if _, err := e.Extract(x); err != nil {
			b.Fatal(err)
		}
	}
}
