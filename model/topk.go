package model

import (
	"math"
	"sort"
)

// TopEntry is one of the top-K next tokens.
type TopEntry struct {
	ID    int32   `json:"id"`
	Token string  `json:"token"`
	Logit float32 `json:"logit"`
	Prob  float64 `json:"prob"`
}

// TopK lists the k largest logits with their decoded tokens and probabilities.
func TopK(logits []float32, k int, decode func([]int32) string) []TopEntry {
	lp := LogSoftmax(logits)
	idx := make([]int, len(logits))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return logits[idx[a]] > logits[idx[b]] })
	k = max(0, min(k, len(idx)))
	out := make([]TopEntry, k)
	for i := range out {
		id := idx[i]
		// Rounded so the output does not depend on the kernel's last bits.
		out[i] = TopEntry{ID: int32(id), Token: decode([]int32{int32(id)}),
			Logit: float32(math.Round(float64(logits[id])*1000) / 1000), Prob: math.Round(math.Exp(lp[id])*1e4) / 1e4}
	}
	return out
}
