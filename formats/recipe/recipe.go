// Package recipe reads surgery recipes: one YAML file naming the checkpoint, the data, and the
// parameters of every stage. Unknown keys are errors, so a typo never silently drops a setting.
package recipe

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"go.yaml.in/yaml/v3"
)

// ErrRecipe reports an invalid recipe.
var ErrRecipe = errors.New("recipe: invalid")

// Recipe is a surgery recipe. Paths are relative to the recipe file.
type Recipe struct {
	Model  string `yaml:"model"`
	Out    string `yaml:"out"`
	Data   string `yaml:"data"`
	Record struct {
		Concepts    []string `yaml:"concepts"`
		Coefficient string   `yaml:"coefficient"` // "a" (the papers', default) or "au" (a·u)
		MINER       bool     `yaml:"miner"`       // record MINER's importance scores
		Chat        bool     `yaml:"chat"`        // wrap samples in the chat template
	} `yaml:"record"`
	Locate struct {
		Method     string    `yaml:"method"` // miner, dape, contrib, ig, random
		Weights    []float64 `yaml:"weights"`
		Ratio      float64   `yaml:"ratio"`
		Strategy   string    `yaml:"strategy"`
		Split      string    `yaml:"split"`
		Label      string    `yaml:"label"`  // keep only neurons of this label
		Layers     []int     `yaml:"layers"` // search only these layers (default: all)
		TopK       int       `yaml:"top_k"`
		TopRate    float64   `yaml:"top_rate"`
		FilterRate float64   `yaml:"filter_rate"`
		// ActivationBarRatio is DAPE's quantile for assigning neurons to labels (default 0.95).
		ActivationBarRatio float64 `yaml:"activation_bar_ratio"`
		// ContribMode is contrib's reading: pooled (default) or per-sample (Pan et al.'s
		// official one; surgery then records the per-sample activations it needs).
		ContribMode string `yaml:"contrib_mode"`
		Seed        uint64 `yaml:"seed"`
		// Like is, for method random, the neuron-set file whose count per label, module and
		// layer the random draw copies. (Omitted from the JSON surgery keys its cache on when
		// empty, so recipes without it keep their cache entries.)
		Like string `yaml:"like" json:",omitempty"`
		// Module names the modules to select in (dape: each on its own, "all" or none for
		// every recorded one; miner and contrib: one), a name or a list; MMNeuron's aliases
		// (lang, mmproj, encoder) are accepted. Omitted from the cache key when empty.
		Module Names `yaml:"module" json:",omitempty"`
	} `yaml:"locate"`
	Patch struct {
		Ops  []string `yaml:"ops"`
		Seed uint64   `yaml:"seed"`
	} `yaml:"patch"`
	Verify struct {
		Bench      string   `yaml:"bench"`
		MaxTokens  int      `yaml:"max_tokens"`
		Gates      []string `yaml:"gates"`
		RandomSeed uint64   `yaml:"random_seed"`
	} `yaml:"verify"`
	Card struct {
		BaseModel   string   `yaml:"base_model"`
		Tags        []string `yaml:"tags"`
		Description string   `yaml:"description"`
	} `yaml:"card"`

	Dir string `yaml:"-"` // directory of the recipe file
}

// Parse decodes and validates a recipe.
func Parse(b []byte, name string) (*Recipe, error) {
	var r Recipe
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&r); err != nil {
		return nil, fmt.Errorf("%s: %w: %v", name, ErrRecipe, err)
	}
	miss := func(field string) error { return fmt.Errorf("%s: %w: %s is required", name, ErrRecipe, field) }
	switch {
	case r.Model == "":
		return nil, miss("model")
	case r.Out == "":
		return nil, miss("out")
	case r.Data == "":
		return nil, miss("data")
	case r.Locate.Method == "":
		return nil, miss("locate.method")
	case len(r.Patch.Ops) == 0:
		return nil, miss("patch.ops")
	}
	if err := dec.Decode(new(any)); err != io.EOF {
		return nil, fmt.Errorf("%s: %w: more than one YAML document", name, ErrRecipe)
	}
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%s: %w: %s", name, ErrRecipe, fmt.Sprintf(format, a...))
	}
	switch r.Locate.Method {
	case "miner", "dape", "contrib", "ig", "random":
	default:
		return nil, bad("locate.method %q (miner, dape, contrib, ig, random)", r.Locate.Method)
	}
	switch r.Record.Coefficient {
	case "", "a", "au":
	default:
		return nil, bad("record.coefficient %q (a or au)", r.Record.Coefficient)
	}
	for _, c := range r.Record.Concepts {
		if strings.TrimSpace(c) == "" {
			return nil, bad("record.concepts holds an empty word")
		}
	}
	// The stage parameters (locate's rates, ops, gates) are checked by the packages that own
	// them before any stage runs (surgery.Run); here only what the format itself defines.
	if r.Verify.MaxTokens < 0 {
		return nil, bad("verify.max_tokens %d is negative", r.Verify.MaxTokens)
	}
	switch r.Locate.ContribMode {
	case "", "pooled", "per-sample":
	default:
		return nil, fmt.Errorf("%s: %w: locate.contrib_mode %q (pooled, per-sample)", name, ErrRecipe, r.Locate.ContribMode)
	}
	return &r, nil
}

// ReadFile reads a recipe and resolves its paths against its directory.
func ReadFile(path string) (*Recipe, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	r, err := Parse(b, path)
	if err != nil {
		return nil, err
	}
	r.Dir = filepath.Dir(path)
	return r, nil
}

// Path resolves p (a path the recipe names: model, out, data, bench, an op's set:FILE)
// against the recipe's directory.
func (r *Recipe) Path(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(r.Dir, p)
}

// Names is a YAML value that is one name or a list of names.
type Names []string

// UnmarshalYAML takes a scalar as a list of one.
func (n *Names) UnmarshalYAML(v *yaml.Node) error {
	if v.Kind == yaml.ScalarNode {
		var one string
		if err := v.Decode(&one); err != nil {
			return err
		}
		*n = Names{one}
		return nil
	}
	var list []string
	if err := v.Decode(&list); err != nil {
		return err
	}
	*n = list
	return nil
}
