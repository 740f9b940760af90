package convert

import (
	"encoding/json"
	"fmt"
	"strconv"
)

// VQAv2 (v2_OpenEnded_mscoco_val2014_questions.json: {"data_subtype": "val2014", "questions":
// [{"image_id", "question", "question_id"}]}; v2_mscoco_val2014_annotations.json:
// {"annotations": [{"question_id", "image_id", "multiple_choice_answer", "answers": [{"answer",
// "answer_confidence", "answer_id"}], …}]}); images COCO_<subtype>_<image_id 12 digits>.jpg in
// <subtype>/. MMNeuron's domain "com" (load_bench.py load_com): one question per image,
// "Question: {q}\nAnswer the question using a single word or phrase." (simple: the question).

func init() {
	register("vqav2", format{
		about:  "VQAv2 questions JSON [+ annotations JSON]; --images: the val2014 (or train2014) directory",
		inputs: "the questions JSON and optionally the annotations JSON", minInputs: 1, maxInputs: 2,
		prompt:  true,
		convert: vqav2,
	})
}

func vqav2(o *Options) ([]Sample, error) {
	qb, err := readInput(o.Inputs[0])
	if err != nil {
		return nil, err
	}
	var answers map[string]string
	if len(o.Inputs) == 2 {
		ab, err := readInput(o.Inputs[1])
		if err != nil {
			return nil, err
		}
		if answers, err = parseVQAAnnotations(o.Inputs[1], ab); err != nil {
			return nil, err
		}
	}
	return parseVQAQuestions(o, o.Inputs[0], qb, answers)
}

// parseVQAAnnotations maps question ids to the official single answer, multiple_choice_answer
// (the most frequent of the ten human answers).
func parseVQAAnnotations(name string, b []byte) (map[string]string, error) {
	ans := map[string]string{}
	err := walkArray(name, b, []string{"annotations"}, func(line int, raw json.RawMessage) error {
		var it struct {
			QuestionID json.RawMessage `json:"question_id"`
			MCA        *string         `json:"multiple_choice_answer"`
			Answers    []struct {
				Answer string `json:"answer"`
			} `json:"answers"`
		}
		if err := item(name, line, raw, &it); err != nil {
			return err
		}
		qid, ok := idString(it.QuestionID)
		if !ok {
			return missing(name, line, "question_id")
		}
		switch {
		case it.MCA != nil:
			ans[qid] = *it.MCA
		case len(it.Answers) > 0:
			var xs []string
			for _, a := range it.Answers {
				xs = append(xs, a.Answer)
			}
			ans[qid] = majority(xs)
		default:
			return missing(name, line, "multiple_choice_answer")
		}
		return nil
	})
	return ans, err
}

func parseVQAQuestions(o *Options, name string, b []byte, answers map[string]string) ([]Sample, error) {
	var top struct {
		DataSubtype string `json:"data_subtype"`
	}
	// The subtype names the image files; decoding it reads the document once more, the
	// questions' errors come with lines from walkArray below.
	_ = json.Unmarshal(b, &top)
	var out []Sample
	seenImage := map[string]bool{}
	err := walkArray(name, b, []string{"questions"}, func(line int, raw json.RawMessage) error {
		if o.limited(out) {
			return errStop
		}
		var it struct {
			ImageID    json.RawMessage `json:"image_id"`
			Question   *string         `json:"question"`
			QuestionID json.RawMessage `json:"question_id"`
		}
		if err := item(name, line, raw, &it); err != nil {
			return err
		}
		img, ok := idString(it.ImageID)
		if !ok {
			return missing(name, line, "image_id")
		}
		qid, ok := idString(it.QuestionID)
		switch {
		case !ok:
			return missing(name, line, "question_id")
		case it.Question == nil:
			return missing(name, line, "question")
		}
		where := fmt.Sprintf("%s:%d", name, line)
		var a string
		if answers != nil {
			if a, ok = answers[qid]; !ok {
				return fmt.Errorf("%s: %w: question %s has no annotation in %s", where, ErrFormat, qid, o.Inputs[1])
			}
		}
		if seenImage[img] { // MMNeuron keeps one question per image
			return nil
		}
		seenImage[img] = true
		n, err := strconv.ParseInt(img, 10, 64)
		if err != nil || n < 0 {
			return fmt.Errorf("%s: %w: image_id %q is not a COCO image number", where, ErrFormat, img)
		}
		names := []string{fmt.Sprintf("%012d.jpg", n)}
		if top.DataSubtype != "" {
			names = append([]string{fmt.Sprintf("COCO_%s_%012d.jpg", top.DataSubtype, n)}, names...)
		}
		path, err := o.firstFile(where, "image", names...)
		if err != nil {
			return err
		}
		out = append(out, Sample{ID: "vqav2-" + qid, Text: mmneuronQA(o, *it.Question), Image: path,
			Label: "com", Answer: a})
		return nil
	})
	return out, err
}
