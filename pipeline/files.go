package pipeline

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"

	"github.com/neurosurg/neurosurg/formats/atomicfile"
	"github.com/neurosurg/neurosurg/formats/neuronset"
	"github.com/neurosurg/neurosurg/locate"
)

// SHA256 is the hex sha256 of b.
func SHA256(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// FileSHA256 is the hex sha256 of the file at path, read as a stream (stats and data files
// of a MINER-sized run are hundreds of MB).
func FileSHA256(path string) (string, error) {
	f, err := os.Open(path) // os errors name the path
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// ReadStats reads a stats file and the sha256 of its bytes (what a neuron set selected from it
// records as stats_sha256).
func ReadStats(path string) (*locate.Stats, string, error) {
	st, err := locate.ReadStats(path)
	if err != nil {
		return nil, "", err
	}
	h, err := FileSHA256(path)
	if err != nil {
		return nil, "", err
	}
	return st, h, nil
}

// WriteSet writes a neuron set whole or not at all.
func WriteSet(path string, s *neuronset.Set) error {
	b, err := s.Marshal()
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if err := atomicfile.Write(path, b); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// PlotLayers draws the set's per-layer distribution over the stats' layers as an SVG file,
// whole or not at all.
func PlotLayers(set *neuronset.Set, st *locate.Stats, path string) error {
	return locate.PlotLayers(set, st.Geometry(), path)
}
