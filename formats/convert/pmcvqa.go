package convert

import (
	"fmt"
	"strings"
)

// PMC-VQA (test.csv / test_clean.csv / train.csv): CSV with a header naming at least
// Figure_path, Question, Answer, Choice A … Choice D and (in most releases) Answer_label; the
// choices are written "A:text". Images are <Figure_path> in figures/ (or images/).
// MMNeuron's domain "med" (load_med): one question per image; gold = Answer_label when it is
// A–D, else Answer; prompt
//
//	Question: {q}\nContext: N/A\nOptions: {Python list repr of the four choices}\n\nAnswer with the option's letter from the given choices directly.
//
// The samples' choices are the four choice texts without their "A:" prefix and the answer is
// the gold choice's text, as verify's multiple-choice scoring compares texts.

func init() {
	register("pmcvqa", format{
		about:  "PMC-VQA CSV (Figure_path, Question, Answer, Choice A–D, Answer_label); --images: the figures directory",
		inputs: "one PMC-VQA CSV file", minInputs: 1, maxInputs: 1,
		prompt:  true,
		convert: pmcVQA,
	})
}

func pmcVQA(o *Options) ([]Sample, error) {
	b, err := readInput(o.Inputs[0])
	if err != nil {
		return nil, err
	}
	return parsePMCVQA(o, o.Inputs[0], b)
}

func parsePMCVQA(o *Options, name string, b []byte) ([]Sample, error) {
	var out []Sample
	var col map[string]int
	seen := map[string]bool{}
	choiceCols := []string{"Choice A", "Choice B", "Choice C", "Choice D"}
	err := csvRows(name, b, 0, func(line int, rec []string) error {
		if col == nil {
			var err error
			col, err = header(name, rec, append([]string{"Figure_path", "Question", "Answer"}, choiceCols...)...)
			return err
		}
		if o.limited(out) {
			return errStop
		}
		fig := strings.TrimSpace(rec[col["Figure_path"]])
		if fig == "" {
			return missing(name, line, "Figure_path")
		}
		if seen[fig] { // MMNeuron keeps one question per image
			return nil
		}
		seen[fig] = true
		var raw, texts [4]string
		for i, c := range choiceCols {
			raw[i] = rec[col[c]]
			texts[i] = choiceText(raw[i], byte('A'+i))
		}
		gold := -1
		if i, ok := col["Answer_label"]; ok {
			if l := strings.TrimSpace(rec[i]); len(l) == 1 && l[0] >= 'A' && l[0] <= 'D' {
				gold = int(l[0] - 'A')
			}
		}
		answer := strings.TrimSpace(rec[col["Answer"]])
		if gold < 0 {
			for i, t := range texts {
				if strings.EqualFold(strings.TrimSpace(t), answer) {
					gold = i
				}
			}
		}
		if gold >= 0 {
			answer = texts[gold]
		}
		where := fmt.Sprintf("%s:%d", name, line)
		path, err := o.firstFile(where, "image", fig, "figures/"+fig, "images/"+fig)
		if err != nil {
			return err
		}
		q := rec[col["Question"]]
		text := q
		if o.Prompt != "simple" {
			text = "Question: " + q + "\nContext: N/A\nOptions: " + pyList(raw[:]) + "\n\nAnswer with the option's letter from the given choices directly."
		}
		out = append(out, Sample{ID: fmt.Sprintf("pmcvqa-%d", line), Text: text, Image: path,
			Label: "med", Answer: answer, Choices: texts[:]})
		return nil
	})
	if err == nil && col == nil {
		err = fmt.Errorf("%s: %w: empty CSV", name, ErrFormat)
	}
	return out, err
}

// choiceText strips a choice's "A:" / "A: " label.
func choiceText(s string, letter byte) string {
	t := strings.TrimSpace(s)
	if len(t) >= 2 && t[0] == letter && t[1] == ':' {
		return strings.TrimSpace(t[2:])
	}
	return t
}

// pyList renders strings as Python's repr of a list of str (what MMNeuron's f-string prints);
// an empty cell is pandas' NaN, printed nan.
func pyList(xs []string) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = pyRepr(x)
		if x == "" {
			parts[i] = "nan"
		}
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

// pyRepr is Python 3's repr of a str: single quotes unless the text holds a single quote and
// no double quote; backslash, the quote, \n \r \t and other non-printable characters escaped.
func pyRepr(s string) string {
	q := byte('\'')
	if strings.ContainsRune(s, '\'') && !strings.ContainsRune(s, '"') {
		q = '"'
	}
	var sb strings.Builder
	sb.WriteByte(q)
	for _, r := range s {
		switch {
		case r == '\\' || r == rune(q):
			sb.WriteByte('\\')
			sb.WriteRune(r)
		case r == '\n':
			sb.WriteString(`\n`)
		case r == '\r':
			sb.WriteString(`\r`)
		case r == '\t':
			sb.WriteString(`\t`)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&sb, `\x%02x`, r)
		case r >= 0x80 && r < 0xa0:
			fmt.Fprintf(&sb, `\x%02x`, r)
		default:
			sb.WriteRune(r)
		}
	}
	sb.WriteByte(q)
	return sb.String()
}
