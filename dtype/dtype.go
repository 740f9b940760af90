// Package dtype names the element types of tensors as safetensors headers spell them and
// converts between them and float32. It is a leaf: the file formats and the kernels both use
// it, so there is one enum and one set of conversions.
package dtype

// DType is a safetensors dtype string as it appears in headers ("F32", "BF16", "F8_E4M3", ...).
type DType string

// Known dtypes. Unknown dtypes are not an error when read: they pass through untouched.
const (
	BOOL   DType = "BOOL"
	U8     DType = "U8"
	I8     DType = "I8"
	F8E4M3 DType = "F8_E4M3"
	F8E5M2 DType = "F8_E5M2"
	I16    DType = "I16"
	U16    DType = "U16"
	F16    DType = "F16"
	BF16   DType = "BF16"
	I32    DType = "I32"
	U32    DType = "U32"
	F32    DType = "F32"
	F64    DType = "F64"
	I64    DType = "I64"
	U64    DType = "U64"
)

// Size is the size in bytes of one element, or 0 for an unknown dtype.
func (d DType) Size() int {
	switch d {
	case BOOL, U8, I8, F8E4M3, F8E5M2:
		return 1
	case I16, U16, F16, BF16:
		return 2
	case I32, U32, F32:
		return 4
	case F64, I64, U64:
		return 8
	}
	return 0
}
