// Package audiofeat computes the log-mel features Hugging Face's WhisperFeatureExtractor gives
// Qwen2-Audio (and Whisper) for a waveform, with the attention mask's length and Qwen2-Audio's
// audio token count.
//
// The steps follow transformers' numpy path (feature_extraction_whisper.py over
// audio_utils.spectrogram) in float64: pad with padding_value or truncate to
// chunk_length·sampling_rate samples before anything else, reflect-pad by n_fft/2 on both sides,
// frame every hop_length samples, multiply by a periodic Hann window, take the power spectrum of
// a real FFT, apply the Slaney-normalised Slaney-scale mel filter bank over 0–8000 Hz, take
// log10(max(mel, 1e-10)), drop the last frame, clamp everything to at least the global maximum
// minus 8, and map x to (x+4)/4. The result is rounded to float32 once, at the end.
//
// Audio at another sampling rate is refused, not resampled: librosa resamples with soxr, which
// this package cannot reproduce exactly.
package audiofeat

import (
	"errors"
	"fmt"
	"math"

	"gonum.org/v1/gonum/dsp/fourier"

	"github.com/neurosurg/neurosurg/media/wav"
)

// ErrAudio reports audio the extractor cannot turn into features.
var ErrAudio = errors.New("audiofeat: unusable audio")

// Features is the model input for one waveform.
type Features struct {
	NMels  int
	Frames int
	// Mel holds the log-mel features row-major [NMels][Frames], HF's input_features[0].
	Mel []float32
	// ValidFrames is the number of ones in HF's attention mask (feature_attention_mask in
	// Qwen2-Audio): min(Frames, ceil(n/hop_length)) for n input samples. The mask is ValidFrames
	// ones followed by zeros.
	ValidFrames int
	// AudioTokens is the number of <|AUDIO|> tokens Qwen2-Audio's processor expands one audio
	// placeholder to. It is 0 for 320 samples (20 ms at 16 kHz) or fewer.
	AudioTokens int
	// Samples is the number of input samples; Truncated says whether there were more than the
	// config's chunk and the rest was ignored.
	Samples   int64
	Truncated bool
}

// Extractor computes features for one config. It is safe for concurrent use.
type Extractor struct {
	cfg    Config
	window []float64
	bank   []melFilter
}

// NewExtractor validates cfg and precomputes the window and the mel filter bank.
func NewExtractor(cfg Config) (*Extractor, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	e := &Extractor{cfg: cfg, window: make([]float64, cfg.NFFT)}
	// Periodic Hann: numpy.hanning(n_fft+1)[:-1].
	for i := range e.window {
		e.window[i] = 0.5 - 0.5*math.Cos(2*math.Pi*float64(i)/float64(cfg.NFFT))
	}
	e.bank = melFilterBank(cfg.NFFT/2+1, cfg.FeatureSize, cfg.SamplingRate)
	return e, nil
}

// Config returns the extractor's config.
func (e *Extractor) Config() Config { return e.cfg }

// Qwen2AudioTokens is the number of audio tokens Qwen2-Audio's processor gives an audio with
// validFrames frames in its attention mask: the encoder's stride-2 convolution, then its
// stride-2 pooling, ((v−1)//2+1 − 2)//2 + 1 with Python's floor division.
func Qwen2AudioTokens(validFrames int) int {
	in := floorDiv(validFrames-1, 2) + 1
	return floorDiv(in-2, 2) + 1
}

func floorDiv(a, b int) int {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}

// ValidFrames is the number of ones in HF's attention mask for n input samples: the mask marks
// the first min(n, NSamples) samples and keeps every hop_length-th one.
func (c Config) ValidFrames(n int64) int {
	m := min(n, int64(c.NSamples()))
	return int((m + int64(c.HopLength) - 1) / int64(c.HopLength))
}

