package convert

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/parquet-go/parquet-go"
)

var update = flag.Bool("update", false, "rewrite the expected JSONL files in testdata/want")

// lingoRecord is one LingoQA row.
type lingoRecord struct {
	QuestionID, SegmentID, Question, Answer string
	Images                                  []string
}

// lingoParquet writes rows in pyarrow's layout of a pandas DataFrame: optional strings (an
// empty one is written as null) and images an optional LIST of optional strings
// (images.list.element).
func lingoParquet(t testing.TB, rows []lingoRecord) []byte {
	t.Helper()
	s := parquet.NewSchema("schema", parquet.Group{
		"question_id": parquet.Optional(parquet.String()),
		"segment_id":  parquet.Optional(parquet.String()),
		"question":    parquet.Optional(parquet.String()),
		"answer":      parquet.Optional(parquet.String()),
		"images":      parquet.Optional(parquet.List(parquet.Optional(parquet.String()))),
	})
	var buf bytes.Buffer
	w := parquet.NewGenericWriter[map[string]any](&buf, s)
	for _, r := range rows {
		m := map[string]any{}
		for k, v := range map[string]string{"question_id": r.QuestionID, "segment_id": r.SegmentID, "question": r.Question, "answer": r.Answer} {
			if v != "" {
				m[k] = v
			}
		}
		if r.Images != nil {
			var imgs []any
			for _, im := range r.Images {
				imgs = append(imgs, im)
			}
			m["images"] = imgs
		}
		if _, err := w.Write([]map[string]any{m}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

var lingoRows = []lingoRecord{
	{QuestionID: "q1", SegmentID: "seg1", Question: "Is there a pedestrian?", Answer: "Yes, on the left.", Images: []string{"images/val/seg1/0.jpg", "images/val/seg1/1.jpg"}},
	{QuestionID: "q1", SegmentID: "seg1", Question: "Is there a pedestrian?", Answer: "Yes.", Images: []string{"images/val/seg1/0.jpg", "images/val/seg1/1.jpg"}},
	{QuestionID: "q2", SegmentID: "seg2", Question: "What colour is the traffic light?", Answer: "Red.", Images: []string{"images/val/seg2/0.jpg"}},
}

func writeTemp(t *testing.T, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestConvert converts each hand-written release file and compares with the exact JSONL.
func TestConvert(t *testing.T) {
	td := "testdata"
	lingo := writeTemp(t, "val.parquet", lingoParquet(t, lingoRows))
	wavDir := t.TempDir()
	cases := []struct {
		name, format string
		o            Options
	}{
		{"textvqa", "textvqa", Options{Inputs: []string{td + "/textvqa/TextVQA_0.5.1_val.json"}, Media: td + "/textvqa/train_images"}},
		{"textvqa-limit", "textvqa", Options{Inputs: []string{td + "/textvqa/TextVQA_0.5.1_val.json"}, Media: td + "/textvqa/train_images", Limit: 1, Label: "ocr", Dataset: "tv"}},
		{"coco", "coco", Options{Inputs: []string{td + "/coco/captions_val2014.json"}, Media: td + "/coco/val2014"}},
		{"coco-karpathy", "coco", Options{Inputs: []string{td + "/coco/captions_val2014.json", td + "/coco/coco_test.txt"}, Media: td + "/coco/val2014"}},
		{"mmlu", "mmlu", Options{Inputs: []string{td + "/mmlu/test", td + "/mmlu/dev"}, Shots: -1}},
		{"mmlu-0shot", "mmlu", Options{Inputs: []string{td + "/mmlu/test/world_religions_test.csv"}, Shots: -1}},
		{"mmlu-1shot", "mmlu", Options{Inputs: []string{td + "/mmlu/test/abstract_algebra_test.csv", td + "/mmlu/dev/abstract_algebra_dev.csv"}, Shots: 1}},
		{"msvdqa", "msvdqa", Options{Inputs: []string{td + "/msvdqa/test_qa.json", td + "/msvdqa/youtube_mapping.txt"}, Media: td + "/msvdqa/frames"}},
		{"librispeech", "librispeech", Options{Inputs: []string{td + "/librispeech/test-clean"}, Media: wavDir}},
		{"vocalsound-dir", "vocalsound", Options{Inputs: []string{td + "/vocalsound/audio_16k"}}},
		{"vocalsound-json", "vocalsound", Options{Inputs: []string{td + "/vocalsound/datafiles/te.json"}, Media: td + "/vocalsound/audio_16k"}},
		{"vqav2", "vqav2", Options{Inputs: []string{td + "/vqav2/v2_OpenEnded_mscoco_val2014_questions.json", td + "/vqav2/v2_mscoco_val2014_annotations.json"}, Media: td + "/vqav2/val2014"}},
		{"vqav2-simple", "vqav2", Options{Inputs: []string{td + "/vqav2/v2_OpenEnded_mscoco_val2014_questions.json"}, Media: td + "/vqav2/val2014", Prompt: "simple"}},
		{"docvqa", "docvqa", Options{Inputs: []string{td + "/docvqa/val_v1.0.json"}}},
		{"pmcvqa", "pmcvqa", Options{Inputs: []string{td + "/pmcvqa/test_clean.csv"}}},
		{"rsvqa", "rsvqa", Options{Inputs: []string{td + "/rsvqa/USGS_split_val_questions.json", td + "/rsvqa/USGS_split_val_answers.json"}, Media: td + "/rsvqa/Data"}},
		{"lingoqa", "lingoqa", Options{Inputs: []string{lingo}, Media: td + "/lingoqa"}},
		{"sbu", "sbu", Options{Inputs: []string{td + "/sbu/sbu-captions-all.json"}, Media: td + "/sbu/images", Label: "captions"}},
		{"sbu-simple", "sbu", Options{Inputs: []string{td + "/sbu/sbu-captions-all.json"}, Media: td + "/sbu/images", Prompt: "simple"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ss, err := Convert(c.format, c.o)
			if err != nil {
				t.Fatal(err)
			}
			got, err := Encode(ss)
			if err != nil {
				t.Fatal(err)
			}
			// The WAV directory is a temporary one: name it stably in the comparison.
			got = bytes.ReplaceAll(got, []byte(wavDir), []byte("WAVDIR"))
			want := filepath.Join(td, "want", c.name+".jsonl")
			if *update {
				if err := os.WriteFile(want, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			wb, err := os.ReadFile(want)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, wb) {
				t.Errorf("got\n%s\nwant\n%s", got, wb)
			}
		})
	}
}

// TestFLACToWAV: the decoded WAV equals the one the FLAC was encoded from, byte for byte; a
// stereo file is mixed down to the mean of its channels (L = −R here: silence); another rate
// is refused.
func TestFLACToWAV(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct{ flac, wav string }{
		{"testdata/librispeech/test-clean/1089/134686/1089-134686-0000.flac", "testdata/librispeech/a.wav"},
		{"testdata/librispeech/test-clean/1089/134686/1089-134686-0001.flac", "testdata/librispeech/b.wav"},
	} {
		out := filepath.Join(dir, "x.wav")
		if err := flacToWAV(c.flac, out); err != nil {
			t.Fatal(err)
		}
		got, _ := os.ReadFile(out)
		want, _ := os.ReadFile(c.wav)
		if len(want) == 0 || !bytes.Equal(got, want) {
			t.Errorf("%s: decoded WAV (%d bytes) differs from %s (%d bytes)", c.flac, len(got), c.wav, len(want))
		}
	}
	f, _ := os.Open("testdata/librispeech/bad/stereo.flac")
	defer f.Close()
	pcm, err := decodeFLAC(f, "stereo.flac")
	if err != nil {
		t.Fatal(err)
	}
	if len(pcm) != 400 {
		t.Errorf("stereo: %d samples, want 400", len(pcm))
	}
	for i, v := range pcm {
		if v != 0 {
			t.Fatalf("stereo mix-down: sample %d = %d, want 0 (L = -R)", i, v)
		}
	}
	if err := flacToWAV("testdata/librispeech/bad/rate8k.flac", filepath.Join(dir, "y.wav")); err == nil || !strings.Contains(err.Error(), "8000 Hz") {
		t.Errorf("8 kHz FLAC: %v, want a refusal naming the rate", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "y.wav")); err == nil {
		t.Error("a refused FLAC left a WAV behind")
	}
}

// TestBadInput: every kind of bad input is one error naming the file and line and the problem.
func TestBadInput(t *testing.T) {
	td := "testdata"
	tv := func(body string) string { return writeTemp(t, "tv.json", []byte(body)) }
	csvf := func(name, body string) string { return writeTemp(t, name, []byte(body)) }
	cases := []struct {
		name, format string
		o            Options
		want         []string // substrings of the error
		usage        bool
	}{
		{"unknown format", "gqa", Options{Inputs: []string{"x"}}, []string{`unknown format "gqa"`, "textvqa"}, true},
		{"too many inputs", "textvqa", Options{Inputs: []string{"a", "b"}}, []string{"one TextVQA JSON file", "got 2"}, true},
		{"prompt on MINER format", "textvqa", Options{Inputs: []string{"a"}, Prompt: "simple"}, []string{"--prompt"}, true},
		{"bad prompt", "vqav2", Options{Inputs: []string{"a"}, Prompt: "fancy"}, []string{`--prompt "fancy"`}, true},
		{"negative limit", "vqav2", Options{Inputs: []string{"a"}, Limit: -1}, []string{"--limit -1"}, true},
		{"input is a directory", "textvqa", Options{Inputs: []string{td}}, []string{"testdata", "not a regular file", "directory"}, false},
		{"missing input", "textvqa", Options{Inputs: []string{td + "/nope.json"}}, []string{"nope.json", "no such file"}, false},
		{"bad json", "textvqa", Options{Inputs: []string{tv("{\"data\": [\n {\"question\": \"q\",\n \"image_id\": 1,, }\n]}")}}, []string{"tv.json:3:", "invalid character"}, false},
		{"truncated json", "textvqa", Options{Inputs: []string{tv("{\"data\": [\n {\"question\": \"q\", \"image_id\": \"003a8ae2ef43b901\", \"answers\": [\"x\"]},\n {\"question\"")}, Media: td + "/textvqa/train_images"}, []string{"tv.json:3:", "ends early"}, false},
		{"no data key", "textvqa", Options{Inputs: []string{tv(`{"dataset": []}`)}}, []string{"tv.json", `no "data"`}, false},
		{"data not list", "textvqa", Options{Inputs: []string{tv(`{"data": {}}`)}}, []string{"tv.json:1:", "data is not a list"}, false},
		{"missing field", "textvqa", Options{Inputs: []string{tv("{\"data\": [\n {\"question\": \"q\", \"image_id\": \"003a8ae2ef43b901\", \"answers\": [\"a\"]},\n {\"image_id\": \"x\", \"answers\": [\"a\"]}]}")}, Media: td + "/textvqa/train_images"}, []string{"tv.json:3:", `no "question"`}, false},
		{"wrong type", "textvqa", Options{Inputs: []string{tv("{\"data\": [\n\n {\"question\": 5, \"image_id\": \"x\"}]}")}}, []string{"tv.json:3:", `"question"`, "string"}, false},
		{"missing image", "textvqa", Options{Inputs: []string{tv("{\"data\": [\n {\"question\": \"q\", \"image_id\": \"gone\", \"answers\": [\"a\"]}]}")}, Media: td + "/textvqa/train_images"}, []string{"tv.json:2:", "gone.jpg not found"}, false},
		{"empty data", "textvqa", Options{Inputs: []string{tv(`{"data": []}`)}}, []string{"no samples"}, false},
		{"coco caption of unknown image", "coco", Options{Inputs: []string{writeTemp(t, "c.json", []byte("{\"images\": [{\"id\": 1, \"file_name\": \"a.jpg\"}],\n\"annotations\": [\n{\"image_id\": 2, \"caption\": \"x\"}]}"))}}, []string{"c.json:3:", "image 2"}, false},
		{"coco image without caption", "coco", Options{Inputs: []string{writeTemp(t, "c.json", []byte("{\"images\": [\n{\"id\": 1, \"file_name\": \"a.jpg\"}],\n\"annotations\": []}"))}}, []string{"c.json:2:", "no caption"}, false},
		{"mmlu short row", "mmlu", Options{Inputs: []string{csvf("x_test.csv", "q,a,b,c,d,A\nq,a,b,c,D\n")}, Shots: -1}, []string{"x_test.csv:2:", "wrong number of fields"}, false},
		{"mmlu bad answer", "mmlu", Options{Inputs: []string{csvf("x_test.csv", "q,a,b,c,d,A\nq,a,b,c,d,E\n")}, Shots: -1}, []string{"x_test.csv:2:", `answer "E"`}, false},
		{"mmlu bad quote", "mmlu", Options{Inputs: []string{csvf("x_test.csv", "q,a,b,c,d,A\n\"q,a,b\"c,d,A\n")}, Shots: -1}, []string{"x_test.csv:2:", "quote"}, false},
		{"mmlu empty second dir", "mmlu", Options{Inputs: []string{td + "/mmlu/test", t.TempDir()}, Shots: -1}, []string{"no *.csv file"}, false},
		{"mmlu only dev", "mmlu", Options{Inputs: []string{csvf("x_dev.csv", "q,a,b,c,d,A\n")}, Shots: -1}, []string{"only *_dev.csv"}, false},
		{"msvd unmapped", "msvdqa", Options{Inputs: []string{td + "/msvdqa/test_qa.json", writeTemp(t, "map.txt", []byte("abcDEF_1_5 vid1\n"))}, Media: td + "/msvdqa/frames"}, []string{"test_qa.json:2:", "vid2 is not in the mapping"}, false},
		{"msvd missing frames", "msvdqa", Options{Inputs: []string{td + "/msvdqa/test_qa.json"}, Media: td + "/msvdqa/frames"}, []string{"test_qa.json:1:", "frames directory", "vid1"}, false},
		{"libri bad line", "librispeech", Options{Inputs: []string{writeTemp(t, "1-2.trans.txt", []byte("1-2-0000 HELLO\n1-2-0001\n"))}, Media: t.TempDir()}, []string{"1-2.trans.txt:2:", "<utterance id> <transcript>"}, false},
		{"libri overlong line", "librispeech", Options{Inputs: []string{writeTemp(t, "1-2.trans.txt", []byte("1-2-0000 HELLO\n\n1-2-0001 "+strings.Repeat("A", 1<<20)+"\n"))}, Media: t.TempDir()}, []string{"1-2.trans.txt:3:", "line longer than"}, false},
		{"libri missing flac", "librispeech", Options{Inputs: []string{writeTemp(t, "1-2.trans.txt", []byte("1-2-0000 HELLO\n"))}, Media: t.TempDir()}, []string{"1-2.trans.txt:1:", "1-2-0000.flac not found"}, false},
		{"libri wav dir inside input", "librispeech", Options{Inputs: []string{td + "/librispeech/test-clean"}, Media: td + "/librispeech/test-clean/wav"}, []string{"--images", "inside"}, false},
		{"libri no media", "librispeech", Options{Inputs: []string{td + "/librispeech/test-clean"}}, []string{"--images DIR"}, true},
		{"vocal bad label", "vocalsound", Options{Inputs: []string{writeTemp(t, "v.json", []byte("{\"data\": [\n{\"wav\": \"/x/f0003_0_cough.wav\", \"labels\": \"/m/123\"}]}"))}, Media: td + "/vocalsound/audio_16k"}, []string{"v.json:2:", `label "/m/123"`}, false},
		{"vocal missing audio", "vocalsound", Options{Inputs: []string{writeTemp(t, "v.json", []byte("{\"data\": [\n{\"wav\": \"/x/f9_0_cough.wav\", \"labels\": \"/m/01b_21\"}]}"))}, Media: td + "/vocalsound/audio_16k"}, []string{"v.json:2:", "f9_0_cough.wav not found"}, false},
		{"vqa no annotation", "vqav2", Options{Inputs: []string{td + "/vqav2/v2_OpenEnded_mscoco_val2014_questions.json", writeTemp(t, "a.json", []byte(`{"annotations": []}`))}, Media: td + "/vqav2/val2014"}, []string{"questions.json:3:", "no annotation"}, false},
		{"vqa missing image", "vqav2", Options{Inputs: []string{td + "/vqav2/v2_OpenEnded_mscoco_val2014_questions.json"}, Media: td}, []string{"questions.json:3:", "COCO_val2014_000000262148.jpg"}, false},
		{"docvqa no image", "docvqa", Options{Inputs: []string{writeTemp(t, "d.json", []byte("{\"data\": [\n{\"questionId\": 1, \"question\": \"q\"}]}"))}}, []string{"d.json:2:", `no "image"`}, false},
		{"pmc no column", "pmcvqa", Options{Inputs: []string{csvf("p.csv", "Figure_path,Question,Answer,Choice A,Choice B,Choice C\n")}}, []string{"p.csv:1:", `no column "Choice D"`}, false},
		{"pmc missing image", "pmcvqa", Options{Inputs: []string{csvf("p.csv", "Figure_path,Question,Answer,Choice A,Choice B,Choice C,Choice D\nnone.jpg,q,a,A:a,B:b,C:c,D:d\n")}}, []string{"p.csv:2:", "none.jpg"}, false},
		{"rs unknown answer", "rsvqa", Options{Inputs: []string{td + "/rsvqa/USGS_split_val_questions.json", writeTemp(t, "ans.json", []byte(`{"answers": [{"id": 0, "answer": "yes"}]}`))}, Media: td + "/rsvqa/Data"}, []string{"questions.json:3:", "answer id 1"}, false},
		{"sbu lists differ", "sbu", Options{Inputs: []string{writeTemp(t, "s.json", []byte(`{"image_urls": ["a/b.jpg"], "captions": []}`))}}, []string{"s.json", "1 image_urls but 0 captions"}, false},
		{"sbu no image", "sbu", Options{Inputs: []string{writeTemp(t, "s.json", []byte(`{"image_urls": ["a/b.jpg"], "captions": ["c"]}`))}}, []string{"s.json", "none of the 1 images"}, false},
		{"sbu bad url", "sbu", Options{Inputs: []string{writeTemp(t, "s.json", []byte("{\"image_urls\": [\n\"a/b.jpg\",\n 7], \"captions\": [\"c\"]}"))}}, []string{"s.json:3:", "a number where a string is wanted"}, false},
		{"lingo not parquet", "lingoqa", Options{Inputs: []string{writeTemp(t, "l.parquet", []byte("PAR1 not really"))}}, []string{"l.parquet", "not a Parquet file"}, false},
		{"lingo missing frame", "lingoqa", Options{Inputs: []string{writeTemp(t, "l.parquet", lingoParquet(t, []lingoRecord{{QuestionID: "q", Question: "q", Images: []string{"images/val/none.jpg"}}}))}, Media: td + "/lingoqa"}, []string{"l.parquet: row 1", "none.jpg not found"}, false},
		{"lingo no question", "lingoqa", Options{Inputs: []string{writeTemp(t, "l.parquet", lingoParquet(t, []lingoRecord{{QuestionID: "q", Images: []string{"x"}}}))}}, []string{"l.parquet: row 1", "no question"}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Convert(c.format, c.o)
			if err == nil {
				t.Fatal("no error")
			}
			msg := err.Error()
			if strings.Contains(msg, "\n") {
				t.Errorf("error spans lines: %q", msg)
			}
			for _, w := range c.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not contain %q", msg, w)
				}
			}
			if got := errors.Is(err, ErrUsage); got != c.usage {
				t.Errorf("usage error = %v, want %v (%v)", got, c.usage, err)
			}
		})
	}
}

// TestRun: the output is written whole, never over or into an input; a failed conversion
// leaves no output behind.
func TestRun(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "tv.json")
	b, _ := os.ReadFile("testdata/textvqa/TextVQA_0.5.1_val.json")
	os.WriteFile(in, b, 0o644)
	o := Options{Inputs: []string{in}, Media: "testdata/textvqa/train_images"}
	if _, err := Run("textvqa", o, in); err == nil || !strings.Contains(err.Error(), "collides") && !strings.Contains(err.Error(), "is the input") {
		t.Errorf("out = input: %v", err)
	}
	if got, _ := os.ReadFile(in); !bytes.Equal(got, b) {
		t.Fatal("the input was changed")
	}
	out := filepath.Join(dir, "out.jsonl")
	n, err := Run("textvqa", o, out)
	if err != nil || n != 2 {
		t.Fatalf("Run: %d, %v", n, err)
	}
	want, _ := os.ReadFile("testdata/want/textvqa.jsonl")
	if got, _ := os.ReadFile(out); !bytes.Equal(got, want) {
		t.Errorf("written\n%s\nwant\n%s", got, want)
	}
	bad := filepath.Join(dir, "bad.jsonl")
	o.Media = dir // no images there
	if _, err := Run("textvqa", o, bad); err == nil {
		t.Fatal("no error for missing images")
	}
	if _, err := os.Stat(bad); err == nil {
		t.Error("a failed conversion left its output")
	}
	// LibriSpeech's WAVs go beside the output by default, never into the input tree.
	lout := filepath.Join(dir, "libri.jsonl")
	if n, err := Run("librispeech", Options{Inputs: []string{"testdata/librispeech/test-clean"}}, lout); err != nil || n != 3 {
		t.Fatalf("librispeech: %d, %v", n, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "libri-wav", "1089-134686-0000.wav")); err != nil {
		t.Errorf("decoded WAV not beside the output: %v", err)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestVocalSoundLimitAcrossInputs: --limit counts the samples of all inputs together, and an
// input after the limit is not read.
func TestVocalSoundLimitAcrossInputs(t *testing.T) {
	td := "testdata/vocalsound"
	o := Options{Inputs: []string{td + "/datafiles/te.json", td + "/audio_16k"}, Media: td + "/audio_16k", Limit: 3}
	ss, err := Convert("vocalsound", o)
	if err != nil || len(ss) != 3 || ss[2].ID != "vocalsound-f0003_0_cough" {
		t.Fatalf("limit 3 over a datafile of 2 and a directory: %+v, %v", ss, err)
	}
	o = Options{Inputs: []string{td + "/audio_16k", td + "/nope.json"}, Limit: 3}
	if ss, err := Convert("vocalsound", o); err != nil || len(ss) != 3 {
		t.Errorf("input after the limit: %d samples, %v", len(ss), err)
	}
}
