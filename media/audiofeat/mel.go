package audiofeat

import "math"

// melFilter is one triangular filter of the bank: weights for the FFT bins first..first+len-1;
// every other bin has weight 0.
type melFilter struct {
	first   int
	weights []float64
}

// Whisper's filter bank spans 0–8000 Hz whatever the sampling rate (HF passes these constants).
const (
	melMinHz = 0.0
	melMaxHz = 8000.0
)

// slaneyHzToMel and slaneyMelToHz are the Slaney (Auditory Toolbox) mel scale: linear below
// 1 kHz (3 mels per 200 Hz), logarithmic above (27 mels per factor 6.4).
func slaneyHzToMel(hz float64) float64 {
	if hz >= 1000 {
		return 15 + math.Log(hz/1000)*(27/math.Log(6.4))
	}
	return 3 * hz / 200
}

func slaneyMelToHz(mel float64) float64 {
	if mel >= 15 {
		return 1000 * math.Exp(math.Log(6.4)/27*(mel-15))
	}
	return 200 * mel / 3
}

// linspace is numpy.linspace(start, stop, n) for n >= 2, including its exact last element.
func linspace(start, stop float64, n int) []float64 {
	out := make([]float64, n)
	step := (stop - start) / float64(n-1)
	for i := range out {
		out[i] = start + float64(i)*step
	}
	out[n-1] = stop
	return out
}

// melFilterBank is transformers.audio_utils.mel_filter_bank(num_frequency_bins=bins,
// num_mel_filters=nMels, min_frequency=0, max_frequency=8000, sampling_rate=rate,
// norm="slaney", mel_scale="slaney"), in float64 like HF's, stored sparsely.
func melFilterBank(bins, nMels, rate int) []melFilter {
	mels := linspace(slaneyHzToMel(melMinHz), slaneyHzToMel(melMaxHz), nMels+2)
	hz := make([]float64, len(mels))
	for i, m := range mels {
		hz[i] = slaneyMelToHz(m)
	}
	// HF's bin frequencies are linspace(0, sampling_rate // 2, bins): note the integer division.
	fft := linspace(0, float64(rate/2), bins)
	bank := make([]melFilter, nMels)
	w := make([]float64, bins) // scratch: each filter keeps only its non-zero span
	for m := range bank {
		lo, mid, hi := hz[m], hz[m+1], hz[m+2]
		enorm := 2 / (hi - lo) // slaney norm: constant energy per filter
		first, last := -1, -1
		for k, f := range fft {
			down := -(lo - f) / (mid - lo)
			up := (hi - f) / (hi - mid)
			v := max(0, min(down, up))
			if v > 0 {
				if first < 0 {
					first = k
				}
				last = k
			}
			w[k] = v * enorm
		}
		if first < 0 { // a filter narrower than a bin: all zero, as in HF (which warns)
			continue
		}
		bank[m] = melFilter{first: first, weights: append([]float64(nil), w[first:last+1]...)}
	}
	return bank
}
