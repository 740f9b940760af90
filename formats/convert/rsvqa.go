package convert

import (
	"encoding/json"
	"fmt"
)

// RSVQA (LR: LR_split_<split>_{questions,answers,images}.json, images Images_LR/<id>.tif; HR:
// USGS_split_<split>_{…}.json, images Data/<id>.tif): {"questions": [{"id", "img_id", "type",
// "question", "answers_ids": [..], "active"}]} and {"answers": [{"id", "question_id",
// "answer", "active"}]}. MMNeuron's domain "rs" (load_rs, on RSVQA-HR): active questions
// only, one question per image, gold = the answer of answers_ids[0], "Question: {q}\nAnswer
// the question using a single word or phrase.". Images are looked up as <img_id>.png,
// .tif, .tiff or .jpg under --images (MMNeuron used PNG copies).

func init() {
	register("rsvqa", format{
		about:  "RSVQA-LR/HR questions JSON + answers JSON; --images: Images_LR or Data",
		inputs: "the questions JSON and the answers JSON", minInputs: 2, maxInputs: 2,
		prompt:  true,
		convert: rsVQA,
	})
}

func rsVQA(o *Options) ([]Sample, error) {
	qb, err := readInput(o.Inputs[0])
	if err != nil {
		return nil, err
	}
	ab, err := readInput(o.Inputs[1])
	if err != nil {
		return nil, err
	}
	answers, err := parseRSAnswers(o.Inputs[1], ab)
	if err != nil {
		return nil, err
	}
	return parseRSQuestions(o, o.Inputs[0], qb, answers)
}

func parseRSAnswers(name string, b []byte) (map[string]string, error) {
	ans := map[string]string{}
	err := walkArray(name, b, []string{"answers"}, func(line int, raw json.RawMessage) error {
		var it struct {
			ID     json.RawMessage `json:"id"`
			Answer *string         `json:"answer"`
		}
		if err := item(name, line, raw, &it); err != nil {
			return err
		}
		id, ok := idString(it.ID)
		switch {
		case !ok:
			return missing(name, line, "id")
		case it.Answer == nil:
			return missing(name, line, "answer")
		}
		ans[id] = *it.Answer
		return nil
	})
	return ans, err
}

func parseRSQuestions(o *Options, name string, b []byte, answers map[string]string) ([]Sample, error) {
	var out []Sample
	seen := map[string]bool{}
	err := walkArray(name, b, []string{"questions"}, func(line int, raw json.RawMessage) error {
		if o.limited(out) {
			return errStop
		}
		var it struct {
			ID         json.RawMessage   `json:"id"`
			ImgID      json.RawMessage   `json:"img_id"`
			Question   *string           `json:"question"`
			AnswersIDs []json.RawMessage `json:"answers_ids"`
			Active     *bool             `json:"active"`
		}
		if err := item(name, line, raw, &it); err != nil {
			return err
		}
		id, ok := idString(it.ID)
		if !ok {
			return missing(name, line, "id")
		}
		img, ok := idString(it.ImgID)
		switch {
		case !ok:
			return missing(name, line, "img_id")
		case it.Question == nil:
			return missing(name, line, "question")
		case len(it.AnswersIDs) == 0:
			return missing(name, line, "answers_ids")
		}
		if it.Active != nil && !*it.Active {
			return nil
		}
		where := fmt.Sprintf("%s:%d", name, line)
		aid, _ := idString(it.AnswersIDs[0])
		a, ok := answers[aid]
		if !ok {
			return fmt.Errorf("%s: %w: answer id %s is not in %s", where, ErrFormat, aid, o.Inputs[1])
		}
		if seen[img] { // MMNeuron keeps one question per image
			return nil
		}
		seen[img] = true
		path, err := o.firstFile(where, "image", img+".png", img+".tif", img+".tiff", img+".jpg")
		if err != nil {
			return err
		}
		out = append(out, Sample{ID: "rsvqa-" + id, Text: mmneuronQA(o, *it.Question), Image: path,
			Label: "rs", Answer: a})
		return nil
	})
	return out, err
}
