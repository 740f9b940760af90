package model

import (
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/neurosurg/neurosurg/model/archdef"
)

// Family is how one architecture becomes a Model: its tensors come from its archdef
// definition (model/archdef/defs), its composition and quirks from one Go file that registers
// it.
type Family struct {
	// Quirks adjusts the parsed language-model config for what the family implies and
	// config.json does not say (Qwen2: q/k/v biases). May be nil.
	Quirks func(c *Config)
	// Build binds the weights of every module and composes the model's layers.
	Build func(b *Binder) error
}

var (
	familiesMu sync.RWMutex
	families   = map[string]Family{}
)

// Register makes architecture (config.json's architectures[0]) loadable. Registering a name
// twice, or one without an archdef definition, panics: both are mistakes in a family file.
func Register(architecture string, f Family) {
	familiesMu.Lock()
	defer familiesMu.Unlock()
	if _, dup := families[architecture]; dup {
		panic("model: architecture registered twice: " + architecture)
	}
	if !archdef.Defines(architecture) {
		panic("model: architecture " + architecture + " has no archdef definition")
	}
	if f.Build == nil {
		panic("model: architecture " + architecture + " registered without Build")
	}
	families[architecture] = f
}

// Registered lists the loadable architectures, sorted.
func Registered() []string {
	familiesMu.RLock()
	defer familiesMu.RUnlock()
	out := make([]string, 0, len(families))
	for a := range families {
		out = append(out, a)
	}
	sort.Strings(out)
	return out
}

func family(architecture string) (Family, bool) {
	familiesMu.RLock()
	defer familiesMu.RUnlock()
	f, ok := families[architecture]
	return f, ok
}

// unsupported is the error for a config no registered family takes.
func unsupported(arch, modelType string) error {
	return fmt.Errorf("%w: architecture %q (model_type %q) is not supported: %s", ErrConfig, arch, modelType, strings.Join(Registered(), ", "))
}
