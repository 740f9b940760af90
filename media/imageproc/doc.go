// Package imageproc turns an image file into the pixel values Hugging Face's image processors produce
// for multimodal checkpoints: Qwen2-VL (smart resize, temporal patches, flattened patch rows), CLIP /
// LLaVA-1.5 / BLIP (shortest-edge resize, centre crop, CHW) and LLaVA-NeXT (anyres tiles and the token
// count they expand into).
//
// The resize is a port of Pillow's antialiased convolution resampler (Resample.c), not an
// approximation: same filter arithmetic, same 22-bit fixed-point weights, horizontal pass then vertical
// pass, rounding to uint8 after each. With it, pixel values match transformers' (slow, PIL-backed)
// processors bit for bit on PNG input. See docs/media.md for what is exact and what is not.
package imageproc
