//go:build !unix

package hfdir

// statKey reports no key where stat has no inode and change time: without them a rewritten
// file could keep its key, so every hash is computed afresh instead of trusted from the cache.
func statKey(string) (string, bool) { return "", false }
