// Package safetensors reads (memory-mapped, zero-copy) and writes (streaming) safetensors files,
// validating every header against the file it describes.
package safetensors
