// Package convert turns the public release files of the benchmarks MINER and MMNeuron use
// (TextVQA, COCO Caption, MMLU, MSVD-QA, LibriSpeech, VocalSound, VQAv2, DocVQA, PMC-VQA,
// RS-VQA, LingoQA) into neurosurg samples JSONL (docs/samples.md), with the papers' prompt
// wording. One file per source format; docs/datasets.md says what maps to what.
package convert

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/neurosurg/neurosurg/formats/atomicfile"
	"github.com/neurosurg/neurosurg/formats/outpath"
	"github.com/neurosurg/neurosurg/formats/regfile"
	"github.com/neurosurg/neurosurg/formats/samples"
)

// ErrUsage reports a call the converter cannot run: an unknown format, the wrong number of
// inputs, an option the format does not take. The CLI maps it to the usage exit code.
var ErrUsage = errors.New("convert")

// ErrFormat reports an input that is not in the format it was given as.
var ErrFormat = errors.New("convert: invalid input")

// Options are a conversion's inputs and settings.
type Options struct {
	Inputs  []string // the release's files or directories, as the format takes them
	Media   string   // where the images/frames/audio are (--images); LibriSpeech: where the WAVs are written
	Limit   int      // keep the first Limit samples (0: all)
	Label   string   // label of every sample (default: the format's, e.g. MMNeuron's domain key)
	Dataset string   // dataset of every sample (default: MINER's dataset name for MINER's formats)
	Prompt  string   // MMNeuron's formats: "full" (default, the evaluation prompt) or "simple" (the bare question, as recorded)
	Shots   int      // MMLU: in-context examples from the *_dev.csv files (-1: 5 when dev files are given, as MINER)

	// noMedia skips the media checks and writes no media (fuzzing the parsers).
	noMedia bool
}

// Sample is one output line: a sample of formats/samples, whose MarshalJSON writes the
// samples JSONL (one image or video directory as a string, several as a list).
type Sample = samples.Sample

// format is one source format.
type format struct {
	about     string
	inputs    string // what the positional arguments are, for usage errors
	minInputs int
	maxInputs int // 0: any number
	prompt    bool
	convert   func(o *Options) ([]Sample, error)
}

var formats = map[string]format{}

func register(name string, f format) { formats[name] = f }

// Formats lists the format names with what each reads, sorted by name.
func Formats() [][2]string {
	var out [][2]string
	for n, f := range formats {
		out = append(out, [2]string{n, f.about})
	}
	sort.Slice(out, func(i, j int) bool { return out[i][0] < out[j][0] })
	return out
}

// Convert reads the inputs of format name and returns its samples.
func Convert(name string, o Options) ([]Sample, error) {
	f, ok := formats[name]
	if !ok {
		var names []string
		for _, n := range Formats() {
			names = append(names, n[0])
		}
		return nil, fmt.Errorf("%w: unknown format %q (%s)", ErrUsage, name, strings.Join(names, ", "))
	}
	if len(o.Inputs) < f.minInputs || (f.maxInputs > 0 && len(o.Inputs) > f.maxInputs) {
		return nil, fmt.Errorf("%w: %s takes %s (got %d inputs)", ErrUsage, name, f.inputs, len(o.Inputs))
	}
	if o.Limit < 0 {
		return nil, fmt.Errorf("%w: --limit %d is negative", ErrUsage, o.Limit)
	}
	switch o.Prompt {
	case "", "full", "simple":
		if o.Prompt != "" && !f.prompt {
			return nil, fmt.Errorf("%w: %s has one prompt; --prompt is for MMNeuron's formats", ErrUsage, name)
		}
	default:
		return nil, fmt.Errorf("%w: --prompt %q (full or simple)", ErrUsage, o.Prompt)
	}
	if o.Shots < -1 || o.Shots > 64 {
		return nil, fmt.Errorf("%w: --shots %d (0..64)", ErrUsage, o.Shots)
	}
	ss, err := f.convert(&o)
	if err != nil {
		return nil, err
	}
	if len(ss) == 0 {
		return nil, fmt.Errorf("%s: %w: no samples", strings.Join(o.Inputs, ", "), ErrFormat)
	}
	seen := map[string]bool{}
	for i := range ss {
		if seen[ss[i].ID] {
			return nil, fmt.Errorf("%s: %w: id %q twice", strings.Join(o.Inputs, ", "), ErrFormat, ss[i].ID)
		}
		seen[ss[i].ID] = true
		if o.Label != "" {
			ss[i].Label = o.Label
		}
		if o.Dataset != "" {
			ss[i].Dataset = o.Dataset
		}
	}
	return ss, nil
}

// Run converts and writes out atomically, refusing an out that is or lies in an input. It
// returns the number of samples written.
func Run(name string, o Options, out string) (int, error) {
	if out == "" {
		return 0, fmt.Errorf("%w: --out is required", ErrUsage)
	}
	if err := outpath.Check(out, o.Inputs...); err != nil {
		return 0, err
	}
	if name == "librispeech" && o.Media == "" {
		o.Media = strings.TrimSuffix(out, filepath.Ext(out)) + "-wav" // where the decoded WAVs go
	}
	ss, err := Convert(name, o)
	if err != nil {
		return 0, err
	}
	b, err := Encode(ss)
	if err != nil {
		return 0, err
	}
	if err := atomicfile.Write(out, b); err != nil {
		return 0, fmt.Errorf("%s: %w", out, err)
	}
	return len(ss), nil
}

