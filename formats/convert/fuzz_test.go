package convert

import (
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"testing"
)

// The parsers run on any bytes without panicking, hanging or allocating without bound; an
// error is one line that starts with the file's name; a success encodes to valid JSONL.

func seed(f *testing.F, paths ...string) {
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
}

func checkParse(t *testing.T, name string, ss []Sample, err error) {
	t.Helper()
	if err != nil {
		msg := err.Error()
		if !strings.HasPrefix(msg, name) || strings.Contains(msg, "\n") {
			t.Fatalf("error is not one line starting with %s: %q", name, msg)
		}
		return
	}
	b, err := Encode(ss)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range bytes.Split(bytes.TrimSuffix(b, []byte("\n")), []byte("\n")) {
		if len(line) > 0 && !json.Valid(line) {
			t.Fatalf("invalid JSONL line %q", line)
		}
	}
	for _, s := range ss {
		if s.ID == "" {
			t.Fatal("sample without id")
		}
	}
}

func fuzzOptions(inputs ...string) *Options {
	return &Options{Inputs: inputs, Media: "media", noMedia: true, Limit: 50}
}

func FuzzTextVQA(f *testing.F) {
	seed(f, "testdata/textvqa/TextVQA_0.5.1_val.json")
	f.Add([]byte(`{"data": [{"question": "q", "image_id": 1, "answers": []}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		ss, err := parseTextVQA(fuzzOptions("t.json"), "t.json", b)
		checkParse(t, "t.json", ss, err)
	})
}

func FuzzCOCO(f *testing.F) {
	seed(f, "testdata/coco/captions_val2014.json")
	f.Fuzz(func(t *testing.T, b []byte) {
		ss, err := parseCOCO(fuzzOptions("c.json"), "c.json", b, nil)
		checkParse(t, "c.json", ss, err)
		if _, err := parseNameList("l.txt", b); err != nil && !strings.HasPrefix(err.Error(), "l.txt") {
			t.Fatal(err)
		}
	})
}

func FuzzMMLU(f *testing.F) {
	seed(f, "testdata/mmlu/test/abstract_algebra_test.csv", "testdata/mmlu/dev/abstract_algebra_dev.csv")
	f.Fuzz(func(t *testing.T, b []byte) {
		rows, err := parseMMLU("x_test.csv", b)
		if err != nil {
			checkParse(t, "x_test.csv", nil, err)
			return
		}
		for _, r := range rows {
			if p := mmluPrompt("x", rows[:1], r); !strings.HasSuffix(p, "\nAnswer:") {
				t.Fatalf("prompt does not end in Answer: %q", p)
			}
		}
	})
}

func FuzzMSVDQA(f *testing.F) {
	seed(f, "testdata/msvdqa/test_qa.json")
	f.Add([]byte(`[{"video": "a.avi", "question": "q", "answer": "a", "id": "x"}]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		ss, err := parseMSVDQA(fuzzOptions("q.json"), "q.json", b, nil)
		checkParse(t, "q.json", ss, err)
		if _, err := parseYouTubeMapping("m.txt", b); err != nil && !strings.HasPrefix(err.Error(), "m.txt") {
			t.Fatal(err)
		}
	})
}

func FuzzTranscripts(f *testing.F) {
	seed(f, "testdata/librispeech/test-clean/1089/134686/1089-134686.trans.txt")
	f.Fuzz(func(t *testing.T, b []byte) {
		us, err := parseTranscripts("x.trans.txt", b)
		if err != nil {
			checkParse(t, "x.trans.txt", nil, err)
			return
		}
		for _, u := range us {
			if u.id == "" || u.text == "" || strings.ContainsAny(u.id, "/\\") {
				t.Fatalf("bad utterance %+v", u)
			}
		}
	})
}

func FuzzFLAC(f *testing.F) {
	seed(f, "testdata/librispeech/test-clean/1089/134686/1089-134686-0000.flac", "testdata/librispeech/bad/stereo.flac")
	f.Fuzz(func(t *testing.T, b []byte) {
		pcm, err := decodeFLAC(bytes.NewReader(b), "x.flac")
		if err != nil {
			checkParse(t, "x.flac", nil, err)
			return
		}
		if len(pcm) == 0 || len(pcm) > maxAudioSeconds*16000 {
			t.Fatalf("%d samples", len(pcm))
		}
	})
}

func FuzzVocalSound(f *testing.F) {
	seed(f, "testdata/vocalsound/datafiles/te.json")
	f.Fuzz(func(t *testing.T, b []byte) {
		ss, err := parseVocalJSON(fuzzOptions("v.json"), "v.json", b, nil)
		checkParse(t, "v.json", ss, err)
	})
}

func FuzzVQAv2(f *testing.F) {
	seed(f, "testdata/vqav2/v2_OpenEnded_mscoco_val2014_questions.json", "testdata/vqav2/v2_mscoco_val2014_annotations.json")
	f.Fuzz(func(t *testing.T, b []byte) {
		ss, err := parseVQAQuestions(fuzzOptions("q.json", "a.json"), "q.json", b, nil)
		checkParse(t, "q.json", ss, err)
		if _, err := parseVQAAnnotations("a.json", b); err != nil && !strings.HasPrefix(err.Error(), "a.json") {
			t.Fatal(err)
		}
	})
}

func FuzzDocVQA(f *testing.F) {
	seed(f, "testdata/docvqa/val_v1.0.json")
	f.Fuzz(func(t *testing.T, b []byte) {
		ss, err := parseDocVQA(fuzzOptions("d.json"), "d.json", b)
		checkParse(t, "d.json", ss, err)
	})
}

func FuzzPMCVQA(f *testing.F) {
	seed(f, "testdata/pmcvqa/test_clean.csv")
	f.Fuzz(func(t *testing.T, b []byte) {
		ss, err := parsePMCVQA(fuzzOptions("p.csv"), "p.csv", b)
		checkParse(t, "p.csv", ss, err)
		for _, s := range ss {
			if len(s.Choices) != 4 {
				t.Fatalf("%d choices", len(s.Choices))
			}
		}
	})
}

func FuzzRSVQA(f *testing.F) {
	seed(f, "testdata/rsvqa/USGS_split_val_questions.json", "testdata/rsvqa/USGS_split_val_answers.json")
	f.Fuzz(func(t *testing.T, b []byte) {
		ans := map[string]string{"0": "yes", "1": "4"}
		ss, err := parseRSQuestions(fuzzOptions("q.json", "a.json"), "q.json", b, ans)
		checkParse(t, "q.json", ss, err)
		if _, err := parseRSAnswers("a.json", b); err != nil && !strings.HasPrefix(err.Error(), "a.json") {
			t.Fatal(err)
		}
	})
}

func FuzzLingoQA(f *testing.F) {
	f.Add(lingoParquet(f, lingoRows))
	f.Add(lingoParquet(f, lingoRows[2:]))
	f.Fuzz(func(t *testing.T, b []byte) {
		ss, err := parseLingoQA(fuzzOptions("l.parquet"), "l.parquet", b)
		checkParse(t, "l.parquet", ss, err)
	})
}

func FuzzSBU(f *testing.F) {
	seed(f, "testdata/sbu/sbu-captions-all.json")
	f.Fuzz(func(t *testing.T, b []byte) {
		ss, err := parseSBU(fuzzOptions("s.json"), "s.json", b)
		checkParse(t, "s.json", ss, err)
	})
}
