package main

import (
	"github.com/neurosurg/neurosurg/formats/outpath"
)

// checkOut refuses, as a usage error, an output that resolves to one of the command's inputs,
// into an input directory, or to a directory that holds an input.
func checkOut(out string, inputs ...string) error {
	if err := outpath.Check(out, inputs...); err != nil {
		return usageErrorf("%v", err)
	}
	return nil
}

// valid turns a library's verdict on option values into a usage error.
func valid(err error) error {
	if err != nil {
		return usageErrorf("%v", err)
	}
	return nil
}
