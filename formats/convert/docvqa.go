package convert

import (
	"encoding/json"
	"fmt"
)

// DocVQA single-page (Task 1; val_v1.0.json): {"dataset_name", "dataset_split", "data":
// [{"questionId", "question", "image": "documents/<doc>.png", "docId", "answers": [...], …}]};
// "image" is relative to the directory holding documents/. MMNeuron's domain "doc" (load_doc,
// from the same questions on the hub as pixparse/docvqa-single-page-questions): one question
// per image, "Question: {q}\nAnswer the question using a single word or phrase.", ANLS over
// the answers.

func init() {
	register("docvqa", format{
		about:  "DocVQA val_v1.0.json (data[]: question, image, answers); --images: the directory holding documents/",
		inputs: "one DocVQA JSON file", minInputs: 1, maxInputs: 1,
		prompt:  true,
		convert: docVQA,
	})
}

func docVQA(o *Options) ([]Sample, error) {
	b, err := readInput(o.Inputs[0])
	if err != nil {
		return nil, err
	}
	return parseDocVQA(o, o.Inputs[0], b)
}

func parseDocVQA(o *Options, name string, b []byte) ([]Sample, error) {
	var out []Sample
	seen := map[string]bool{}
	err := walkArray(name, b, []string{"data"}, func(line int, raw json.RawMessage) error {
		if o.limited(out) {
			return errStop
		}
		var it struct {
			QuestionID json.RawMessage `json:"questionId"`
			Question   *string         `json:"question"`
			Image      *string         `json:"image"`
			Answers    []string        `json:"answers"`
		}
		if err := item(name, line, raw, &it); err != nil {
			return err
		}
		qid, ok := idString(it.QuestionID)
		switch {
		case !ok:
			return missing(name, line, "questionId")
		case it.Question == nil:
			return missing(name, line, "question")
		case it.Image == nil || *it.Image == "":
			return missing(name, line, "image")
		}
		if seen[*it.Image] { // MMNeuron keeps one question per image
			return nil
		}
		seen[*it.Image] = true
		path, err := o.file(fmt.Sprintf("%s:%d", name, line), "image", *it.Image)
		if err != nil {
			return err
		}
		var a string
		if len(it.Answers) > 0 {
			a = it.Answers[0]
		}
		out = append(out, Sample{ID: "docvqa-" + qid, Text: mmneuronQA(o, *it.Question), Image: path,
			Label: "doc", Answer: a})
		return nil
	})
	return out, err
}
