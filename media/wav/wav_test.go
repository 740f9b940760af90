package wav_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/neurosurg/neurosurg/media/wav"
)

// chunk is one RIFF chunk for the test writer.
type chunk struct {
	id   string
	body []byte
	size int64 // declared size; -1: len(body)
}

// riff builds a RIFF/WAVE file from chunks, padding odd bodies to an even size.
func riff(chunks ...chunk) []byte {
	var b bytes.Buffer
	b.WriteString("RIFF")
	b.Write([]byte{0, 0, 0, 0})
	b.WriteString("WAVE")
	for _, c := range chunks {
		b.WriteString(c.id)
		size := c.size
		if size < 0 {
			size = int64(len(c.body))
		}
		binary.Write(&b, binary.LittleEndian, uint32(size))
		b.Write(c.body)
		if len(c.body)%2 == 1 {
			b.WriteByte(0)
		}
	}
	out := b.Bytes()
	binary.LittleEndian.PutUint32(out[4:8], uint32(len(out)-8))
	return out
}

// spec describes an encoding for the test writer.
type spec struct {
	tag        uint16 // 1 PCM, 3 float, 0xFFFE extensible
	subTag     uint16 // extensible sub-format
	bits       int
	validBits  int // extensible only
	channels   int
	rate       int
	blockAlign int // 0: channels·bits/8
}

func fmtChunk(s spec) chunk {
	var b bytes.Buffer
	le := binary.LittleEndian
	ba := s.blockAlign
	if ba == 0 {
		ba = s.channels * s.bits / 8
	}
	binary.Write(&b, le, s.tag)
	binary.Write(&b, le, uint16(s.channels))
	binary.Write(&b, le, uint32(s.rate))
	binary.Write(&b, le, uint32(s.rate*ba))
	binary.Write(&b, le, uint16(ba))
	binary.Write(&b, le, uint16(s.bits))
	if s.tag == 0xFFFE {
		binary.Write(&b, le, uint16(22))
		binary.Write(&b, le, uint16(s.validBits))
		binary.Write(&b, le, uint32(3)) // channel mask: FL|FR
		binary.Write(&b, le, s.subTag)
		b.Write([]byte{0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x80, 0x00, 0x00, 0xAA, 0x00, 0x38, 0x9B, 0x71})
	}
	return chunk{id: "fmt ", body: b.Bytes(), size: -1}
}

// encode writes raw sample values (integers for PCM, floats for float) interleaved.
func encode(s spec, vals []float64) []byte {
	var b bytes.Buffer
	le := binary.LittleEndian
	for _, v := range vals {
		switch {
		case s.bits == 8:
			b.WriteByte(byte(int(v) + 128))
		case s.bits == 16:
			binary.Write(&b, le, int16(v))
		case s.bits == 24:
			x := int32(v)
			b.Write([]byte{byte(x), byte(x >> 8), byte(x >> 16)})
		case s.bits == 32 && isFloat(s):
			binary.Write(&b, le, float32(v))
		case s.bits == 32:
			binary.Write(&b, le, int32(v))
		case s.bits == 64:
			binary.Write(&b, le, v)
		}
	}
	return b.Bytes()
}

func isFloat(s spec) bool { return s.tag == 3 || (s.tag == 0xFFFE && s.subTag == 3) }

