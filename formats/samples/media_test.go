package samples

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestReadMedia(t *testing.T) {
	in := `{"id":"one","text":"What is this?","image":"a.png"}
{"id":"two","text":"Compare.","image":["a.png","/abs/b.png"]}
{"id":"list1","image":["c.png"]}
{"id":"vid","text":"What happens?","video":"frames"}
{"id":"vids","video":["f/1.png","f/2.png"],"audio":"s.wav"}
{"id":"aud","audio":"s.wav","image":null}
`
	ss, err := Read(strings.NewReader(in), "m.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	want := [][]Medium{
		{{"image", []string{"a.png"}}},
		{{"image", []string{"a.png"}}, {"image", []string{"/abs/b.png"}}},
		{{"image", []string{"c.png"}}},
		{{"video", []string{"frames"}}},
		{{"video", []string{"f/1.png", "f/2.png"}}, {"audio", []string{"s.wav"}}},
		{{"audio", []string{"s.wav"}}},
	}
	for i, s := range ss {
		if got := s.Media(); !reflect.DeepEqual(got, want[i]) {
			t.Errorf("%s: media %v, want %v", s.ID, got, want[i])
		}
	}
	if ss[0].Image != "a.png" || ss[1].Image != "" || len(ss[1].Images) != 2 || ss[2].Image != "c.png" {
		t.Errorf("image fields: %+v %+v %+v", ss[0], ss[1], ss[2])
	}
	// Images, then the video, then the audio: the prompt's order.
	all := Sample{Image: "i.png", Images: []string{"j.png"}, Video: []string{"v"}, Audio: "a.wav"}
	var kinds []string
	for _, m := range all.Media() {
		kinds = append(kinds, m.Kind)
	}
	if strings.Join(kinds, ",") != "image,image,video,audio" {
		t.Errorf("order %v", kinds)
	}

	bad := map[string]string{
		`{"text":"x","image":""}`:              "m.jsonl:1: samples: invalid line: image: an empty path",
		`{"text":"x","image":[]}`:              "m.jsonl:1: samples: invalid line: image: an empty list",
		`{"text":"x","image":["a.png",""]}`:    "image[1]: an empty path",
		`{"text":"x","image":3}`:               "image: want a path or a list of paths",
		`{"text":"x","image":{"path":"a"}}`:    "image: want a path or a list of paths",
		`{"text":"x","image":["a",7]}`:         "image: want a path or a list of paths",
		`{"text":"x","video":[]}`:              "video: an empty list",
		`{"text":"x","video":"a\u0000b"}`:      "video: a path with a NUL byte",
		`{"text":"x","audio":""}`:              "audio: an empty path",
		`{"text":"x","audio":["a.wav"]}`:       "m.jsonl:1",
		`{"text":"ok"}` + "\n" + `{"video":1}`: "m.jsonl:2: samples: invalid line: video",
		`{"id":"a","image":null}`:              "no text, image, video or audio",
	}
	for in, want := range bad {
		_, err := Read(strings.NewReader(in), "m.jsonl")
		if !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: err %v, want %q", in, err, want)
		}
	}
}

// Relative media paths are relative to the samples file's directory; absolute ones stay.
func TestReadFileResolvesMedia(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	os.Mkdir(dir, 0o755)
	p := filepath.Join(dir, "s.jsonl")
	os.WriteFile(p, []byte(`{"text":"x","image":["pics/a.png","/abs/b.png"],"audio":"../c.wav","video":"frames"}`+"\n"), 0o644)
	ss, err := ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	s := ss[0]
	if s.Dir != dir {
		t.Errorf("Dir %q, want %q", s.Dir, dir)
	}
	got := []string{s.Resolve("pics/a.png"), s.Resolve("/abs/b.png"), s.Resolve("../c.wav"), s.Resolve(s.Video[0])}
	want := []string{filepath.Join(dir, "pics/a.png"), "/abs/b.png", filepath.Join(filepath.Dir(dir), "c.wav"), filepath.Join(dir, "frames")}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("resolved %v, want %v", got, want)
	}
	// Read without a file: paths as written (relative to the working directory).
	if r := (Sample{}).Resolve("a.png"); r != "a.png" {
		t.Errorf("no Dir: %q", r)
	}
}

