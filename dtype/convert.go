package dtype

import (
	"encoding/binary"
	"fmt"
	"math"
)

// IsFloat reports whether d is a float dtype that ToFloat32/FromFloat32 convert.
func (d DType) IsFloat() bool { return d == F32 || d == BF16 || d == F16 || d == F64 }

// ToFloat32 decodes len(dst) elements of src (little-endian dtype d).
func ToFloat32(dst []float32, src []byte, d DType) error {
	if len(src) < len(dst)*d.Size() || !d.IsFloat() {
		return fmt.Errorf("dtype: cannot decode %d %s elements from %d bytes", len(dst), d, len(src))
	}
	for i := range dst {
		switch d {
		case F32:
			dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(src[4*i:]))
		case F64:
			dst[i] = float32(math.Float64frombits(binary.LittleEndian.Uint64(src[8*i:])))
		case BF16:
			dst[i] = math.Float32frombits(uint32(binary.LittleEndian.Uint16(src[2*i:])) << 16)
		case F16:
			dst[i] = F16ToFloat32(binary.LittleEndian.Uint16(src[2*i:]))
		}
	}
	return nil
}

// FromFloat32 encodes src into dst as dtype d, rounding to nearest even.
func FromFloat32(dst []byte, src []float32, d DType) error {
	if len(dst) < len(src)*d.Size() || !d.IsFloat() {
		return fmt.Errorf("dtype: cannot encode %d %s elements into %d bytes", len(src), d, len(dst))
	}
	for i, v := range src {
		switch d {
		case F32:
			binary.LittleEndian.PutUint32(dst[4*i:], math.Float32bits(v))
		case F64:
			binary.LittleEndian.PutUint64(dst[8*i:], math.Float64bits(float64(v)))
		case BF16:
			binary.LittleEndian.PutUint16(dst[2*i:], Float32ToBF16(v))
		case F16:
			binary.LittleEndian.PutUint16(dst[2*i:], Float32ToF16(v))
		}
	}
	return nil
}

// Float32ToBF16 rounds to nearest even; NaN stays a (quiet) NaN.
func Float32ToBF16(f float32) uint16 {
	b := math.Float32bits(f)
	if b&0x7fffffff > 0x7f800000 {
		return uint16(b>>16) | 0x40
	}
	return uint16((b + 0x7fff + (b>>16)&1) >> 16)
}

// F16ToFloat32 converts an IEEE half.
func F16ToFloat32(h uint16) float32 {
	sign := uint32(h>>15) << 31
	exp := uint32(h>>10) & 0x1f
	man := uint32(h) & 0x3ff
	switch {
	case exp == 0 && man == 0:
		return math.Float32frombits(sign)
	case exp == 0:
		e := uint32(113)
		for man&0x400 == 0 {
			man <<= 1
			e--
		}
		return math.Float32frombits(sign | e<<23 | (man&0x3ff)<<13)
	case exp == 0x1f:
		return math.Float32frombits(sign | 0xff<<23 | man<<13)
	}
	return math.Float32frombits(sign | (exp+112)<<23 | man<<13)
}

// Float32ToF16 rounds to nearest even, with overflow to ±Inf and gradual underflow.
func Float32ToF16(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	exp := int32(b>>23) & 0xff
	man := b & 0x7fffff
	if exp == 0xff {
		if man != 0 {
			return sign | 0x7e00
		}
		return sign | 0x7c00
	}
	e := exp - 127 + 15
	if e >= 0x1f {
		return sign | 0x7c00
	}
	if e <= 0 {
		if e < -10 {
			return sign
		}
		m := man | 0x800000
		shift := uint32(14 - e)
		half := uint32(1) << (shift - 1)
		r := m >> shift
		rem := m & ((1 << shift) - 1)
		if rem > half || (rem == half && r&1 == 1) {
			r++
		}
		return sign | uint16(r)
	}
	r := uint32(e)<<10 | man>>13
	rem := man & 0x1fff
	if rem > 0x1000 || (rem == 0x1000 && r&1 == 1) {
		r++
	}
	return sign | uint16(r)
}
