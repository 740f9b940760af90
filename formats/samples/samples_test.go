package samples

import (
	"errors"
	"io"
	"strings"
	"testing"
)

func TestRead(t *testing.T) {
	in := `{"id":"a","text":"The cat sat.","label":"animals"}
# comment

{"text":"Soup is hot.","label":"food","dataset":"d1"}
`
	ss, err := Read(strings.NewReader(in), "x.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	if len(ss) != 2 || ss[1].ID != "line4" || ss[1].Dataset != "d1" {
		t.Fatalf("%+v", ss)
	}
	box, err := Read(strings.NewReader(`{"image":"dog.png","label":"dog","bbox":[1,2.5,30,40]}`), "b.jsonl")
	if err != nil || len(box[0].BBox) != 4 || box[0].BBox[1] != 2.5 {
		t.Errorf("a sample with a bbox: %+v, %v", box, err)
	}
	if l := Labels(ss); strings.Join(l, ",") != "animals,food" {
		t.Errorf("labels %v", l)
	}
	bad := map[string]string{
		`{"text":"x","lable":"y"}`:                               "x.jsonl:1",
		`{"id":"a","text":"x"}` + "\n" + `{"id":"a","text":"y"}`: "already used on line 1",
		`{"label":"y"}`:            "no text",
		`{"text":`:                 "x.jsonl:1",
		"":                         "x.jsonl: samples: invalid line: no samples",
		"\n# only a comment\n  \n": "no samples",
		`{"text":"a"}` + "\n" + `{"text":"b"} {"text":"c"}`: "x.jsonl:2: samples: invalid line: more after the JSON object at byte 14",
		`{"text":"a"}{"text":"b"}`:                          "x.jsonl:1: samples: invalid line: more after",
		`{"text":"a"} x`:                                    "more after",
		"\n\n" + `{"text":"caf` + "\xe9" + `"}`:             "x.jsonl:3: samples: invalid line: invalid UTF-8 at byte 13",
		`{"text":"ok"}` + "\n" + `{"text":"\xff"}` + "\n":   "x.jsonl:2:",
		`"just a string"`:                                   "x.jsonl:1",
		`[{"text":"a"}]`:                                    "x.jsonl:1",
		`null`:                                              "no text",
		`{"text":"a","bbox":[0,0,2,2]}`:                     "x.jsonl:1: samples: invalid line: bbox needs exactly one image (the box is in its pixels)",
		`{"image":"i.png","bbox":[0,0,2]}`:                  "bbox has 3 numbers",
		`{"image":"i.png","bbox":[3,0,2,2]}`:                "want x0 < x1 and y0 < y1",
		`{"image":"i.png","bbox":[0,2,2,2]}`:                "want x0 < x1 and y0 < y1",
		`{"image":"i.png","bbox":[-1,0,2,2]}`:               "coordinates must be pixels from 0",
		`{"image":"i.png","bbox":"0,0,2,2"}`:                "x.jsonl:1",
	}
	for in, want := range bad {
		_, err := Read(strings.NewReader(in), "x.jsonl")
		if !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: err %v, want %q", in, err, want)
		}
	}
}

func TestReadLongLine(t *testing.T) {
	// Line 2 is endless: the reader stops at the bound instead of reading on.
	in := io.MultiReader(strings.NewReader(`{"text":"first"}`+"\n"+`{"text":"`), endless{})
	_, err := Read(in, "big.jsonl")
	if !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), "big.jsonl:2: samples: invalid line: line longer than 64 MiB") {
		t.Errorf("err %v", err)
	}
	// Up to the bound a long line is read whole, with or without a final newline.
	text := strings.Repeat("b", 1<<20)
	for _, end := range []string{"", "\n", "\r\n"} {
		ss, err := Read(strings.NewReader("\uFEFF"+`{"text":"`+text+`"}`+end), "x")
		if err != nil || len(ss) != 1 || ss[0].Text != text {
			t.Errorf("end %q: %v", end, err)
		}
	}
}

// endless reads as an unending run of 'a'.
type endless struct{}

func (endless) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'a'
	}
	return len(p), nil
}

func TestReadFileDirectory(t *testing.T) {
	dir := t.TempDir()
	_, err := ReadFile(dir)
	if !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), "a directory") {
		t.Errorf("err %v", err)
	}
}

func FuzzSamples(f *testing.F) {
	f.Add(`{"id":"a","text":"t","label":"l","choices":["x","y"]}`)
	f.Add(`{"image":"i.png","label":"dog","bbox":[0,1,2,3]}`)
	f.Fuzz(func(t *testing.T, s string) {
		ss, err := Read(strings.NewReader(s), "fuzz")
		if err != nil {
			return
		}
		if len(ss) == 0 {
			t.Fatal("accepted a file without samples")
		}
		for _, x := range ss {
			if x.ID == "" {
				t.Fatal("sample without id")
			}
			if b := x.BBox; b != nil && (len(b) != 4 || !(b[0] < b[2] && b[1] < b[3]) || x.Image == "") {
				t.Fatalf("accepted bbox %v (image %q)", b, x.Image)
			}
		}
	})
}
