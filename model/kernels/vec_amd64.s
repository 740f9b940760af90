//go:build !purego && !noasm

#include "textflag.h"

// func dotBF16(x *float32, w *byte, k int) float32
// Σ_p x[p]·bf16(w[2p:2p+2]) for k a multiple of 32. Needs AVX-512F.
TEXT ·dotBF16(SB), NOSPLIT, $0-28
	MOVQ   x+0(FP), SI
	MOVQ   w+8(FP), DI
	MOVQ   k+16(FP), CX
	VPXORD Z0, Z0, Z0
	VPXORD Z1, Z1, Z1

dotloop:
	TESTQ       CX, CX
	JE          dotdone
	VPMOVZXWD   (DI), Z2
	VPSLLD      $16, Z2, Z2
	VFMADD231PS (SI), Z2, Z0
	VPMOVZXWD   32(DI), Z3
	VPSLLD      $16, Z3, Z3
	VFMADD231PS 64(SI), Z3, Z1
	ADDQ        $64, DI
	ADDQ        $128, SI
	SUBQ        $32, CX
	JMP         dotloop

dotdone:
	VADDPS         Z1, Z0, Z0
	VEXTRACTF64X4  $1, Z0, Y1
	VADDPS         Y1, Y0, Y0
	VEXTRACTF128   $1, Y0, X1
	VADDPS         X1, X0, X0
	VHADDPS        X0, X0, X0
	VHADDPS        X0, X0, X0
	MOVSS          X0, ret+24(FP)
	VZEROUPPER
	RET

// func dotF32(a, b *float32, n int) float32   (n a multiple of 16)
TEXT ·dotF32(SB), NOSPLIT, $0-28
	MOVQ   a+0(FP), SI
	MOVQ   b+8(FP), DI
	MOVQ   n+16(FP), CX
	VPXORD Z0, Z0, Z0

d32loop:
	TESTQ       CX, CX
	JE          d32done
	VMOVUPS     (SI), Z1
	VFMADD231PS (DI), Z1, Z0
	ADDQ        $64, SI
	ADDQ        $64, DI
	SUBQ        $16, CX
	JMP         d32loop

d32done:
	VEXTRACTF64X4 $1, Z0, Y1
	VADDPS        Y1, Y0, Y0
	VEXTRACTF128  $1, Y0, X1
	VADDPS        X1, X0, X0
	VHADDPS       X0, X0, X0
	VHADDPS       X0, X0, X0
	MOVSS         X0, ret+24(FP)
	VZEROUPPER
	RET

// func axpyF32(alpha float32, x, y *float32, n int)   y += alpha·x, n a multiple of 16
TEXT ·axpyF32(SB), NOSPLIT, $0-32
	VBROADCASTSS alpha+0(FP), Z0
	MOVQ         x+8(FP), SI
	MOVQ         y+16(FP), DI
	MOVQ         n+24(FP), CX

axloop:
	TESTQ       CX, CX
	JE          axdone
	VMOVUPS     (DI), Z1
	VFMADD231PS (SI), Z0, Z1
	VMOVUPS     Z1, (DI)
	ADDQ        $64, SI
	ADDQ        $64, DI
	SUBQ        $16, CX
	JMP         axloop

axdone:
	VZEROUPPER
	RET

// func fmaPeak(iters int)   12 independent FMA chains on registers: the core's FMA ceiling.
TEXT ·fmaPeak(SB), NOSPLIT, $0-8
	MOVQ   iters+0(FP), CX
	VPXORD Z0, Z0, Z0
	VPXORD Z1, Z1, Z1
	VPXORD Z2, Z2, Z2
	VPXORD Z3, Z3, Z3
	VPXORD Z4, Z4, Z4
	VPXORD Z5, Z5, Z5
	VPXORD Z6, Z6, Z6
	VPXORD Z7, Z7, Z7
	VPXORD Z8, Z8, Z8
	VPXORD Z9, Z9, Z9
	VPXORD Z10, Z10, Z10
	VPXORD Z11, Z11, Z11
	VPXORD Z12, Z12, Z12
	VPXORD Z13, Z13, Z13

