// Package wav reads RIFF/WAVE files into mono float32 samples the way Python's soundfile and
// librosa do, so audio features computed from them match Hugging Face's pipelines.
//
// Encodings: PCM with 8 (unsigned), 16, 24 or 32 bits, IEEE float with 32 or 64 bits, in a
// plain WAVE_FORMAT_PCM / WAVE_FORMAT_IEEE_FLOAT header or a WAVE_FORMAT_EXTENSIBLE one.
// Integers are scaled as libsndfile scales them (x/128 after removing the 8-bit offset, x/2^15,
// x/2^23, x/2^31), float64 is rounded to float32. Several channels are mixed to mono by their
// float32 mean, as librosa.to_mono does (HF's Qwen2-Audio examples load audio with
// librosa.load); for one or two channels the result is bit-identical to librosa's.
//
// Every size in the file is checked against the file size before anything is allocated or read;
// chunks the reader does not need (LIST, fact, cue, ...) are skipped. RF64, RIFX (big-endian)
// and compressed encodings (ADPCM, A-law, µ-law, ...) are refused.
package wav

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"

	"github.com/neurosurg/neurosurg/formats/regfile"
)

// ErrFormat reports a file that is not a well-formed WAV file.
var ErrFormat = errors.New("wav: invalid file")

// ErrUnsupported reports a well-formed WAV file in an encoding this package does not decode.
var ErrUnsupported = errors.New("wav: unsupported encoding")

// Audio is the decoded content of a WAV file.
type Audio struct {
	SampleRate int    // samples per second per channel
	Channels   int    // channels in the file (Samples is their mono mix)
	Frames     int64  // frames in the data chunk (one sample per channel each)
	Encoding   string // e.g. "16-bit PCM", "32-bit float"
	// Samples is the mono mix of the first len(Samples) frames: all of them, or the first
	// maxFrames when the caller asked for fewer.
	Samples []float32
}

// Format tags of the fmt chunk and the GUID tail shared by the KSDATAFORMAT_SUBTYPE_* GUIDs of
// WAVE_FORMAT_EXTENSIBLE (the first two bytes carry the format tag).
const (
	tagPCM        = 0x0001
	tagFloat      = 0x0003
	tagExtensible = 0xFFFE
)

var guidTail = [14]byte{0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x80, 0x00, 0x00, 0xAA, 0x00, 0x38, 0x9B, 0x71}

// streamingSize is the data size streaming writers (ffmpeg to a pipe) leave in the header:
// the data then runs to the end of the file.
const streamingSize = 0xFFFFFFFF

