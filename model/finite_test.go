package model_test

import (
	"context"
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/neurosurg/neurosurg/dtype"
	"github.com/neurosurg/neurosurg/formats/hfdir"
	"github.com/neurosurg/neurosurg/formats/safetensors"
	"github.com/neurosurg/neurosurg/model"
)

// replaced serves a checkpoint with some tensors' bytes swapped for others.
type replaced struct {
	*hfdir.Checkpoint
	with map[string][]byte
}

func (r replaced) Tensor(name string) (safetensors.TensorInfo, []byte, error) {
	info, b, err := r.Checkpoint.Tensor(name)
	if nb, ok := r.with[name]; ok {
		b = nb
	}
	return info, b, err
}

// withValue returns a copy of tensor name's bytes with element i (every one for i < 0) set to
// v, in its dtype.
func withValue(t *testing.T, c *hfdir.Checkpoint, name string, i int, v float32) []byte {
	t.Helper()
	info, b, err := c.Tensor(name)
	if err != nil {
		t.Fatal(err)
	}
	nb := append([]byte(nil), b...)
	es := info.DType.Size()
	for j := 0; j*es < len(nb); j++ {
		if j == i || i < 0 {
			dtype.FromFloat32(nb[j*es:(j+1)*es], []float32{v}, info.DType)
		}
	}
	return nb
}

// Every command's forward pass goes through step: a NaN or Inf anywhere in the weights (or an
// overflow of finite ones) makes it fail naming the position and the tensor, never answer.
func TestNonFiniteWeightsAreRefused(t *testing.T) {
	c, err := hfdir.Open("../testdata/stories260K")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	nan, inf := float32(math.NaN()), float32(math.Inf(1))
	cases := []struct {
		name   string
		tensor string
		elem   int // -1: every element
		value  float32
		blame  string // tensor named in the error, "" for "activations overflowed"
	}{
		{"NaN in a down_proj", "model.layers.2.mlp.down_proj.weight", 17, nan, "model.layers.2.mlp.down_proj.weight"},
		{"+Inf in a q_proj", "model.layers.0.self_attn.q_proj.weight", 3, inf, "model.layers.0.self_attn.q_proj.weight"},
		{"-Inf in the lm_head", "lm_head.weight", 5, -inf, "lm_head.weight"},
		{"NaN in the final norm", "model.norm.weight", 0, nan, "model.norm.weight"},
		{"finite but overflowing norm", "model.norm.weight", -1, 3e38, ""},
	}
	ctx := context.Background()
	prompt := []int32{1, 403, 407, 261, 378}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m, err := model.Load(c.ConfigJSON, replaced{c, map[string][]byte{tc.tensor: withValue(t, c, tc.tensor, tc.elem, tc.value)}})
			if err != nil {
				t.Fatal(err)
			}
			check := func(what string, err error) {
				t.Helper()
				var nf *model.NonFiniteError
				if !errors.Is(err, model.ErrNonFinite) || !errors.As(err, &nf) {
					t.Fatalf("%s: err = %v, want a non-finite error", what, err)
				}
				if nf.Tensor != tc.blame {
					t.Errorf("%s: blames %q, want %q (%v)", what, nf.Tensor, tc.blame, err)
				}
				if tc.blame != "" && (nf.Index != tc.elem || !strings.Contains(err.Error(), tc.blame)) {
					t.Errorf("%s: element %d, want %d: %v", what, nf.Index, tc.elem, err)
				}
				if tc.blame == "" && !strings.Contains(err.Error(), "overflowed") {
					t.Errorf("%s: %v does not say the activations overflowed", what, err)
				}
			}
			_, err = m.Forward(ctx, [][]int32{prompt}, model.ForwardOptions{})
			check("forward", err)
			_, err = m.Forward(ctx, [][]int32{{1, 2}, prompt}, model.ForwardOptions{AllLogits: true})
			check("forward, all logits", err)
			_, err = m.Generate(ctx, [][]int32{prompt}, model.GenerateOptions{MaxTokens: 4})
			check("generate", err)
			_, err = m.LogitLens(ctx, prompt, []int{-1}, 3)
			check("lens", err)
		})
	}
}

func TestFiniteWeightsScanClean(t *testing.T) {
	m, err := model.Open("../testdata/stories260K")
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if err := m.ScanWeights(); err != nil {
		t.Fatal(err)
	}
	if name, _, _ := m.FirstNonFiniteWeight(); name != "" {
		t.Fatalf("blames %s", name)
	}
}

// A sequence may not run past max_position_embeddings (512 for stories260K): a longer prompt is
// refused with an error that says so, and a generation that reaches it stops there.
func TestPositionLimit(t *testing.T) {
	m, err := model.Open("../testdata/stories260K")
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ctx := context.Background()
	seq := func(n int) []int32 {
		s := make([]int32, n)
		for i := range s {
			s[i] = int32(3 + i%400)
		}
		return s
	}
	if _, err := m.Forward(ctx, [][]int32{seq(512)}, model.ForwardOptions{}); err != nil {
		t.Errorf("512 tokens: %v", err)
	}
	for _, f := range []func() error{
		func() error {
			_, err := m.Forward(ctx, [][]int32{seq(3), seq(513)}, model.ForwardOptions{})
			return err
		},
		func() error {
			_, err := m.Generate(ctx, [][]int32{seq(600)}, model.GenerateOptions{MaxTokens: 1})
			return err
		},
	} {
		err := f()
		if !errors.Is(err, model.ErrTooLong) || !strings.Contains(err.Error(), "max_position_embeddings") {
			t.Errorf("err = %v, want ErrTooLong naming max_position_embeddings", err)
		}
	}
	g, err := m.Generate(ctx, [][]int32{seq(508), seq(10)}, model.GenerateOptions{MaxTokens: 20})
	if err != nil {
		t.Fatal(err)
	}
	if len(g[0].Tokens) != 5 || !g[0].AtLimit {
		t.Errorf("508-token prompt: %d tokens generated (at limit %v), want 5 up to position 512", len(g[0].Tokens), g[0].AtLimit)
	}
	if g[1].AtLimit || (len(g[1].Tokens) != 20 && !g[1].Stop) {
		t.Errorf("10-token prompt: %d tokens, at limit %v", len(g[1].Tokens), g[1].AtLimit)
	}
}