peakloop:
	VFMADD231PS Z12, Z13, Z0
	VFMADD231PS Z12, Z13, Z1
	VFMADD231PS Z12, Z13, Z2
	VFMADD231PS Z12, Z13, Z3
	VFMADD231PS Z12, Z13, Z4
	VFMADD231PS Z12, Z13, Z5
	VFMADD231PS Z12, Z13, Z6
	VFMADD231PS Z12, Z13, Z7
	VFMADD231PS Z12, Z13, Z8
	VFMADD231PS Z12, Z13, Z9
	VFMADD231PS Z12, Z13, Z10
	VFMADD231PS Z12, Z13, Z11
	DECQ        CX
	JNZ         peakloop
	VZEROUPPER
	RET

// Constants of the AVX-512 exponential, in Z16–Z27: log2 e; ln2 in two parts (0.693359375 and
// −2.12194440e-4); the Cephes expf coefficients p0–p5 (1.9875691500e-4, 1.3981999507e-3,
// 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1, 0.5); 1; 88.72 (e^t overflows past it);
// −87.34 (e^t is denormal below it).
#define EXP_CONSTS_AVX512 \
	MOVL $0x3fb8aa3b, AX; VPBROADCASTD AX, Z16 \
	MOVL $0x3f318000, AX; VPBROADCASTD AX, Z17 \
	MOVL $0xb95e8083, AX; VPBROADCASTD AX, Z18 \
	MOVL $0x394fc0f9, AX; VPBROADCASTD AX, Z19 \
	MOVL $0x3ab743ce, AX; VPBROADCASTD AX, Z20 \
	MOVL $0x3c088908, AX; VPBROADCASTD AX, Z21 \
	MOVL $0x3d2aa9c1, AX; VPBROADCASTD AX, Z22 \
	MOVL $0x3e2aaaaa, AX; VPBROADCASTD AX, Z23 \
	MOVL $0x3f000000, AX; VPBROADCASTD AX, Z24 \
	MOVL $0x3f800000, AX; VPBROADCASTD AX, Z25 \
	MOVL $0x42b17218, AX; VPBROADCASTD AX, Z26 \
	MOVL $0xc2aeac50, AX; VPBROADCASTD AX, Z27

// EXP_REDUCE_AVX512 and EXP_POLY_AVX512 are EXP_AVX512's halves (geluF32 adds a low part to the
// reduced argument between them): Z1 = r = t − j·ln2 (in two parts), Z2 = j = round(t·log2 e);
// then Z3 = 2^j · p(r), p the Cephes expf polynomial, VSCALEFPS applying 2^j (Z4 scratch).
#define EXP_REDUCE_AVX512 \
	VMINPS       Z26, Z1, Z1 \
	VMAXPS       Z27, Z1, Z1 \
	VMULPS       Z16, Z1, Z2 \
	VRNDSCALEPS  $0, Z2, Z2 \
	VFNMADD231PS Z17, Z2, Z1 \
	VFNMADD231PS Z18, Z2, Z1

#define EXP_POLY_AVX512 \
	VMOVAPS      Z19, Z3 \
	VFMADD213PS  Z20, Z1, Z3 \
	VFMADD213PS  Z21, Z1, Z3 \
	VFMADD213PS  Z22, Z1, Z3 \
	VFMADD213PS  Z23, Z1, Z3 \
	VFMADD213PS  Z24, Z1, Z3 \
	VMULPS       Z1, Z1, Z4 \
	VFMADD213PS  Z1, Z4, Z3 \
	VADDPS       Z25, Z3, Z3 \
	VSCALEFPS    Z2, Z3, Z3

// Z3 = e^Z1 (Z1 clobbered, Z2 and Z4 scratch).
#define EXP_AVX512 \
	EXP_REDUCE_AVX512 \
	EXP_POLY_AVX512

// HSUM_PD_Z0 leaves Σ of Z0's eight doubles in X0 (Y1 scratch).
#define HSUM_PD_Z0 \
	VEXTRACTF64X4 $1, Z0, Y1 \
	VADDPD        Y1, Y0, Y0 \
	VEXTRACTF128  $1, Y0, X1 \
	VADDPD        X1, X0, X0 \
	VHADDPD       X0, X0, X0

