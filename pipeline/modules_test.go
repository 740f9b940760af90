package pipeline

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/neurosurg/neurosurg/formats/recipe"
	"github.com/neurosurg/neurosurg/locate"
)

// Module names reach the methods canonical from the CLI's --module and a recipe's
// locate.module (one name or a list): MMNeuron's lang is llm; all is every recorded module,
// for dape only.
func TestLocateModuleNames(t *testing.T) {
	_, _, st, hash := fixture(t)
	ctx := context.Background()
	in := LocateInputs{Stats: st, StatsSHA256: hash}
	want, err := Locate(ctx, LocateParams{Method: "dape", TopRate: 0.05, Modules: []string{"llm"}}, in)
	if err != nil {
		t.Fatal(err)
	}
	for _, mods := range [][]string{{"lang"}, {" LANG "}, {"all"}, {"llm", "lang"}} {
		got, err := Locate(ctx, LocateParams{Method: "dape", TopRate: 0.05, Modules: mods}, in)
		if err != nil || !slices.Equal(got.Neurons, want.Neurons) {
			t.Errorf("module %q: %v, %d neurons, want the llm set's %d", mods, err, len(got.Neurons), len(want.Neurons))
		}
	}
	if _, err := Locate(ctx, LocateParams{Method: "miner", Modules: []string{"lang"}}, in); err != nil {
		t.Errorf("miner in lang: %v", err)
	}
	for _, c := range []struct {
		p   LocateParams
		msg string
	}{
		{LocateParams{Method: "miner", Modules: []string{"all"}}, "dape only"},
		{LocateParams{Method: "dape", Modules: []string{"all", "vision"}}, "and alone"},
		{LocateParams{Method: "contrib", Modules: []string{"encoder"}}, `contrib module "vision"`},
	} {
		if _, err := NewLocator(c.p); !errors.Is(err, locate.ErrOption) || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%+v: %v, want %q", c.p, err, c.msg)
		}
	}
	for _, y := range []string{"module: lang", "module: [lang]", "module: [all]"} {
		r, err := recipe.Parse([]byte("model: m\nout: o\ndata: d\nlocate:\n  method: dape\n  top_rate: 0.05\n  "+y+"\npatch:\n  ops: [zero]\n"), "r.yaml")
		if err != nil {
			t.Fatalf("%s: %v", y, err)
		}
		p, err := RecipeLocate(r)
		if err != nil {
			t.Fatal(err)
		}
		got, err := Locate(ctx, p, in)
		if err != nil || !slices.Equal(got.Neurons, want.Neurons) {
			t.Errorf("recipe %s: %v", y, err)
		}
	}
	if _, err := recipe.Parse([]byte("model: m\nout: o\ndata: d\nlocate:\n  method: dape\n  module: {a: 1}\npatch:\n  ops: [zero]\n"), "r.yaml"); err == nil {
		t.Error("a recipe's module as a mapping was accepted")
	}
}
