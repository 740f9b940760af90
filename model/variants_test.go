package model_test

import (
	"context"
	"math"
	"path/filepath"
	"slices"
	"testing"

	"github.com/neurosurg/neurosurg/formats/safetensors"
	"github.com/neurosurg/neurosurg/model"
	"github.com/neurosurg/neurosurg/model/kernels"
	"github.com/neurosurg/neurosurg/model/synth"
)

// longStoryIDs is a stories260K prompt long enough (≥ 64 tokens) for prefill to take the GEMM
// attention path (16 rows and more), which is where a variant's bf16 rounding would show.
func longStoryIDs(t *testing.T, m *model.Model) []int32 {
	t.Helper()
	ids, err := m.Tokenizer.Encode("Once upon a time, there was a little girl named Lily. She loved to play outside in the park "+
		"with her big red ball. One day, she saw a small dog under a tree. The dog was sad because it was lost. "+
		"Lily gave the dog some of her cookies and they played together until the sun went down.", true)
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) < 64 {
		t.Fatalf("prompt has %d tokens, want ≥ 64", len(ids))
	}
	return ids
}

// allLogits runs ids under the kernel variant named and returns the logits at every position.
func allLogits(t *testing.T, m *model.Model, variant string, ids []int32) []float32 {
	t.Helper()
	prev := kernels.Use(variant)
	defer kernels.Use(prev)
	if kernels.Active() != variant {
		t.Fatalf("variant %s not selected (active %s)", variant, kernels.Active())
	}
	r, err := m.Forward(context.Background(), [][]int32{ids}, model.ForwardOptions{AllLogits: true})
	if err != nil {
		t.Fatal(err)
	}
	return r.Logits[0]
}

// sharesExactKernels reports whether variant v computes f32 products with the f32-exact
// variant's kernels (the bf16 variant does, for everything but BF16 weights): its logits on an
// F32 or F16 checkpoint must then equal the exact variant's bit for bit. Other variants (avx2,
// generic: CI forces each in turn) sum in another order.
func sharesExactKernels(v string) bool { return v == exactVariant() || v == "avx512bf16" }

// exactVariant is the f32-exact SIMD variant when the CPU has it, else the pure-Go path.
func exactVariant() string {
	if slices.Contains(kernels.Variants(), "avx512") {
		return "avx512"
	}
	return "generic"
}

// An F32 checkpoint computes in f32 under every kernel variant, the default included (docs/
// guide.md): on a long stories260K prompt every variant's logits equal the f32-exact
// variant's — bit for bit for the default, which shares its f32 kernels, and within 5e-5 (f32
// summation order; measured 1.5e-5) for the others — and the float64 reference's within 5e-5. The default variant of an AVX512_BF16 CPU once rounded
// attention's keys and values to bf16 whatever the weights' dtype (17 tokens: 16.139 vs 16.111).
func TestF32CheckpointIsF32UnderEveryVariant(t *testing.T) {
	m := openModel(t, stories)
	ids := longStoryIDs(t, m)
	exact := allLogits(t, m, exactVariant(), ids)
	want := refForward(t, m.Checkpoint(), m.Config(), ids)
	V := m.Config().Vocab
	for _, v := range kernels.Variants() {
		got := allLogits(t, m, v, ids)
		var vsExact, vsRef float64
		for p := range want {
			for j, w := range want[p] {
				vsExact = max(vsExact, math.Abs(float64(got[p*V+j]-exact[p*V+j])))
				vsRef = max(vsRef, math.Abs(float64(got[p*V+j])-w))
			}
		}
		t.Logf("%s: max |Δlogit| %.3g vs %s, %.3g vs float64 (%d tokens)", v, vsExact, exactVariant(), vsRef, len(ids))
		if sharesExactKernels(v) && vsExact != 0 {
			t.Errorf("default variant %s differs from %s by %.3g on an F32 checkpoint", v, exactVariant(), vsExact)
		}
		if vsExact > 5e-5 || vsRef > 5e-5 {
			t.Errorf("%s: max |Δlogit| %.3g vs %s, %.3g vs float64 (want ≤ 5e-5 each)", v, vsExact, exactVariant(), vsRef)
		}
	}
}

// F16 checkpoints compute in f32 as well: the default variant equals the f32-exact one there
// too. BF16 checkpoints are the one case where the default may round (TestDefaultVariantPrecisionOnBF16).
func TestF16CheckpointIsF32UnderDefaultVariant(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "m")
	if err := synth.Convert(context.Background(), stories, dir, safetensors.F16); err != nil {
		t.Fatal(err)
	}
	m := openModel(t, dir)
	ids := longStoryIDs(t, m)
	def, exact := allLogits(t, m, kernels.Active(), ids), allLogits(t, m, exactVariant(), ids)
	tol := float32(0)
	if !sharesExactKernels(kernels.Active()) {
		tol = 5e-5 // a forced avx2 or generic default sums in another order
	}
	for i := range exact {
		if d := def[i] - exact[i]; d > tol || d < -tol {
			t.Fatalf("F16 checkpoint: default variant %s logit %d = %g, %s %g", kernels.Active(), i, def[i], exactVariant(), exact[i])
		}
	}
}

// A BF16 checkpoint under a variant that rounds activations to bf16 still rounds attention's
// keys and values: its long-prompt logits differ from the f32-exact variant's (the test of the
// rounding's size is TestDefaultVariantPrecisionOnBF16).
func TestBF16CheckpointStillRoundsAttention(t *testing.T) {
	if !slices.Contains(kernels.Variants(), "avx512bf16") {
		t.Skip("no AVX512_BF16 on this CPU")
	}
	dir := filepath.Join(t.TempDir(), "m")
	if err := synth.Convert(context.Background(), stories, dir, safetensors.BF16); err != nil {
		t.Fatal(err)
	}
	m := openModel(t, dir)
	ids := longStoryIDs(t, m)
	fast, exact := allLogits(t, m, "avx512bf16", ids), allLogits(t, m, "avx512", ids)
	var d float64
	for i := range exact {
		d = max(d, math.Abs(float64(fast[i]-exact[i])))
	}
	t.Logf("BF16 checkpoint: avx512bf16 vs avx512 max |Δlogit| %.3g", d)
	if d == 0 {
		t.Error("avx512bf16 computed a BF16 checkpoint f32-exact")
	}
}
