package model

// This file is the contract between the runtime and the packages that observe or edit it
// (locate's record, verify, patch's runtime-mask checks). The runtime owner may extend it;
// changing the meaning of a field breaks them. An event's slices are the runtime's working
// buffers, reused by the next step: a tap that keeps values past its call copies them.

// Site names one group of FFN neurons: a module ("llm" for the language decoder; "vision",
// "audio", "projector" for encoders) and a layer index within it.
type Site struct {
	Module string
	Layer  int
}

// FFNEvent carries the FFN activations of one layer for one chunk of one sequence.
// For a gated FFN Act holds a = act(gate_proj x); for a plain MLP a = act(fc1 x + b).
// Rows are positions Pos0, Pos0+1, … of the sequence. Act is writable: what a tap leaves in
// it is what down_proj (fc2) consumes.
type FFNEvent struct {
	Site    Site
	Seq     int       // index of the sequence in the batch
	Pos0    int       // absolute position of the first row
	Tokens  []int32   // token id of each row (nil for encoders)
	Rows    int       // number of positions in this chunk
	Neurons int       // neurons per row (intermediate size)
	Act     []float32 // Rows × Neurons
	Up      []float32 // Rows × Neurons, u = up_proj x; nil unless a tap asks for it (WantsUp)
}

// AttnEvent carries attention probabilities of one layer for one chunk of one sequence:
// Probs[h][r][c] at index (h*Rows+r)*Cols+c, query row r (position Pos0+r) over key c.
// NonCausal marks the variant MINER's attention-weighted metrics use (softmax over all keys).
// Scores are f32 (q·k/√d with q pre-scaled, as the prefill's GEMM form computes them) under
// every kernel variant.
type AttnEvent struct {
	Site      Site
	Seq       int
	Pos0      int
	Heads     int
	Rows      int
	Cols      int
	NonCausal bool
	// Probs is nil when every tap receiving the event is an AttnMeanTap that reads only Mean.
	Probs []float32
	// Mean is the mean over heads, Rows × Cols at r*Cols+c: Σ_h Probs[h][r][c]·(1/Heads),
	// added in head order from 0 with one fused multiply-add per head. Always set.
	Mean []float32
}

// Tap observes (and may edit) FFN activations during a forward pass.
type Tap interface {
	FFN(e *FFNEvent)
}

// UpTap is implemented by taps that also need u = up_proj x.
type UpTap interface {
	Tap
	WantsUp() bool
}

// AttnTap is implemented by taps that need attention probabilities.
type AttnTap interface {
	Attention(e *AttnEvent)
	// WantsAttention reports whether causal and/or non-causal probabilities are wanted.
	WantsAttention() (causal, nonCausal bool)
}

// AttnMeanTap is implemented by attention taps that read only AttnEvent.Mean: when every tap
// receiving a variant's event is one, the runtime never materialises the heads × rows × cols
// probabilities (MINER's record reads the mean over heads; Probs at 1,500 tokens is 126 MB
// per layer of Qwen2-0.5B).
type AttnMeanTap interface {
	AttnTap
	MeanOnly() bool
}

// ResidualEvent carries the residual stream after a decoder layer (the logit lens input).
type ResidualEvent struct {
	Site   Site
	Seq    int
	Pos0   int
	Rows   int
	Hidden []float32 // Rows × hidden size; read-only
}

// ResidualTap is implemented by taps that need the residual stream after each layer.
type ResidualTap interface {
	Residual(e *ResidualEvent)
}
