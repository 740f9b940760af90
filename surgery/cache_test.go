package surgery

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/neurosurg/neurosurg/formats/atomicfile"
)

func TestMain(m *testing.M) {
	// Keep the weights' hash cache of these tests out of the user's cache directory.
	dir, _ := os.MkdirTemp("", "neurosurg-cache-")
	os.Setenv("XDG_CACHE_HOME", dir)
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// copyStories copies stories260K (regular files) to dir/name, for tests that change it.
func copyStories(t *testing.T, dir string) string {
	t.Helper()
	dst := filepath.Join(dir, "stories")
	os.MkdirAll(dst, 0o755)
	ents, _ := os.ReadDir("../testdata/stories260K")
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue
		}
		b, err := os.ReadFile(filepath.Join("../testdata/stories260K", e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dst, e.Name()), b, 0o644)
	}
	return dst
}

func recipeFor(t *testing.T, dir, model string) string {
	t.Helper()
	abs, _ := filepath.Abs("../testdata")
	r := "model: " + model + "\nout: out/ckpt\ndata: " + abs + `/samples/stories-animals-food.jsonl
locate: {method: dape, top_rate: 0.05, label: animals}
patch: {ops: [zero]}
verify: {max_tokens: 4, random_seed: 1, gates: ["kl<1"]}
`
	p := filepath.Join(dir, "r.yaml")
	if err := os.WriteFile(p, []byte(r), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// cacheFile returns the one cache file of work matching pattern.
func cacheFile(t *testing.T, work, pattern string) string {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join(work, pattern))
	if len(m) != 1 {
		t.Fatalf("cache files %s: %v", pattern, m)
	}
	return m[0]
}

// A cache entry that does not read (an empty report or stats file left by a full disk, a
// torn edit) is recomputed, not an error every rerun trips on.
func TestUnreadableCacheEntriesHeal(t *testing.T) {
	dir := t.TempDir()
	p := recipeFor(t, dir, copyStories(t, dir))
	res, err := Run(context.Background(), p, Options{})
	if err != nil {
		t.Fatal(err)
	}
	work := res.Out + ".surgery"
	for _, c := range []struct {
		entry  string
		damage func(path string)
		cached []string
	}{
		{"report-*.json", func(p string) { os.WriteFile(p, nil, 0o644) }, []string{"record", "locate", "patch"}},
		// Only the damaged stage reruns: it makes the same file again, so the stages after it
		// find their entries under the same keys.
		{"stats-*.st", func(p string) { os.WriteFile(p, nil, 0o644) }, []string{"locate", "patch", "verify"}},
		{"edit-random-*.nsd", func(p string) { b, _ := os.ReadFile(p); os.WriteFile(p, b[:len(b)/2], 0o644) }, []string{"record", "locate", "verify"}},
		{"neurons-random-*.json", func(p string) { os.WriteFile(p, []byte("{"), 0o644) }, []string{"record", "patch", "verify"}},
	} {
		entry := cacheFile(t, work, c.entry)
		c.damage(entry)
		os.RemoveAll(res.Out)
		var log []string
		got, err := Run(context.Background(), p, Options{Log: func(s string) { log = append(log, s) }})
		if err != nil {
			t.Fatalf("%s damaged: %v", c.entry, err)
		}
		if !got.Written || !slices.Equal(got.Cached, c.cached) {
			t.Errorf("%s damaged: written %v, cached %v, want %v", c.entry, got.Written, got.Cached, c.cached)
		}
		if !strings.Contains(strings.Join(log, "\n"), "does not read") {
			t.Errorf("%s damaged: the log does not say the entry was recomputed: %q", c.entry, log)
		}
		if st, err := os.Stat(entry); err != nil || st.Size() == 0 {
			t.Errorf("%s: not rewritten (%v)", c.entry, err)
		}
	}
}

// Changing weights under the same header (same layout, same config) changes the cache keys:
// statistics are recorded again from the new weights and the edit is made for them.
func TestChangedWeightsMissTheCache(t *testing.T) {
	dir := t.TempDir()
	model := copyStories(t, dir)
	p := recipeFor(t, dir, model)
	res, err := Run(context.Background(), p, Options{})
	if err != nil {
		t.Fatal(err)
	}
	shard := filepath.Join(model, "model.safetensors")
	b, _ := os.ReadFile(shard)
	b[len(b)-3] ^= 0x10 // a bit of the last tensor's last value: the header stays as it was
	os.WriteFile(shard, b, 0o644)
	os.RemoveAll(res.Out)
	again, err := Run(context.Background(), p, Options{})
	if err != nil {
		t.Fatalf("rerun on changed weights: %v", err)
	}
	// Locate may come from the cache: it depends on the statistics alone, and this bit of
	// the last tensor need not change them. Record and patch depend on the weights.
	if slices.Contains(again.Cached, "record") || slices.Contains(again.Cached, "patch") {
		t.Errorf("stages %v served from the cache of other weights", again.Cached)
	}
	if again.Files["stats"] == res.Files["stats"] {
		t.Error("the statistics of other weights were reused")
	}
}

// A run killed mid-write leaves a hidden temporary checkpoint beside out and temporary cache
// files in the work directory; the next run removes them. A run already using the work
// directory keeps a second one out.
func TestLeftoversOfKilledRunsAreRemoved(t *testing.T) {
	dir := t.TempDir()
	p := recipeFor(t, dir, "../testdata/stories260K")
	abs, _ := filepath.Abs("../testdata/stories260K")
	os.WriteFile(p, []byte(strings.Replace(string(must(os.ReadFile(p))), "../testdata/stories260K", abs, 1)), 0o644)
	out := filepath.Join(dir, "out", "ckpt")
	work := out + ".surgery"
	os.MkdirAll(work, 0o755)
	partial := filepath.Join(dir, "out", ".ckpt.tmp-12345")
	os.MkdirAll(partial, 0o755)
	os.WriteFile(filepath.Join(partial, "model.safetensors"), make([]byte, 1<<20), 0o644)
	old := time.Now().Add(-time.Hour)
	os.Chtimes(partial, old, old)
	tmpStats := filepath.Join(work, ".tmp-stats-0123.st-999")
	os.WriteFile(tmpStats, make([]byte, 1<<16), 0o644)

	unlock, err := atomicfile.LockDir(work)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Run(context.Background(), p, Options{}); !errors.Is(err, atomicfile.ErrLocked) {
		t.Errorf("with the work directory locked: err %v, want ErrLocked", err)
	}
	unlock()
	if _, err := Run(context.Background(), p, Options{Log: func(string) {}}); err != nil {
		t.Fatal(err)
	}
	for _, left := range []string{partial, tmpStats} {
		if _, err := os.Stat(left); !os.IsNotExist(err) {
			t.Errorf("%s is still there", left)
		}
	}
	ents, _ := os.ReadDir(filepath.Join(dir, "out"))
	for _, e := range ents {
		if strings.Contains(e.Name(), ".tmp-") {
			t.Errorf("temporary %s left beside the output", e.Name())
		}
	}
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}