// func siluF32(x *float32, n int)   x[i] = x[i] / (1 + e^(−x[i])), n a multiple of 16.
// |relative error| < 2e-7 against math.Exp.
TEXT ·siluF32(SB), NOSPLIT, $0-16
	MOVQ x+0(FP), SI
	MOVQ n+8(FP), CX
	EXP_CONSTS_AVX512

siluloop:
	VMOVUPS (SI), Z0
	VXORPS  Z1, Z1, Z1
	VSUBPS  Z0, Z1, Z1 // t = −x
	EXP_AVX512
	VADDPS  Z25, Z3, Z3 // 1 + e^(−x)
	VDIVPS  Z3, Z0, Z0
	VMOVUPS Z0, (SI)
	ADDQ    $64, SI
	SUBQ    $16, CX
	JNZ     siluloop
	VZEROUPPER
	RET

// func geluF32(x *float32, n int)   x[i] = ½x[i]·erfc(−x[i]/√2), n a multiple of 16.
// erfc(z) for z = |x|/√2 is t·e^(p(t) − x²/2), t = 1/(1 + |x|/(2√2)), p Numerical Recipes'
// erfcc polynomial (Horner in f32). The exponent is carried as a pair: x² exactly as hi + lo
// (FMA), p − hi/2 by TwoSum, and the low parts added to the exponential's reduced argument —
// one f32 rounding of p − x²/2 would cost up to 6e-6 relative at x ≈ −9. For x < 0 the
// result is ½x·erfc, for x ≥ 0 ½x·(2 − erfc).
// Constants: Z7–Z15 the polynomial's c1…c9, Z29 1/(2√2), Z30 2, Z31 c0; Z28 is scratch.
TEXT ·geluF32(SB), NOSPLIT, $0-16
	MOVQ x+0(FP), SI
	MOVQ n+8(FP), CX
	EXP_CONSTS_AVX512
	MOVL $0x3f8000c7, AX; VPBROADCASTD AX, Z7
	MOVL $0x3ebf88fb, AX; VPBROADCASTD AX, Z8
	MOVL $0x3dc636c9, AX; VPBROADCASTD AX, Z9
	MOVL $0xbe3ec24c, AX; VPBROADCASTD AX, Z10
	MOVL $0x3e8ec7cc, AX; VPBROADCASTD AX, Z11
	MOVL $0xbf914e5d, AX; VPBROADCASTD AX, Z12
	MOVL $0x3fbe87b0, AX; VPBROADCASTD AX, Z13
	MOVL $0xbf527892, AX; VPBROADCASTD AX, Z14
	MOVL $0x3e2ef945, AX; VPBROADCASTD AX, Z15
	MOVL $0x3eb504f3, AX; VPBROADCASTD AX, Z29
	MOVL $0x40000000, AX; VPBROADCASTD AX, Z30
	MOVL $0xbfa1fc4e, AX; VPBROADCASTD AX, Z31

