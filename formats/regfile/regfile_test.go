package regfile

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestOpen(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "f")
	os.WriteFile(file, []byte("hello"), 0o644)
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	os.Symlink(file, link)
	for _, c := range []struct {
		path, msg string // msg "" = opens
	}{
		{file, ""},
		{link, ""}, // a symlink to a regular file is one
		{dir, "it is a directory"},
		{fifo, "it is a named pipe"},
		{"/dev/null", "it is a character device"},
		{filepath.Join(dir, "missing"), "no such file"},
	} {
		done := make(chan error, 1)
		go func() {
			f, err := Open(c.path)
			if err == nil {
				f.Close()
			}
			done <- err
		}()
		var err error
		select {
		case err = <-done:
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: Open hangs", c.path)
		}
		if c.msg == "" {
			if err != nil {
				t.Errorf("%s: %v", c.path, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%s: %v, want %q", c.path, err, c.msg)
		}
		if c.msg != "no such file" && (!errors.Is(err, ErrNotRegular) || !strings.Contains(err.Error(), c.path)) {
			t.Errorf("%s: %v does not wrap ErrNotRegular with the path", c.path, err)
		}
	}
	if b, err := ReadFile(file, 5); err != nil || string(b) != "hello" {
		t.Errorf("ReadFile: %q %v", b, err)
	}
	if _, err := ReadFile(file, 4); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("ReadFile over the bound: %v", err)
	}
}
