package convert

import (
	"fmt"
	"path/filepath"
	"sort"
	"strings"
)

// MMLU, the original release (data/{dev,val,test}/<subject>_<split>.csv): CSV without a
// header, six columns question, A, B, C, D, answer letter. The subject is the file name
// before "_test.csv" / "_val.csv" / "_dev.csv". MINER (utils/dataset.py MMLU) prompts 5-shot
// from the subject's first five dev rows, in Hendrycks' wording:
//
//	The following are multiple choice questions (with answers) about  <subject words>.\n\n
//	<Q>\nA. <a>\nB. <b>\nC. <c>\nD. <d>\nAnswer: <X>\n\n   (× shots)
//	<Q>\nA. <a>\nB. <b>\nC. <c>\nD. <d>\nAnswer:
//
// (the double space after "about" is the official code's: format_subject returns " words").
// Inputs are CSV files or directories holding them; *_dev.csv files give the shots and are
// not converted themselves.

func init() {
	register("mmlu", format{
		about:  "MMLU CSVs (question,A,B,C,D,answer; subject from <subject>_test.csv); *_dev.csv give the 5 shots",
		inputs: "MMLU CSV files or directories", minInputs: 1,
		convert: mmlu,
	})
}

type mmluRow struct {
	q    string
	opts [4]string
	ans  string // A–D
	line int
}

func mmlu(o *Options) ([]Sample, error) {
	files, err := inputFiles(o.Inputs, ".csv")
	if err != nil {
		return nil, err
	}
	dev := map[string][]mmluRow{}
	var tests []string
	for _, f := range files {
		if subj, split := mmluSubject(f); split == "dev" {
			b, err := readInput(f)
			if err != nil {
				return nil, err
			}
			if dev[subj], err = parseMMLU(f, b); err != nil {
				return nil, err
			}
		} else {
			tests = append(tests, f)
		}
	}
	if len(tests) == 0 {
		return nil, fmt.Errorf("%s: %w: only *_dev.csv files (the shots); give the *_test.csv files to convert", strings.Join(o.Inputs, ", "), ErrFormat)
	}
	sort.Strings(tests) // MINER walks the subjects in sorted order
	var out []Sample
	for _, f := range tests {
		b, err := readInput(f)
		if err != nil {
			return nil, err
		}
		rows, err := parseMMLU(f, b)
		if err != nil {
			return nil, err
		}
		subj, _ := mmluSubject(f)
		shots := o.Shots
		if shots < 0 {
			shots = 5
		}
		shotRows := dev[subj]
		if len(shotRows) > shots {
			shotRows = shotRows[:shots]
		}
		for i, r := range rows {
			if o.limited(out) {
				return out, nil
			}
			out = append(out, Sample{ID: fmt.Sprintf("mmlu-%s-%d", subj, i), Text: mmluPrompt(subj, shotRows, r),
				Dataset: "mmlu", Answer: r.opts[r.ans[0]-'A'], Choices: r.opts[:]})
		}
	}
	return out, nil
}

// mmluSubject splits "<subject>_<split>.csv".
func mmluSubject(path string) (subject, split string) {
	base := strings.TrimSuffix(filepath.Base(path), ".csv")
	for _, s := range []string{"test", "val", "dev"} {
		if strings.HasSuffix(base, "_"+s) {
			return strings.TrimSuffix(base, "_"+s), s
		}
	}
	return base, ""
}

func parseMMLU(name string, b []byte) ([]mmluRow, error) {
	var rows []mmluRow
	err := csvRows(name, b, 6, func(line int, rec []string) error {
		a := strings.TrimSpace(rec[5])
		if len(a) != 1 || a[0] < 'A' || a[0] > 'D' {
			return fmt.Errorf("%s:%d: %w: answer %q is not A, B, C or D", name, line, ErrFormat, rec[5])
		}
		rows = append(rows, mmluRow{q: rec[0], opts: [4]string{rec[1], rec[2], rec[3], rec[4]}, ans: a, line: line})
		return nil
	})
	if err == nil && len(rows) == 0 {
		err = fmt.Errorf("%s: %w: no rows", name, ErrFormat)
	}
	return rows, err
}

func mmluExample(r mmluRow, withAnswer bool) string {
	var sb strings.Builder
	sb.WriteString(r.q)
	for j, opt := range r.opts {
		fmt.Fprintf(&sb, "\n%c. %s", 'A'+j, opt)
	}
	sb.WriteString("\nAnswer:")
	if withAnswer {
		sb.WriteString(" " + r.ans + "\n\n")
	}
	return sb.String()
}

func mmluPrompt(subject string, shots []mmluRow, r mmluRow) string {
	var sb strings.Builder
	sb.WriteString("The following are multiple choice questions (with answers) about ")
	for _, w := range strings.Split(subject, "_") {
		sb.WriteString(" " + w)
	}
	sb.WriteString(".\n\n")
	for _, s := range shots {
		sb.WriteString(mmluExample(s, true))
	}
	sb.WriteString(mmluExample(r, false))
	return sb.String()
}