geluloop:
	VMOVUPS      (SI), Z0
	VPSLLD       $1, Z0, Z6
	VPSRLD       $1, Z6, Z6   // |x|
	VFMADD213PS  Z25, Z29, Z6 // 1 + |x|/(2√2)
	VDIVPS       Z6, Z25, Z6  // t
	VMOVAPS      Z15, Z1
	VFMADD213PS  Z14, Z6, Z1
	VFMADD213PS  Z13, Z6, Z1
	VFMADD213PS  Z12, Z6, Z1
	VFMADD213PS  Z11, Z6, Z1
	VFMADD213PS  Z10, Z6, Z1
	VFMADD213PS  Z9, Z6, Z1
	VFMADD213PS  Z8, Z6, Z1
	VFMADD213PS  Z7, Z6, Z1
	VFMADD213PS  Z31, Z6, Z1  // a = p(t)
	VMINPS       Z26, Z0, Z3
	VMAXPS       Z27, Z3, Z3  // x within ±88 (past it e^(−x²/2) is 0 anyway; x² stays finite)
	VMULPS       Z3, Z3, Z2   // hi = x²
	VFMSUB213PS  Z2, Z3, Z3   // lo = x·x − hi, exactly
	VMULPS       Z24, Z2, Z2  // b = hi/2
	VMULPS       Z24, Z3, Z3  // lo/2
	VSUBPS       Z2, Z1, Z4   // s = a − b
	VSUBPS       Z1, Z4, Z5   // v = s − a
	VSUBPS       Z5, Z4, Z28
	VSUBPS       Z28, Z1, Z28 // a − (s − v)
	VADDPS       Z5, Z2, Z5   // b + v
	VSUBPS       Z5, Z28, Z28 // TwoSum's error: a − b = s + Z28
	VSUBPS       Z3, Z28, Z28 // the low part of p − x²/2
	VMOVAPS      Z4, Z1
	EXP_REDUCE_AVX512
	VADDPS       Z28, Z1, Z1  // the reduced argument, low part included
	EXP_POLY_AVX512           // Z3 = e^(p − x²/2)
	VMULPS       Z6, Z3, Z3   // erfc(|x|/√2)
	VSUBPS       Z3, Z30, Z2  // 2 − erfc
	VPMOVD2M     Z0, K1       // x < 0 (sign set)
	VMOVAPS      Z3, K1, Z2
	VMULPS       Z24, Z0, Z0
	VMULPS       Z2, Z0, Z0
	VMOVUPS      Z0, (SI)
	ADDQ         $64, SI
	SUBQ         $16, CX
	JNZ          geluloop
	VZEROUPPER
	RET

// func expSubSumF32(x *float32, n int, max float32) float32
// x[i] = e^(x[i] − max) for n a positive multiple of 16; returns Σ x[i].
TEXT ·expSubSumF32(SB), NOSPLIT, $0-28
	MOVQ         x+0(FP), SI
	MOVQ         n+8(FP), CX
	VBROADCASTSS max+16(FP), Z28
	VXORPS       Z5, Z5, Z5 // Σ
	EXP_CONSTS_AVX512

exploop:
	VMOVUPS (SI), Z1
	VSUBPS  Z28, Z1, Z1
	EXP_AVX512
	VMOVUPS Z3, (SI)
	VADDPS  Z3, Z5, Z5
	ADDQ    $64, SI
	SUBQ    $16, CX
	JNZ     exploop
	VEXTRACTF64X4 $1, Z5, Y1
	VADDPS        Y1, Y5, Y5
	VEXTRACTF128  $1, Y5, X1
	VADDPS        X1, X5, X5
	VHADDPS       X5, X5, X5
	VHADDPS       X5, X5, X5
	MOVSS         X5, ret+24(FP)
	VZEROUPPER
	RET

// AVX2/FMA twins of the vector routines (8 lanes), for CPUs without AVX-512.

// func dotF32AVX2(a, b *float32, n int) float32   (n a multiple of 8)
TEXT ·dotF32AVX2(SB), NOSPLIT, $0-28
	MOVQ   a+0(FP), SI
	MOVQ   b+8(FP), DI
	MOVQ   n+16(FP), CX
	VXORPS Y0, Y0, Y0

d2loop:
	VMOVUPS     (SI), Y1
	VFMADD231PS (DI), Y1, Y0
	ADDQ        $32, SI
	ADDQ        $32, DI
	SUBQ        $8, CX
	JNZ         d2loop
	VEXTRACTF128 $1, Y0, X1
	VADDPS       X1, X0, X0
	VHADDPS      X0, X0, X0
	VHADDPS      X0, X0, X0
	MOVSS        X0, ret+24(FP)
	VZEROUPPER
	RET

// func axpyF32AVX2(alpha float32, x, y *float32, n int)   y += alpha·x, n a multiple of 8
TEXT ·axpyF32AVX2(SB), NOSPLIT, $0-32
	VBROADCASTSS alpha+0(FP), Y0
	MOVQ         x+8(FP), SI
	MOVQ         y+16(FP), DI
	MOVQ         n+24(FP), CX

