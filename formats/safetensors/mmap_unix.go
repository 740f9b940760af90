//go:build unix

package safetensors

import (
	"os"

	"golang.org/x/sys/unix"
)

// mapFile maps size bytes of fd read-only and shared, so the page cache backs the tensors.
func mapFile(fd *os.File, size int64) ([]byte, error) {
	return unix.Mmap(int(fd.Fd()), 0, int(size), unix.PROT_READ, unix.MAP_SHARED)
}

// unmap releases a mapping from mapFile or allocAnon.
func unmap(b []byte) error { return unix.Munmap(b) }

// allocAnon returns n bytes of zeroed anonymous memory outside the Go heap.
func allocAnon(n int) ([]byte, error) {
	return unix.Mmap(-1, 0, n, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANON)
}

// protectRead makes anonymous memory read-only, as a file mapping is.
func protectRead(b []byte) error { return unix.Mprotect(b, unix.PROT_READ) }

// dontNeed drops the mapped pages of b from this process; the page cache keeps them.
func dontNeed(b []byte) { unix.Madvise(b, unix.MADV_DONTNEED) }
