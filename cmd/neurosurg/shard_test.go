package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// record --shard i/N for every i, then stats merge of the parts in a scrambled order, is the
// single pass's stats file byte for byte; an incomplete set of shards is refused.
func TestRecordShardsMergeCLI(t *testing.T) {
	tmp := t.TempDir()
	ckpt, data := "../../testdata/stories260K", "../../examples/stories-generated.jsonl"
	rec := func(out string, extra ...string) {
		t.Helper()
		args := append([]string{"record", ckpt, "--data", data, "--concept", "Lily", "--miner", "--out", out}, extra...)
		if _, e, code := runCLI(t, args...); code != 0 {
			t.Fatalf("%v: exit %d: %s", args, code, e)
		}
	}
	single := filepath.Join(tmp, "single.st")
	rec(single)
	var parts []string
	for i := 0; i < 4; i++ {
		p := filepath.Join(tmp, fmt.Sprintf("part-%d.st", i))
		rec(p, "--shard", fmt.Sprintf("%d/4", i))
		parts = append(parts, p)
	}
	merged := filepath.Join(tmp, "merged.st")
	order := []string{parts[2], parts[0], parts[3], parts[1]}
	if _, e, code := runCLI(t, append([]string{"stats", "merge", "--out", merged}, order...)...); code != 0 {
		t.Fatalf("merge: exit %d: %s", code, e)
	}
	a, _ := os.ReadFile(single)
	b, _ := os.ReadFile(merged)
	if len(a) == 0 || !bytes.Equal(a, b) {
		t.Error("merged shards differ from the single pass")
	}
	_, e, code := runCLI(t, "stats", "merge", "--out", filepath.Join(tmp, "bad.st"), parts[0], parts[1], parts[3])
	if code != exitError || !strings.Contains(e, "shard 2/4 is missing") {
		t.Errorf("incomplete merge: exit %d: %s", code, e)
	}
}
