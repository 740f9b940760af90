package model

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"

	"github.com/neurosurg/neurosurg/model/archdef"
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
	MRopeSection                  []int   `json:"mrope_section"`
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

// Bounds on config sizes: far above any published model, low enough that nothing sized by
// them (layers, rope tables, logits) can exhaust memory before the tensors are checked.
const (
	maxHidden       = 1 << 17
	maxLayers       = archdef.MaxLayers
	maxHeads        = 1 << 12
	maxHeadDim      = 1 << 12
	maxIntermediate = 1 << 20
	maxVocab        = 1 << 24
	maxPositions    = 1 << 30
)

// configError names the config key at fault; it wraps ErrConfig.
func configError(key string, format string, a ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrConfig, key, fmt.Sprintf(format, a...))
}

// checkAct refuses an activation (config key key) that activate does not implement.
func checkAct(key, act string) error {
	switch act {
	case "silu", "swish", "gelu", "gelu_pytorch_tanh", "gelu_new", "relu", "quick_gelu":
		return nil
	}
	return configError(key, "%q is not supported (silu, gelu, gelu_pytorch_tanh, gelu_new, quick_gelu, relu)", act)
}

// configTokenID reads a special token id of the config: key at the top level, else in
// text_config (newer transformers' Qwen2-VL), else def (def < 0: the key is required). It must
// be a whole number below vocab_size.
func configTokenID(b *Binder, key string, def int32) (int32, error) {
	v, ok := b.Arch.Config[key]
	if !ok || v == nil {
		if tc, _ := b.Arch.Config["text_config"].(map[string]any); tc != nil {
			v, ok = tc[key]
		}
	}
	if (!ok || v == nil) && def >= 0 {
		return def, nil
	}
	f, isNum := v.(float64)
	if !isNum || f != float64(int32(f)) || f < 0 || int(f) >= b.Model.cfg.Vocab {
		return 0, configError(key, "%v, want a token id below vocab_size %d", v, b.Model.cfg.Vocab)
	}
	return int32(f), nil
}

// ParseConfig reads config.json for a decoder architecture and refuses values that make no
// sense: sizes ≤ 0 or absurd, heads that do not divide, a norm epsilon or rope base that is
// not a positive finite number, rope scaling parameters its formulas cannot use. Errors name
// the key (callers add the file).
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
	need := func(name string, p *int, limit int) (int, error) {
		if p == nil {
			return 0, configError(name, "missing")
		}
		if *p <= 0 || *p > limit {
			return 0, configError(name, "%d, want 1..%d", *p, limit)
		}
		return *p, nil
	}
	var err error
	if c.Hidden, err = need("hidden_size", r.HiddenSize, maxHidden); err != nil {
		return c, err
	}
	if c.Layers, err = need("num_hidden_layers", r.NumHiddenLayers, maxLayers); err != nil {
		return c, err
	}
	if c.Heads, err = need("num_attention_heads", r.NumAttentionHeads, maxHeads); err != nil {
		return c, err
	}
	if c.Intermediate, err = need("intermediate_size", r.IntermediateSize, maxIntermediate); err != nil {
		return c, err
	}
	if c.Vocab, err = need("vocab_size", r.VocabSize, maxVocab); err != nil {
		return c, err
	}
	c.KVHeads = c.Heads
	if r.NumKeyValueHeads != nil {
		c.KVHeads = *r.NumKeyValueHeads
	}
	if c.KVHeads <= 0 || c.KVHeads > c.Heads || c.Heads%c.KVHeads != 0 {
		return c, configError("num_key_value_heads", "%d does not divide num_attention_heads %d", c.KVHeads, c.Heads)
	}
	if r.HeadDim != nil && *r.HeadDim != 0 {
		if *r.HeadDim < 0 || *r.HeadDim > maxHeadDim {
			return c, configError("head_dim", "%d, want 1..%d", *r.HeadDim, maxHeadDim)
		}
		c.HeadDim = *r.HeadDim
	} else {
		if c.Hidden%c.Heads != 0 {
			return c, configError("num_attention_heads", "%d does not divide hidden_size %d (and no head_dim is given)", c.Heads, c.Hidden)
		}
		c.HeadDim = c.Hidden / c.Heads
	}
	if c.HeadDim%2 != 0 {
		return c, configError("head_dim", "%d is odd (rotary embeddings pair dimensions)", c.HeadDim)
	}
	if r.MaxPositionEmbeddings < 0 || r.MaxPositionEmbeddings > maxPositions {
		return c, configError("max_position_embeddings", "%d, want 0..%d", r.MaxPositionEmbeddings, maxPositions)
	}
	c.MaxPositions = r.MaxPositionEmbeddings
	c.Eps = 1e-6
	if r.RMSNormEps != nil {
		e := *r.RMSNormEps
		if !(e > 0 && e < 1) || float32(e) == 0 {
			return c, configError("rms_norm_eps", "%g, want a number in (0, 1) that float32 holds", e)
		}
		c.Eps = float32(e)
	}
	c.RopeTheta = 10000
	if r.RopeTheta != nil {
		if t := *r.RopeTheta; !(t > 1) || math.IsInf(t, 0) {
			return c, configError("rope_theta", "%g, want a finite number > 1", t)
		}
		c.RopeTheta = *r.RopeTheta
	}
	c.RopeScaling = r.RopeScaling
	if rs := c.RopeScaling; rs != nil {
		if rs.RopeType == "" {
			rs.RopeType = rs.Type
		}
		if err := checkRopeScaling(rs, c.MaxPositions); err != nil {
			return c, err
		}
		if sec := c.mropeSection(); sec != [3]int{} && sec[0]+sec[1]+sec[2] != c.HeadDim/2 {
			return c, configError("rope_scaling.mrope_section", "%v sums to %d, want head_dim/2 = %d", rs.MRopeSection, sec[0]+sec[1]+sec[2], c.HeadDim/2)
		}
	}
	c.Act = r.HiddenAct
	if c.Act == "" {
		c.Act = "silu"
	}
	if err := checkAct("hidden_act", c.Act); err != nil {
		return c, err
	}
	c.Tied = r.TieWordEmbeddings != nil && *r.TieWordEmbeddings
	c.AttnBias, c.MLPBias = r.AttentionBias, r.MLPBias
	if r.SlidingWindow != nil {
		if *r.SlidingWindow < 0 {
			return c, configError("sliding_window", "%d is negative", *r.SlidingWindow)
		}
		// Qwen2 applies it only with use_sliding_window; Mistral whenever it is set.
		if *r.SlidingWindow > 0 && (r.UseSlidingWindow == nil || *r.UseSlidingWindow) {
			c.SlidingWindow = *r.SlidingWindow
		}
	}
	if c.BOS, err = ids("bos_token_id", r.BOSTokenID); err != nil {
		return c, err
	}
	if c.EOS, err = ids("eos_token_id", r.EOSTokenID); err != nil {
		return c, err
	}
	arch := c.Architecture
	if arch == "" {
		arch = archdef.ArchitectureOf(c.ModelType)
	}
	if f, ok := family(arch); ok && f.Quirks != nil {
		f.Quirks(&c)
	}
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

