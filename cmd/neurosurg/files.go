package main

import "github.com/neurosurg/neurosurg/formats/atomicfile"

// writeFileAtomic writes through a temporary file and a rename, so a failure leaves nothing.
func writeFileAtomic(path string, b []byte) error { return atomicfile.Write(path, b) }
