// Package formats is the root of neurosurg's file formats: safetensors files, Hugging Face
// checkpoint directories, and neurosurg's own files (edit, stats, neuron set, recipe, report).
// Nothing under formats imports another neurosurg package outside formats.
package formats
