//go:build unix

package hfdir

import (
	"fmt"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// statKey identifies a file's content as far as stat can tell: path, size, inode, and the
// modification and change times (ctime changes on any write, even one that restores mtime).
func statKey(path string) (string, bool) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", false
	}
	// A link (a Hugging Face cache snapshot's files point into its blobs) is keyed by the file
	// it points to: what is hashed is that file, which other snapshots may share.
	if real, err := filepath.EvalSymlinks(abs); err == nil {
		abs = real
	}
	var st unix.Stat_t
	if err := unix.Stat(abs, &st); err != nil {
		return "", false
	}
	return fmt.Sprintf("%s|%d|%d|%d.%d|%d.%d", abs, st.Size, st.Ino, st.Mtim.Sec, st.Mtim.Nsec, st.Ctim.Sec, st.Ctim.Nsec), true
}
