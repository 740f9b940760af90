package model

import (
	"context"
	"math"
	"slices"
	"testing"

	"github.com/neurosurg/neurosurg/formats/safetensors"
)

// RowPermutation is a bijection of 0..n-1, the same for the same seed and stream, and another
// one for another seed or stream.
func TestRowPermutation(t *testing.T) {
	for _, n := range []int{1, 2, 5, 257} {
		p := RowPermutation(n, 7, 0)
		seen := make([]bool, n)
		for _, v := range p {
			if v < 0 || v >= n || seen[v] {
				t.Fatalf("n=%d: %v is not a permutation", n, p)
			}
			seen[v] = true
		}
		if q := RowPermutation(n, 7, 0); !slices.Equal(p, q) {
			t.Errorf("n=%d: seed 7 gave %v then %v", n, p, q)
		}
	}
	a := RowPermutation(257, 7, 0)
	for _, b := range [][]int{RowPermutation(257, 8, 0), RowPermutation(257, 7, 1)} {
		if slices.Equal(a, b) {
			t.Error("another seed or stream drew the same permutation of 257 rows")
		}
	}
}

// ShuffleMedia moves row perm[i] to row i of the media of the kind, leaves other kinds and the
// caller's input alone.
func TestShuffleMediaMovesRows(t *testing.T) {
	img := Media{Kind: "image", Rows: 4, Features: []float32{0, 0, 1, 1, 2, 2, 3, 3}, Grid: [3]int{1, 2, 2}, Size: [2]int{30, 40}, Text: []int32{101, 7, 102}}
	aud := Media{Kind: "audio", Rows: 2, Features: []float32{9, 8}}
	x := Input{Tokens: []int32{1, 3, 3, 3, 3, 5}, Media: []Media{img, aud}}
	y, perms, err := ShuffleMedia(x, "image", 11)
	if err != nil {
		t.Fatal(err)
	}
	if len(perms) != 1 || len(perms[0]) != 4 {
		t.Fatalf("perms %v, want one of 4 rows", perms)
	}
	for i, src := range perms[0] {
		if got := y.Media[0].Features[2*i : 2*i+2]; got[0] != float32(src) || got[1] != float32(src) {
			t.Errorf("row %d: %v, want row %d of the input", i, got, src)
		}
	}
	// What the encoder reads beside the rows (Qwen2-VL's grid, LLaVA-NeXT's picture size,
	// InstructBLIP's instruction) is kept.
	if g := y.Media[0]; g.Grid != img.Grid || g.Size != img.Size || !slices.Equal(g.Text, img.Text) || g.Rows != 4 {
		t.Errorf("shuffled medium %+v lost the unshuffled one's grid, size or text", g)
	}
	if !slices.Equal(x.Media[0].Features, []float32{0, 0, 1, 1, 2, 2, 3, 3}) {
		t.Errorf("the caller's features changed: %v", x.Media[0].Features)
	}
	if !slices.Equal(y.Media[1].Features, aud.Features) || !slices.Equal(y.Tokens, x.Tokens) {
		t.Errorf("audio %v / tokens %v changed", y.Media[1].Features, y.Tokens)
	}
	if _, _, err := ShuffleMedia(Input{Media: []Media{{Kind: "image", Rows: 3, Features: make([]float32, 4)}}}, "image", 1); err == nil {
		t.Error("4 features in 3 rows: want an error")
	}
}

// On the test family (an encoder without positions) shuffling the patches permutes the
// encoder's activations the same way; the language model then reads the image in another
// order, and its logits change.
func TestShuffleMediaTinyVLM(t *testing.T) {
	m, _ := tinyVLM(t, safetensors.F32)
	ctx := context.Background()
	x := tinyVLMInput()
	if got := m.MediaTokens().MediaEnd(x); got != 8 {
		t.Errorf("MediaEnd %d, want 8 (BOS, 9, six placeholders)", got)
	}
	if id, ok := m.Placeholder("image"); !ok || id != 3 {
		t.Errorf("Placeholder(image) = %d, %v; want 3", id, ok)
	}
	y, perms, err := ShuffleMedia(x, "image", 3)
	if err != nil {
		t.Fatal(err)
	}
	if slices.Equal(perms[0], []int{0, 1, 2, 3, 4, 5}) {
		t.Fatal("seed 3 drew the identity: pick another seed for the test")
	}
	grab := func(in Input) (*visionLayer0Tap, []float32) {
		tap := &visionLayer0Tap{}
		r, err := m.ForwardInputs(ctx, []Input{in}, ForwardOptions{Taps: []Tap{tap}})
		if err != nil {
			t.Fatal(err)
		}
		return tap, r.Logits[0]
	}
	a, la := grab(x)
	b, lb := grab(y)
	N := a.neurons
	for i, src := range perms[0] {
		for j := range N {
			if d := math.Abs(float64(b.act[i*N+j] - a.act[src*N+j])); d > 1e-4 {
				t.Fatalf("vision layer 0: shuffled row %d neuron %d differs from row %d by %g", i, j, src, d)
			}
		}
	}
	moved := 0.0
	for i := range la {
		moved = max(moved, math.Abs(float64(la[i]-lb[i])))
	}
	if moved < 1e-6 {
		t.Error("shuffling the patches left the logits unchanged")
	}
}

// visionLayer0Tap keeps the activations of the vision encoder's layer 0.
type visionLayer0Tap struct {
	act     []float32
	neurons int
}

func (a *visionLayer0Tap) FFN(e *FFNEvent) {
	if e.Site == (Site{Module: "vision", Layer: 0}) {
		a.act, a.neurons = append([]float32(nil), e.Act...), e.Neurons
	}
}
