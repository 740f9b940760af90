package convert

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// MSVD-QA (test_qa.json): a list of {"answer", "id", "question", "video_id": N}; the clip of
// video_id N is vidN in youtube_mapping.txt ("<youtube name> vidN" a line), i.e.
// YouTubeClips/<youtube name>.avi. Items may instead name the clip in "video" (a file name;
// its extension is dropped). neurosurg reads videos as frames: each clip must be a directory
// of frames under --images, named as the clip without extension, e.g. extracted at MINER's
// 1 fps with
//
//	ffmpeg -i YouTubeClips/NAME.avi -vf fps=1 frames/NAME/%04d.jpg
//
// MINER (utils/dataset.py MSVD): question + "\nAnswer the question using a single word or
// phrase."; correct if the answer is in the response. A second input is the mapping file.

func init() {
	register("msvdqa", format{
		about:  "MSVD-QA test_qa.json (list of {video_id|video, question, answer}) [+ youtube_mapping.txt]; --images: one frames directory per clip",
		inputs: "the QA JSON and optionally youtube_mapping.txt", minInputs: 1, maxInputs: 2,
		convert: msvdQA,
	})
}

func msvdQA(o *Options) ([]Sample, error) {
	b, err := readInput(o.Inputs[0])
	if err != nil {
		return nil, err
	}
	var mapping map[string]string
	if len(o.Inputs) == 2 {
		mb, err := readInput(o.Inputs[1])
		if err != nil {
			return nil, err
		}
		if mapping, err = parseYouTubeMapping(o.Inputs[1], mb); err != nil {
			return nil, err
		}
	}
	return parseMSVDQA(o, o.Inputs[0], b, mapping)
}

// parseYouTubeMapping reads "<youtube name> vid<N>" lines into vidN → name.
func parseYouTubeMapping(name string, b []byte) (map[string]string, error) {
	m := map[string]string{}
	err := textLines(name, b, func(line int, s string) error {
		f := strings.Fields(s)
		if len(f) != 2 || !strings.HasPrefix(f[1], "vid") {
			return fmt.Errorf("%s:%d: %w: want \"<youtube name> vid<N>\"", name, line, ErrFormat)
		}
		m[f[1]] = f[0]
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(m) == 0 {
		return nil, fmt.Errorf("%s: %w: no mapping lines", name, ErrFormat)
	}
	return m, nil
}

func parseMSVDQA(o *Options, name string, b []byte, mapping map[string]string) ([]Sample, error) {
	var out []Sample
	err := walkArray(name, b, nil, func(line int, raw json.RawMessage) error {
		if o.limited(out) {
			return errStop
		}
		var it struct {
			ID       json.RawMessage `json:"id"`
			VideoID  json.RawMessage `json:"video_id"`
			Video    *string         `json:"video"`
			Question *string         `json:"question"`
			Answer   *string         `json:"answer"`
		}
		if err := item(name, line, raw, &it); err != nil {
			return err
		}
		where := fmt.Sprintf("%s:%d", name, line)
		var clip string
		if vid, ok := idString(it.VideoID); ok {
			clip = "vid" + strings.TrimPrefix(vid, "vid")
			if mapping != nil {
				yt, ok := mapping[clip]
				if !ok {
					return fmt.Errorf("%s: %w: %s is not in the mapping file %s", where, ErrFormat, clip, o.Inputs[1])
				}
				clip = yt
			}
		} else if it.Video != nil && *it.Video != "" {
			clip = strings.TrimSuffix(filepath.Base(*it.Video), filepath.Ext(*it.Video))
		}
		switch {
		case clip == "":
			return missing(name, line, "video_id")
		case it.Question == nil:
			return missing(name, line, "question")
		case it.Answer == nil:
			return missing(name, line, "answer")
		}
		id, ok := idString(it.ID)
		if !ok {
			id = "line" + itoa(line)
		}
		dir, err := o.frames(where, clip)
		if err != nil {
			return err
		}
		out = append(out, Sample{ID: "msvd-" + id, Text: *it.Question + shortAnswer, Video: []string{dir},
			Dataset: "msvd_qa", Answer: *it.Answer})
		return nil
	})
	return out, err
}

// frames returns the frames directory of a clip, checking that it holds at least one file.
func (o *Options) frames(where, clip string) (string, error) {
	dir := filepath.Join(o.mediaDir(), clip)
	if o.noMedia {
		return dir, nil
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return "", fmt.Errorf("%s: frames directory %s not found (one directory of frames per clip under --images %s; see docs/datasets.md for the ffmpeg line)", where, dir, o.mediaDir())
	}
	for _, e := range ents {
		if e.Type().IsRegular() {
			return dir, nil
		}
	}
	return "", fmt.Errorf("%s: frames directory %s holds no frame", where, dir)
}