// checkRopeScaling refuses rope_scaling values its formulas cannot use (ropeFrequencies).
func checkRopeScaling(rs *RopeScaling, maxPos int) error {
	finite := func(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }
	if len(rs.MRopeSection) > 0 {
		if len(rs.MRopeSection) != 3 {
			return configError("rope_scaling.mrope_section", "%v, want 3 sizes (temporal, height, width)", rs.MRopeSection)
		}
		for _, v := range rs.MRopeSection {
			if v < 0 || v > maxHeadDim {
				return configError("rope_scaling.mrope_section", "%v, want sizes in 0..%d", rs.MRopeSection, maxHeadDim)
			}
		}
	}
	switch rs.RopeType {
	case "", "default", "mrope":
		return nil
	case "linear", "dynamic", "llama3", "yarn":
	default:
		return configError("rope_scaling.rope_type", "%q is not supported (default, mrope, linear, dynamic, llama3, yarn)", rs.RopeType)
	}
	if !(rs.Factor >= 1 && rs.Factor <= 1<<20) {
		return configError("rope_scaling.factor", "%g, want 1..%d (transformers warns below 1)", rs.Factor, 1<<20)
	}
	if rs.OriginalMaxPositionEmbeddings < 0 || rs.OriginalMaxPositionEmbeddings > maxPositions {
		return configError("rope_scaling.original_max_position_embeddings", "%d, want 0..%d", rs.OriginalMaxPositionEmbeddings, maxPositions)
	}
	switch rs.RopeType {
	case "llama3":
		if rs.OriginalMaxPositionEmbeddings == 0 {
			return configError("rope_scaling.original_max_position_embeddings", "missing (llama3 needs it)")
		}
		if !(rs.LowFreqFactor > 0) || !finite(rs.HighFreqFactor) || !(rs.HighFreqFactor > rs.LowFreqFactor) {
			return configError("rope_scaling.high_freq_factor", "%g and low_freq_factor %g: want 0 < low < high", rs.HighFreqFactor, rs.LowFreqFactor)
		}
	case "yarn":
		if rs.OriginalMaxPositionEmbeddings == 0 && maxPos == 0 {
			return configError("rope_scaling.original_max_position_embeddings", "missing, and no max_position_embeddings to derive it from")
		}
		for key, v := range map[string]float64{"beta_fast": rs.BetaFast, "beta_slow": rs.BetaSlow, "attention_factor": rs.AttentionFactor} {
			if !(v >= 0) || !finite(v) {
				return configError("rope_scaling."+key, "%g, want a finite number ≥ 0", v)
			}
		}
	}
	return nil
}

// mropeSection is rope_scaling.mrope_section, zero when the model has no M-RoPE.
func (c *Config) mropeSection() [3]int {
	if c.RopeScaling == nil || len(c.RopeScaling.MRopeSection) != 3 {
		return [3]int{}
	}
	s := c.RopeScaling.MRopeSection
	return [3]int{s[0], s[1], s[2]}
}

// ids reads a token id or a list of them (null or absent: none).
func ids(key string, raw json.RawMessage) ([]int32, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var one int32
	if err := json.Unmarshal(raw, &one); err == nil {
		if one < 0 {
			return nil, configError(key, "%d is negative", one)
		}
		return []int32{one}, nil
	}
	var many []int32
	if err := json.Unmarshal(raw, &many); err != nil {
		return nil, configError(key, "%s is not a token id or a list of them", raw)
	}
	for _, id := range many {
		if id < 0 {
			return nil, configError(key, "%d is negative", id)
		}
	}
	return many, nil
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
