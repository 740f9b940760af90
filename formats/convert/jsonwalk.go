package convert

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
)

// The release files are single JSON documents with one long array of items (TextVQA's "data",
// VQAv2's "questions", MSVD-QA's top-level list…). walkArray decodes the array item by item so
// that an error names the line the bad item starts on.

// walkArray calls fn for every element of the array found by following keys from the top-level
// value (no keys: the top level is the array), with the line the element starts on.
func walkArray(name string, b []byte, keys []string, fn func(line int, raw json.RawMessage) error) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	if err := descend(name, b, d, keys); err != nil {
		return err
	}
	if err := expectDelim(name, b, d, '[', strings.Join(keys, ".")); err != nil {
		return err
	}
	for d.More() {
		start := skipSep(b, int(d.InputOffset()))
		var raw json.RawMessage
		if err := d.Decode(&raw); err != nil {
			return jsonErr(name, b, err, d.InputOffset())
		}
		if err := fn(lineAt(b, start), raw); err == errStop {
			return nil
		} else if err != nil {
			return err
		}
	}
	// The rest of the document must still be JSON (a truncated file is an error, not a
	// silently shorter dataset).
	for {
		if _, err := d.Token(); err == io.EOF {
			break
		} else if err != nil {
			return jsonErr(name, b, err, d.InputOffset())
		}
	}
	return nil
}

// errStop, returned by walkArray's fn, ends the walk early without error (--limit reached).
var errStop = errors.New("stop")

// descend walks d into the value at keys, skipping the other members of each object.
func descend(name string, b []byte, d *json.Decoder, keys []string) error {
	for i, k := range keys {
		where := strings.Join(keys[:i], ".")
		if err := expectDelim(name, b, d, '{', where); err != nil {
			return err
		}
		for {
			if !d.More() {
				return fmt.Errorf("%s: %w: no %q in the top-level object%s", name, ErrFormat, k, at(where))
			}
			t, err := d.Token()
			if err != nil {
				return jsonErr(name, b, err, d.InputOffset())
			}
			if key, _ := t.(string); key == k {
				break
			}
			var skip json.RawMessage
			if err := d.Decode(&skip); err != nil {
				return jsonErr(name, b, err, d.InputOffset())
			}
		}
	}
	return nil
}

func at(where string) string {
	if where == "" {
		return ""
	}
	return " at " + where
}

func expectDelim(name string, b []byte, d *json.Decoder, want json.Delim, where string) error {
	off := skipSep(b, int(d.InputOffset()))
	t, err := d.Token()
	if err != nil {
		return jsonErr(name, b, err, d.InputOffset())
	}
	if t != want {
		what := "an object"
		if want == '[' {
			what = "a list"
		}
		if where == "" {
			where = "the top level"
		}
		return fmt.Errorf("%s:%d: %w: %s is not %s", name, lineAt(b, off), ErrFormat, where, what)
	}
	return nil
}

// jsonErr names the line of a decoding error.
func jsonErr(name string, b []byte, err error, off int64) error {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		off = se.Offset
	case errors.As(err, &te):
		off = te.Offset
	case errors.Is(err, io.ErrUnexpectedEOF) || err == io.EOF:
		return fmt.Errorf("%s:%d: %w: the JSON ends early (truncated file?)", name, lineAt(b, len(b)), ErrFormat)
	}
	return fmt.Errorf("%s:%d: %w: %v", name, lineAt(b, int(off)), ErrFormat, err)
}

// skipSep returns the offset of the first byte at or after off that is not white space or a
// comma: where the next value starts.
func skipSep(b []byte, off int) int {
	for off < len(b) {
		switch b[off] {
		case ' ', '\t', '\r', '\n', ',', ':':
			off++
		default:
			return off
		}
	}
	return off
}

// lineAt is the 1-based line of byte offset off.
func lineAt(b []byte, off int) int {
	if off > len(b) {
		off = len(b)
	}
	if off < 0 {
		off = 0
	}
	return bytes.Count(b[:off], []byte{'\n'}) + 1
}

// item decodes one array element into v, naming its line on failure.
func item(name string, line int, raw json.RawMessage, v any) error {
	if err := json.Unmarshal(raw, v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field == "" { // the item itself (SBU's lists of strings)
			return fmt.Errorf("%s:%d: %w: a %s where a %s is wanted", name, line, ErrFormat, te.Value, te.Type)
		}
		if errors.As(err, &te) {
			return fmt.Errorf("%s:%d: %w: field %q is not a %s", name, line, ErrFormat, te.Field, te.Type)
		}
		return fmt.Errorf("%s:%d: %w: %v", name, line, ErrFormat, err)
	}
	return nil
}

// missing is the error of an item without a required field.
func missing(name string, line int, field string) error {
	return fmt.Errorf("%s:%d: %w: no %q", name, line, ErrFormat, field)
}

// idString renders a JSON id (number or string) as text.
func idString(raw json.RawMessage) (string, bool) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return "", false
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s, s != ""
	}
	var n json.Number
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	if d.Decode(&n) == nil {
		return n.String(), true
	}
	return "", false
}
