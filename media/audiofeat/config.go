package audiofeat

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
)

// ErrConfig reports a preprocessor_config.json this package cannot follow exactly.
var ErrConfig = errors.New("audiofeat: unsupported preprocessor config")

// Config holds the WhisperFeatureExtractor settings of a checkpoint's preprocessor_config.json.
type Config struct {
	FeatureSize  int     // mel bins (feature_size)
	SamplingRate int     // Hz
	HopLength    int     // samples between frames
	ChunkLength  int     // seconds; audio is padded or truncated to ChunkLength·SamplingRate samples
	NFFT         int     // FFT size and window length
	PaddingValue float64 // value of the padding samples
}

// DefaultConfig returns WhisperFeatureExtractor's constructor defaults, which apply to every key
// a preprocessor_config.json leaves out.
func DefaultConfig() Config {
	return Config{FeatureSize: 80, SamplingRate: 16000, HopLength: 160, ChunkLength: 30, NFFT: 400}
}

// NSamples is the number of samples the waveform is padded or truncated to.
func (c Config) NSamples() int { return c.ChunkLength * c.SamplingRate }

// NFrames is the number of feature frames: the STFT's frames less the last, as HF drops it.
func (c Config) NFrames() int { return c.NSamples() / c.HopLength }

// Limits that keep a hostile config from asking for an unbounded allocation. Real checkpoints
// (Whisper, Qwen2-Audio) sit far inside them.
const (
	maxSamples  = 1 << 24 // padded waveform length (17 min at 16 kHz)
	maxFeatures = 1 << 24 // mel bins × frames
	maxNFFT     = 1 << 16
	maxMels     = 4096
)

// Validate reports settings that HF would follow differently, or that would need unbounded
// memory.
func (c Config) Validate() error {
	switch {
	case c.FeatureSize < 1 || c.FeatureSize > maxMels:
		return fmt.Errorf("%w: feature_size %d (want 1..%d)", ErrConfig, c.FeatureSize, maxMels)
	case c.SamplingRate < 1 || c.SamplingRate > 1<<20:
		return fmt.Errorf("%w: sampling_rate %d", ErrConfig, c.SamplingRate)
	case c.HopLength < 1:
		return fmt.Errorf("%w: hop_length %d", ErrConfig, c.HopLength)
	case c.ChunkLength < 1 || c.ChunkLength > maxSamples:
		return fmt.Errorf("%w: chunk_length %d", ErrConfig, c.ChunkLength)
	case c.NFFT < 2 || c.NFFT > maxNFFT || c.NFFT%2 != 0:
		// An odd n_fft makes HF's attention mask one entry longer than the features.
		return fmt.Errorf("%w: n_fft %d (want an even number in 2..%d)", ErrConfig, c.NFFT, maxNFFT)
	}
	n := c.NSamples()
	switch {
	case n > maxSamples:
		return fmt.Errorf("%w: chunk_length·sampling_rate = %d samples (limit %d)", ErrConfig, n, maxSamples)
	case n%c.HopLength != 0:
		// Otherwise HF's attention mask (every hop_length-th sample) outgrows the features.
		return fmt.Errorf("%w: %d samples are not a whole number of %d-sample hops", ErrConfig, n, c.HopLength)
	case n <= c.NFFT/2:
		return fmt.Errorf("%w: %d samples are too few to reflect-pad by n_fft/2 = %d", ErrConfig, n, c.NFFT/2)
	case c.FeatureSize*c.NFrames() > maxFeatures:
		return fmt.Errorf("%w: %d mel bins × %d frames (limit %d values)", ErrConfig, c.FeatureSize, c.NFrames(), maxFeatures)
	}
	return nil
}

// rawConfig is preprocessor_config.json; a nil field was absent.
type rawConfig struct {
	FeatureExtractorType *string  `json:"feature_extractor_type"`
	FeatureSize          *int     `json:"feature_size"`
	SamplingRate         *int     `json:"sampling_rate"`
	HopLength            *int     `json:"hop_length"`
	ChunkLength          *int     `json:"chunk_length"`
	NFFT                 *int     `json:"n_fft"`
	PaddingValue         *float64 `json:"padding_value"`
	PaddingSide          *string  `json:"padding_side"`
	Dither               *float64 `json:"dither"`
	NSamples             *int     `json:"n_samples"`
	NbMaxFrames          *int     `json:"nb_max_frames"`
}

// LoadConfig reads a checkpoint's preprocessor_config.json.
func LoadConfig(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, err
	}
	c, err := ParseConfig(data)
	if err != nil {
		return Config{}, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// ParseConfig parses the text of a preprocessor_config.json, filling absent keys with
// DefaultConfig's values, and validates the result. Keys that do not affect the features
// (processor_class, return_attention_mask, ...) are ignored; n_samples and nb_max_frames, which
// HF recomputes from the other keys, must agree with them.
func ParseConfig(data []byte) (Config, error) {
	var raw rawConfig
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&raw); err != nil {
		return Config{}, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	if dec.More() {
		return Config{}, fmt.Errorf("%w: trailing data after the JSON object", ErrConfig)
	}
	if t := raw.FeatureExtractorType; t != nil && *t != "WhisperFeatureExtractor" {
		return Config{}, fmt.Errorf("%w: feature_extractor_type %q (want WhisperFeatureExtractor)", ErrConfig, *t)
	}
	if s := raw.PaddingSide; s != nil && *s != "right" {
		return Config{}, fmt.Errorf("%w: padding_side %q (only \"right\" is supported)", ErrConfig, *s)
	}
	if d := raw.Dither; d != nil && *d != 0 {
		return Config{}, fmt.Errorf("%w: dither %g adds random noise, so the features are not reproducible", ErrConfig, *d)
	}
	c := DefaultConfig()
	setInt(&c.FeatureSize, raw.FeatureSize)
	setInt(&c.SamplingRate, raw.SamplingRate)
	setInt(&c.HopLength, raw.HopLength)
	setInt(&c.ChunkLength, raw.ChunkLength)
	setInt(&c.NFFT, raw.NFFT)
	if raw.PaddingValue != nil {
		c.PaddingValue = *raw.PaddingValue
	}
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	if raw.NSamples != nil && *raw.NSamples != c.NSamples() {
		return Config{}, fmt.Errorf("%w: n_samples %d, but chunk_length·sampling_rate = %d", ErrConfig, *raw.NSamples, c.NSamples())
	}
	if raw.NbMaxFrames != nil && *raw.NbMaxFrames != c.NFrames() {
		return Config{}, fmt.Errorf("%w: nb_max_frames %d, but n_samples/hop_length = %d", ErrConfig, *raw.NbMaxFrames, c.NFrames())
	}
	return c, nil
}

func setInt(dst *int, v *int) {
	if v != nil {
		*dst = *v
	}
}