// A sample written with MarshalJSON reads back as it was (one image a string, several a
// list, a one-entry video its directory).
func TestMarshalRoundTrip(t *testing.T) {
	for _, s := range []Sample{
		{ID: "a", Text: "t", Image: "x.png", Label: "l"},
		{ID: "b", Images: []string{"x.png", "y.png"}, Answer: "yes", Choices: []string{"yes", "no"}, Control: true},
		{ID: "c", Text: "t", Video: []string{"dir"}, Audio: "a.wav", Dataset: "d"},
		{ID: "d", Text: "t", Video: []string{"1.png", "2.png"}},
	} {
		b, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		back, err := Read(strings.NewReader(string(b)), "rt")
		if err != nil {
			t.Fatalf("%s: %v", b, err)
		}
		if !reflect.DeepEqual(back[0].Media(), s.Media()) || back[0].Text != s.Text || back[0].Control != s.Control || back[0].Answer != s.Answer {
			t.Errorf("%s read back as %+v", b, back[0])
		}
	}
	if b, _ := json.Marshal(Sample{ID: "a", Text: "t", Image: "x.png"}); string(b) != `{"id":"a","text":"t","image":"x.png"}` {
		t.Errorf("one image: %s", b)
	}
}

func FuzzSampleMedia(f *testing.F) {
	f.Add(`{"id":"a","text":"t","image":["x.png","y.png"],"video":"dir","audio":"s.wav"}`)
	f.Add(`{"image":"x.png"}`)
	f.Add(`{"video":["1.png","2.png"],"image":null}`)
	f.Add(`{"image":[""]}`)
	f.Fuzz(func(t *testing.T, line string) {
		ss, err := Read(strings.NewReader(line), "fuzz")
		if err != nil {
			if !errors.Is(err, ErrFormat) && !strings.HasPrefix(err.Error(), "fuzz:") {
				t.Fatalf("error without the file name: %v", err)
			}
			return
		}
		for _, s := range ss {
			if s.Text == "" && len(s.Media()) == 0 {
				t.Fatal("accepted a sample with nothing to run")
			}
			for _, m := range s.Media() {
				if len(m.Paths) == 0 {
					t.Fatalf("%s medium without paths", m.Kind)
				}
				for _, p := range m.Paths {
					if p == "" || strings.ContainsRune(p, 0) {
						t.Fatalf("accepted path %q", p)
					}
				}
			}
			// What MarshalJSON writes reads back to the same media.
			b, err := json.Marshal(s)
			if err != nil {
				t.Fatal(err)
			}
			back, err := Read(strings.NewReader(string(b)), "again")
			if err != nil || !reflect.DeepEqual(back[0].Media(), s.Media()) {
				t.Fatalf("%s: read back %v, %v", b, back, err)
			}
		}
	})
}

// json.Unmarshal of a Sample reads it as a line: the media fields' forms and checks, and no
// field a file cannot set (Dir).
func TestUnmarshalSample(t *testing.T) {
	var s Sample
	if err := json.Unmarshal([]byte(`{"id":"x","image":["a.png","b.png"],"video":"f"}`), &s); err != nil || len(s.ImagePaths()) != 2 || s.Video[0] != "f" {
		t.Errorf("%+v %v", s, err)
	}
	for _, bad := range []string{`{"text":"t","Dir":"/etc"}`, `{"text":"t","image":""}`, `{}`} {
		if err := json.Unmarshal([]byte(bad), &s); !errors.Is(err, ErrFormat) {
			t.Errorf("%s: %v", bad, err)
		}
	}
}
