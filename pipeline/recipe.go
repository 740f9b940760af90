package pipeline

import (
	"fmt"

	"github.com/neurosurg/neurosurg/formats/neuronset"
	"github.com/neurosurg/neurosurg/formats/recipe"
	"github.com/neurosurg/neurosurg/locate"
)

// RecipeLocate is the recipe's locate section as LocateParams, the same fields the CLI's
// locate flags fill. ig's concept is the recipe's one record.concepts word; random's like set
// is read from locate.like, relative to the recipe.
func RecipeLocate(r *recipe.Recipe) (LocateParams, error) {
	lr := r.Locate
	p := LocateParams{Method: lr.Method, Weights: lr.Weights, Ratio: lr.Ratio, Strategy: lr.Strategy, Split: lr.Split,
		TopRate: lr.TopRate, FilterRate: lr.FilterRate, ActivationBarRatio: lr.ActivationBarRatio,
		TopK: lr.TopK, Layers: lr.Layers, ContribMode: lr.ContribMode, Seed: lr.Seed, Label: lr.Label,
		Modules: lr.Module}
	if lr.Method == "ig" {
		if len(r.Record.Concepts) != 1 {
			return p, fmt.Errorf("%w: locate.method ig needs exactly one record.concepts word, got %d", locate.ErrOption, len(r.Record.Concepts))
		}
		p.Concept = r.Record.Concepts[0]
	}
	if lr.Like != "" {
		like, err := neuronset.ReadFile(r.Path(lr.Like))
		if err != nil {
			return p, fmt.Errorf("locate.like: %w", err)
		}
		p.Like = like
	}
	return p, nil
}