ax2loop:
	VMOVUPS     (DI), Y1
	VFMADD231PS (SI), Y0, Y1
	VMOVUPS     Y1, (DI)
	ADDQ        $32, SI
	ADDQ        $32, DI
	SUBQ        $8, CX
	JNZ         ax2loop
	VZEROUPPER
	RET

// func dotBF16AVX2(x *float32, w *byte, k int) float32   Σ x[p]·bf16(w[2p:]), k a multiple of 16
TEXT ·dotBF16AVX2(SB), NOSPLIT, $0-28
	MOVQ   x+0(FP), SI
	MOVQ   w+8(FP), DI
	MOVQ   k+16(FP), CX
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1

db2loop:
	VPMOVZXWD   (DI), Y2
	VPSLLD      $16, Y2, Y2
	VFMADD231PS (SI), Y2, Y0
	VPMOVZXWD   16(DI), Y3
	VPSLLD      $16, Y3, Y3
	VFMADD231PS 32(SI), Y3, Y1
	ADDQ        $32, DI
	ADDQ        $64, SI
	SUBQ        $16, CX
	JNZ         db2loop
	VADDPS       Y1, Y0, Y0
	VEXTRACTF128 $1, Y0, X1
	VADDPS       X1, X0, X0
	VHADDPS      X0, X0, X0
	VHADDPS      X0, X0, X0
	MOVSS        X0, ret+24(FP)
	VZEROUPPER
	RET

// func fmaPeakAVX2(iters int)   12 independent ymm FMA chains (192 flops per iteration).
TEXT ·fmaPeakAVX2(SB), NOSPLIT, $0-8
	MOVQ   iters+0(FP), CX
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7
	VXORPS Y8, Y8, Y8
	VXORPS Y9, Y9, Y9
	VXORPS Y10, Y10, Y10
	VXORPS Y11, Y11, Y11
	VXORPS Y12, Y12, Y12
	VXORPS Y13, Y13, Y13

p2loop:
	VFMADD231PS Y12, Y13, Y0
	VFMADD231PS Y12, Y13, Y1
	VFMADD231PS Y12, Y13, Y2
	VFMADD231PS Y12, Y13, Y3
	VFMADD231PS Y12, Y13, Y4
	VFMADD231PS Y12, Y13, Y5
	VFMADD231PS Y12, Y13, Y6
	VFMADD231PS Y12, Y13, Y7
	VFMADD231PS Y12, Y13, Y8
	VFMADD231PS Y12, Y13, Y9
	VFMADD231PS Y12, Y13, Y10
	VFMADD231PS Y12, Y13, Y11
	DECQ        CX
	JNZ         p2loop
	VZEROUPPER
	RET

// Eight copies each of −87.34 (below it e^t is denormal) and 0.5 (Cephes p5), for the AVX2
// exponentials: AVX2 has 16 vector registers, too few to hold every constant.
DATA expMin8<>+0(SB)/4, $0xc2aeac50
DATA expMin8<>+4(SB)/4, $0xc2aeac50
DATA expMin8<>+8(SB)/4, $0xc2aeac50
DATA expMin8<>+12(SB)/4, $0xc2aeac50
DATA expMin8<>+16(SB)/4, $0xc2aeac50
DATA expMin8<>+20(SB)/4, $0xc2aeac50
DATA expMin8<>+24(SB)/4, $0xc2aeac50
DATA expMin8<>+28(SB)/4, $0xc2aeac50
GLOBL expMin8<>(SB), RODATA|NOPTR, $32
DATA expHalf8<>+0(SB)/4, $0x3f000000
DATA expHalf8<>+4(SB)/4, $0x3f000000
DATA expHalf8<>+8(SB)/4, $0x3f000000
DATA expHalf8<>+12(SB)/4, $0x3f000000
DATA expHalf8<>+16(SB)/4, $0x3f000000
DATA expHalf8<>+20(SB)/4, $0x3f000000
DATA expHalf8<>+24(SB)/4, $0x3f000000
DATA expHalf8<>+28(SB)/4, $0x3f000000
GLOBL expHalf8<>(SB), RODATA|NOPTR, $32

