package kernels

import (
	"math"
	"sync"
	"unsafe"

	"github.com/neurosurg/neurosurg/dtype"
	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/gonum"
)

// DType is the storage type of a weight matrix: F32, BF16 or F16 (package dtype's names).
type DType = dtype.DType

// The weight dtypes the kernels compute on.
const (
	F32  = dtype.F32
	BF16 = dtype.BF16
	F16  = dtype.F16
)

// MatMul computes out[i*n+j] = Σ_p x[i*k+p] · W[j*k+p] for i < m, j < n: activations x (m×k,
// row-major f32) times the transpose of W (n×k, row-major, raw little-endian bytes of dtype dt,
// i.e. a Hugging Face Linear weight [out_features, in_features]).
func MatMul(out, x []float32, w []byte, dt DType, m, n, k int) {
	if len(out) < m*n || len(x) < m*k || len(w) < n*k*dt.Size() {
		panic("kernels: MatMul: slice too short for shape")
	}
	if k == 0 {
		clear(out[:m*n])
		return
	}
	v := active.Load()
	if v != nil && m <= smallM && dt == BF16 && v.gemvBF16 != nil {
		v.gemvBF16(out, x, w, m, n, k)
		return
	}
	if v != nil && m > 1 && v.matmul != nil {
		v.matmul(out, x, w, dt, m, n, k)
		return
	}
	// Weight rows are converted block by block (never the whole matrix) and multiplied with
	// gonum's Sgemm (SIMD assembly for f32); blocks are spread over all cores.
	block := 64
	if m == 1 {
		block = 256
	}
	blocks := (n + block - 1) / block
	chunk := 1
	if m*n*k < 1<<16 {
		chunk = blocks
	}
	gonumTasks.Run(blocks, chunk, gonumTask{out: out, x: x, w: w, dt: dt, m: m, n: n, k: k, block: block})
}

// gonumTask is MatMul's gonum path over blocks [b0, b1) of block weight rows.
type gonumTask struct {
	out, x         []float32
	w              []byte
	dt             DType
	m, n, k, block int
}

var gonumTasks TaskPool[gonumTask, *gonumTask]

func (t *gonumTask) Run(b0, b1 int) {
	out, x, w, dt, m, n, k, block := t.out, t.x, t.w, t.dt, t.m, t.n, t.k, t.block
	var buf []float32
	if dt != F32 {
		bp := floats(block * k)
		defer putFloats(bp)
		buf = *bp
	}
	var tmp []float32 // Sgemm's block of the product (Sgemv writes in place)
	if m > 1 {
		tp := floats(m * block)
		defer putFloats(tp)
		tmp = *tp
	}
	es := dt.Size()
	impl := gonum.Implementation{}
	for b := b0; b < b1; b++ {
		j0, j1 := b*block, min((b+1)*block, n)
		var rows []float32
		if dt == F32 {
			rows = f32view(w[j0*k*4 : j1*k*4])
		} else {
			rows = buf[:(j1-j0)*k]
			ToFloat32(rows, w[j0*k*es:j1*k*es], dt)
		}
		nb := j1 - j0
		if m == 1 {
			impl.Sgemv(blas.NoTrans, nb, k, 1, rows, k, x[:k], 1, 0, out[j0:j1], 1)
			continue
		}
		impl.Sgemm(blas.NoTrans, blas.Trans, m, nb, k, 1, x, k, rows, k, 0, tmp[:m*nb], nb)
		for i := 0; i < m; i++ {
			copy(out[i*n+j0:i*n+j1], tmp[i*nb:(i+1)*nb])
		}
	}
}

// Product is one weight of a MatMulShared call: Out[i*N+j] = Σ_p x[i*k+p] · W[j*k+p].
type Product struct {
	Out   []float32
	W     []byte
	DType DType
	N     int
}

// maxProducts is the most products MatMulShared hands a variant at once; more go one by one.
const maxProducts = 4

var productLists freeList[[maxProducts]Product]

// MatMulShared computes several products of the same activations (a layer's q/k/v, or gate
// and up) as MatMul would, one after another, except that kernels which pack the activations
// pack them once, and spread all the weights' panels over the cores together.
func MatMulShared(x []float32, m, k int, ps ...Product) {
	for _, p := range ps {
		if len(p.Out) < m*p.N || len(x) < m*k || len(p.W) < p.N*k*p.DType.Size() {
			panic("kernels: MatMulShared: slice too short for shape")
		}
	}
	if v := active.Load(); v != nil && v.shared != nil && m > 0 && k > 0 && len(ps) <= maxProducts {
		// A call through a func value leaks its arguments: the products go in a pooled array,
		// so the caller's slice of them can stay on its stack.
		l := productLists.get()
		n := copy(l[:], ps)
		done := v.shared(x, m, k, l[:n])
		productLists.put(l)
		if done {
			return
		}
	}
	for _, p := range ps {
		MatMul(p.Out, x, p.W, p.DType, m, p.N, k)
	}
}

