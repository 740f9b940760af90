// Package samples reads labelled samples: JSONL, one sample a line.
package samples

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"unicode/utf8"
)

// ErrFormat reports an invalid samples file.
var ErrFormat = errors.New("samples: invalid line")

// Sample is one labelled input.
type Sample struct {
	ID      string   `json:"id"`
	Text    string   `json:"text"`
	Image   string   `json:"image,omitempty"`
	Audio   string   `json:"audio,omitempty"`
	Label   string   `json:"label,omitempty"`
	Dataset string   `json:"dataset,omitempty"`
	Answer  string   `json:"answer,omitempty"`
	Choices []string `json:"choices,omitempty"`
	Control bool     `json:"control,omitempty"` // verify: unrelated prompt for specificity/KL
	// BBox is the region of the sample's concept (its label) in its image: [x0, y0, x1, y1]
	// in pixels of the picture as decoded, x1 > x0, y1 > y0 (verify's region invariance).
	BBox []float64 `json:"bbox,omitempty"`
}

// MaxLine is the longest line Read accepts (a sample with a long text is one line; an image or
// audio is a path, not inline data).
const MaxLine = 64 << 20

// Read parses samples from r; name is used in errors ("file:line"). Every line is one JSON
// object in UTF-8; blank lines and lines starting with # are skipped; a file without samples
// is an error.
func Read(r io.Reader, name string) ([]Sample, error) {
	var out []Sample
	br := bufio.NewReaderSize(r, 64<<10)
	ids := map[string]int{}
	for line := 1; ; line++ {
		raw, err := readLine(br, MaxLine)
		if errors.Is(err, errLong) {
			return nil, fmt.Errorf("%s:%d: %w: line longer than %d MiB", name, line, ErrFormat, MaxLine>>20)
		}
		if err != nil && err != io.EOF {
			return nil, fmt.Errorf("%s:%d: %w", name, line, err)
		}
		if line == 1 {
			raw = bytes.TrimPrefix(raw, []byte("\uFEFF")) // a byte-order mark some editors write
		}
		if b := bytes.TrimSpace(raw); len(b) > 0 && b[0] != '#' {
			s, perr := parseLine(b)
			if perr != nil {
				return nil, fmt.Errorf("%s:%d: %w: %v", name, line, ErrFormat, perr)
			}
			if s.ID == "" {
				s.ID = fmt.Sprintf("line%d", line)
			}
			if prev, dup := ids[s.ID]; dup {
				return nil, fmt.Errorf("%s:%d: %w: id %q already used on line %d", name, line, ErrFormat, s.ID, prev)
			}
			ids[s.ID] = line
			out = append(out, s)
		}
		if err == io.EOF {
			break
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: %w: no samples (one JSON object a line)", name, ErrFormat)
	}
	return out, nil
}

// parseLine decodes one non-blank line: exactly one JSON object, valid UTF-8, with something
// to run.
func parseLine(b []byte) (Sample, error) {
	var s Sample
	if !utf8.Valid(b) {
		i := 0
		for i < len(b) {
			r, n := utf8.DecodeRune(b[i:])
			if r == utf8.RuneError && n <= 1 {
				break
			}
			i += n
		}
		return s, fmt.Errorf("invalid UTF-8 at byte %d of the line", i+1)
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(&s); err != nil {
		return s, err
	}
	if rest := bytes.TrimSpace(b[d.InputOffset():]); len(rest) > 0 {
		return s, fmt.Errorf("more after the JSON object at byte %d (one sample a line)", len(b)-len(rest)+1)
	}
	if s.Text == "" && s.Image == "" && s.Audio == "" {
		return s, errors.New("no text, image or audio")
	}
	if s.BBox != nil {
		if err := checkBBox(s); err != nil {
			return s, err
		}
	}
	return s, nil
}

// checkBBox refuses a box that is not [x0, y0, x1, y1] with x0 < x1 and y0 < y1, finite and
// not negative, or a box without an image.
func checkBBox(s Sample) error {
	b := s.BBox
	if s.Image == "" {
		return errors.New("bbox without an image")
	}
	if len(b) != 4 {
		return fmt.Errorf("bbox has %d numbers, want [x0, y0, x1, y1]", len(b))
	}
	for _, v := range b {
		if v < 0 || v > 1e9 {
			return fmt.Errorf("bbox %v: coordinates must be pixels from 0", b)
		}
	}
	if !(b[0] < b[2] && b[1] < b[3]) {
		return fmt.Errorf("bbox %v: want x0 < x1 and y0 < y1", b)
	}
	return nil
}

var errLong = errors.New("line too long")

// readLine returns the next line without its newline, reading at most max bytes of it; a
// longer line is errLong (the rest is not read). The last line may lack a newline; after it,
// io.EOF comes with whatever it held.
func readLine(br *bufio.Reader, max int) ([]byte, error) {
	var line []byte
	for {
		chunk, err := br.ReadSlice('\n')
		if len(line)+len(chunk) > max+1 {
			return nil, errLong
		}
		line = append(line, chunk...)
		switch err {
		case nil:
			return line[:len(line)-1], nil
		case bufio.ErrBufferFull:
			continue
		default:
			return line, err
		}
	}
}

// ReadFile reads a samples file.
func ReadFile(path string) ([]Sample, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	// A pipe is fine (samples can be streamed in); a directory is a mistake worth naming.
	if fi, err := f.Stat(); err == nil && fi.IsDir() {
		return nil, fmt.Errorf("%s: %w: a directory, not a samples file", path, ErrFormat)
	}
	return Read(f, path)
}

// Labels lists the distinct labels in order of first appearance.
func Labels(ss []Sample) []string {
	var out []string
	seen := map[string]bool{}
	for _, s := range ss {
		if !seen[s.Label] {
			seen[s.Label] = true
			out = append(out, s.Label)
		}
	}
	return out
}

// MediaKinds lists the media a sample carries ("image", "audio"), in that order.
func (s Sample) MediaKinds() []string {
	var k []string
	if s.Image != "" {
		k = append(k, "image")
	}
	if s.Audio != "" {
		k = append(k, "audio")
	}
	return k
}

// MediaPaths lists the files of the sample's media, in MediaKinds' order.
func (s Sample) MediaPaths() []string {
	var p []string
	if s.Image != "" {
		p = append(p, s.Image)
	}
	if s.Audio != "" {
		p = append(p, s.Audio)
	}
	return p
}
