package atomicfile

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// ErrLocked reports a directory another live process holds the lock on.
var ErrLocked = errors.New("locked by another running process")

// A directory is built beside its destination under a hidden name, ".<name>.tmp-<random>",
// and renamed into place when complete. A process killed meanwhile (SIGKILL, OOM, power) leaves
// that directory behind: up to a whole checkpoint. To tell such leftovers from a directory a
// live process is still writing, the writer holds an flock(2) on the directory for as long as
// it writes; the kernel drops the lock when the process dies, however it dies. A leftover is
// then a sibling of the same destination name that is unlocked and older than staleAfter (the
// age closes the instant between a writer's mkdir and its lock). Only names made for the same
// destination are considered: neurosurg never removes a directory it cannot have made for
// this output. Where flock is not supported (some network file systems) nothing is locked and
// nothing is removed.

// staleAfter is how old an unlocked temporary directory must be to count as left behind.
const staleAfter = 2 * time.Second

func tempPrefix(out string) string { return "." + filepath.Base(filepath.Clean(out)) + ".tmp-" }

// MkdirTemp creates the temporary directory to build out in, beside it, with the usual
// permissions (0755 less the umask: os.MkdirTemp's 0700 survived the rename and left
// checkpoints other users could not read), locked until unlock is called. It first removes
// the leftovers of killed writes of out (see CleanStale).
func MkdirTemp(out string) (dir string, unlock func(), err error) {
	CleanStale(out)
	parent, prefix := filepath.Dir(filepath.Clean(out)), tempPrefix(out)
	for try := 0; ; try++ {
		dir = filepath.Join(parent, prefix+strconv.FormatUint(uint64(rand.Uint32()), 10))
		err = os.Mkdir(dir, 0o755)
		if err == nil {
			break
		}
		if !errors.Is(err, os.ErrExist) || try == 100 {
			return "", nil, err
		}
	}
	unlock = func() {}
	if f, err := os.Open(dir); err == nil {
		if tryLock(f) == nil {
			unlock = func() { f.Close() } // closing the last descriptor drops the lock
		} else {
			f.Close()
		}
	}
	return dir, unlock, nil
}

// CleanStale removes the temporary directories of out that killed writers left behind:
// ".<name>.tmp-*" beside out, unlocked and older than a couple of seconds. It returns the
// paths removed; errors (a directory that cannot be read or removed) are left for the next
// run, which will try again.
func CleanStale(out string) []string {
	parent, prefix := filepath.Dir(filepath.Clean(out)), tempPrefix(out)
	ents, err := os.ReadDir(parent)
	if err != nil {
		return nil
	}
	var removed []string
	for _, e := range ents {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), prefix) {
			continue
		}
		p := filepath.Join(parent, e.Name())
		if removeIfStale(p) {
			removed = append(removed, p)
		}
	}
	return removed
}

// removeIfStale removes dir when no process holds its lock and it is old enough, holding the
// lock itself meanwhile so two cleaners do not race.
func removeIfStale(dir string) bool {
	f, err := os.Open(dir)
	if err != nil {
		return false
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || time.Since(st.ModTime()) < staleAfter {
		return false
	}
	if tryLock(f) != nil {
		return false // a live writer (or no flock here): leave it
	}
	return os.RemoveAll(dir) == nil
}

// errBusy is a lock another process holds.
var errBusy = errors.New("locked by another process")

// LockDir takes an exclusive lock on dir for as long as the process lives or until unlock is
// called; a directory another live process has locked is ErrLocked. Where flock is not
// supported it locks nothing and succeeds.
func LockDir(dir string) (unlock func(), err error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	if err := tryLock(f); err != nil {
		f.Close()
		if errors.Is(err, errBusy) {
			return nil, fmt.Errorf("%s: %w", dir, ErrLocked)
		}
		return func() {}, nil
	}
	return func() { f.Close() }, nil
}
