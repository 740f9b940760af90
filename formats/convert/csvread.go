package convert

import (
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strings"
)

// csvRows reads a CSV file (RFC 4180, as pandas writes it; a UTF-8 byte-order mark is
// skipped) and calls fn with each record and the line it starts on. Every record must have
// want fields (0: as many as the first).
func csvRows(name string, b []byte, want int, fn func(line int, rec []string) error) error {
	b = bytes.TrimPrefix(b, []byte("\uFEFF"))
	r := csv.NewReader(bytes.NewReader(b))
	r.FieldsPerRecord = want
	r.ReuseRecord = true
	for {
		rec, err := r.Read()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			var pe *csv.ParseError
			if errors.As(err, &pe) {
				line := pe.StartLine
				if line == 0 {
					line = pe.Line
				}
				return fmt.Errorf("%s:%d: %w: %v", name, line, ErrFormat, pe.Err)
			}
			return fmt.Errorf("%s: %w: %v", name, ErrFormat, err)
		}
		line, _ := r.FieldPos(0)
		if err := fn(line, rec); err == errStop {
			return nil
		} else if err != nil {
			return err
		}
	}
}

// header maps the named columns of a CSV header record to their indices; every name in need
// must be present.
func header(name string, rec []string, need ...string) (map[string]int, error) {
	col := map[string]int{}
	for i, h := range rec {
		col[strings.TrimSpace(h)] = i
	}
	for _, n := range need {
		if _, ok := col[n]; !ok {
			return nil, fmt.Errorf("%s:1: %w: no column %q in the header (%s)", name, ErrFormat, n, strings.Join(rec, ","))
		}
	}
	return col, nil
}
