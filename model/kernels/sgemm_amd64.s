//go:build !purego && !noasm

#include "textflag.h"

// func sgemm6x32(k int, a *float32, lda int, b *float32, c *float32)
// C[6][32] = Σ_p A[i*lda+p] · B[p*32+j]: a 6×32 tile of x·Wᵀ with B a packed panel of W.
// Needs AVX-512F. C is written (not accumulated), row stride 32.
TEXT ·sgemm6x32(SB), NOSPLIT, $0-40
	MOVQ k+0(FP), CX
	MOVQ a+8(FP), SI
	MOVQ lda+16(FP), R8
	SHLQ $2, R8
	MOVQ b+24(FP), DI
	MOVQ c+32(FP), DX

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
	VPXORD Z14, Z14, Z14
	VPXORD Z15, Z15, Z15

	LEAQ (SI)(R8*1), R10
	LEAQ (SI)(R8*2), R11
	LEAQ (R10)(R8*2), R12
	LEAQ (SI)(R8*4), R13
	LEAQ (R10)(R8*4), R14
	XORQ AX, AX

loop:
	TESTQ CX, CX
	JE    done
	VMOVUPS      (DI), Z0
	VMOVUPS      64(DI), Z1
	VBROADCASTSS (SI)(AX*1), Z2
	VBROADCASTSS (R10)(AX*1), Z3
	VFMADD231PS  Z0, Z2, Z4
	VFMADD231PS  Z1, Z2, Z5
	VFMADD231PS  Z0, Z3, Z6
	VFMADD231PS  Z1, Z3, Z7
	VBROADCASTSS (R11)(AX*1), Z2
	VBROADCASTSS (R12)(AX*1), Z3
	VFMADD231PS  Z0, Z2, Z8
	VFMADD231PS  Z1, Z2, Z9
	VFMADD231PS  Z0, Z3, Z10
	VFMADD231PS  Z1, Z3, Z11
	VBROADCASTSS (R13)(AX*1), Z2
	VBROADCASTSS (R14)(AX*1), Z3
	VFMADD231PS  Z0, Z2, Z12
	VFMADD231PS  Z1, Z2, Z13
	VFMADD231PS  Z0, Z3, Z14
	VFMADD231PS  Z1, Z3, Z15
	ADDQ         $128, DI
	ADDQ         $4, AX
	DECQ         CX
	JMP          loop

done:
	VMOVUPS Z4, (DX)
	VMOVUPS Z5, 64(DX)
	VMOVUPS Z6, 128(DX)
	VMOVUPS Z7, 192(DX)
	VMOVUPS Z8, 256(DX)
	VMOVUPS Z9, 320(DX)
	VMOVUPS Z10, 384(DX)
	VMOVUPS Z11, 448(DX)
	VMOVUPS Z12, 512(DX)
	VMOVUPS Z13, 576(DX)
	VMOVUPS Z14, 640(DX)
	VMOVUPS Z15, 704(DX)
	VZEROUPPER
	RET

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

// func dotBF16x4(x *float32, w *byte, stride int, k int, out *float32)
// out[r] = Σ_p x[p]·bf16(w[r*stride + 2p:]) for r < 4 and k a multiple of 16: four weight rows
// stream at once against one load of x.
TEXT ·dotBF16x4(SB), NOSPLIT, $0-40
	MOVQ   x+0(FP), SI
	MOVQ   w+8(FP), DI
	MOVQ   stride+16(FP), R8
	MOVQ   k+24(FP), CX
	MOVQ   out+32(FP), DX
	LEAQ   (DI)(R8*1), R9
	LEAQ   (DI)(R8*2), R10
	LEAQ   (R9)(R8*2), R11
	VPXORD Z0, Z0, Z0
	VPXORD Z1, Z1, Z1
	VPXORD Z2, Z2, Z2
	VPXORD Z3, Z3, Z3

x4loop:
	TESTQ       CX, CX
	JE          x4done
	VMOVUPS     (SI), Z4
	VPMOVZXWD   (DI), Z5
	VPSLLD      $16, Z5, Z5
	VFMADD231PS Z4, Z5, Z0
	VPMOVZXWD   (R9), Z6
	VPSLLD      $16, Z6, Z6
	VFMADD231PS Z4, Z6, Z1
	VPMOVZXWD   (R10), Z7
	VPSLLD      $16, Z7, Z7
	VFMADD231PS Z4, Z7, Z2
	VPMOVZXWD   (R11), Z8
	VPSLLD      $16, Z8, Z8
	VFMADD231PS Z4, Z8, Z3
	ADDQ        $64, SI
	ADDQ        $32, DI
	ADDQ        $32, R9
	ADDQ        $32, R10
	ADDQ        $32, R11
	SUBQ        $16, CX
	JMP         x4loop

x4done:
	VEXTRACTF64X4 $1, Z0, Y4
	VADDPS        Y4, Y0, Y0
	VEXTRACTF128  $1, Y0, X4
	VADDPS        X4, X0, X0
	VHADDPS       X0, X0, X0
	VHADDPS       X0, X0, X0
	MOVSS         X0, (DX)
	VEXTRACTF64X4 $1, Z1, Y4
	VADDPS        Y4, Y1, Y1
	VEXTRACTF128  $1, Y1, X4
	VADDPS        X4, X1, X1
	VHADDPS       X1, X1, X1
	VHADDPS       X1, X1, X1
	MOVSS         X1, 4(DX)
	VEXTRACTF64X4 $1, Z2, Y4
	VADDPS        Y4, Y2, Y2
	VEXTRACTF128  $1, Y2, X4
	VADDPS        X4, X2, X2
	VHADDPS       X2, X2, X2
	VHADDPS       X2, X2, X2
	MOVSS         X2, 8(DX)
	VEXTRACTF64X4 $1, Z3, Y4
	VADDPS        Y4, Y3, Y3
	VEXTRACTF128  $1, Y3, X4
	VADDPS        X4, X3, X3
	VHADDPS       X3, X3, X3
	VHADDPS       X3, X3, X3
	MOVSS         X3, 12(DX)
	VZEROUPPER
	RET
