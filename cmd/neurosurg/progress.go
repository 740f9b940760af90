package main

import (
	"os"

	"github.com/schollz/progressbar/v3"
	"github.com/urfave/cli/v3"
	"golang.org/x/term"
)

// bar is a progress bar with ETA on stderr when it is a terminal; silent otherwise.
type bar struct{ pb *progressbar.ProgressBar }

func newByteBar(cmd *cli.Command, total int64, what string) *bar {
	return newBar(cmd, total, what, true)
}

func newBar(cmd *cli.Command, total int64, what string, bytes bool) *bar {
	w := cmd.Root().ErrWriter
	if f, ok := w.(*os.File); !ok || !term.IsTerminal(int(f.Fd())) {
		return &bar{}
	}
	opts := []progressbar.Option{progressbar.OptionSetWriter(w), progressbar.OptionSetDescription(what),
		progressbar.OptionShowCount(), progressbar.OptionSetPredictTime(true), progressbar.OptionClearOnFinish()}
	if bytes {
		opts = append(opts, progressbar.OptionShowBytes(true))
	}
	return &bar{pb: progressbar.NewOptions64(total, opts...)}
}

func (b *bar) set(n int64) {
	if b.pb != nil {
		b.pb.Set64(n)
	}
}

func (b *bar) finish() {
	if b.pb != nil {
		b.pb.Finish()
	}
}