// ToFloat32 converts len(dst) elements of src (raw little-endian bytes of dtype dt) to f32.
func ToFloat32(dst []float32, src []byte, dt DType) {
	if err := dtype.ToFloat32(dst, src, dt); err != nil {
		panic("kernels: ToFloat32: " + err.Error())
	}
}

// F16ToF32 converts one IEEE half-precision value.
func F16ToF32(h uint16) float32 { return dtype.F16ToFloat32(h) }

// Dot is Σ a[i]·b[i], accumulated in four lanes (the SIMD kernels' summation order).
func Dot(a, b []float32) float32 {
	b = b[:len(a)]
	if v := active.Load(); v != nil && v.dot != nil {
		return v.dot(a, b)
	}
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= len(a); i += 4 {
		s0 += a[i] * b[i]
		s1 += a[i+1] * b[i+1]
		s2 += a[i+2] * b[i+2]
		s3 += a[i+3] * b[i+3]
	}
	for ; i < len(a); i++ {
		s0 += a[i] * b[i]
	}
	return (s0 + s1) + (s2 + s3)
}

// Axpy computes y += alpha·x.
func Axpy(alpha float32, x, y []float32) {
	y = y[:len(x)]
	if v := active.Load(); v != nil && v.axpy != nil {
		v.axpy(alpha, x, y)
		return
	}
	for i := range x {
		y[i] += alpha * x[i]
	}
}

// RMSNorm writes out[i] = x[i] / sqrt(mean(x²) + eps) · weight[i].
func RMSNorm(out, x, weight []float32, eps float32) {
	if v := active.Load(); v != nil && v.rows != nil && len(x) > 0 {
		ss := v.dot(x, x) // f32 sums over SIMD lanes, as PyTorch's f32 mean of squares
		v.rows.normMul(out, x, weight[:len(x)], float32(1/math.Sqrt(float64(ss)/float64(len(x))+float64(eps))))
		return
	}
	var ss float64
	for _, v := range x {
		ss += float64(v) * float64(v)
	}
	normMulGo(out, x, weight, float32(1/math.Sqrt(ss/float64(len(x))+float64(eps))))
}

func normMulGo(out, x, w []float32, s float32) {
	w = w[:len(x)]
	for i, v := range x {
		out[i] = v * s * w[i]
	}
}

// SiLU computes x[i] = x[i]·σ(x[i]) in place.
func SiLU(x []float32) {
	if v := active.Load(); v != nil && v.silu != nil {
		v.silu(x)
		return
	}
	siluGo(x)
}

func siluGo(x []float32) {
	for i, v := range x {
		x[i] = v / (1 + float32(math.Exp(float64(-v))))
	}
}

// GELU computes x[i] = x[i]·Φ(x[i]) = ½x·erfc(−x/√2) in place (GELU with erf, not the tanh
// approximation), erfc by Numerical Recipes' Chebyshev fit (erfcc: fractional error below
// 1.2e-7 everywhere) times the exponential: within 4e-6 relative of the float64 GELU (the
// AVX-512 kernel, which carries the exponent in two parts, within 4e-7),
// negative for every x < 0 down to where ½x·erfc underflows, positive for every x > 0 (a
// neuron fires exactly when the float64 GELU says it does).
func GELU(x []float32) {
	if v := active.Load(); v != nil && v.gelu != nil {
		v.gelu(x)
		return
	}
	geluGo(x)
}

// geluGo is GELU with the fit's polynomial in float64 and the exponential by Exp.
func geluGo(x []float32) {
	// Pooled: the buffers reach the kernels through a func value, so they would escape.
	bufs := geluBufs.Get().(*[2][256]float32)
	defer geluBufs.Put(bufs)
	ebuf, tbuf := &bufs[0], &bufs[1]
	for len(x) > 0 {
		n := min(len(x), len(ebuf))
		c, e, tt := x[:n], ebuf[:n], tbuf[:n]
		for i, v := range c {
			z := math.Abs(float64(v)) * (1 / math.Sqrt2)
			t := 1 / (1 + 0.5*z)
			tt[i] = float32(t)
			e[i] = float32(-z*z - 1.26551223 + t*(1.00002368+t*(0.37409196+t*(0.09678418+t*(-0.18628806+t*(0.27886807+t*(-1.13520398+t*(1.48851587+t*(-0.82215223+t*0.17087277)))))))))
		}
		Exp(e)
		for i, v := range c {
			erfc := tt[i] * e[i] // erfc(|x|/√2)
			if v >= 0 {
				c[i] = 0.5 * v * (2 - erfc)
			} else {
				c[i] = 0.5 * v * erfc
			}
		}
		x = x[n:]
	}
}

