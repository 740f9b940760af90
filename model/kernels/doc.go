// Package kernels holds the numeric kernels of the runtime: matrix products of f32 activations
// with weights in their stored dtype (F32, BF16, F16), dtype conversion, and the element-wise
// pieces of a transformer layer. It knows no model. Kernels panic on shape misuse (a bug) and
// never return errors.
package kernels
