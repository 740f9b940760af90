// Package atomicfile writes small files so that a failure leaves nothing in place: a temporary
// file beside the target, renamed over it when complete.
package atomicfile

import (
	"os"
	"path/filepath"
)

// Write writes b to path (mode 0644) through a temporary file and a rename.
func Write(path string, b []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path)+"-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	// CreateTemp makes the file 0600; a written file gets the usual 0644.
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
