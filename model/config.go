package model

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
)

// ErrConfig reports a config.json the runtime cannot use.
var ErrConfig = errors.New("model: config")

// RopeScaling is config.json's rope_scaling.
type RopeScaling struct {
	Type                          string  `json:"type"`
	RopeType                      string  `json:"rope_type"`
	Factor                        float64 `json:"factor"`
	LowFreqFactor                 float64 `json:"low_freq_factor"`
	HighFreqFactor                float64 `json:"high_freq_factor"`
	OriginalMaxPositionEmbeddings int     `json:"original_max_position_embeddings"`
	BetaFast                      float64 `json:"beta_fast"`
	BetaSlow                      float64 `json:"beta_slow"`
	AttentionFactor               float64 `json:"attention_factor"`
}

// Config is what the runtime needs from config.json.
type Config struct {
	Architecture  string
	ModelType     string
	Hidden        int
	Layers        int
	Heads         int
	KVHeads       int
	HeadDim       int
	Intermediate  int
	Vocab         int
	MaxPositions  int
	Eps           float32
	RopeTheta     float64
	RopeScaling   *RopeScaling
	Act           string
	Tied          bool
	AttnBias      bool // q/k/v (and o for Llama attention_bias) biases
	MLPBias       bool
	SlidingWindow int // 0 = none
	BOS           []int32
	EOS           []int32
}

type rawConfig struct {
	Architectures         []string        `json:"architectures"`
	ModelType             string          `json:"model_type"`
	HiddenSize            *int            `json:"hidden_size"`
	NumHiddenLayers       *int            `json:"num_hidden_layers"`
	NumAttentionHeads     *int            `json:"num_attention_heads"`
	NumKeyValueHeads      *int            `json:"num_key_value_heads"`
	HeadDim               *int            `json:"head_dim"`
	IntermediateSize      *int            `json:"intermediate_size"`
	VocabSize             *int            `json:"vocab_size"`
	MaxPositionEmbeddings int             `json:"max_position_embeddings"`
	RMSNormEps            *float64        `json:"rms_norm_eps"`
	RopeTheta             *float64        `json:"rope_theta"`
	RopeScaling           *RopeScaling    `json:"rope_scaling"`
	HiddenAct             string          `json:"hidden_act"`
	TieWordEmbeddings     *bool           `json:"tie_word_embeddings"`
	AttentionBias         bool            `json:"attention_bias"`
	MLPBias               bool            `json:"mlp_bias"`
	SlidingWindow         *int            `json:"sliding_window"`
	UseSlidingWindow      *bool           `json:"use_sliding_window"`
	BOSTokenID            json.RawMessage `json:"bos_token_id"`
	EOSTokenID            json.RawMessage `json:"eos_token_id"`
}