// Encode writes samples as JSONL, one object a line, HTML characters unescaped.
func Encode(ss []Sample) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	for _, s := range ss {
		if err := enc.Encode(s); err != nil {
			return nil, fmt.Errorf("sample %s: %w", s.ID, err)
		}
	}
	return buf.Bytes(), nil
}

// limited reports whether ss already holds o.Limit samples.
func (o *Options) limited(ss []Sample) bool { return o.Limit > 0 && len(ss) >= o.Limit }

// mediaDir is where media named by the inputs are looked up: --images, else the directory of
// the first input.
func (o *Options) mediaDir() string {
	if o.Media != "" {
		return o.Media
	}
	if len(o.Inputs) > 0 {
		return filepath.Dir(o.Inputs[0])
	}
	return "."
}

// file returns the path of a media file named rel (relative to the media directory), checking
// that it exists and is a regular file; where says which input line named it.
func (o *Options) file(where, kind, rel string) (string, error) {
	if rel == "" {
		return "", fmt.Errorf("%s: %w: empty %s path", where, ErrFormat, kind)
	}
	p := rel
	if !filepath.IsAbs(rel) {
		p = filepath.Join(o.mediaDir(), rel)
	}
	if o.noMedia {
		return p, nil
	}
	fi, err := os.Stat(p)
	if err != nil {
		return "", fmt.Errorf("%s: %s %s not found (media are looked up under --images %s)", where, kind, p, o.mediaDir())
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("%s: %s %s is not a file", where, kind, p)
	}
	return p, nil
}

// firstFile returns the first of the candidate names that exists under the media directory.
func (o *Options) firstFile(where, kind string, names ...string) (string, error) {
	if o.noMedia {
		return filepath.Join(o.mediaDir(), names[0]), nil
	}
	for _, n := range names {
		p := filepath.Join(o.mediaDir(), n)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s: %s not found: none of %s under --images %s", where, kind, strings.Join(names, ", "), o.mediaDir())
}

// maxInput bounds one input file read whole; the release files are far smaller.
const maxInput = 8 << 30

// readInput reads one input file whole, naming it in errors; a directory, FIFO or device is
// refused (regfile: a FIFO would block the read).
func readInput(path string) ([]byte, error) {
	return regfile.ReadFile(path, maxInput)
}

// inputFiles lists the files the inputs name: a file as given, a directory as the files below
// it whose names end in suffix, in walk order (a directory without one is an error).
func inputFiles(inputs []string, suffix string) ([]string, error) {
	var files []string
	for _, in := range inputs {
		fi, err := os.Stat(in)
		if err != nil {
			return nil, err
		}
		if !fi.IsDir() {
			files = append(files, in)
			continue
		}
		n := len(files)
		err = filepath.WalkDir(in, func(p string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() && strings.HasSuffix(p, suffix) {
				files = append(files, p)
			}
			return err
		})
		if err != nil {
			return nil, err
		}
		if len(files) == n {
			return nil, fmt.Errorf("%s: %w: no *%s file", in, ErrFormat, suffix)
		}
	}
	return files, nil
}

// majority returns the most frequent string (the first to reach the top count on ties), the
// answer the VQA-style formats record in the single answer field.
func majority(xs []string) string {
	count := map[string]int{}
	best, bestN := "", 0
	for _, x := range xs {
		count[x]++
	}
	for _, x := range xs {
		if count[x] > bestN {
			best, bestN = x, count[x]
		}
	}
	return best
}

// Prompt wordings of the papers' official code (algorithms.md §2.7, §3.2).
const (
	// MINER's video QA and MMNeuron's short-answer suffix.
	shortAnswer = "\nAnswer the question using a single word or phrase."
	// MINER's COCO Caption prompt (its whitespace collapsed, as the code does).
	cocoPrompt = "Generate a caption for the image in one short sentence, similar to these examples from the COCO dataset: 1. A man with a red helmet on a small moped on a dirt road. 2. Man riding a motor bike on a dirt road on the countryside. 3. A man riding on the back of a motorcycle. 4. A man in a red shirt and a red hat is on a motorcycle on a hill side. Now, describe the image."
	// MINER's LibriSpeech prompt.
	libriPrompt = "Please transcribe the following audio directly into plain text without any additional explanations, prefixes, or descriptions. Only output the transcription of the spoken content in the audio."
	// MINER's VocalSound prompt (whitespace collapsed as in the code).
	vocalPrompt = "You are a sound classification model. Your task is to classify a given audio sample into one of the following categories based on its content: 1. Laughter 2. Sigh 3. Cough 4. Throat clearing 5. Sneeze 6. Sniff Please analyze the audio sample and provide the corresponding category name."
	// MMNeuron's LingoQA role text.
	lingoRole = "Role: You are an advanced AI assistant installed on the Ego vehicle, equipped with conversational analysis capabilities for discussing autonomous driving scenarios. The perspective presented is from the point-of-view of the Ego vehicle, where the camera is mounted. It's important to note that the Ego vehicle itself is not visible in the images provided. Question: "
)

// mmneuronQA is MMNeuron's prompt for rs, com and doc (the "<image>\n" prefix is the prompt
// builder's placeholder, not text).
func mmneuronQA(o *Options, q string) string {
	if o.Prompt == "simple" {
		return q
	}
	return "Question: " + q + shortAnswer
}

func itoa(n int) string { return fmt.Sprint(n) }
