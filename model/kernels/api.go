package kernels

import (
	"encoding/binary"
	"math"
)

// DType is the storage type of a weight matrix.
type DType uint8

const (
	F32 DType = iota
	BF16
	F16
)

// Size is the size of one element in bytes.
func (d DType) Size() int {
	if d == F32 {
		return 4
	}
	return 2
}

func (d DType) String() string {
	return [...]string{"f32", "bf16", "f16"}[d]
}

// MatMul computes out[i*n+j] = Σ_p x[i*k+p] · W[j*k+p] for i < m, j < n: activations x (m×k,
// row-major f32) times the transpose of W (n×k, row-major, raw little-endian bytes of dtype dt,
// i.e. a Hugging Face Linear weight [out_features, in_features]).
func MatMul(out, x []float32, w []byte, dt DType, m, n, k int) {
	if len(out) < m*n || len(x) < m*k || len(w) < n*k*dt.Size() {
		panic("kernels: MatMul: slice too short for shape")
	}
	row := make([]float32, k)
	for j := 0; j < n; j++ {
		ToFloat32(row, w[j*k*dt.Size():(j+1)*k*dt.Size()], dt)
		for i := 0; i < m; i++ {
			out[i*n+j] = Dot(x[i*k:(i+1)*k], row)
		}
	}
}

// ToFloat32 converts len(dst) elements of src (raw little-endian bytes of dtype dt) to f32.
func ToFloat32(dst []float32, src []byte, dt DType) {
	if len(src) < len(dst)*dt.Size() {
		panic("kernels: ToFloat32: src too short")
	}
	switch dt {
	case F32:
		for i := range dst {
			dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(src[4*i:]))
		}
	case BF16:
		for i := range dst {
			dst[i] = math.Float32frombits(uint32(binary.LittleEndian.Uint16(src[2*i:])) << 16)
		}
	case F16:
		for i := range dst {
			dst[i] = F16ToF32(binary.LittleEndian.Uint16(src[2*i:]))
		}
	}
}

// F16ToF32 converts one IEEE half-precision value.
func F16ToF32(h uint16) float32 {
	sign := uint32(h>>15) << 31
	exp := uint32(h>>10) & 0x1f
	man := uint32(h) & 0x3ff
	switch {
	case exp == 0 && man == 0:
		return math.Float32frombits(sign)
	case exp == 0: // subnormal
		for man&0x400 == 0 {
			man <<= 1
			exp--
		}
		exp++
		man &= 0x3ff
		return math.Float32frombits(sign | (exp+112)<<23 | man<<13)
	case exp == 0x1f:
		return math.Float32frombits(sign | 0xff<<23 | man<<13)
	}
	return math.Float32frombits(sign | (exp+112)<<23 | man<<13)
}

// Dot is Σ a[i]·b[i].
func Dot(a, b []float32) float32 {
	b = b[:len(a)]
	var s float32
	for i := range a {
		s += a[i] * b[i]
	}
	return s
}

// Axpy computes y += alpha·x.
func Axpy(alpha float32, x, y []float32) {
	y = y[:len(x)]
	for i := range x {
		y[i] += alpha * x[i]
	}
}

// RMSNorm writes out[i] = x[i] / sqrt(mean(x²) + eps) · weight[i].
func RMSNorm(out, x, weight []float32, eps float32) {
	var ss float64
	for _, v := range x {
		ss += float64(v) * float64(v)
	}
	inv := float32(1 / math.Sqrt(ss/float64(len(x))+float64(eps)))
	for i, v := range x {
		out[i] = v * inv * weight[i]
	}
}

// SiLU computes x[i] = x[i]·σ(x[i]) in place.
func SiLU(x []float32) {
	for i, v := range x {
		x[i] = v / (1 + float32(math.Exp(float64(-v))))
	}
}

// Mul computes x[i] *= y[i].
func Mul(x, y []float32) {
	y = y[:len(x)]
	for i := range x {
		x[i] *= y[i]
	}
}

// Softmax normalises x in place to probabilities.
func Softmax(x []float32) {
	if len(x) == 0 {
		return
	}
	m := x[0]
	for _, v := range x {
		if v > m {
			m = v
		}
	}
	var s float64
	for i, v := range x {
		e := float32(math.Exp(float64(v - m)))
		x[i] = e
		s += float64(e)
	}
	inv := float32(1 / s)
	for i := range x {
		x[i] *= inv
	}
}