// ParseConfig reads config.json for a decoder architecture.
func ParseConfig(b []byte) (Config, error) {
	var r rawConfig
	if err := json.Unmarshal(b, &r); err != nil {
		return Config{}, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	var c Config
	if len(r.Architectures) > 0 {
		c.Architecture = r.Architectures[0]
	}
	c.ModelType = r.ModelType
	need := func(name string, p *int) (int, error) {
		if p == nil || *p <= 0 {
			return 0, fmt.Errorf("%w: missing or non-positive %q", ErrConfig, name)
		}
		return *p, nil
	}
	var err error
	if c.Hidden, err = need("hidden_size", r.HiddenSize); err != nil {
		return c, err
	}
	if c.Layers, err = need("num_hidden_layers", r.NumHiddenLayers); err != nil {
		return c, err
	}
	if c.Heads, err = need("num_attention_heads", r.NumAttentionHeads); err != nil {
		return c, err
	}
	if c.Intermediate, err = need("intermediate_size", r.IntermediateSize); err != nil {
		return c, err
	}
	if c.Vocab, err = need("vocab_size", r.VocabSize); err != nil {
		return c, err
	}
	c.KVHeads = c.Heads
	if r.NumKeyValueHeads != nil {
		c.KVHeads = *r.NumKeyValueHeads
	}
	if c.KVHeads <= 0 || c.Heads%c.KVHeads != 0 {
		return c, fmt.Errorf("%w: num_attention_heads %d is not a multiple of num_key_value_heads %d", ErrConfig, c.Heads, c.KVHeads)
	}
	c.HeadDim = c.Hidden / c.Heads
	if r.HeadDim != nil && *r.HeadDim > 0 {
		c.HeadDim = *r.HeadDim
	}
	if c.HeadDim%2 != 0 {
		return c, fmt.Errorf("%w: head_dim %d is odd", ErrConfig, c.HeadDim)
	}
	c.MaxPositions = r.MaxPositionEmbeddings
	c.Eps = 1e-6
	if r.RMSNormEps != nil {
		c.Eps = float32(*r.RMSNormEps)
	}
	c.RopeTheta = 10000
	if r.RopeTheta != nil {
		c.RopeTheta = *r.RopeTheta
	}
	c.RopeScaling = r.RopeScaling
	if rs := c.RopeScaling; rs != nil {
		if rs.RopeType == "" {
			rs.RopeType = rs.Type
		}
		switch rs.RopeType {
		case "", "default", "linear", "dynamic", "llama3", "yarn":
		default:
			return c, fmt.Errorf("%w: rope_scaling type %q is not supported (default, linear, dynamic, llama3, yarn)", ErrConfig, rs.RopeType)
		}
	}
	c.Act = r.HiddenAct
	if c.Act == "" {
		c.Act = "silu"
	}
	switch c.Act {
	case "silu", "swish", "gelu", "gelu_pytorch_tanh", "gelu_new", "relu":
	default:
		return c, fmt.Errorf("%w: hidden_act %q is not supported", ErrConfig, c.Act)
	}
	c.Tied = r.TieWordEmbeddings != nil && *r.TieWordEmbeddings
	c.AttnBias, c.MLPBias = r.AttentionBias, r.MLPBias
	if c.ModelType == "qwen2" || c.Architecture == "Qwen2ForCausalLM" {
		c.AttnBias = true // Qwen2 always has q/k/v biases (and no o bias)
	}
	if r.SlidingWindow != nil && *r.SlidingWindow > 0 {
		// Qwen2 applies it only with use_sliding_window; Mistral whenever it is set.
		if r.UseSlidingWindow == nil || *r.UseSlidingWindow {
			c.SlidingWindow = *r.SlidingWindow
		}
	}
	c.BOS = ids(r.BOSTokenID)
	c.EOS = ids(r.EOSTokenID)
	return c, nil
}

// ErrTooLong reports a sequence with more positions than the model was made for.
var ErrTooLong = errors.New("model: sequence longer than max_position_embeddings")

// PositionLimit is the most positions a sequence may have, 0 when config.json does not say:
// max_position_embeddings, times the factor for dynamic NTK RoPE scaling (which exists to run
// past it; transformers sets no bound there, this keeps one). Past it RoPE angles the model
// never saw make fluent-looking garbage, so the runtime refuses instead.
func (c Config) PositionLimit() int {
	if c.MaxPositions <= 0 {
		return 0
	}
	if rs := c.RopeScaling; rs != nil && rs.RopeType == "dynamic" && rs.Factor > 1 {
		return int(float64(c.MaxPositions) * rs.Factor)
	}
	return c.MaxPositions
}

// tooLong is the error for n positions past limit.
func tooLong(what string, n, limit int) error {
	return fmt.Errorf("%w: %s has %d tokens, more than the model's %d (max_position_embeddings)", ErrTooLong, what, n, limit)
}

func ids(raw json.RawMessage) []int32 {
	var one int32
	if json.Unmarshal(raw, &one) == nil && len(raw) > 0 && string(raw) != "null" {
		return []int32{one}
	}
	var many []int32
	json.Unmarshal(raw, &many)
	return many
}

// ropeFrequencies returns the inverse frequencies (appended to dst) and the cos/sin scale for
// a sequence of length seqLen, following transformers' modeling_rope_utils.
func (c *Config) ropeFrequencies(dst []float64, seqLen int) ([]float64, float64) {
	d := c.HeadDim
	base := c.RopeTheta
	rs := c.RopeScaling
	typ := ""
	if rs != nil {
		typ = rs.RopeType
	}
	if typ == "dynamic" && c.MaxPositions > 0 && seqLen > c.MaxPositions {
		base *= math.Pow(rs.Factor*float64(seqLen)/float64(c.MaxPositions)-(rs.Factor-1), float64(d)/float64(d-2))
	}
	inv := append(dst, make([]float64, d/2)...)[len(dst):]
	for i := range inv {
		inv[i] = 1 / math.Pow(base, float64(2*i)/float64(d))
	}
	scale := 1.0
	switch typ {
	case "linear":
		for i := range inv {
			inv[i] /= rs.Factor
		}
	case "llama3":
		orig := float64(rs.OriginalMaxPositionEmbeddings)
		lowWave, highWave := orig/rs.LowFreqFactor, orig/rs.HighFreqFactor
		for i, f := range inv {
			wave := 2 * math.Pi / f
			switch {
			case wave < highWave:
			case wave > lowWave:
				inv[i] = f / rs.Factor
			default:
				s := (orig/wave - rs.LowFreqFactor) / (rs.HighFreqFactor - rs.LowFreqFactor)
				inv[i] = (1-s)*f/rs.Factor + s*f
			}
		}
	case "yarn":
		orig := float64(rs.OriginalMaxPositionEmbeddings)
		if orig == 0 {
			orig = float64(c.MaxPositions) / rs.Factor
		}
		bf, bs := rs.BetaFast, rs.BetaSlow
		if bf == 0 {
			bf = 32
		}
		if bs == 0 {
			bs = 1
		}
		corr := func(rot float64) float64 {
			return float64(d) * math.Log(orig/(rot*2*math.Pi)) / (2 * math.Log(base))
		}
		low := math.Max(math.Floor(corr(bf)), 0)
		high := math.Min(math.Ceil(corr(bs)), float64(d-1))
		if low == high {
			high += 0.001
		}
		for i, f := range inv {
			ramp := math.Min(math.Max((float64(i)-low)/(high-low), 0), 1)
			extrap := 1 - ramp
			inv[i] = f/rs.Factor*(1-extrap) + f*extrap
		}
		scale = rs.AttentionFactor
		if scale == 0 {
			scale = 1
			if rs.Factor > 1 {
				scale = 0.1*math.Log(rs.Factor) + 1
			}
		}
	}
	return inv, scale
}

// RopeFrequencies exposes the inverse frequencies and cos/sin scale for tests and tools.
func RopeFrequencies(c *Config, seqLen int) ([]float64, float64) {
	return c.ropeFrequencies(nil, seqLen)
}