var geluBufs = sync.Pool{New: func() any { return new([2][256]float32) }}

// LayerNorm computes y = (x − mean)/sqrt(var + eps)·w + b over one row, mean and variance in
// float64 (as PyTorch accumulates them wider than its f32 inputs): the normalised value is
// rounded to f32 once, then multiplied by w and b added in f32.
func LayerNorm(y, x, w, b []float32, eps float32) {
	if v := active.Load(); v != nil && v.layerNorm != nil {
		v.layerNorm(y, x, w, b, eps)
		return
	}
	layerNormGo(y, x, w, b, eps)
}

func layerNormGo(y, x, w, b []float32, eps float32) {
	var sum float64
	for _, v := range x {
		sum += float64(v)
	}
	mean := sum / float64(len(x))
	var ss float64
	for _, v := range x {
		dv := float64(v) - mean
		ss += dv * dv
	}
	inv := 1 / math.Sqrt(ss/float64(len(x))+float64(eps))
	for i, v := range x {
		y[i] = float32((float64(v)-mean)*inv)*w[i] + b[i]
	}
}

// RoundBF16 writes src rounded to bf16 (nearest even) into dst[:2·len(src)] as little-endian
// bytes: the rounding the bf16 GEMM packers apply to activations (VCVTNE2PS2BF16 on blocks of
// 32 where the CPU has AVX512_BF16, which reads denormal inputs as zero; dtype's scalar
// conversion elsewhere and for the tail).
func RoundBF16(dst []byte, src []float32) {
	dst = dst[:2*len(src)]
	body := 0
	if roundBF16Blocks != nil && len(src) >= 32 {
		body = len(src) / 32 * 32
		roundBF16Blocks((*uint32)(unsafe.Pointer(&dst[0])), &src[0], body/32)
	}
	for i := body; i < len(src); i++ {
		h := dtype.Float32ToBF16(src[i])
		dst[2*i], dst[2*i+1] = byte(h), byte(h>>8)
	}
}

// roundBF16Blocks rounds 32·blocks f32 to bf16 pairs in order; nil without AVX512_BF16.
var roundBF16Blocks func(dst *uint32, src *float32, blocks int)

// Scale computes x[i] *= s.
func Scale(x []float32, s float32) {
	if v := active.Load(); v != nil && v.rows != nil && len(x) > 0 {
		v.rows.scale(x, s)
		return
	}
	scaleGo(x, s)
}

// Exp computes x[i] = e^x[i] in place for x[i] ≤ 0 (larger values are not its job: the
// SIMD exponential is softmax's, whose arguments are x − max); below about −87 the result is 0.
func Exp(x []float32) {
	if v := active.Load(); v != nil && v.expSubSum != nil {
		v.expSubSum(x, 0)
		return
	}
	for i, v := range x {
		x[i] = float32(math.Exp(float64(v)))
	}
}

// Mul computes x[i] *= y[i].
func Mul(x, y []float32) {
	if v := active.Load(); v != nil && v.rows != nil && len(x) > 0 {
		v.rows.mul(x, y[:len(x)])
		return
	}
	mulGo(x, y)
}

func mulGo(x, y []float32) {
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
	v := active.Load()
	if v != nil && v.rows != nil && v.expSubSum != nil {
		v.rows.scale(x, 1/v.expSubSum(x, v.rows.max(x)))
		return
	}
	m := maxGo(x, x[0])
	var s float64
	for i, v := range x {
		e := float32(math.Exp(float64(v - m)))
		x[i] = e
		s += float64(e)
	}
	scaleGo(x, float32(1/s))
}

// maxGo is the largest of m and the elements of x.
func maxGo(x []float32, m float32) float32 {
	for _, v := range x {
		if v > m {
			m = v
		}
	}
	return m
}

func scaleGo(x []float32, s float32) {
	for i := range x {
		x[i] *= s
	}
}

// f32view reinterprets little-endian f32 bytes in place (amd64 and arm64 are little-endian);
// a misaligned slice is copied instead.
func f32view(b []byte) []float32 {
	if len(b) == 0 {
		return nil
	}
	if uintptr(unsafe.Pointer(&b[0]))%4 != 0 {
		v := make([]float32, len(b)/4)
		ToFloat32(v, b, F32)
		return v
	}
	return unsafe.Slice((*float32)(unsafe.Pointer(&b[0])), len(b)/4)
}
