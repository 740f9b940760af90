package neuronset

import "strings"

// ModuleNames are the FFN modules as users read them: the language model, the vision encoder,
// the projector between them, the audio encoder, and InstructBLIP's Q-Former paths (its
// instruction-text FFN "qformer" and its learned-query FFN "query", two modules in MMNeuron).
// A family names its modules in its architecture definition (model/archdef/defs); these are
// the names they use.
var ModuleNames = []string{"llm", "vision", "projector", "audio", "qformer", "query"}

// ModuleAliases are MMNeuron's names of the same modules, accepted wherever a module is named
// (a neuron-set file, --module, a recipe's locate.module) and read as the canonical one.
var ModuleAliases = map[string]string{"lang": "llm", "mmproj": "projector", "encoder": "vision"}

// AllModules is what --module names to select in every recorded module.
const AllModules = "all"

// CanonicalModule is the module a user's name means: an alias's module, any other name as it
// is (case and surrounding space ignored for the known names and aliases).
func CanonicalModule(name string) string {
	k := strings.ToLower(strings.TrimSpace(name))
	if m, ok := ModuleAliases[k]; ok {
		return m
	}
	for _, m := range ModuleNames {
		if k == m {
			return m
		}
	}
	return name
}
