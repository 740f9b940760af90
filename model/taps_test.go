package model_test

import (
	"context"
	"math"
	"testing"

	"github.com/neurosurg/neurosurg/model"
)

type attnRecorder struct {
	causal, nonCausal []model.AttnEvent
	ffn               int
}

func (a *attnRecorder) FFN(e *model.FFNEvent) { a.ffn++ }
func (a *attnRecorder) Attention(e *model.AttnEvent) {
	c := *e
	c.Probs = append([]float32(nil), e.Probs...)
	if e.NonCausal {
		a.nonCausal = append(a.nonCausal, c)
	} else {
		a.causal = append(a.causal, c)
	}
}
func (a *attnRecorder) WantsAttention() (bool, bool) { return true, true }

// meanRecorder reads only the mean over heads of the non-causal probabilities (as MINER does).
type meanRecorder struct {
	means  [][]float32
	probed bool // some event carried per-head probabilities
}

func (a *meanRecorder) FFN(e *model.FFNEvent) {}
func (a *meanRecorder) Attention(e *model.AttnEvent) {
	a.means = append(a.means, append([]float32(nil), e.Mean...))
	a.probed = a.probed || e.Probs != nil
}
func (a *meanRecorder) WantsAttention() (bool, bool) { return false, true }
func (a *meanRecorder) MeanOnly() bool               { return true }

// AttnEvent.Mean is the mean over heads of Probs; a tap that reads only the mean gets no
// per-head probabilities, and the same mean as beside a tap that asks for them.
func TestAttentionTapMean(t *testing.T) {
	m := openModel(t, stories)
	ids := []int32{1, 403, 407, 261, 378, 432, 290, 301, 311, 276, 350, 402, 280, 299, 305, 318, 330, 341, 1, 403}
	full, alone, beside := &attnRecorder{}, &meanRecorder{}, &meanRecorder{}
	if _, err := m.Forward(context.Background(), [][]int32{ids}, model.ForwardOptions{Taps: []model.Tap{full, beside}}); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Forward(context.Background(), [][]int32{ids}, model.ForwardOptions{Taps: []model.Tap{alone}}); err != nil {
		t.Fatal(err)
	}
	if alone.probed || !beside.probed {
		t.Fatalf("per-head probabilities: mean-only tap alone %v (want false), beside a per-head tap %v (want true)", alone.probed, beside.probed)
	}
	if len(alone.means) != len(full.nonCausal) || len(alone.means) == 0 {
		t.Fatalf("%d mean events, %d non-causal events", len(alone.means), len(full.nonCausal))
	}
	T := len(ids)
	for l, e := range full.nonCausal {
		for i := 0; i < T*T; i++ {
			var want float64
			for h := 0; h < e.Heads; h++ {
				want += float64(e.Probs[h*T*T+i])
			}
			want /= float64(e.Heads)
			if got := alone.means[l][i]; math.Abs(float64(got)-want) > 1e-6 || got != beside.means[l][i] {
				t.Fatalf("layer %d mean[%d] = %g (beside a per-head tap %g), want %g", l, i, got, beside.means[l][i], want)
			}
		}
	}
}

