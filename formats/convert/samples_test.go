package convert

import (
	"bytes"
	"path/filepath"
	"testing"

	"github.com/neurosurg/neurosurg/formats/samples"
)

// TestOutputReads: what the converters write is samples JSONL that formats/samples reads,
// with the same fields — MSVD-QA's video (frame lists) and LingoQA's image lists included.
func TestOutputReads(t *testing.T) {
	files, _ := filepath.Glob("testdata/want/*.jsonl")
	n := 0
	for _, f := range files {
		base := filepath.Base(f)
		ss, err := samples.ReadFile(f)
		if err != nil {
			t.Errorf("%s: %v", base, err)
			continue
		}
		for _, s := range ss {
			if s.ID == "" || s.Text == "" {
				t.Errorf("%s: sample %+v lost its id or text", base, s)
			}
			if base == "msvdqa.jsonl" && len(s.Video) == 0 || base == "lingoqa.jsonl" && len(s.ImagePaths()) == 0 {
				t.Errorf("%s: sample %s lost its frames: video %v, images %v", base, s.ID, s.Video, s.ImagePaths())
			}
		}
		n++
	}
	if n < 15 {
		t.Errorf("read %d expected files, want every format's", n)
	}
	// MMLU keeps its choices, answer and dataset through the reader.
	ss, err := samples.Read(bytes.NewReader(mustRead(t, "testdata/want/mmlu-0shot.jsonl")), "mmlu")
	if err != nil || len(ss) != 1 || len(ss[0].Choices) != 4 || ss[0].Answer != "Circumcision" || ss[0].Dataset != "mmlu" {
		t.Errorf("mmlu round trip: %+v, %v", ss, err)
	}
}

// TestEncodeKeepsHTMLCharacters: <, > and & (MMLU's "x < y", a path "R&D/…") are written as
// they are, not as \u003c escapes, in the text and in the media paths.
func TestEncodeKeepsHTMLCharacters(t *testing.T) {
	got, err := Encode([]Sample{{ID: "a", Text: "x < y && y > z", Images: []string{"R&D/1.png", "R&D/2.png"}, Video: []string{"<v>"}}})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"id":"a","text":"x < y && y > z","image":["R&D/1.png","R&D/2.png"],"video":"<v>"}` + "\n"
	if string(got) != want {
		t.Errorf("got %s want %s", got, want)
	}
}
