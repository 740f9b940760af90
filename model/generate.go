package model

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
)

// GenerateOptions control Generate. Greedy unless Temperature > 0.
type GenerateOptions struct {
	MaxTokens   int
	Temperature float32
	TopK        int
	TopP        float32
	Seed        uint64
	Stop        []int32 // generation of a sequence ends after one of these (it is kept)
	Taps        []Tap
	Mask        *Mask
	// KeepLogits keeps the full next-token logits of every generated step.
	KeepLogits bool
}

// ErrOption reports an option outside its range.
var ErrOption = errors.New("model: option out of range")

// Validate reports the first option outside its range; Generate calls it, and a caller can
// call it before loading a model to fail fast.
func (o GenerateOptions) Validate() error {
	switch {
	case o.MaxTokens < 0:
		return fmt.Errorf("%w: max tokens %d is negative", ErrOption, o.MaxTokens)
	case o.Temperature < 0 || isNaNOrInf(o.Temperature):
		return fmt.Errorf("%w: temperature %g: want a finite number ≥ 0", ErrOption, o.Temperature)
	case o.TopK < 0:
		return fmt.Errorf("%w: top-k %d is negative (0 keeps every token)", ErrOption, o.TopK)
	case !(o.TopP >= 0 && o.TopP <= 1):
		return fmt.Errorf("%w: top-p %g: want a number in [0, 1] (0 keeps every token)", ErrOption, o.TopP)
	}
	return nil
}

// ValidateTop checks the k of a top-k listing (logits, logit lens, a neuron's top tokens).
func ValidateTop(k int) error {
	if k < 1 {
		return fmt.Errorf("%w: top %d: want at least 1", ErrOption, k)
	}
	return nil
}

func isNaNOrInf(f float32) bool { return math.IsNaN(float64(f)) || math.IsInf(float64(f), 0) }

// Generation is one prompt's continuation.
type Generation struct {
	Prompt []int32
	Tokens []int32
	Logits [][]float32 // per generated token, when KeepLogits
	Stop   bool        // ended on a stop token
	// AtLimit: ended because the sequence reached the model's position limit
	// (max_position_embeddings) before MaxTokens.
	AtLimit bool
}

// Generate continues every prompt (with a KV cache; prompts of different lengths are batched).
// Sampling is deterministic for a seed.
func (m *Model) Generate(ctx context.Context, prompts [][]int32, o GenerateOptions) ([]Generation, error) {
	in := make([]Input, len(prompts))
	for i, p := range prompts {
		in[i].Tokens = p
	}
	return m.GenerateInputs(ctx, in, o)
}

// GenerateInputs continues every input: a prefill with its embedding spans, media and
// positions, then decoded tokens at the positions that follow (the largest given + 1).
func (m *Model) GenerateInputs(ctx context.Context, inputs []Input, o GenerateOptions) ([]Generation, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if err := o.Mask.validate(m); err != nil {
		return nil, err
	}
	inputs, err := m.prepareInputs(ctx, inputs, ForwardOptions{Taps: o.Taps, Mask: o.Mask})
	if err != nil {
		return nil, err
	}
	prompts := make([][]int32, len(inputs))
	for i, x := range inputs {
		prompts[i] = x.Tokens
	}
	out := make([]Generation, len(prompts))
	states := make([]*seqState, len(prompts))
	limit := m.cfg.PositionLimit()
	for i, p := range prompts {
		if len(p) == 0 {
			return nil, errorf("prompt %d is empty", i)
		}
		if limit > 0 && len(p) > limit {
			return nil, tooLong(fmt.Sprintf("prompt %d", i), len(p), limit)
		}
		out[i].Prompt = p
		// The KV cache is sized for the whole generation up front (decode then allocates
		// nothing), but not past the position limit, nor by more than a few thousand tokens
		// however large MaxTokens is: a longer generation grows it as it goes.
		n := len(p) + min(max(o.MaxTokens, 0), 4096)
		if limit > 0 {
			n = min(n, limit)
		}
		states[i] = m.newState(n)
	}
	rng := rand.New(rand.NewPCG(o.Seed, o.Seed^0x9e3779b97f4a7c15))
	stop := map[int32]bool{}
	for _, s := range o.Stop {
		stop[s] = true
	}
	active := make([]int, len(prompts))
	for i := range active {
		active[i] = i
	}
	toks := prompts
	st := states
	// The next step's lists are built beside the current ones, in two sets of buffers used in
	// turn, and each sequence's next token lives in its own slot of last.
	last := make([]int32, len(prompts))
	var spare struct {
		active []int
		toks   [][]int32
		states []*seqState
	}
	// One scratch for the whole loop: every token reuses the same buffers (pick reads the
	// logits, KeepLogits copies them).
	sc := m.takeScratch()
	defer m.keepScratch(sc)
	for step := 0; step < o.MaxTokens && len(active) > 0; step++ {
		var in []Input
		if step == 0 {
			in = inputs
		}
		logits, _, err := m.step(ctx, st, toks, in, o.Taps, o.Mask, false, sc)
		if err != nil {
			var nf *NonFiniteError
			if errors.As(err, &nf) {
				nf.Seq = active[nf.Seq] // step numbers the active sequences
			}
			return nil, err
		}
		nextActive, nextToks, nextStates := spare.active[:0], spare.toks[:0], spare.states[:0]
		for j, i := range active {
			l := logits[j]
			id := pick(l, o, rng)
			g := &out[i]
			g.Tokens = append(g.Tokens, id)
			if o.KeepLogits {
				g.Logits = append(g.Logits, append([]float32(nil), l...))
			}
			if stop[id] {
				g.Stop = true
				continue
			}
			if limit > 0 && states[i].pos >= limit {
				g.AtLimit = step+1 < o.MaxTokens
				continue
			}
			nextActive = append(nextActive, i)
			last[i] = id
			nextToks = append(nextToks, last[i:i+1])
			nextStates = append(nextStates, states[i])
		}
		if step > 0 { // the first step's lists are the caller's prompts
			spare.active, spare.toks, spare.states = active, toks, st
		}
		active, toks, st = nextActive, nextToks, nextStates
	}
	return out, nil
}