// The causal probabilities are the model's; the non-causal ones (MINER's variant) are the same
// scores normalised over all keys: on row r, causal[c] = nonCausal[c] / Σ_{c' ≤ r} nonCausal[c'].
func TestAttentionTaps(t *testing.T) {
	m := openModel(t, stories)
	rec := &attnRecorder{}
	ids := []int32{1, 403, 407, 261, 378, 432}
	plain, _ := m.Forward(context.Background(), [][]int32{ids}, model.ForwardOptions{})
	tapped, err := m.Forward(context.Background(), [][]int32{ids}, model.ForwardOptions{Taps: []model.Tap{rec}})
	if err != nil {
		t.Fatal(err)
	}
	for j := range plain.Logits[0] {
		if plain.Logits[0][j] != tapped.Logits[0][j] {
			t.Fatal("an observing tap changed the logits")
		}
	}
	cfg := m.Config()
	if len(rec.causal) != cfg.Layers || len(rec.nonCausal) != cfg.Layers || rec.ffn != cfg.Layers {
		t.Fatalf("events: %d causal, %d non-causal, %d ffn", len(rec.causal), len(rec.nonCausal), rec.ffn)
	}
	for l := range rec.causal {
		c, n := rec.causal[l], rec.nonCausal[l]
		T := len(ids)
		for h := 0; h < c.Heads; h++ {
			for r := 0; r < T; r++ {
				row := c.Probs[(h*T+r)*T : (h*T+r+1)*T]
				nrow := n.Probs[(h*T+r)*T : (h*T+r+1)*T]
				var sum, nsum, prefix float64
				for col := range row {
					sum += float64(row[col])
					nsum += float64(nrow[col])
					if col > r && row[col] != 0 {
						t.Fatalf("layer %d head %d: causal row %d attends to future key %d", l, h, r, col)
					}
					if col <= r {
						prefix += float64(nrow[col])
					}
				}
				if math.Abs(sum-1) > 1e-5 || math.Abs(nsum-1) > 1e-5 {
					t.Fatalf("rows do not sum to 1: %g %g", sum, nsum)
				}
				for col := 0; col <= r; col++ {
					if d := math.Abs(float64(row[col]) - float64(nrow[col])/prefix); d > 1e-5 {
						t.Fatalf("layer %d head %d row %d col %d: causal %g vs renormalised non-causal %g", l, h, r, col, row[col], float64(nrow[col])/prefix)
					}
				}
			}
		}
	}
}

// RoPE scaling: the inverse frequencies of each type at both ends of the spectrum, computed by
// hand from transformers' modeling_rope_utils formulas.
func TestRopeScalingFrequencies(t *testing.T) {
	base := `{"architectures":["LlamaForCausalLM"],"hidden_size":64,"num_hidden_layers":1,"num_attention_heads":1,"intermediate_size":8,"vocab_size":8,"rope_theta":10000,"max_position_embeddings":8192`
	cases := []struct {
		name, scaling string
		check         func(inv []float64, scale float64) bool
	}{
		{"linear", `{"type":"linear","factor":4}`, func(inv []float64, s float64) bool {
			return close(inv[0], 0.25) && close(inv[31], math.Pow(10000, -62.0/64)/4) && s == 1
		}},
		// llama3: high frequencies (short wavelengths) kept, low ones divided by the factor.
		{"llama3", `{"rope_type":"llama3","factor":8,"low_freq_factor":1,"high_freq_factor":4,"original_max_position_embeddings":8192}`, func(inv []float64, s float64) bool {
			return close(inv[0], 1) && close(inv[31], math.Pow(10000, -62.0/64)/8) && s == 1
		}},
		// yarn: same two ends, plus the attention factor 0.1·ln(f)+1 on cos/sin.
		{"yarn", `{"rope_type":"yarn","factor":4,"original_max_position_embeddings":2048}`, func(inv []float64, s float64) bool {
			return close(inv[0], 1) && close(inv[31], math.Pow(10000, -62.0/64)/4) && close(s, 0.1*math.Log(4)+1)
		}},
	}
	for _, c := range cases {
		cfg, err := model.ParseConfig([]byte(base + `,"rope_scaling":` + c.scaling + `}`))
		if err != nil {
			t.Fatal(err)
		}
		inv, scale := model.RopeFrequencies(&cfg, 16)
		if !c.check(inv, scale) {
			t.Errorf("%s: inv[0]=%g inv[31]=%g scale=%g", c.name, inv[0], inv[31], scale)
		}
	}
	if _, err := model.ParseConfig([]byte(base + `,"rope_scaling":{"type":"longrope","factor":2}}`)); err == nil {
		t.Error("unsupported rope type accepted")
	}
}

func close(a, b float64) bool { return math.Abs(a-b) <= 1e-12*math.Max(1, math.Abs(b)) }
