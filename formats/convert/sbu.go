package convert

import (
	"encoding/json"
	"fmt"
	"os"
	"path"
	"path/filepath"
)

// SBU Captions (sbu-captions-all.json): {"image_urls": [...], "captions": [...]}, two parallel
// lists. Pan et al. (MM_Neurons src/load_datasets.py load_sbu) download the images to
// images/<last part of the URL> and keep the ones that downloaded; so does this converter:
// an entry whose image is not under --images is skipped (SBU's links are partly dead), and no
// image at all is an error. Prompt (find_mm_neurons.py): "Describe the image in few words.",
// with the assistant's reply pre-filled with "An image of". --prompt full (default) writes
// the caption after that prefix, teacher-forced, so contribution scores are read at the
// caption's words (neurosurg's reading of "the step that generates the concept");
// --prompt simple writes the query alone with the caption as the answer (a verify bench).

const sbuQuery = "Describe the image in few words."

func init() {
	register("sbu", format{
		about:  "SBU Captions sbu-captions-all.json (image_urls[], captions[]); --images: the downloaded images (named as the URL's last part)",
		inputs: "one SBU captions JSON file", minInputs: 1, maxInputs: 1,
		prompt:  true,
		convert: sbu,
	})
}

func sbu(o *Options) ([]Sample, error) {
	b, err := readInput(o.Inputs[0])
	if err != nil {
		return nil, err
	}
	return parseSBU(o, o.Inputs[0], b)
}

func parseSBU(o *Options, name string, b []byte) ([]Sample, error) {
	type entry struct {
		url  string
		line int
	}
	var urls []entry
	var caps []string
	err := walkArray(name, b, []string{"image_urls"}, func(line int, raw json.RawMessage) error {
		var u string
		if err := item(name, line, raw, &u); err != nil {
			return err
		}
		urls = append(urls, entry{u, line})
		return nil
	})
	if err != nil {
		return nil, err
	}
	err = walkArray(name, b, []string{"captions"}, func(line int, raw json.RawMessage) error {
		var c string
		if err := item(name, line, raw, &c); err != nil {
			return err
		}
		caps = append(caps, c)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(urls) != len(caps) {
		return nil, fmt.Errorf("%s: %w: %d image_urls but %d captions", name, ErrFormat, len(urls), len(caps))
	}
	var out []Sample
	seen := map[string]bool{}
	for i, u := range urls {
		if o.limited(out) {
			break
		}
		file := path.Base(u.url)
		if file == "." || file == "/" || file == "" || seen[file] {
			continue
		}
		p := filepath.Join(o.mediaDir(), file)
		if !o.noMedia {
			if fi, err := os.Stat(p); err != nil || !fi.Mode().IsRegular() {
				continue // not downloaded
			}
		}
		seen[file] = true
		s := Sample{ID: "sbu-" + file, Image: p, Answer: caps[i]}
		if o.Prompt == "simple" {
			s.Text = sbuQuery
		} else {
			s.Text = sbuQuery + " An image of " + caps[i]
		}
		out = append(out, s)
	}
	if len(out) == 0 && len(urls) > 0 {
		return nil, fmt.Errorf("%s: %w: none of the %d images is under --images %s (named as the last part of each URL)", name, ErrFormat, len(urls), o.mediaDir())
	}
	return out, nil
}
