//go:build !unix

package regfile

// openFlags: no FIFOs to block on here.
const openFlags = 0
