package convert

import "encoding/json"

// TextVQA 0.5.1 (TextVQA_0.5.1_val.json): {"data": [{"question", "image_id", "answers": [10],
// "question_id", …}]}; images are <image_id>.jpg in train_images/ (val uses the train images).
// MINER (utils/dataset.py TextVQA): the raw question; correct if any answer is in the response.

func init() {
	register("textvqa", format{
		about:  "TextVQA_0.5.1_val.json (data[]: question, image_id, answers); --images: the train_images directory",
		inputs: "one TextVQA JSON file", minInputs: 1, maxInputs: 1,
		convert: textVQA,
	})
}

func textVQA(o *Options) ([]Sample, error) {
	name := o.Inputs[0]
	b, err := readInput(name)
	if err != nil {
		return nil, err
	}
	return parseTextVQA(o, name, b)
}

func parseTextVQA(o *Options, name string, b []byte) ([]Sample, error) {
	var out []Sample
	err := walkArray(name, b, []string{"data"}, func(line int, raw json.RawMessage) error {
		if o.limited(out) {
			return errStop
		}
		var it struct {
			Question   *string         `json:"question"`
			ImageID    json.RawMessage `json:"image_id"`
			Answers    []string        `json:"answers"`
			QuestionID json.RawMessage `json:"question_id"`
		}
		if err := item(name, line, raw, &it); err != nil {
			return err
		}
		img, ok := idString(it.ImageID)
		switch {
		case it.Question == nil:
			return missing(name, line, "question")
		case !ok:
			return missing(name, line, "image_id")
		case len(it.Answers) == 0:
			return missing(name, line, "answers")
		}
		qid, ok := idString(it.QuestionID)
		if !ok {
			qid = "line" + itoa(line)
		}
		where := name + ":" + itoa(line)
		path, err := o.file(where, "image", img+".jpg")
		if err != nil {
			return err
		}
		out = append(out, Sample{ID: "textvqa-" + qid, Text: *it.Question, Image: path,
			Dataset: "text_vqa", Answer: majority(it.Answers)})
		return nil
	})
	return out, err
}
