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
}

// Read parses samples from r; name is used in errors ("file:line").
func Read(r io.Reader, name string) ([]Sample, error) {
	var out []Sample
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	ids := map[string]int{}
	for line := 1; sc.Scan(); line++ {
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 || b[0] == '#' {
			continue
		}
		var s Sample
		d := json.NewDecoder(bytes.NewReader(b))
		d.DisallowUnknownFields()
		if err := d.Decode(&s); err != nil {
			return nil, fmt.Errorf("%s:%d: %w: %v", name, line, ErrFormat, err)
		}
		if s.Text == "" && s.Image == "" && s.Audio == "" {
			return nil, fmt.Errorf("%s:%d: %w: no text, image or audio", name, line, ErrFormat)
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
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return out, nil
}

// ReadFile reads a samples file.
func ReadFile(path string) ([]Sample, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
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