// AVX2 constants of the exponential (Y5–Y12, Y14, Y15): as siluF32's, with 2^j built from the
// bits of j (VCVTPS2DQ, shift into the exponent, add 1.0's bits) instead of VSCALEFPS, so t is
// clamped to 88 (j ≤ 127).
#define EXP_CONSTS_AVX2 \
	MOVL $0x3fb8aa3b, AX; MOVL AX, X5; VPBROADCASTD X5, Y5 \
	MOVL $0x3f318000, AX; MOVL AX, X6; VPBROADCASTD X6, Y6 \
	MOVL $0xb95e8083, AX; MOVL AX, X7; VPBROADCASTD X7, Y7 \
	MOVL $0x394fc0f9, AX; MOVL AX, X8; VPBROADCASTD X8, Y8 \
	MOVL $0x3ab743ce, AX; MOVL AX, X9; VPBROADCASTD X9, Y9 \
	MOVL $0x3c088908, AX; MOVL AX, X10; VPBROADCASTD X10, Y10 \
	MOVL $0x3d2aa9c1, AX; MOVL AX, X11; VPBROADCASTD X11, Y11 \
	MOVL $0x3e2aaaaa, AX; MOVL AX, X12; VPBROADCASTD X12, Y12 \
	MOVL $0x3f800000, AX; MOVL AX, X14; VPBROADCASTD X14, Y14 \
	MOVL $0x42b00000, AX; MOVL AX, X15; VPBROADCASTD X15, Y15

// Y3 = e^Y1 (Y1 clobbered, Y2 and Y4 scratch).
#define EXP_AVX2 \
	VMINPS       Y15, Y1, Y1 \
	VMAXPS       expMin8<>(SB), Y1, Y1 \
	VMULPS       Y5, Y1, Y2 \
	VROUNDPS     $0, Y2, Y2 \
	VFNMADD231PS Y6, Y2, Y1 \
	VFNMADD231PS Y7, Y2, Y1 \
	VMOVAPS      Y8, Y3 \
	VFMADD213PS  Y9, Y1, Y3 \
	VFMADD213PS  Y10, Y1, Y3 \
	VFMADD213PS  Y11, Y1, Y3 \
	VFMADD213PS  Y12, Y1, Y3 \
	VFMADD213PS  expHalf8<>(SB), Y1, Y3 \
	VMULPS       Y1, Y1, Y4 \
	VFMADD213PS  Y1, Y4, Y3 \
	VADDPS       Y14, Y3, Y3 \
	VCVTPS2DQ    Y2, Y2 \
	VPSLLD       $23, Y2, Y2 \
	VPADDD       Y14, Y2, Y2 \
	VMULPS       Y2, Y3, Y3

// func siluF32AVX2(x *float32, n int)   x[i] = x[i] / (1 + e^(−x[i])), n a multiple of 8.
TEXT ·siluF32AVX2(SB), NOSPLIT, $0-16
	MOVQ x+0(FP), SI
	MOVQ n+8(FP), CX
	EXP_CONSTS_AVX2

silu2loop:
	VMOVUPS (SI), Y0
	VXORPS  Y1, Y1, Y1
	VSUBPS  Y0, Y1, Y1
	EXP_AVX2
	VADDPS  Y14, Y3, Y3
	VXORPS  Y4, Y4, Y4
	VSUBPS  Y0, Y4, Y4
	VCMPPS  $14, Y15, Y4, Y4 // −x > 88: x·σ(x) is below the smallest normal float, so 0
	VDIVPS  Y3, Y0, Y0
	VANDNPS Y0, Y4, Y0
	VMOVUPS Y0, (SI)
	ADDQ    $32, SI
	SUBQ    $8, CX
	JNZ     silu2loop
	VZEROUPPER
	RET

// func expSubSumF32AVX2(x *float32, n int, max float32) float32
// x[i] = e^(x[i] − max) for n a multiple of 8; returns Σ x[i].
TEXT ·expSubSumF32AVX2(SB), NOSPLIT, $0-28
	MOVQ         x+0(FP), SI
	MOVQ         n+8(FP), CX
	VBROADCASTSS max+16(FP), Y0
	VXORPS       Y13, Y13, Y13
	EXP_CONSTS_AVX2

