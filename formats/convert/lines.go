package convert

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"strings"
)

// maxTextLine bounds a line of the line-based inputs (transcripts, file-name lists, mappings).
const maxTextLine = 1 << 20

// textLines calls fn with every line of a text file that is not blank, trimmed of white space,
// and the line's 1-based number; a line longer than maxTextLine is an error naming it.
func textLines(name string, b []byte, fn func(line int, s string) error) error {
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 4096), maxTextLine)
	line := 1
	for ; sc.Scan(); line++ {
		s := strings.TrimSpace(sc.Text())
		if s == "" {
			continue
		}
		if err := fn(line, s); err != nil {
			return err
		}
	}
	if err := sc.Err(); errors.Is(err, bufio.ErrTooLong) {
		return fmt.Errorf("%s:%d: %w: line longer than %d bytes", name, line, ErrFormat, maxTextLine)
	} else if err != nil {
		return fmt.Errorf("%s:%d: %w: %v", name, line, ErrFormat, err)
	}
	return nil
}