// pick chooses the next token: argmax, or a sample after temperature, top-k and top-p.
func pick(logits []float32, o GenerateOptions, rng *rand.Rand) int32 {
	if o.Temperature <= 0 {
		return int32(Argmax(logits))
	}
	type cand struct {
		id int
		p  float64
	}
	c := make([]cand, len(logits))
	mx := logits[Argmax(logits)]
	var sum float64
	for i, l := range logits {
		p := math.Exp(float64((l - mx) / o.Temperature))
		c[i] = cand{i, p}
		sum += p
	}
	sort.SliceStable(c, func(a, b int) bool { return c[a].p > c[b].p })
	if o.TopK > 0 && o.TopK < len(c) {
		c = c[:o.TopK]
	}
	sum = 0
	for _, x := range c {
		sum += x.p
	}
	if o.TopP > 0 && o.TopP < 1 {
		var acc float64
		for i, x := range c {
			acc += x.p / sum
			if acc >= float64(o.TopP) {
				c = c[:i+1]
				break
			}
		}
		sum = 0
		for _, x := range c {
			sum += x.p
		}
	}
	r := rng.Float64() * sum
	for _, x := range c {
		r -= x.p
		if r <= 0 {
			return int32(x.id)
		}
	}
	return int32(c[len(c)-1].id)
}

// Argmax is the index of the largest value (the first on ties).
func Argmax(v []float32) int {
	best := 0
	for i, x := range v {
		if x > v[best] {
			best = i
		}
	}
	return best
}

// LogSoftmax returns log-probabilities of logits.
func LogSoftmax(logits []float32) []float64 {
	mx := float64(logits[Argmax(logits)])
	var s float64
	for _, l := range logits {
		s += math.Exp(float64(l) - mx)
	}
	lse := mx + math.Log(s)
	out := make([]float64, len(logits))
	for i, l := range logits {
		out[i] = float64(l) - lse
	}
	return out
}

// LogProbs returns log p(continuation[i] | prompt, continuation[:i]) for each i.
func (m *Model) LogProbs(ctx context.Context, prompt, continuation []int32, o ForwardOptions) ([]float64, error) {
	return m.LogProbsInput(ctx, Input{Tokens: prompt}, continuation, o)
}

// LogProbsInput is LogProbs of a prompt given as an Input (with media): the continuation
// follows its tokens.
func (m *Model) LogProbsInput(ctx context.Context, in Input, continuation []int32, o ForwardOptions) ([]float64, error) {
	prompt := in.Tokens
	in = in.Extend(continuation)
	o.AllLogits = true
	res, err := m.ForwardInputs(ctx, []Input{in}, o)
	if err != nil {
		return nil, err
	}
	V := m.cfg.Vocab
	out := make([]float64, len(continuation))
	for i, id := range continuation {
		row := len(prompt) - 1 + i
		out[i] = LogSoftmax(res.Logits[0][row*V : (row+1)*V])[id]
	}
	return out, nil
}