// ReadFile reads the WAV file at path. maxFrames > 0 decodes only the first maxFrames frames
// (Frames still counts all of them); maxFrames <= 0 decodes everything. Errors name the file.
func ReadFile(path string, maxFrames int64) (*Audio, error) {
	// regfile refuses a directory, FIFO or device before reading (a FIFO would block os.Open).
	f, err := regfile.Open(path)
	if err != nil {
		return nil, err // names the file
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	a, err := Read(f, st.Size(), maxFrames)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return a, nil
}

// format is what the fmt chunk says, reduced to what decoding needs.
type format struct {
	float      bool
	bits       int // container bits per sample
	channels   int
	rate       int
	blockAlign int
}

// Read reads a WAV file of size bytes from r. See ReadFile for maxFrames.
func Read(r io.ReaderAt, size int64, maxFrames int64) (*Audio, error) {
	var hdr [12]byte
	if size < 12 {
		return nil, fmt.Errorf("%w: %d bytes is too short for a RIFF/WAVE header", ErrFormat, size)
	}
	if _, err := r.ReadAt(hdr[:], 0); err != nil {
		return nil, fmt.Errorf("reading header: %w", err)
	}
	switch string(hdr[0:4]) {
	case "RIFF":
	case "RF64", "BW64":
		return nil, fmt.Errorf("%w: %s (64-bit WAV) files are not supported; convert with: ffmpeg -i in.wav -ar 16000 -ac 1 out.wav", ErrUnsupported, hdr[0:4])
	case "RIFX":
		return nil, fmt.Errorf("%w: RIFX (big-endian WAV) files are not supported; convert with: ffmpeg -i in.wav -ar 16000 -ac 1 out.wav", ErrUnsupported)
	default:
		return nil, fmt.Errorf("%w: not a WAV file (starts with %q, want \"RIFF\")", ErrFormat, hdr[0:4])
	}
	if string(hdr[8:12]) != "WAVE" {
		return nil, fmt.Errorf("%w: RIFF file of type %q, want \"WAVE\"", ErrFormat, hdr[8:12])
	}
	// The RIFF size field is ignored: streaming writers leave it wrong, and every chunk below is
	// bounded by the real file size instead.

	var (
		fmtc               *format
		dataOff, dataBytes int64 = -1, 0
	)
	for off := int64(12); off+8 <= size && (fmtc == nil || dataOff < 0); {
		var ch [8]byte
		if _, err := r.ReadAt(ch[:], off); err != nil {
			return nil, fmt.Errorf("reading chunk header at offset %d: %w", off, err)
		}
		id := string(ch[0:4])
		n := int64(binary.LittleEndian.Uint32(ch[4:8]))
		body := off + 8
		left := size - body
		switch {
		case id == "data" && n == streamingSize && n > left:
			n = left - left%blockAlignOr1(fmtc)
		case n > left:
			return nil, fmt.Errorf("%w: truncated: %q chunk at offset %d declares %d bytes but only %d remain", ErrFormat, printable(id), off, n, left)
		}
		switch id {
		case "fmt ":
			if fmtc != nil {
				return nil, fmt.Errorf("%w: second fmt chunk at offset %d", ErrFormat, off)
			}
			f, err := parseFmt(r, body, n)
			if err != nil {
				return nil, err
			}
			fmtc = f
		case "data":
			if dataOff < 0 {
				dataOff, dataBytes = body, n
			}
		}
		off = body + n + n&1 // chunks are padded to an even size
	}
	if fmtc == nil {
		return nil, fmt.Errorf("%w: no fmt chunk", ErrFormat)
	}
	if dataOff < 0 {
		return nil, fmt.Errorf("%w: no data chunk", ErrFormat)
	}
	if dataBytes%int64(fmtc.blockAlign) != 0 {
		return nil, fmt.Errorf("%w: data chunk of %d bytes is not a whole number of %d-byte frames", ErrFormat, dataBytes, fmtc.blockAlign)
	}
	a := &Audio{
		SampleRate: fmtc.rate,
		Channels:   fmtc.channels,
		Frames:     dataBytes / int64(fmtc.blockAlign),
		Encoding:   fmtc.String(),
	}
	n := a.Frames
	if maxFrames > 0 && n > maxFrames {
		n = maxFrames
	}
	samples, err := decode(r, dataOff, n, fmtc)
	if err != nil {
		return nil, err
	}
	a.Samples = samples
	return a, nil
}

func blockAlignOr1(f *format) int64 {
	if f == nil {
		return 1
	}
	return int64(f.blockAlign)
}

// printable keeps a chunk id readable in an error message even when it is binary junk.
func printable(id string) string {
	b := []byte(id)
	for i, c := range b {
		if c < 0x20 || c > 0x7e {
			b[i] = '?'
		}
	}
	return string(b)
}

func (f *format) String() string {
	if f.float {
		return fmt.Sprintf("%d-bit float", f.bits)
	}
	return fmt.Sprintf("%d-bit PCM", f.bits)
}

// parseFmt reads and checks the fmt chunk of n bytes at off.
func parseFmt(r io.ReaderAt, off, n int64) (*format, error) {
	if n < 16 {
		return nil, fmt.Errorf("%w: fmt chunk of %d bytes, want at least 16", ErrFormat, n)
	}
	if n > 64 {
		n = 64 // the fields this reader needs end at byte 40; the rest is skipped
	}
	b := make([]byte, n)
	if _, err := r.ReadAt(b, off); err != nil {
		return nil, fmt.Errorf("reading fmt chunk: %w", err)
	}
	le := binary.LittleEndian
	tag := le.Uint16(b[0:2])
	f := &format{
		channels:   int(le.Uint16(b[2:4])),
		rate:       int(le.Uint32(b[4:8])),
		blockAlign: int(le.Uint16(b[12:14])),
		bits:       int(le.Uint16(b[14:16])),
	}
	if tag == tagExtensible {
		if n < 40 || le.Uint16(b[16:18]) < 22 {
			return nil, fmt.Errorf("%w: WAVE_FORMAT_EXTENSIBLE fmt chunk of %d bytes is too short for its extension", ErrFormat, n)
		}
		valid := int(le.Uint16(b[18:20]))
		if valid > f.bits {
			return nil, fmt.Errorf("%w: %d valid bits in a %d-bit container", ErrFormat, valid, f.bits)
		}
		// Fewer valid bits than the container (e.g. 20 in 24) are left-justified: decoding the
		// whole container gives the same value, as libsndfile does.
		if [14]byte(b[26:40]) != guidTail {
			return nil, fmt.Errorf("%w: WAVE_FORMAT_EXTENSIBLE with a sub-format GUID that is not PCM or IEEE float", ErrUnsupported)
		}
		tag = le.Uint16(b[24:26])
	}
	switch tag {
	case tagPCM:
		if f.bits != 8 && f.bits != 16 && f.bits != 24 && f.bits != 32 {
			return nil, fmt.Errorf("%w: %d-bit PCM (want 8, 16, 24 or 32)", ErrUnsupported, f.bits)
		}
	case tagFloat:
		f.float = true
		if f.bits != 32 && f.bits != 64 {
			return nil, fmt.Errorf("%w: %d-bit float (want 32 or 64)", ErrUnsupported, f.bits)
		}
	default:
		return nil, fmt.Errorf("%w: format tag 0x%04x (%s); convert with: ffmpeg -i in.wav -ar 16000 -ac 1 out.wav", ErrUnsupported, tag, tagName(tag))
	}
	if f.channels == 0 {
		return nil, fmt.Errorf("%w: 0 channels", ErrFormat)
	}
	if f.rate == 0 {
		return nil, fmt.Errorf("%w: sample rate 0", ErrFormat)
	}
	if want := f.channels * f.bits / 8; f.blockAlign != want {
		return nil, fmt.Errorf("%w: block align %d, want %d for %d channels of %d bits", ErrFormat, f.blockAlign, want, f.channels, f.bits)
	}
	return f, nil
}

func tagName(tag uint16) string {
	switch tag {
	case 0x0002:
		return "MS ADPCM"
	case 0x0006:
		return "A-law"
	case 0x0007:
		return "µ-law"
	case 0x0011:
		return "IMA ADPCM"
	case 0x0031:
		return "GSM 6.10"
	case 0x0055:
		return "MP3"
	}
	return "not PCM or IEEE float"
}

// decode converts frames frames of the data at off to their mono float32 mix.
func decode(r io.ReaderAt, off, frames int64, f *format) ([]float32, error) {
	out := make([]float32, frames)
	const chunkFrames = 4096
	bytesPerSample := f.bits / 8
	buf := make([]byte, min(frames, chunkFrames)*int64(f.blockAlign))
	for start := int64(0); start < frames; start += chunkFrames {
		n := min(frames-start, chunkFrames)
		b := buf[:n*int64(f.blockAlign)]
		if _, err := r.ReadAt(b, off+start*int64(f.blockAlign)); err != nil {
			return nil, fmt.Errorf("reading samples at frame %d: %w", start, err)
		}
		for i := range n {
			var sum float32
			for c := range f.channels {
				p := b[(int(i)*f.channels+c)*bytesPerSample:]
				v := sample(p, f)
				if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
					return nil, fmt.Errorf("%w: sample %d of channel %d is %v", ErrFormat, start+i, c, v)
				}
				// librosa.to_mono is np.mean over the channel axis of a float32 array: a float32
				// sum divided by the count (for more than two channels numpy's summation order
				// may differ in the last bit).
				if c == 0 {
					sum = v
				} else {
					sum += v
				}
			}
			if f.channels == 1 {
				out[start+i] = sum
			} else {
				out[start+i] = sum / float32(f.channels)
			}
		}
	}
	return out, nil
}

// sample decodes one sample at the start of p.
func sample(p []byte, f *format) float32 {
	le := binary.LittleEndian
	switch {
	case f.float && f.bits == 32:
		return math.Float32frombits(le.Uint32(p))
	case f.float:
		return float32(math.Float64frombits(le.Uint64(p)))
	case f.bits == 8:
		return float32(int(p[0])-128) / 128 // 8-bit WAV is unsigned
	case f.bits == 16:
		return float32(int16(le.Uint16(p))) / (1 << 15)
	case f.bits == 24:
		v := int32(uint32(p[0])<<8|uint32(p[1])<<16|uint32(p[2])<<24) >> 8
		return float32(v) / (1 << 23)
	default:
		return float32(int32(le.Uint32(p))) / (1 << 31)
	}
}
