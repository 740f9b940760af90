package convert

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// VocalSound (vocal_sound_release_16k): audio_16k/<speaker>_<n>_<label>.wav with the label in
// the file name (laughter, sigh, cough, throatclearing, sneeze, sniff), and datafiles/*.json
// ({"data": [{"wav": "<path>", "labels": "/m/…"}]}, labels as AudioSet ids, listed in
// class_labels_indices_vs.csv). MINER (utils/dataset.py Vocal) reads datafiles/all.json,
// rewrites the wav paths to its copy of audio_16k and asks one fixed classification prompt;
// correct if the category name (Laughter, Sigh, Cough, Throat clearing, Sneeze, Sniff) is in
// the response. Inputs are datafile JSONs (their wav paths are taken by file name from
// --images, the audio_16k directory) or audio directories (labels from the file names).

func init() {
	register("vocalsound", format{
		about:  "VocalSound datafiles/*.json (data[]: wav, labels) or audio_16k directories (label in the file name); --images: audio_16k",
		inputs: "VocalSound datafile JSONs or audio directories", minInputs: 1,
		convert: vocalSound,
	})
}

// vocalLabels maps the AudioSet ids of the datafiles and the file-name words to MINER's
// category names.
var vocalLabels = map[string]string{
	"/m/01j3sz": "Laughter", "/m/07plz5l": "Sigh", "/m/01b_21": "Cough",
	"/m/0dl9sf8": "Throat clearing", "/m/01hsr_": "Sneeze", "/m/07ppn3j": "Sniff",
	"laughter": "Laughter", "sigh": "Sigh", "cough": "Cough",
	"throatclearing": "Throat clearing", "sneeze": "Sneeze", "sniff": "Sniff",
}

func vocalSound(o *Options) ([]Sample, error) {
	var out []Sample
	for _, in := range o.Inputs {
		if o.limited(out) {
			break
		}
		fi, err := os.Stat(in)
		if err != nil {
			return nil, err
		}
		if fi.IsDir() {
			out, err = vocalDir(o, in, out)
		} else {
			var b []byte
			if b, err = readInput(in); err == nil {
				out, err = parseVocalJSON(o, in, b, out)
			}
		}
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// vocalFileLabel reads the label word of "<speaker>_<n>_<label>.wav".
func vocalFileLabel(file string) (string, bool) {
	base := strings.TrimSuffix(filepath.Base(file), filepath.Ext(file))
	i := strings.LastIndexByte(base, '_')
	if i < 0 {
		return "", false
	}
	l, ok := vocalLabels[base[i+1:]]
	return l, ok
}

func vocalSample(path, label string) Sample {
	id := strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
	return Sample{ID: "vocalsound-" + id, Text: vocalPrompt, Audio: path, Dataset: "vocal_sound", Answer: label}
}

// vocalDir appends the samples of an audio directory to out (up to --limit in all).
func vocalDir(o *Options, dir string, out []Sample) ([]Sample, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range ents {
		if e.Type().IsRegular() && strings.EqualFold(filepath.Ext(e.Name()), ".wav") {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	if len(names) == 0 {
		return nil, fmt.Errorf("%s: %w: no .wav file", dir, ErrFormat)
	}
	for _, n := range names {
		if o.limited(out) {
			break
		}
		l, ok := vocalFileLabel(n)
		if !ok {
			return nil, fmt.Errorf("%s: %w: no label in the file name (want <speaker>_<n>_<laughter|sigh|cough|throatclearing|sneeze|sniff>.wav)", filepath.Join(dir, n), ErrFormat)
		}
		out = append(out, vocalSample(filepath.Join(dir, n), l))
	}
	return out, nil
}

// parseVocalJSON appends the samples of a datafile to out (up to --limit in all).
func parseVocalJSON(o *Options, name string, b []byte, out []Sample) ([]Sample, error) {
	err := walkArray(name, b, []string{"data"}, func(line int, raw json.RawMessage) error {
		if o.limited(out) {
			return errStop
		}
		var it struct {
			Wav    *string `json:"wav"`
			Labels *string `json:"labels"`
		}
		if err := item(name, line, raw, &it); err != nil {
			return err
		}
		switch {
		case it.Wav == nil || *it.Wav == "":
			return missing(name, line, "wav")
		case it.Labels == nil:
			return missing(name, line, "labels")
		}
		l, ok := vocalLabels[strings.TrimSpace(*it.Labels)]
		if !ok {
			return fmt.Errorf("%s:%d: %w: label %q is none of VocalSound's six", name, line, ErrFormat, *it.Labels)
		}
		// The datafiles hold the authors' absolute paths: the file name is what is portable.
		path, err := o.file(fmt.Sprintf("%s:%d", name, line), "audio", filepath.Base(*it.Wav))
		if err != nil {
			return err
		}
		out = append(out, vocalSample(path, l))
		return nil
	})
	return out, err
}
