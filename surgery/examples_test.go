package surgery

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/neurosurg/neurosurg/formats/recipe"
)

// TestExampleRecipes: every recipe in examples/ parses and passes the whole check surgery
// makes before running (locate parameters, ops, gates, verify options). Recipes for a
// user-supplied checkpoint name data and benches the user converts (docs/datasets.md): a
// bench that is not in the repository is left out of the check, one that is must read.
func TestExampleRecipes(t *testing.T) {
	paths, err := filepath.Glob("../examples/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) < 7 {
		t.Fatalf("%d example recipes, want the 3 stories ones and the 4 for real checkpoints", len(paths))
	}
	for _, p := range paths {
		t.Run(filepath.Base(p), func(t *testing.T) {
			r, err := recipe.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			if b := r.Path(r.Verify.Bench); b != "" {
				if _, err := os.Stat(b); err != nil {
					r.Verify.Bench = ""
				}
			}
			if _, err := check(r, p); err != nil {
				t.Fatal(err)
			}
		})
	}
}
