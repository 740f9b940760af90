//go:build !purego && !noasm

package kernels

import "golang.org/x/sys/unix"

// enableAMX asks Linux for the process's permission to use AMX tile data
// (arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)); without it the first tile
// instruction faults. False when the kernel refuses (older than 5.16, or a signal stack too
// small for the tile state).
func enableAMX() bool {
	const archReqXcompPerm, xfeatureXtiledata = 0x1023, 18
	_, _, errno := unix.Syscall(unix.SYS_ARCH_PRCTL, archReqXcompPerm, xfeatureXtiledata, 0)
	return errno == 0
}
