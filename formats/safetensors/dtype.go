package safetensors

import "github.com/neurosurg/neurosurg/dtype"

// DType is a tensor's element type as its header spells it; see package dtype.
type DType = dtype.DType

// The dtypes, under the names this package has always had.
const (
	BOOL   = dtype.BOOL
	U8     = dtype.U8
	I8     = dtype.I8
	F8E4M3 = dtype.F8E4M3
	F8E5M2 = dtype.F8E5M2
	I16    = dtype.I16
	U16    = dtype.U16
	F16    = dtype.F16
	BF16   = dtype.BF16
	I32    = dtype.I32
	U32    = dtype.U32
	F32    = dtype.F32
	F64    = dtype.F64
	I64    = dtype.I64
	U64    = dtype.U64
)
