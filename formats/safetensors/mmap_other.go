//go:build !unix

package safetensors

import (
	"io"
	"os"
)

// Without mmap (Windows, wasm) the file is read into the heap: the same reads, more memory.

func mapFile(fd *os.File, size int64) ([]byte, error) {
	b := make([]byte, size)
	if _, err := io.ReadFull(io.NewSectionReader(fd, 0, size), b); err != nil {
		return nil, err
	}
	return b, nil
}

func unmap([]byte) error { return nil }

func allocAnon(n int) ([]byte, error) { return make([]byte, n), nil }

func protectRead([]byte) error { return nil }

func dontNeed([]byte) {}

func adviseHuge([]byte) {}
