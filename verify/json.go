package verify

import (
	"encoding/json"
	"fmt"
	"math"
)

// JSON has no NaN or ±Inf, and a perplexity can overflow to +Inf when an edit makes the bench
// text (nearly) impossible. encoding/json refuses such a map outright, which left surgery an
// empty report file; metrics and gate values therefore travel as numbers when finite and as
// the strings "+Inf", "-Inf", "NaN" when not.

func jsonNumber(x float64) any {
	switch {
	case math.IsNaN(x):
		return "NaN"
	case math.IsInf(x, 1):
		return "+Inf"
	case math.IsInf(x, -1):
		return "-Inf"
	}
	return x
}

func parseNumber(raw json.RawMessage) (float64, error) {
	var x float64
	if err := json.Unmarshal(raw, &x); err == nil {
		return x, nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return 0, fmt.Errorf("verify: metric value %s is not a number", raw)
	}
	switch s {
	case "NaN":
		return math.NaN(), nil
	case "+Inf", "Inf":
		return math.Inf(1), nil
	case "-Inf":
		return math.Inf(-1), nil
	}
	return 0, fmt.Errorf("verify: metric value %q is not a number", s)
}

// MarshalJSON writes finite values as numbers, others as "+Inf", "-Inf" or "NaN".
func (m Metrics) MarshalJSON() ([]byte, error) {
	o := make(map[string]any, len(m))
	for k, v := range m {
		o[k] = jsonNumber(v)
	}
	return json.Marshal(o)
}

// UnmarshalJSON reads what MarshalJSON writes.
func (m *Metrics) UnmarshalJSON(b []byte) error {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	*m = make(Metrics, len(raw))
	for k, r := range raw {
		x, err := parseNumber(r)
		if err != nil {
			return fmt.Errorf("%w (metric %s)", err, k)
		}
		(*m)[k] = x
	}
	return nil
}

type gateJSON struct {
	Gate   string `json:"gate"`
	Value  any    `json:"value"`
	Passed bool   `json:"passed"`
}

// MarshalJSON writes the value as Metrics do.
func (g GateResult) MarshalJSON() ([]byte, error) {
	return json.Marshal(gateJSON{g.Gate, jsonNumber(g.Value), g.Passed})
}

// UnmarshalJSON reads what MarshalJSON writes.
func (g *GateResult) UnmarshalJSON(b []byte) error {
	var raw struct {
		Gate   string          `json:"gate"`
		Value  json.RawMessage `json:"value"`
		Passed bool            `json:"passed"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	x, err := parseNumber(raw.Value)
	if err != nil {
		return fmt.Errorf("%w (gate %s)", err, raw.Gate)
	}
	*g = GateResult{raw.Gate, x, raw.Passed}
	return nil
}
