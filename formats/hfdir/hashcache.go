package hfdir

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"

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

// ShardSHA256 returns the sha256 of shard i's file: from the hash cache when stat says the
// file is unchanged since it was hashed, otherwise by reading it (and remembering it, so the
// next run and the writer need not read it again).
func (c *Checkpoint) ShardSHA256(i int) string {
	f := c.Shards[i]
	if h, ok := sharedCache().get(f.Path); ok {
		return h
	}
	hashedInputs.Add(1)
	h := sha256.New()
	h.Write(ShardHeader(f, nil))
	for _, t := range f.Tensors { // contiguous and in file order: this is the file's sha256
		b, _ := f.Bytes(t.Name)
		for off := 0; off < len(b); off += chunk {
			end := min(off+chunk, len(b))
			h.Write(b[off:end])
			f.Release(t.Offsets[0]+int64(off), int64(end-off))
		}
	}
	s := hex.EncodeToString(h.Sum(nil))
	sharedCache().put(f.Path, s)
	return s
}

// ContentSHA256 names the checkpoint by its content: config.json, the index and every shard's
// sha256. Fingerprint reads only headers; this changes with any weight, so caches keyed by it
// never serve results computed from other weights under the same layout.
func (c *Checkpoint) ContentSHA256() string {
	h := sha256.New()
	h.Write(c.ConfigJSON)
	h.Write(c.IndexJSON)
	for i, name := range c.ShardNames {
		fmt.Fprintf(h, "\x00%s\x00%s", name, c.ShardSHA256(i))
	}
	sharedCache().save()
	return hex.EncodeToString(h.Sum(nil))
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
