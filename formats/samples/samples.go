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
	"path/filepath"
	"strings"
	"unicode/utf8"
)

// ErrFormat reports an invalid samples file.
var ErrFormat = errors.New("samples: invalid line")

// Sample is one labelled input. In a file, "image" is a path or a list of paths (several
// images), "video" a list of frame paths or one directory of frames, "audio" a path; a
// relative path is relative to the directory of the samples file (Dir), so a data set moves
// with its media.
type Sample struct {
	ID   string
	Text string
	// Image is the sample's image; a sample with several has them in Images (a file's
	// "image" list). Its images are Image, if set, followed by Images.
	Image  string
	Images []string
	// Video is a video's frames in order, or one directory that holds them (model.BuildInput
	// lists it).
	Video   []string
	Audio   string
	Label   string
	Dataset string
	Answer  string
	Choices []string
	Control bool // verify: unrelated prompt for specificity/KL
	// BBox is the region of the sample's concept (its label) in its image: [x0, y0, x1, y1]
	// in pixels of the picture as decoded, x1 > x0, y1 > y0 (verify's region invariance).
	BBox []float64
	// Dir is the directory relative media paths are read from: the samples file's (ReadFile);
	// "" for the working directory.
	Dir string
}

// wire is a sample as a line holds it.
type wire struct {
	ID      string          `json:"id"`
	Text    string          `json:"text"`
	Image   json.RawMessage `json:"image,omitempty"`
	Video   json.RawMessage `json:"video,omitempty"`
	Audio   *string         `json:"audio,omitempty"`
	Label   string          `json:"label,omitempty"`
	Dataset string          `json:"dataset,omitempty"`
	Answer  string          `json:"answer,omitempty"`
	Choices []string        `json:"choices,omitempty"`
	Control bool            `json:"control,omitempty"`
	BBox    []float64       `json:"bbox,omitempty"`
}

// MarshalJSON writes the sample as a line of a samples file: "image" a path, or a list when
// there are several; "video" a list of frames, or the directory when it is one entry. HTML
// characters (<, >, &) are written as they are: a question's "x < y" stays readable.
func (s Sample) MarshalJSON() ([]byte, error) {
	w := wire{ID: s.ID, Text: s.Text, Label: s.Label, Dataset: s.Dataset, Answer: s.Answer, Choices: s.Choices, Control: s.Control, BBox: s.BBox}
	if s.Audio != "" {
		w.Audio = &s.Audio
	}
	var err error
	if imgs := s.ImagePaths(); len(imgs) == 1 {
		w.Image, err = marshal(imgs[0])
	} else if len(imgs) > 1 {
		w.Image, err = marshal(imgs)
	}
	if err != nil {
		return nil, err
	}
	if len(s.Video) == 1 {
		w.Video, err = marshal(s.Video[0])
	} else if len(s.Video) > 1 {
		w.Video, err = marshal(s.Video)
	}
	if err != nil {
		return nil, err
	}
	return marshal(w)
}

// marshal is json.Marshal without HTML escaping.
func marshal(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// UnmarshalJSON reads one sample as a line of a samples file holds it, with the same checks.
func (s *Sample) UnmarshalJSON(b []byte) error {
	x, err := parseLine(bytes.TrimSpace(b))
	if err != nil {
		return fmt.Errorf("%w: %v", ErrFormat, err)
	}
	*s = x
	return nil
}

// paths reads a media field: a path, or a non-empty list of paths; JSON null is no field.
// Every path is a non-empty string without a NUL byte.
func paths(field string, raw json.RawMessage) ([]string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var list []string
	if raw[0] == '"' {
		var one string
		if err := json.Unmarshal(raw, &one); err != nil {
			return nil, fmt.Errorf("%s: %v", field, err)
		}
		list = []string{one}
	} else if err := json.Unmarshal(raw, &list); err != nil {
		return nil, fmt.Errorf("%s: want a path or a list of paths", field)
	} else if len(list) == 0 {
		return nil, fmt.Errorf("%s: an empty list", field)
	}
	for i, p := range list {
		if err := checkPath(p); err != nil {
			if len(list) == 1 {
				return nil, fmt.Errorf("%s: %v", field, err)
			}
			return nil, fmt.Errorf("%s[%d]: %v", field, i, err)
		}
	}
	return list, nil
}

func checkPath(p string) error {
	switch {
	case p == "":
		return errors.New("an empty path")
	case strings.ContainsRune(p, 0):
		return errors.New("a path with a NUL byte")
	}
	return nil
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
	var w wire
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
	if err := d.Decode(&w); err != nil {
		return s, err
	}
	if rest := bytes.TrimSpace(b[d.InputOffset():]); len(rest) > 0 {
		return s, fmt.Errorf("more after the JSON object at byte %d (one sample a line)", len(b)-len(rest)+1)
	}
	s = Sample{ID: w.ID, Text: w.Text, Label: w.Label, Dataset: w.Dataset, Answer: w.Answer, Choices: w.Choices, Control: w.Control, BBox: w.BBox}
	imgs, err := paths("image", w.Image)
	if err != nil {
		return s, err
	}
	if len(imgs) == 1 {
		s.Image = imgs[0]
	} else {
		s.Images = imgs
	}
	if s.Video, err = paths("video", w.Video); err != nil {
		return s, err
	}
	if w.Audio != nil {
		if err := checkPath(*w.Audio); err != nil {
			return s, fmt.Errorf("audio: %v", err)
		}
		s.Audio = *w.Audio
	}
	if s.Text == "" && len(s.Media()) == 0 {
		return s, errors.New("no text, image, video or audio")
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
	if len(s.ImagePaths()) != 1 {
		return errors.New("bbox needs exactly one image (the box is in its pixels)")
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
	ss, err := Read(f, path)
	for i := range ss {
		ss[i].Dir = filepath.Dir(path)
	}
	return ss, err
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

// Medium is one medium of a sample: an image or an audio clip (one file) or a video (its
// frames, or one directory of them), with its paths as the samples file wrote them.
type Medium struct {
	Kind  string // "image", "video", "audio"
	Paths []string
}

// ImagePaths lists the sample's images as written: Image, then Images.
func (s Sample) ImagePaths() []string {
	if s.Image == "" {
		return s.Images
	}
	return append([]string{s.Image}, s.Images...)
}

// Media lists the sample's media in prompt order — its images, its video, its audio — with
// their paths as written (Resolve gives the files).
func (s Sample) Media() []Medium {
	var out []Medium
	for _, p := range s.ImagePaths() {
		out = append(out, Medium{Kind: "image", Paths: []string{p}})
	}
	if len(s.Video) > 0 {
		out = append(out, Medium{Kind: "video", Paths: s.Video})
	}
	if s.Audio != "" {
		out = append(out, Medium{Kind: "audio", Paths: []string{s.Audio}})
	}
	return out
}

// Resolve is the file a media path of the sample names: a relative path is relative to the
// samples file's directory.
func (s Sample) Resolve(p string) string {
	if s.Dir == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(s.Dir, p)
}
