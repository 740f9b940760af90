//go:build !purego && !noasm && !linux

package kernels

// enableAMX: tile data needs the operating system's consent, which only the Linux path asks
// for; elsewhere the AMX variant is not offered.
func enableAMX() bool { return false }
