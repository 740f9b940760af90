// Package hfdir reads and writes Hugging Face checkpoint directories: config.json, single-file
// or sharded safetensors with model.safetensors.index.json, and tag-along files.
package hfdir
