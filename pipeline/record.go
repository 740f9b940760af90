package pipeline

import (
	"context"

	"github.com/neurosurg/neurosurg/formats/samples"
	"github.com/neurosurg/neurosurg/locate"
	"github.com/neurosurg/neurosurg/model"
)

// RecordParams are record's options, named as the CLI's flags and the recipe's record keys.
type RecordParams struct {
	Concepts           []string // words whose generating steps feed contribution scores
	ConceptsFromLabels bool     // every sample label is also a concept word
	Product            bool     // contribution scores with a·u (recipe coefficient: au)
	MINER              bool     // MINER's per-sample importance scores
	Chat               bool     // wrap each text in the chat template
	PerSample          bool     // each sample's activations at a concept's first generating step
	ConceptsFromText   bool     // every content word of a sample's text is also a concept word
	// ShuffleSeed, when not nil, permutes every image's patches before encoding (Pan et al.'s
	// patch-order control, model.ShuffleMedia).
	ShuffleSeed *uint64
	// Shard, when not nil, records only that block of the samples (locate.Shard); the shards'
	// stats merge (locate.MergeAll) to a single pass's, byte for byte.
	Shard    *locate.Shard
	Progress func(done, total int)
}

// Record runs the samples through m and accumulates the per-label statistics of its FFN
// neurons, stamped with m's fingerprint. into, when not nil, is extended: its samples are
// skipped (resume). It is the one place the CLI and surgery call locate.Record.
func Record(ctx context.Context, m *model.Model, data []samples.Sample, into *locate.Stats, p RecordParams) (*locate.Stats, error) {
	o := locate.RecordOptions{Concepts: p.Concepts, ConceptsFromLabels: p.ConceptsFromLabels, Product: p.Product, MINER: p.MINER,
		Chat: p.Chat, PerSample: p.PerSample, Progress: p.Progress, Skip: map[string]bool{}, Shard: p.Shard,
		ConceptsFromText: p.ConceptsFromText, ShuffleSeed: p.ShuffleSeed}
	if c := m.Checkpoint(); c != nil {
		o.ModelHash = c.Fingerprint()
	}
	if into != nil {
		for _, id := range into.SampleIDs {
			o.Skip[id] = true
		}
	}
	return locate.Record(ctx, m, data, into, o)
}
