package samples

import (
	"errors"
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
	if l := Labels(ss); strings.Join(l, ",") != "animals,food" {
		t.Errorf("labels %v", l)
	}
	bad := map[string]string{
		`{"text":"x","lable":"y"}`:                               "x.jsonl:1",
		`{"id":"a","text":"x"}` + "\n" + `{"id":"a","text":"y"}`: "already used on line 1",
		`{"label":"y"}`: "no text",
		`{"text":`:      "x.jsonl:1",
	}
	for in, want := range bad {
		_, err := Read(strings.NewReader(in), "x.jsonl")
		if !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: err %v, want %q", in, err, want)
		}
	}
}

func FuzzSamples(f *testing.F) {
	f.Add(`{"id":"a","text":"t","label":"l","choices":["x","y"]}`)
	f.Fuzz(func(t *testing.T, s string) {
		ss, err := Read(strings.NewReader(s), "fuzz")
		if err != nil {
			return
		}
		for _, x := range ss {
			if x.ID == "" {
				t.Fatal("sample without id")
			}
		}
	})
}
