package report

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/neurosurg/neurosurg/formats/neuronset"
	"github.com/neurosurg/neurosurg/locate"
	"github.com/neurosurg/neurosurg/verify"
)

// Load reads the files of the separate commands into an Input, telling them apart by content:
// a stats file (record), neuron sets (locate; a set whose method is "random" is the baseline),
// a verify report (verify --out R writes R.json) and a recipe (.yaml).
func Load(paths []string) (*Input, error) {
	in := &Input{}
	var sets []*neuronset.Set
	var setPaths []string
	seen := map[string]string{} // kind → first file
	once := func(kind, path string) error {
		if prev, ok := seen[kind]; ok {
			return fmt.Errorf("%w: %s and %s are both %s; give one", ErrInput, prev, path, kind)
		}
		seen[kind] = path
		return nil
	}
	for _, p := range paths {
		switch ext := strings.ToLower(filepath.Ext(p)); ext {
		case ".yaml", ".yml":
			if err := once("recipes", p); err != nil {
				return nil, err
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return nil, err
			}
			in.Recipe, in.RecipePath = string(b), filepath.Base(p)
		case ".st", ".safetensors":
			if err := once("stats files", p); err != nil {
				return nil, err
			}
			st, err := locate.ReadStats(p)
			if err != nil {
				return nil, err
			}
			in.Stats = st
		default:
			b, err := os.ReadFile(p)
			if err != nil {
				return nil, err
			}
			kind, err := jsonKind(b)
			if err != nil {
				return nil, fmt.Errorf("%w: %s: %v", ErrInput, p, err)
			}
			switch kind {
			case "neurons":
				s, err := neuronset.Unmarshal(b)
				if err != nil {
					return nil, fmt.Errorf("%s: %w", p, err)
				}
				sets, setPaths = append(sets, s), append(setPaths, p)
			case "verify":
				if err := once("verify reports", p); err != nil {
					return nil, err
				}
				rep, err := ParseVerify(b)
				if err != nil {
					return nil, fmt.Errorf("%s: %w", p, err)
				}
				in.Verify = rep
			}
		}
	}
	switch len(sets) {
	case 0:
	case 1:
		in.Neurons = sets[0]
	case 2:
		a, b := sets[0], sets[1]
		if a.Method == "random" && b.Method != "random" {
			a, b = b, a
		}
		if b.Method != "random" {
			return nil, fmt.Errorf("%w: %s and %s are both selections; give one, and at most one random baseline (method \"random\")", ErrInput, setPaths[0], setPaths[1])
		}
		in.Neurons, in.Random = a, b
	default:
		return nil, fmt.Errorf("%w: %d neuron sets (%s); give one, and at most one random baseline", ErrInput, len(sets), strings.Join(setPaths, ", "))
	}
	if in.Neurons != nil {
		in.ModelHash = in.Neurons.ModelSHA256
	}
	if in.Stats != nil && in.ModelHash == "" {
		in.ModelHash = in.Stats.ModelHash
	}
	return in, nil
}

// jsonKind tells a neuron set from a verify report by their required keys.
func jsonKind(b []byte) (string, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(b, &top); err != nil {
		return "", fmt.Errorf("not a stats file (.st), recipe (.yaml), neuron set or verify report: %v", err)
	}
	_, neurons := top["neurons"]
	_, metrics := top["metrics"]
	switch {
	case neurons && !metrics:
		return "neurons", nil
	case metrics && !neurons:
		return "verify", nil
	}
	return "", fmt.Errorf("neither a neuron set (no \"neurons\") nor a verify report (no \"metrics\")")
}

// ParseVerify decodes and checks a verify report's JSON.
func ParseVerify(b []byte) (*verify.Report, error) {
	var rep verify.Report
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(&rep); err != nil {
		return nil, fmt.Errorf("%w: verify report: %v", ErrInput, err)
	}
	if len(rep.Variants) == 0 {
		return nil, fmt.Errorf("%w: verify report: no variants", ErrInput)
	}
	for _, v := range rep.Variants {
		if _, ok := rep.Metrics[v]; !ok {
			return nil, fmt.Errorf("%w: verify report: variant %q has no metrics", ErrInput, v)
		}
	}
	for i, g := range rep.Generations {
		if g.Text == nil {
			return nil, fmt.Errorf("%w: verify report: generation %d (%q) has no texts", ErrInput, i, g.ID)
		}
	}
	return &rep, nil
}
