package locate

import (
	"math"
	"math/big"
	"math/rand/v2"
	"testing"
)

// fixedBig is the exact value of f.
func fixedBig(f Fixed) *big.Float {
	i := new(big.Int).Lsh(big.NewInt(f.Hi), 64)
	i.Add(i, new(big.Int).SetUint64(f.Lo))
	return new(big.Float).SetPrec(0).SetMantExp(new(big.Float).SetInt(i), -64)
}

// toFixed rounds to the nearest multiple of 2⁻⁶⁴ and Float rounds back to the nearest float64,
// checked against math/big on values across the range, ties included.
func TestFixedConversions(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	vals := []float64{0, 1, -1, 0.5, 0x1p-64, 0x1p-65, 3 * 0x1p-66, 0x1p-66, -0x1p-65, 0x1p61, -0x1p61 - 0x1p9, 1e-30, math.MaxFloat32 / 1e30,
		0x1.fffffffffffffp61, -0x1.fffffffffffffp61, 0.1, -12345.678}
	for i := 0; i < 20000; i++ {
		e := rng.IntN(130) - 68
		v := math.Ldexp(rng.Float64(), e)
		if rng.IntN(2) == 0 {
			v = -v
		}
		vals = append(vals, v)
	}
	for _, v := range vals {
		f, ok := toFixed(v)
		if !ok {
			t.Fatalf("toFixed(%v) refused", v)
		}
		// Exact: |f - v| ≤ 2⁻⁶⁵, and on a tie f is even.
		d := new(big.Float).SetPrec(1000).Sub(fixedBig(f), new(big.Float).SetFloat64(v))
		d.Abs(d)
		if d.Cmp(big.NewFloat(0x1p-65)) > 0 || d.Cmp(big.NewFloat(0x1p-65)) == 0 && f.Lo&1 == 1 {
			t.Fatalf("toFixed(%v) = %+v, off by %v", v, f, d)
		}
		want, _ := fixedBig(f).Float64()
		if got := f.Float(); math.Float64bits(got) != math.Float64bits(want) && !(got == 0 && want == 0) {
			t.Fatalf("Float(%+v) = %v, want %v", f, got, want)
		}
		if math.Abs(v) >= 0x1p-11 && f.Float() != v {
			t.Fatalf("%v does not round trip: %v", v, f.Float())
		}
	}
	for _, v := range []float64{math.NaN(), math.Inf(1), math.Inf(-1), 0x1p62, -0x1p62, 1e300} {
		if _, ok := toFixed(v); ok {
			t.Errorf("toFixed(%v) accepted", v)
		}
	}
}

// Sums of many 128-bit values are correctly rounded (sticky bits included) and overflow is
// reported, not wrapped.
func TestFixedAdd(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for i := 0; i < 2000; i++ {
		var acc Fixed
		exact := new(big.Float).SetPrec(1000)
		for k := 0; k < 50; k++ {
			v := math.Ldexp(rng.NormFloat64(), rng.IntN(80)-60)
			f, _ := toFixed(v)
			var ok bool
			if acc, ok = acc.add(f); !ok {
				t.Fatal("overflow")
			}
			exact.Add(exact, fixedBig(f))
		}
		want, _ := exact.Float64()
		if got := acc.Float(); got != want {
			t.Fatalf("sum %v, want %v", got, want)
		}
	}
	big1, _ := toFixed(0x1.fffffffffffffp61)
	acc := Fixed{}
	var ok bool
	for i := 0; i < 2; i++ {
		if acc, ok = acc.add(big1); !ok {
			t.Fatalf("overflow after %d terms just under 2^62", i)
		}
	}
	if _, ok = acc.add(big1); ok {
		t.Error("a sum above 2^63 accepted")
	}
	neg := big1.neg()
	acc = Fixed{}
	for i := 0; i < 2; i++ {
		acc, _ = acc.add(neg)
	}
	if acc.Float() != -0x1.fffffffffffffp62 {
		t.Errorf("negative sum %v", acc.Float())
	}
	if _, ok = acc.add(neg); ok {
		t.Error("a sum below -2^63 accepted")
	}
}

// The exact accumulator makes float sums associative: any grouping and order of the same terms
// gives the same bits (float64 addition would not).
func TestExactSumsAssociative(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	terms := make([]float64, 1000)
	for i := range terms {
		terms[i] = math.Ldexp(rng.NormFloat64(), rng.IntN(40)-20)
	}
	sum := func(order []int, groups int) float64 {
		view, x := []float64{0}, []Fixed{{}}
		for g := 0; g < groups; g++ {
			gv, gx := []float64{0}, []Fixed{{}}
			for k := g; k < len(order); k += groups {
				addTerm(gv, gx, 0, terms[order[k]])
			}
			addExact(view, x, gv, gx)
		}
		return view[0]
	}
	base := sum(rng.Perm(len(terms)), 1)
	for _, groups := range []int{1, 2, 3, 7, 1000} {
		if got := sum(rng.Perm(len(terms)), groups); math.Float64bits(got) != math.Float64bits(base) {
			t.Errorf("%d groups: %v, one pass %v", groups, got, base)
		}
	}
	// Non-finite data and sums out of range fall back to float64.
	for _, c := range []struct {
		start, term, want float64
	}{{1, math.Inf(1), math.Inf(1)}, {1, 0x1p62, 0x1p62 + 1}, {0x1.8p62, 0x1.8p62, 0x1.8p63}} {
		view, x := []float64{c.start}, []Fixed{{}}
		ensureExact(view, &x)
		addTerm(view, x, 0, c.term)
		if view[0] != c.want || x[0] != (Fixed{}) {
			t.Errorf("%v + %v: %v %+v", c.start, c.term, view[0], x[0])
		}
		addTerm(view, x, 0, 1) // and stays float64
		if x[0] != (Fixed{}) {
			t.Errorf("%v + %v + 1: exact %+v", c.start, c.term, x[0])
		}
	}
}
