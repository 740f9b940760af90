package hfdir

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"
)

// ShardSHA256 is the file's sha256, read once and then served by the stat-keyed cache until
// the file changes; ContentSHA256 follows any weight, not only the headers.
func TestContentSHA256(t *testing.T) {
	dir := makeSharded(t)
	open := func() *Checkpoint {
		c, err := Open(dir)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	c := open()
	before := hashedInputs.Load()
	for i, name := range c.ShardNames {
		b, _ := os.ReadFile(filepath.Join(dir, name))
		h := sha256.Sum256(b)
		if got := c.ShardSHA256(i); got != hex.EncodeToString(h[:]) {
			t.Errorf("%s: %s, file sha256 %x", name, got, h)
		}
	}
	first := c.ContentSHA256()
	if n := hashedInputs.Load() - before; n != int64(len(c.ShardNames)) {
		t.Errorf("hashed %d shards for %d", n, len(c.ShardNames))
	}
	if again := open().ContentSHA256(); again != first || hashedInputs.Load()-before != int64(len(c.ShardNames)) {
		t.Error("an unchanged checkpoint was hashed again or named differently")
	}
	// One weight byte changes, the header does not: the fingerprint stays, the content name
	// does not.
	shard := filepath.Join(dir, c.ShardNames[1])
	b, _ := os.ReadFile(shard)
	b[len(b)-1] ^= 1
	os.WriteFile(shard, b, 0o644)
	c2 := open()
	if c2.Fingerprint() != c.Fingerprint() {
		t.Fatal("the header changed")
	}
	if c2.ContentSHA256() == first {
		t.Error("a changed weight kept the content name")
	}
}
