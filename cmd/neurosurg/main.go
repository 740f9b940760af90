// Command neurosurg finds, edits and ships the neurons of (multimodal) language models.
package main

import (
	"context"
	"os"
)

func main() {
	os.Exit(run(context.Background(), os.Args, os.Stdout, os.Stderr))
}