func TestRoundTrip(t *testing.T) {
	// Raw values and the float32 soundfile/libsndfile would return for them.
	int16s := []float64{0, 1, -1, 32767, -32768, 12345, -2222}
	cases := []struct {
		name string
		s    spec
		raw  []float64 // interleaved
		want []float32 // mono
	}{
		{"pcm8", spec{tag: 1, bits: 8, channels: 1, rate: 16000}, []float64{0, 127, -128, 5},
			[]float32{0, 127.0 / 128, -1, 5.0 / 128}},
		{"pcm16", spec{tag: 1, bits: 16, channels: 1, rate: 16000}, int16s,
			[]float32{0, 1.0 / 32768, -1.0 / 32768, 32767.0 / 32768, -1, 12345.0 / 32768, -2222.0 / 32768}},
		{"pcm24", spec{tag: 1, bits: 24, channels: 1, rate: 16000}, []float64{0, 8388607, -8388608, -1, 4242},
			[]float32{0, float32(8388607.0 / 8388608), -1, float32(-1.0 / 8388608), float32(4242.0 / 8388608)}},
		{"pcm32", spec{tag: 1, bits: 32, channels: 1, rate: 16000}, []float64{0, 2147483647, -2147483648, 1 << 20, -3},
			[]float32{0, 1, -1, float32(1.0 / 2048), float32(-3.0 / 2147483648)}},
		{"float32", spec{tag: 3, bits: 32, channels: 1, rate: 16000}, []float64{0, 0.5, -1.25, 3e-8},
			[]float32{0, 0.5, -1.25, 3e-8}},
		{"float64", spec{tag: 3, bits: 64, channels: 1, rate: 16000}, []float64{0, 0.1, -0.7, 1.0 / 3},
			[]float32{0, 0.1, -0.7, float32(1.0 / 3)}},
		{"extensible-pcm16", spec{tag: 0xFFFE, subTag: 1, bits: 16, validBits: 16, channels: 1, rate: 16000}, int16s,
			[]float32{0, 1.0 / 32768, -1.0 / 32768, 32767.0 / 32768, -1, 12345.0 / 32768, -2222.0 / 32768}},
		{"extensible-pcm24-valid20", spec{tag: 0xFFFE, subTag: 1, bits: 24, validBits: 20, channels: 1, rate: 16000},
			[]float64{16 * 1000, -16 * 524288}, []float32{float32(16000.0 / 8388608), -1}},
		{"extensible-float32", spec{tag: 0xFFFE, subTag: 3, bits: 32, validBits: 32, channels: 1, rate: 16000},
			[]float64{0.25, -0.125}, []float32{0.25, -0.125}},
		{"stereo16-mean", spec{tag: 1, bits: 16, channels: 2, rate: 16000}, []float64{100, 300, -32768, -32768, 1, 0},
			[]float32{200.0 / 32768, -1, 0.5 / 32768}},
		{"stereo-float-mean", spec{tag: 3, bits: 32, channels: 2, rate: 16000}, []float64{1, 0.1, -0.3, 0.3},
			[]float32{(1 + float32(0.1)) / 2, (float32(-0.3) + float32(0.3)) / 2}},
		{"3ch16-mean", spec{tag: 1, bits: 16, channels: 3, rate: 8000}, []float64{3, 6, 9},
			[]float32{(3.0/32768 + 6.0/32768 + 9.0/32768) / 3}},
	}
	dir := t.TempDir()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			data := encode(tc.s, tc.raw)
			// Unknown chunks before and after data, one of odd size (padded), must be skipped.
			file := riff(chunk{id: "JUNK", body: []byte{1, 2, 3}, size: -1}, fmtChunk(tc.s),
				chunk{id: "LIST", body: []byte("INFOISFT"), size: -1},
				chunk{id: "data", body: data, size: -1}, chunk{id: "id3 ", body: []byte{9}, size: -1})
			path := filepath.Join(dir, tc.name+".wav")
			if err := os.WriteFile(path, file, 0o644); err != nil {
				t.Fatal(err)
			}
			a, err := wav.ReadFile(path, 0)
			if err != nil {
				t.Fatal(err)
			}
			if a.SampleRate != tc.s.rate || a.Channels != tc.s.channels || a.Frames != int64(len(tc.want)) {
				t.Fatalf("rate %d channels %d frames %d, want %d %d %d", a.SampleRate, a.Channels, a.Frames, tc.s.rate, tc.s.channels, len(tc.want))
			}
			if len(a.Samples) != len(tc.want) {
				t.Fatalf("%d samples, want %d", len(a.Samples), len(tc.want))
			}
			for i := range tc.want {
				if math.Float32bits(a.Samples[i]) != math.Float32bits(tc.want[i]) {
					t.Errorf("sample %d = %v, want %v", i, a.Samples[i], tc.want[i])
				}
			}
			// maxFrames decodes a prefix and still counts every frame.
			b, err := wav.ReadFile(path, 1)
			if err != nil {
				t.Fatal(err)
			}
			if len(b.Samples) != 1 || b.Frames != a.Frames || b.Samples[0] != a.Samples[0] {
				t.Errorf("prefix read: %d samples, %d frames", len(b.Samples), b.Frames)
			}
		})
	}
}

func TestEncodingName(t *testing.T) {
	file := riff(fmtChunk(spec{tag: 3, bits: 64, channels: 1, rate: 16000}), chunk{id: "data", body: make([]byte, 8), size: -1})
	// The size argument bounds everything, whatever the reader holds.
	if a, err := wav.Read(bytes.NewReader(file), 20, 0); err == nil {
		t.Fatalf("a 20-byte bound accepted: %+v", a)
	}
	a, err := wav.Read(bytes.NewReader(file), int64(len(file)), 0)
	if err != nil {
		t.Fatal(err)
	}
	if a.Encoding != "64-bit float" {
		t.Errorf("encoding %q", a.Encoding)
	}
}

