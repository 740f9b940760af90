// Package model is neurosurg's CPU runtime: configs to architectures, forward passes with taps
// and masks, generation. Layers call model/kernels; weights stay in their stored dtype.
package model
