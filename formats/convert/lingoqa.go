package convert

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/parquet-go/parquet-go"
)

// LingoQA (Evaluation/val.parquet, Action/Scenery train.parquet): a Parquet table with the
// columns question_id, segment_id, question, answer and images (a list of the segment's frame
// paths, relative to the split's directory, e.g. images/val/<segment>/0.jpg). The evaluation
// set holds several reference answers per question, one row each: the first row of a
// question_id is kept. Read with github.com/parquet-go/parquet-go (pure Go). MMNeuron's domain
// "ad" (load_ad): the frames concatenated side by side into one picture and the prompt
// "Role: You are an advanced AI assistant installed on the Ego vehicle, … Question: {q}";
// here the frames are the sample's image list (neurosurg does not paste pictures together).

func init() {
	register("lingoqa", format{
		about:  "LingoQA parquet (question_id, segment_id, question, answer, images[]); --images: the split directory the frame paths are relative to",
		inputs: "one LingoQA parquet file", minInputs: 1, maxInputs: 1,
		prompt:  true,
		convert: lingoQA,
	})
}

func lingoQA(o *Options) ([]Sample, error) {
	b, err := readInput(o.Inputs[0])
	if err != nil {
		return nil, err
	}
	return parseLingoQA(o, o.Inputs[0], b)
}

type lingoRow struct {
	qid, seg, q, a string
	images         []string
}

// readLingoRows reads the five columns of every row. parquet-go returns errors for what it
// checks and the recover below turns what it does not into one; a crafted page header can
// still make it allocate the page's declared size (at most 2 GiB, int32) before failing. The list column is found under any of
// the layouts writers use (images.list.element from pyarrow, images.list.item from older
// pyarrow, images.bag.array_element, a bare repeated images).
func readLingoRows(name string, b []byte) (rows []lingoRow, err error) {
	defer func() {
		if r := recover(); r != nil { // a corrupt file must not take the process down
			rows, err = nil, fmt.Errorf("%s: %w: corrupt Parquet file (%v)", name, ErrFormat, r)
		}
	}()
	f, err := parquet.OpenFile(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		return nil, fmt.Errorf("%s: %w: not a Parquet file: %v", name, ErrFormat, err)
	}
	s := f.Schema()
	col := map[string]int{}
	for _, c := range []string{"question_id", "segment_id", "question", "answer"} {
		leaf, ok := s.Lookup(c)
		if !ok {
			return nil, fmt.Errorf("%s: %w: no column %q", name, ErrFormat, c)
		}
		col[c] = leaf.ColumnIndex
	}
	imgCol := -1
	for _, p := range [][]string{{"images", "list", "element"}, {"images", "list", "item"}, {"images", "bag", "array_element"}, {"images", "array"}, {"images"}} {
		if leaf, ok := s.Lookup(p...); ok {
			imgCol = leaf.ColumnIndex
			break
		}
	}
	if imgCol < 0 {
		return nil, fmt.Errorf("%s: %w: no column \"images\" (a list of frame paths)", name, ErrFormat)
	}
	const maxRows = 10_000_000
	if f.NumRows() < 0 || f.NumRows() > maxRows {
		return nil, fmt.Errorf("%s: %w: %d rows", name, ErrFormat, f.NumRows())
	}
	buf := make([]parquet.Row, 64)
	for _, rg := range f.RowGroups() {
		rr := rg.Rows()
		for {
			n, err := rr.ReadRows(buf)
			for _, row := range buf[:n] {
				var r lingoRow
				for _, v := range row {
					if v.IsNull() {
						continue
					}
					switch v.Column() {
					case col["question_id"]:
						r.qid = v.String()
					case col["segment_id"]:
						r.seg = v.String()
					case col["question"]:
						r.q = v.String()
					case col["answer"]:
						r.a = v.String()
					case imgCol:
						r.images = append(r.images, v.String())
					}
				}
				rows = append(rows, r)
				if len(rows) > maxRows {
					rr.Close()
					return nil, fmt.Errorf("%s: %w: more than %d rows", name, ErrFormat, maxRows)
				}
			}
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				rr.Close()
				return nil, fmt.Errorf("%s: %w: %v", name, ErrFormat, err)
			}
		}
		rr.Close()
	}
	return rows, nil
}

func parseLingoQA(o *Options, name string, b []byte) ([]Sample, error) {
	rows, err := readLingoRows(name, b)
	if err != nil {
		return nil, err
	}
	var out []Sample
	seen := map[string]bool{}
	for i, r := range rows {
		if o.limited(out) {
			break
		}
		// Parquet has no lines: errors name the row (1-based).
		where := fmt.Sprintf("%s: row %d", name, i+1)
		switch {
		case r.qid == "":
			return nil, fmt.Errorf("%s: %w: no question_id", where, ErrFormat)
		case r.q == "":
			return nil, fmt.Errorf("%s: %w: no question", where, ErrFormat)
		case len(r.images) == 0:
			return nil, fmt.Errorf("%s: %w: no images", where, ErrFormat)
		}
		if seen[r.qid] {
			continue
		}
		seen[r.qid] = true
		var paths []string
		for _, im := range r.images {
			p, err := o.file(where, "image", strings.TrimPrefix(im, "./"))
			if err != nil {
				return nil, err
			}
			paths = append(paths, p)
		}
		text := r.q
		if o.Prompt != "simple" {
			text = lingoRole + r.q
		}
		out = append(out, Sample{ID: "lingoqa-" + r.qid, Text: text, Images: paths, Label: "ad", Answer: r.a})
	}
	return out, nil
}