// TestStreamingSize: ffmpeg writing to a pipe leaves 0xFFFFFFFF as the data size; the data then
// runs to the end of the file (a trailing partial frame is dropped).
func TestStreamingSize(t *testing.T) {
	s := spec{tag: 1, bits: 16, channels: 1, rate: 16000}
	file := riff(fmtChunk(s), chunk{id: "data", body: encode(s, []float64{1, 2, 3}), size: 0xFFFFFFFF})
	file = append(file, 0x7f) // half a frame
	a, err := wav.Read(bytes.NewReader(file), int64(len(file)), 0)
	if err != nil {
		t.Fatal(err)
	}
	if a.Frames != 3 || a.Samples[2] != 3.0/32768 {
		t.Fatalf("frames %d samples %v", a.Frames, a.Samples)
	}
}

func TestErrors(t *testing.T) {
	pcm16 := spec{tag: 1, bits: 16, channels: 1, rate: 16000}
	good := encode(pcm16, []float64{1, 2})
	nan := make([]byte, 4)
	binary.LittleEndian.PutUint32(nan, math.Float32bits(float32(math.NaN())))
	cases := []struct {
		name string
		file []byte
		sent error
		want string
	}{
		{"empty", nil, wav.ErrFormat, "too short"},
		{"not-riff", []byte("OggS\x00\x00\x00\x00WAVEfmt "), wav.ErrFormat, "not a WAV file"},
		{"not-wave", []byte("RIFF\x04\x00\x00\x00AVI "), wav.ErrFormat, `"WAVE"`},
		{"rifx", []byte("RIFX\x04\x00\x00\x00WAVE"), wav.ErrUnsupported, "big-endian"},
		{"rf64", []byte("RF64\xff\xff\xff\xffWAVE"), wav.ErrUnsupported, "ffmpeg -i"},
		{"no-fmt", riff(chunk{id: "data", body: good, size: -1}), wav.ErrFormat, "no fmt chunk"},
		{"no-data", riff(fmtChunk(pcm16)), wav.ErrFormat, "no data chunk"},
		{"truncated-data", riff(fmtChunk(pcm16), chunk{id: "data", body: good, size: 1000}), wav.ErrFormat, "truncated"},
		{"truncated-chunk", riff(chunk{id: "LIST", body: []byte{1, 2}, size: 1 << 30}, fmtChunk(pcm16)), wav.ErrFormat, "truncated"},
		{"binary-chunk-id", riff(chunk{id: "\x00\x01ab", body: nil, size: 99}), wav.ErrFormat, `"??ab"`},
		{"partial-frame", riff(fmtChunk(pcm16), chunk{id: "data", body: good[:3], size: -1}), wav.ErrFormat, "whole number"},
		{"short-fmt", riff(chunk{id: "fmt ", body: make([]byte, 14), size: -1}), wav.ErrFormat, "at least 16"},
		{"two-fmt", riff(fmtChunk(pcm16), fmtChunk(pcm16)), wav.ErrFormat, "second fmt"},
		{"adpcm", riff(fmtChunk(spec{tag: 2, bits: 4, channels: 1, rate: 16000, blockAlign: 256}), chunk{id: "data", body: good, size: -1}), wav.ErrUnsupported, "MS ADPCM"},
		{"mulaw", riff(fmtChunk(spec{tag: 7, bits: 8, channels: 1, rate: 8000}), chunk{id: "data", body: good, size: -1}), wav.ErrUnsupported, "µ-law"},
		{"pcm12", riff(fmtChunk(spec{tag: 1, bits: 12, channels: 1, rate: 16000, blockAlign: 2}), chunk{id: "data", body: good, size: -1}), wav.ErrUnsupported, "12-bit PCM"},
		{"float16", riff(fmtChunk(spec{tag: 3, bits: 16, channels: 1, rate: 16000}), chunk{id: "data", body: good, size: -1}), wav.ErrUnsupported, "16-bit float"},
		{"zero-channels", riff(fmtChunk(spec{tag: 1, bits: 16, channels: 0, rate: 16000, blockAlign: 2}), chunk{id: "data", body: good, size: -1}), wav.ErrFormat, "0 channels"},
		{"zero-rate", riff(fmtChunk(spec{tag: 1, bits: 16, channels: 1, rate: 0}), chunk{id: "data", body: good, size: -1}), wav.ErrFormat, "sample rate 0"},
		{"block-align", riff(fmtChunk(spec{tag: 1, bits: 16, channels: 2, rate: 16000, blockAlign: 2}), chunk{id: "data", body: good, size: -1}), wav.ErrFormat, "block align 2, want 4"},
		{"extensible-short", riff(chunk{id: "fmt ", body: fmtChunk(spec{tag: 0xFFFE, subTag: 1, bits: 16, validBits: 16, channels: 1, rate: 16000}).body[:24], size: -1}), wav.ErrFormat, "too short"},
		{"extensible-guid", riff(fmtChunk(spec{tag: 0xFFFE, subTag: 2, bits: 16, validBits: 16, channels: 1, rate: 16000}), chunk{id: "data", body: good, size: -1}), wav.ErrUnsupported, "format tag 0x0002"},
		{"extensible-valid-bits", riff(fmtChunk(spec{tag: 0xFFFE, subTag: 1, bits: 16, validBits: 24, channels: 1, rate: 16000}), chunk{id: "data", body: good, size: -1}), wav.ErrFormat, "24 valid bits"},
		{"nan", riff(fmtChunk(spec{tag: 3, bits: 32, channels: 1, rate: 16000}), chunk{id: "data", body: nan, size: -1}), wav.ErrFormat, "NaN"},
	}
	dir := t.TempDir()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, tc.name+".wav")
			if err := os.WriteFile(path, tc.file, 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := wav.ReadFile(path, 0)
			if err == nil {
				t.Fatal("no error")
			}
			if !errors.Is(err, tc.sent) {
				t.Errorf("error %v is not %v", err, tc.sent)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, path+": ") || !strings.Contains(msg, tc.want) || strings.Contains(msg, "\n") {
				t.Errorf("error %q: want one line starting with the path and containing %q", msg, tc.want)
			}
		})
	}
	if _, err := wav.ReadFile(dir, 0); err == nil || !strings.Contains(err.Error(), dir) {
		t.Errorf("directory: %v", err)
	}
	if _, err := wav.ReadFile(filepath.Join(dir, "absent.wav"), 0); err == nil || !strings.Contains(err.Error(), "absent.wav") {
		t.Errorf("missing file: %v", err)
	}
}

