package hfdir

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"

	"github.com/neurosurg/neurosurg/formats/atomicfile"
)

// The hash cache remembers the sha256 of large files keyed by what stat says about them (path,
// size, inode, mtime and ctime in nanoseconds), as git's index does, so that applying edits
// to the same base again does not re-read it. Any write to a file changes its ctime, so a
// changed file misses the cache. NEUROSURG_HASH_CACHE=off disables it.
type hashCache struct {
	mu      sync.Mutex
	path    string
	entries map[string]string
	dirty   bool
}

var (
	cacheOnce sync.Once
	cache     *hashCache
)

func sharedCache() *hashCache {
	cacheOnce.Do(func() {
		if os.Getenv("NEUROSURG_HASH_CACHE") == "off" {
			return
		}
		dir, err := os.UserCacheDir()
		if err != nil {
			return
		}
		cache = loadHashCache(filepath.Join(dir, "neurosurg", "sha256-cache.json"))
	})
	return cache
}

// loadHashCache reads the cache file at path; a missing or corrupt file is an empty cache, and
// an entry whose value is not a sha256 is dropped, never used as a hash.
func loadHashCache(path string) *hashCache {
	c := &hashCache{path: path, entries: map[string]string{}}
	if b, err := os.ReadFile(path); err == nil {
		var entries map[string]string
		json.Unmarshal(b, &entries)
		for k, v := range entries {
			if isSHA256(v) {
				c.entries[k] = v
			}
		}
	}
	return c
}

// statKey identifies a file's content as far as stat can tell.
func statKey(path string) (string, bool) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", false
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return "", false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return "", false
	}
	return fmt.Sprintf("%s|%d|%d|%d.%d|%d.%d", abs, fi.Size(), st.Ino, st.Mtim.Sec, st.Mtim.Nsec, st.Ctim.Sec, st.Ctim.Nsec), true
}

func (c *hashCache) get(path string) (string, bool) {
	if c == nil {
		return "", false
	}
	k, ok := statKey(path)
	if !ok {
		return "", false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	h, ok := c.entries[k]
	return h, ok
}

// putIfUnchanged records sum for path if stat still says what it said (key) before the file
// was hashed: a file changed while it was being read gets no entry.
func (c *hashCache) putIfUnchanged(path, key, sum string) {
	if c == nil {
		return
	}
	if k, ok := statKey(path); ok && k == key {
		c.mu.Lock()
		c.entries[k] = sum
		c.dirty = true
		c.mu.Unlock()
	}
}

func (c *hashCache) put(path, sum string) {
	if c == nil {
		return
	}
	if k, ok := statKey(path); ok {
		c.mu.Lock()
		c.entries[k] = sum
		c.dirty = true
		c.mu.Unlock()
	}
}

// save writes the cache, dropping entries whose files no longer match.
func (c *hashCache) save() {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.dirty {
		return
	}
	if len(c.entries) > 10000 {
		c.entries = map[string]string{} // bounded: start over
	}
	b, _ := json.Marshal(c.entries)
	if os.MkdirAll(filepath.Dir(c.path), 0o755) == nil {
		atomicfile.Write(c.path, b)
	}
	c.dirty = false
}

// isSHA256 reports whether s is a sha256 as neurosurg writes it: 64 lower-case hex digits.
func isSHA256(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !(s[i] >= '0' && s[i] <= '9' || s[i] >= 'a' && s[i] <= 'f') {
			return false
		}
	}
	return true
}
