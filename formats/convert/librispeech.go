package convert

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/mewkiz/flac"
	"github.com/neurosurg/neurosurg/formats/atomicfile"
	"github.com/neurosurg/neurosurg/formats/outpath"
)

// LibriSpeech (e.g. LibriSpeech/test-clean/<speaker>/<chapter>/): <speaker>-<chapter>.trans.txt
// holds "<utterance id> <TRANSCRIPT>" a line, and each utterance is <utterance id>.flac beside
// it (16 kHz, mono, 16-bit). neurosurg reads WAV, so each FLAC is decoded (pure Go,
// github.com/mewkiz/flac) and written as 16-bit PCM WAV to --images DIR/<utterance id>.wav
// (default: <out without extension>-wav/ — computed by the CLI; never inside an input). When
// <utterance id>.wav already exists beside the FLAC (e.g. from
// `ffmpeg -i X.flac -ar 16000 -ac 1 X.wav`), that file is used and nothing is decoded.
// MINER (utils/dataset.py Libri): one fixed transcription prompt; the answer is the
// transcript (scored as word recognition rate, lowercased).

func init() {
	register("librispeech", format{
		about:  "LibriSpeech directory tree (*.trans.txt + .flac); FLACs are decoded to 16 kHz WAVs in --images DIR",
		inputs: "LibriSpeech directories or .trans.txt files", minInputs: 1,
		convert: libriSpeech,
	})
}

// maxAudioSeconds bounds a decoded utterance (LibriSpeech's are under 35 s): a corrupt header
// cannot make the decoder allocate without limit.
const maxAudioSeconds = 600

func libriSpeech(o *Options) ([]Sample, error) {
	if o.Media == "" && !o.noMedia {
		return nil, fmt.Errorf("%w: librispeech needs --images DIR, where the WAVs are written", ErrUsage)
	}
	if err := outpath.Check(o.Media, o.Inputs...); err != nil {
		return nil, fmt.Errorf("--images (where the WAVs are written): %w", err)
	}
	trans, err := inputFiles(o.Inputs, ".trans.txt")
	if err != nil {
		return nil, err
	}
	sort.Strings(trans)
	var out []Sample
	for _, t := range trans {
		b, err := readInput(t)
		if err != nil {
			return nil, err
		}
		utts, err := parseTranscripts(t, b)
		if err != nil {
			return nil, err
		}
		for _, u := range utts {
			if o.limited(out) {
				return out, nil
			}
			where := fmt.Sprintf("%s:%d", t, u.line)
			wav, err := o.libriWAV(where, filepath.Dir(t), u.id)
			if err != nil {
				return nil, err
			}
			out = append(out, Sample{ID: u.id, Text: libriPrompt, Audio: wav, Dataset: "libri", Answer: u.text})
		}
	}
	return out, nil
}

type utterance struct {
	id, text string
	line     int
}