// FuzzWAV reads arbitrary bytes: no panic, and whatever decodes is consistent with the file's
// size (the reader allocates nothing it has not bounded by it).
func FuzzWAV(f *testing.F) {
	for _, s := range []spec{
		{tag: 1, bits: 8, channels: 1, rate: 16000},
		{tag: 1, bits: 16, channels: 2, rate: 16000},
		{tag: 1, bits: 24, channels: 1, rate: 44100},
		{tag: 1, bits: 32, channels: 1, rate: 16000},
		{tag: 3, bits: 32, channels: 1, rate: 16000},
		{tag: 3, bits: 64, channels: 2, rate: 16000},
		{tag: 0xFFFE, subTag: 1, bits: 24, validBits: 20, channels: 1, rate: 16000},
	} {
		vals := []float64{0, 1, -1, 100, -100, 7}
		if s.channels == 2 {
			vals = vals[:4]
		}
		f.Add(riff(chunk{id: "LIST", body: []byte("INFO"), size: -1}, fmtChunk(s), chunk{id: "data", body: encode(s, vals), size: -1}))
	}
	if b, err := os.ReadFile("../audiofeat/testdata/tone.wav"); err == nil {
		f.Add(b[:200])
	}
	f.Add(riff(fmtChunk(spec{tag: 1, bits: 16, channels: 1, rate: 16000}), chunk{id: "data", body: []byte{1, 2}, size: 0xFFFFFFFF}))
	f.Fuzz(func(t *testing.T, data []byte) {
		a, err := wav.Read(bytes.NewReader(data), int64(len(data)), 1<<16)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("multi-line error %q", err)
			}
			return
		}
		if a.Channels < 1 || a.SampleRate < 1 || a.Frames < 0 {
			t.Fatalf("bad audio %+v", a)
		}
		bytesPerFrame := int64(a.Channels)
		if a.Frames*bytesPerFrame > int64(len(data)) {
			t.Fatalf("%d frames of %d channels in %d bytes", a.Frames, a.Channels, len(data))
		}
		if int64(len(a.Samples)) != min(a.Frames, 1<<16) {
			t.Fatalf("%d samples for %d frames", len(a.Samples), a.Frames)
		}
		for i, v := range a.Samples {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				t.Fatalf("sample %d is %v", i, v)
			}
		}
	})
}
