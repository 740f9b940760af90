package locate

import (
	"math"
	"math/bits"
)

// Sums across samples (an activation sum, a concept's activation sum, MINER's per-dataset
// importance sums) are kept exactly, as 128-bit fixed-point integers, so that adding them is
// associative: recording in one pass and merging any number of shards in any grouping give the
// same bits. Within one sample the sums are float64 in a fixed order (a sample is never split
// between shards); each sample's partial sum is rounded once to the fixed-point grid and added
// exactly. The float64 a stats user reads (LabelStats.Sum, …) is the exact value correctly
// rounded.

// Fixed is a signed 128-bit fixed-point number with 64 fraction bits: Hi is the integer part
// (floor), Lo the fraction in units of 2⁻⁶⁴. It holds |x| < 2⁶³ at a resolution of 2⁻⁶⁴.
type Fixed struct {
	Hi int64
	Lo uint64
}

// fixedTermLimit bounds one term: far above any activation sum of one sample, and low enough
// that 2 of them cannot overflow.
const fixedTermLimit = 0x1p62

// toFixed rounds a finite x with |x| < 2⁶² to the nearest multiple of 2⁻⁶⁴ (ties to even).
func toFixed(x float64) (Fixed, bool) {
	if !(math.Abs(x) < fixedTermLimit) {
		return Fixed{}, false
	}
	if x == 0 {
		return Fixed{}, true
	}
	frac, exp := math.Frexp(math.Abs(x))
	m := uint64(frac * (1 << 53)) // exact: x = m·2^(exp-53), m < 2⁵³
	var hi, lo uint64
	// In units of 2⁻⁶⁴, x = m·2^(exp+11).
	switch sh := exp + 11; {
	case sh >= 64:
		hi = m << (sh - 64)
	case sh >= 0:
		hi, lo = m>>(64-sh), m<<sh
	case sh < -54:
		// below half a unit: rounds to 0
	default:
		k := uint(-sh)
		q, rem, half := m>>k, m&(1<<k-1), uint64(1)<<(k-1)
		if rem > half || rem == half && q&1 == 1 {
			q++
		}
		lo = q
	}
	f := Fixed{int64(hi), lo}
	if x < 0 {
		f = f.neg()
	}
	return f, true
}

func (a Fixed) neg() Fixed {
	lo, c := bits.Add64(^a.Lo, 1, 0)
	return Fixed{int64(^uint64(a.Hi) + c), lo}
}

// add is a+b, false on overflow.
func (a Fixed) add(b Fixed) (Fixed, bool) {
	lo, c := bits.Add64(a.Lo, b.Lo, 0)
	hi := int64(uint64(a.Hi) + uint64(b.Hi) + c)
	if (a.Hi >= 0) == (b.Hi >= 0) && (hi >= 0) != (a.Hi >= 0) {
		return Fixed{}, false
	}
	return Fixed{hi, lo}, true
}

// Float is a correctly rounded to the nearest float64.
func (a Fixed) Float() float64 {
	neg := a.Hi < 0
	if neg {
		a = a.neg()
	}
	hi, lo := uint64(a.Hi), a.Lo
	var v float64
	if hi == 0 {
		v = math.Ldexp(float64(lo), -64) // one rounding: uint64 → float64
	} else {
		// The top 64 bits, with a sticky bit for everything below them: rounding those to 53
		// bits rounds the 128-bit value correctly. (lo>>64 is 0 in Go: n = 0 needs no case.)
		n := uint(bits.LeadingZeros64(hi))
		top := hi<<n | lo>>(64-n)
		if lo<<n != 0 {
			top |= 1
		}
		v = math.Ldexp(float64(top), -int(n))
	}
	if neg {
		v = -v
	}
	return v
}

// A pair (view []float64, exact []Fixed) is an accumulator. Normally exact[i] is the sum and
// view[i] its rounding. Where a sum cannot be exact — NaN or ±Inf in the data, a term of 2⁶² or
// more, a total past 2⁶³ — the element falls back to float64: exact[i] = 0 and view[i] ≠ 0 is
// the value, and it adds as float64 does (not associatively; nothing real gets there).

// floatOnly tells an element that fell back to float64.
func floatOnly(v float64, x Fixed) bool { return x == (Fixed{}) && v != 0 }

// ensureExact makes the exact accumulator x agree with view where someone set view by hand
// (stats made in code, or read from a version 2 file, which has no exact sums): such an
// element's exact value is view's rounded to the fixed-point grid, and view is rounded to it.
func ensureExact(view []float64, x *[]Fixed) {
	if len(*x) != len(view) {
		*x = make([]Fixed, len(view))
	}
	xs := *x
	for i, v := range view {
		if math.Float64bits(xs[i].Float()) == math.Float64bits(v) {
			continue
		}
		if f, ok := toFixed(v); ok {
			xs[i], view[i] = f, f.Float()
		} else {
			xs[i] = Fixed{}
		}
	}
}

// addTerm adds the float64 term t to element i.
func addTerm(view []float64, x []Fixed, i int, t float64) {
	if !floatOnly(view[i], x[i]) {
		if f, ok := toFixed(t); ok {
			if sum, ok := x[i].add(f); ok {
				x[i], view[i] = sum, sum.Float()
				return
			}
		}
	}
	view[i] += t
	x[i] = Fixed{}
}

// addExact adds the accumulator (sv, sx) into (dv, dx).
func addExact(dv []float64, dx []Fixed, sv []float64, sx []Fixed) {
	for i := range dv {
		if !floatOnly(dv[i], dx[i]) && !floatOnly(sv[i], sx[i]) {
			if sum, ok := dx[i].add(sx[i]); ok {
				dx[i], dv[i] = sum, sum.Float()
				continue
			}
		}
		dv[i] += sv[i]
		dx[i] = Fixed{}
	}
}
