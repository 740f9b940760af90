//go:build unix && !linux

package safetensors

// adviseHuge is a no-op where the kernel has no transparent huge pages to ask for.
func adviseHuge([]byte) {}