// ExtractFile reads a WAV file (see package wav) and computes its features. Audio that is not at
// the config's sampling rate is refused with the command that converts it.
func (e *Extractor) ExtractFile(path string) (*Features, error) {
	a, err := wav.ReadFile(path, int64(e.cfg.NSamples()))
	if err != nil {
		return nil, err
	}
	if a.SampleRate != e.cfg.SamplingRate {
		return nil, fmt.Errorf("%s: %w: sample rate %d Hz, the model wants %d Hz; this package does not resample "+
			"(librosa's soxr resampler cannot be matched exactly); convert with: ffmpeg -i %s -ar %d -ac 1 out.wav",
			path, ErrAudio, a.SampleRate, e.cfg.SamplingRate, path, e.cfg.SamplingRate)
	}
	f, err := e.extract(a.Samples, a.Frames)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return f, nil
}

// Extract computes the features of mono samples at the config's sampling rate. Samples past the
// config's chunk (30 s for Whisper) are ignored, as HF truncates them.
func (e *Extractor) Extract(samples []float32) (*Features, error) {
	return e.extract(samples, int64(len(samples)))
}

// extract computes the features of samples, the first of total samples (the rest, if any, lie
// past the chunk and were not decoded).
func (e *Extractor) extract(samples []float32, total int64) (*Features, error) {
	if total == 0 {
		return nil, fmt.Errorf("%w: no samples", ErrAudio)
	}
	c := e.cfg
	n := c.NSamples()
	pad := c.NFFT / 2
	frames := c.NFrames()

	// The padded waveform: HF pads (or truncates) a float32 array, so padding_value is rounded to
	// float32 first; then reflect padding without repeating the edge sample (numpy's "reflect").
	wave := make([]float64, n+2*pad)
	body := wave[pad : pad+n]
	used := min(len(samples), n)
	for i, s := range samples[:used] {
		x := float64(s)
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return nil, fmt.Errorf("%w: sample %d is %v", ErrAudio, i, s)
		}
		body[i] = x
	}
	padValue := float64(float32(c.PaddingValue))
	for i := used; i < n; i++ {
		body[i] = padValue
	}
	for k := range pad {
		wave[pad-1-k] = body[k+1]
		wave[pad+n+k] = body[n-2-k]
	}

	bins := c.NFFT/2 + 1
	fft := fourier.NewFFT(c.NFFT)
	buf := make([]float64, c.NFFT)
	coef := make([]complex128, bins)
	power := make([]float64, bins)
	logMel := make([]float64, c.FeatureSize*frames)
	const floor = 1e-10
	logFloor := math.Log10(floor)
	peak := math.Inf(-1)
	for t := range frames {
		seg := wave[t*c.HopLength : t*c.HopLength+c.NFFT]
		silent := true
		for i, x := range seg {
			buf[i] = x * e.window[i]
			if buf[i] != 0 {
				silent = false
			}
		}
		if silent { // all-zero input has an exactly zero spectrum: every mel is at the floor
			for m := range c.FeatureSize {
				logMel[m*frames+t] = logFloor
			}
			peak = max(peak, logFloor)
			continue
		}
		fft.Coefficients(coef, buf)
		for k, z := range coef {
			re, im := real(z), imag(z)
			power[k] = re*re + im*im
		}
		for m, f := range e.bank {
			var s float64
			for j, w := range f.weights {
				s += w * power[f.first+j]
			}
			v := math.Log10(max(s, floor))
			logMel[m*frames+t] = v
			peak = max(peak, v)
		}
	}

	out := make([]float32, len(logMel))
	low := peak - 8
	for i, v := range logMel {
		out[i] = float32((max(v, low) + 4) / 4)
	}
	valid := c.ValidFrames(total)
	return &Features{
		NMels:       c.FeatureSize,
		Frames:      frames,
		Mel:         out,
		ValidFrames: valid,
		AudioTokens: Qwen2AudioTokens(valid),
		Samples:     total,
		Truncated:   total > int64(n),
	}, nil
}
