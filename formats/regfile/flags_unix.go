//go:build unix

package regfile

import "golang.org/x/sys/unix"

// openFlags keeps the open of a FIFO from blocking until a writer comes.
const openFlags = unix.O_NONBLOCK