exp2loop:
	VMOVUPS (SI), Y1
	VSUBPS  Y0, Y1, Y1
	EXP_AVX2
	VMOVUPS Y3, (SI)
	VADDPS  Y3, Y13, Y13
	ADDQ    $32, SI
	SUBQ    $8, CX
	JNZ     exp2loop
	VEXTRACTF128 $1, Y13, X1
	VADDPS       X1, X13, X13
	VHADDPS      X13, X13, X13
	VHADDPS      X13, X13, X13
	MOVSS        X13, ret+24(FP)
	VZEROUPPER
	RET

// func sumF64(x *float32, n int) float64   Σ x[i] in float64, n a positive multiple of 16.
TEXT ·sumF64(SB), NOSPLIT, $0-24
	MOVQ   x+0(FP), SI
	MOVQ   n+8(FP), CX
	VXORPD Z0, Z0, Z0
	VXORPD Z1, Z1, Z1

sumf64loop:
	VCVTPS2PD (SI), Z2
	VCVTPS2PD 32(SI), Z3
	VADDPD    Z2, Z0, Z0
	VADDPD    Z3, Z1, Z1
	ADDQ      $64, SI
	SUBQ      $16, CX
	JNZ       sumf64loop
	VADDPD    Z1, Z0, Z0
	HSUM_PD_Z0
	MOVSD     X0, ret+16(FP)
	VZEROUPPER
	RET

// func sqDevF64(x *float32, n int, mean float64) float64   Σ (x[i] − mean)² in float64, n a positive multiple of 16.
TEXT ·sqDevF64(SB), NOSPLIT, $0-32
	MOVQ         x+0(FP), SI
	MOVQ         n+8(FP), CX
	VBROADCASTSD mean+16(FP), Z4
	VXORPD       Z0, Z0, Z0
	VXORPD       Z1, Z1, Z1

sqdevloop:
	VCVTPS2PD   (SI), Z2
	VCVTPS2PD   32(SI), Z3
	VSUBPD      Z4, Z2, Z2
	VSUBPD      Z4, Z3, Z3
	VFMADD231PD Z2, Z2, Z0
	VFMADD231PD Z3, Z3, Z1
	ADDQ        $64, SI
	SUBQ        $16, CX
	JNZ         sqdevloop
	VADDPD      Z1, Z0, Z0
	HSUM_PD_Z0
	MOVSD       X0, ret+24(FP)
	VZEROUPPER
	RET

// func normAffineF32(y, x, w, b *float32, n int, mean, inv float64)
// y[i] = float32((x[i] − mean)·inv)·w[i] + b[i] (the product in float64, rounded once; then f32
// multiply and add, unfused), n a positive multiple of 16.
TEXT ·normAffineF32(SB), NOSPLIT, $0-56
	MOVQ         y+0(FP), DI
	MOVQ         x+8(FP), SI
	MOVQ         w+16(FP), DX
	MOVQ         b+24(FP), BX
	MOVQ         n+32(FP), CX
	VBROADCASTSD mean+40(FP), Z4
	VBROADCASTSD inv+48(FP), Z5

normaffloop:
	VCVTPS2PD      (SI), Z2
	VCVTPS2PD      32(SI), Z3
	VSUBPD         Z4, Z2, Z2
	VSUBPD         Z4, Z3, Z3
	VMULPD         Z5, Z2, Z2
	VMULPD         Z5, Z3, Z3
	VCVTPD2PS      Z2, Y0
	VCVTPD2PS      Z3, Y1
	VINSERTF32X8   $1, Y1, Z0, Z0
	VMULPS         (DX), Z0, Z0
	VADDPS         (BX), Z0, Z0
	VMOVUPS        Z0, (DI)
	ADDQ           $64, SI
	ADDQ           $64, DX
	ADDQ           $64, BX
	ADDQ           $64, DI
	SUBQ           $16, CX
	JNZ            normaffloop
	VZEROUPPER
	RET
