package convert

import (
	"encoding/json"
	"fmt"
	"strings"
)

// COCO Caption (annotations/captions_val2014.json): {"images": [{"id", "file_name", …}],
// "annotations": [{"image_id", "caption", "id"}]}; images in val2014/. MINER (utils/dataset.py
// COCO_caption) runs the Karpathy test split — the 5000 file names of coco_test.txt, one a
// line — with one fixed captioning prompt and every reference caption. An optional second
// input is that list of file names; without it every image of the JSON is converted.

func init() {
	register("coco", format{
		about:  "captions_val2014.json (images[] + annotations[]) [+ Karpathy coco_test.txt]; --images: the val2014 directory",
		inputs: "the captions JSON and optionally a list of file names to keep", minInputs: 1, maxInputs: 2,
		convert: coco,
	})
}

func coco(o *Options) ([]Sample, error) {
	b, err := readInput(o.Inputs[0])
	if err != nil {
		return nil, err
	}
	var keep map[string]bool
	if len(o.Inputs) == 2 {
		lb, err := readInput(o.Inputs[1])
		if err != nil {
			return nil, err
		}
		if keep, err = parseNameList(o.Inputs[1], lb); err != nil {
			return nil, err
		}
	}
	return parseCOCO(o, o.Inputs[0], b, keep)
}

// parseNameList reads one file name a line (blank lines skipped).
func parseNameList(name string, b []byte) (map[string]bool, error) {
	keep := map[string]bool{}
	err := textLines(name, b, func(line int, s string) error {
		if strings.ContainsAny(s, " \t\x00") {
			return fmt.Errorf("%s:%d: %w: %q is not one file name", name, line, ErrFormat, s)
		}
		keep[s] = true
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(keep) == 0 {
		return nil, fmt.Errorf("%s: %w: no file names", name, ErrFormat)
	}
	return keep, nil
}

func parseCOCO(o *Options, name string, b []byte, keep map[string]bool) ([]Sample, error) {
	type image struct {
		id, file string
		line     int
		caps     []string
	}
	var imgs []*image
	byID := map[string]*image{}
	err := walkArray(name, b, []string{"images"}, func(line int, raw json.RawMessage) error {
		var it struct {
			ID       json.RawMessage `json:"id"`
			FileName *string         `json:"file_name"`
		}
		if err := item(name, line, raw, &it); err != nil {
			return err
		}
		id, ok := idString(it.ID)
		switch {
		case !ok:
			return missing(name, line, "id")
		case it.FileName == nil || *it.FileName == "":
			return missing(name, line, "file_name")
		case byID[id] != nil:
			return fmt.Errorf("%s:%d: %w: image id %s already on line %d", name, line, ErrFormat, id, byID[id].line)
		}
		im := &image{id: id, file: *it.FileName, line: line}
		byID[id] = im
		imgs = append(imgs, im)
		return nil
	})
	if err != nil {
		return nil, err
	}
	err = walkArray(name, b, []string{"annotations"}, func(line int, raw json.RawMessage) error {
		var it struct {
			ImageID json.RawMessage `json:"image_id"`
			Caption *string         `json:"caption"`
		}
		if err := item(name, line, raw, &it); err != nil {
			return err
		}
		id, ok := idString(it.ImageID)
		switch {
		case !ok:
			return missing(name, line, "image_id")
		case it.Caption == nil:
			return missing(name, line, "caption")
		case byID[id] == nil:
			return fmt.Errorf("%s:%d: %w: caption of image %s, which images[] does not list", name, line, ErrFormat, id)
		}
		byID[id].caps = append(byID[id].caps, strings.TrimSpace(*it.Caption))
		return nil
	})
	if err != nil {
		return nil, err
	}
	var out []Sample
	for _, im := range imgs {
		if o.limited(out) {
			break
		}
		if keep != nil && !keep[im.file] {
			continue
		}
		where := fmt.Sprintf("%s:%d", name, im.line)
		if len(im.caps) == 0 {
			return nil, fmt.Errorf("%s: %w: image %s has no caption in annotations[]", where, ErrFormat, im.id)
		}
		path, err := o.file(where, "image", im.file)
		if err != nil {
			return nil, err
		}
		out = append(out, Sample{ID: "coco-" + im.id, Text: cocoPrompt, Image: path,
			Dataset: "coco_caption", Answer: im.caps[0]})
	}
	return out, nil
}
