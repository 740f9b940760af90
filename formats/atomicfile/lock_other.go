//go:build !unix

package atomicfile

import (
	"errors"
	"os"
)

// tryLock has no flock to take here: nothing is locked, so nothing is ever cleaned as stale.
func tryLock(*os.File) error { return errors.ErrUnsupported }