// parseTranscripts reads "<id> <transcript>" lines.
func parseTranscripts(name string, b []byte) ([]utterance, error) {
	var out []utterance
	err := textLines(name, b, func(line int, s string) error {
		id, text, ok := strings.Cut(s, " ")
		text = strings.TrimSpace(text)
		if !ok || text == "" {
			return fmt.Errorf("%s:%d: %w: want \"<utterance id> <transcript>\"", name, line, ErrFormat)
		}
		if strings.ContainsAny(id, `/\`) || id == "." || id == ".." {
			return fmt.Errorf("%s:%d: %w: utterance id %q is not a file name", name, line, ErrFormat, id)
		}
		out = append(out, utterance{id: id, text: text, line: line})
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: %w: no transcript lines", name, ErrFormat)
	}
	return out, nil
}

// libriWAV returns the WAV of utterance id: the one beside its FLAC if there is one, else the
// FLAC decoded into the media directory.
func (o *Options) libriWAV(where, dir, id string) (string, error) {
	beside := filepath.Join(dir, id+".wav")
	if fi, err := os.Stat(beside); err == nil && fi.Mode().IsRegular() {
		return beside, nil
	}
	src := filepath.Join(dir, id+".flac")
	dst := filepath.Join(o.Media, id+".wav")
	if o.noMedia {
		return dst, nil
	}
	if _, err := os.Stat(src); err != nil {
		return "", fmt.Errorf("%s: audio %s not found", where, src)
	}
	if err := os.MkdirAll(o.Media, 0o755); err != nil {
		return "", err
	}
	if err := flacToWAV(src, dst); err != nil {
		return "", fmt.Errorf("%s: %w", where, err)
	}
	return dst, nil
}

// flacToWAV decodes a 16 kHz FLAC to 16-bit PCM WAV (channels mixed down to mono by their
// mean), written atomically. Other sample rates are refused: resampling is not this
// converter's job (ffmpeg -ar 16000, then point at the WAVs).
func flacToWAV(src, dst string) (err error) {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	pcm, err := decodeFLAC(f, src)
	if err != nil {
		return err
	}
	return atomicfile.Write(dst, wav16(pcm, 16000))
}

func decodeFLAC(r io.Reader, name string) (pcm []int16, err error) {
	defer func() {
		if r := recover(); r != nil { // a corrupt stream must not take the process down
			pcm, err = nil, fmt.Errorf("%s: %w: corrupt FLAC (%v)", name, ErrFormat, r)
		}
	}()
	st, err := flac.New(r)
	if err != nil {
		return nil, fmt.Errorf("%s: %w: not a FLAC stream: %v", name, ErrFormat, err)
	}
	info := st.Info
	if info.SampleRate != 16000 {
		return nil, fmt.Errorf("%s: sample rate %d Hz; 16000 Hz expected (resample with: ffmpeg -i IN.flac -ar 16000 -ac 1 OUT.wav)", name, info.SampleRate)
	}
	if info.BitsPerSample < 4 || info.BitsPerSample > 32 || info.NChannels < 1 {
		return nil, fmt.Errorf("%s: %w: %d bits, %d channels", name, ErrFormat, info.BitsPerSample, info.NChannels)
	}
	const maxSamples = maxAudioSeconds * 16000
	shift := int(info.BitsPerSample) - 16
	for {
		fr, err := st.ParseNext()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w: corrupt FLAC frame: %v", name, ErrFormat, err)
		}
		if len(fr.Subframes) == 0 {
			continue
		}
		n := len(fr.Subframes[0].Samples)
		if len(pcm)+n > maxSamples {
			return nil, fmt.Errorf("%s: longer than %d s", name, maxAudioSeconds)
		}
		for i := 0; i < n; i++ {
			var sum int64
			for _, sf := range fr.Subframes {
				if i < len(sf.Samples) {
					sum += int64(sf.Samples[i])
				}
			}
			v := sum / int64(len(fr.Subframes))
			if shift > 0 {
				v >>= shift
			} else {
				v <<= -shift
			}
			pcm = append(pcm, int16(max(-32768, min(32767, v))))
		}
	}
	if len(pcm) == 0 {
		return nil, fmt.Errorf("%s: %w: no audio", name, ErrFormat)
	}
	return pcm, nil
}

// wav16 encodes mono 16-bit PCM as a RIFF WAVE file.
func wav16(pcm []int16, rate uint32) []byte {
	var b bytes.Buffer
	n := uint32(len(pcm) * 2)
	b.WriteString("RIFF")
	binary.Write(&b, binary.LittleEndian, 36+n)
	b.WriteString("WAVEfmt ")
	binary.Write(&b, binary.LittleEndian, struct {
		Size                 uint32
		Tag, Channels        uint16
		Rate, ByteRate       uint32
		BlockAlign, BitDepth uint16
	}{16, 1, 1, rate, rate * 2, 2, 16})
	b.WriteString("data")
	binary.Write(&b, binary.LittleEndian, n)
	binary.Write(&b, binary.LittleEndian, pcm)
	return b.Bytes()
}
