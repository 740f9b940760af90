// Package surgery runs a recipe end to end: record → locate → patch → verify → write. Each
// stage's output is cached under the hash of its inputs, so changing only the op reruns only
// patch onward; verify gates decide whether the checkpoint is written.
package surgery

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/neurosurg/neurosurg/formats/atomicfile"
	"github.com/neurosurg/neurosurg/formats/edit"
	"github.com/neurosurg/neurosurg/formats/hfdir"
	"github.com/neurosurg/neurosurg/formats/neuronset"
	"github.com/neurosurg/neurosurg/formats/recipe"
	"github.com/neurosurg/neurosurg/formats/samples"
	"github.com/neurosurg/neurosurg/locate"
	"github.com/neurosurg/neurosurg/model"
	"github.com/neurosurg/neurosurg/model/tokenizer"
	"github.com/neurosurg/neurosurg/patch"
	"github.com/neurosurg/neurosurg/verify"
)

// Version is written into provenance files.
const Version = "0.1.0"

// Options control Run.
type Options struct {
	Force bool             // write even when gates fail (recorded in the provenance)
	Log   func(msg string) // stage progress
}

// Result says what a run did.
type Result struct {
	Out     string
	Written bool
	Report  *verify.Report
	Cached  []string // stages served from the cache
	Files   map[string]string
	Forced  bool
}

// Run executes the recipe at path.
func Run(ctx context.Context, path string, o Options) (*Result, error) {
	log := o.Log
	if log == nil {
		log = func(string) {}
	}
	rb, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	r, err := recipe.ReadFile(path)
	if err != nil {
		return nil, err
	}
	out := r.Path(r.Out)
	if _, err := os.Lstat(out); err == nil {
		return nil, fmt.Errorf("surgery: %s: %w (remove it to run again)", out, hfdir.ErrExists)
	}
	work := out + ".surgery"
	if err := os.MkdirAll(work, 0o755); err != nil {
		return nil, err
	}
	res := &Result{Out: out, Files: map[string]string{}}
	base, err := hfdir.Open(r.Path(r.Model))
	if err != nil {
		return nil, err
	}
	defer base.Close()
	m, err := model.Load(base.ConfigJSON, base)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", base.Dir, err)
	}
	m.Tokenizer, err = tokenizer.Load(base.Dir)
	if err != nil {
		return nil, err
	}
	dataPath := r.Path(r.Data)
	data, err := samples.ReadFile(dataPath)
	if err != nil {
		return nil, err
	}
	dataHash, err := fileHash(dataPath)
	if err != nil {
		return nil, err
	}
	fp := base.Fingerprint()

	// record
	statsPath := filepath.Join(work, "stats-"+key(fp, dataHash, r.Record)+".st")
	if exists(statsPath) {
		res.Cached = append(res.Cached, "record")
	} else {
		log("record: " + dataPath)
		st, err := locate.Record(ctx, m, data, nil, locate.RecordOptions{Concepts: r.Record.Concepts, ModelHash: fp, Product: r.Record.Coefficient == "au", MINER: r.Record.MINER, Chat: r.Record.Chat})
		if err != nil {
			return nil, err
		}
		if err := st.WriteFile(statsPath); err != nil {
			return nil, err
		}
	}
	statsHash, _ := fileHash(statsPath)
	st, err := locate.ReadStats(statsPath)
	if err != nil {
		return nil, err
	}

	// locate
	lp := r.Locate
	neuronsPath := filepath.Join(work, "neurons-"+key(statsHash, lp)+".json")
	randomPath := filepath.Join(work, "neurons-random-"+key(statsHash, lp, r.Verify.RandomSeed)+".json")
	if exists(neuronsPath) && exists(randomPath) {
		res.Cached = append(res.Cached, "locate")
	} else {
		log("locate: " + lp.Method)
		var set *neuronset.Set
		switch lp.Method {
		case "miner":
			o := locate.MINEROptions{Ratio: lp.Ratio, Strategy: lp.Strategy, Split: lp.Split, Seed: lp.Seed}
			if len(lp.Weights) == 5 {
				copy(o.Weights[:], lp.Weights)
			} else if len(lp.Weights) != 0 {
				return nil, fmt.Errorf("%s: locate.weights needs 5 numbers (prob, mean, max, attn_k, attn_q)", path)
			}
			set, err = locate.MINER(st, o)
		case "dape":
			set, err = locate.DAPE(st, locate.DAPEOptions{TopRate: lp.TopRate, FilterRate: lp.FilterRate})
		case "contrib":
			set, err = locate.Contrib(st, locate.ContribOptions{TopK: lp.TopK, Layers: lp.Layers})
		case "ig":
			if len(r.Record.Concepts) != 1 {
				return nil, fmt.Errorf("%s: locate.method ig needs exactly one record.concepts word", path)
			}
			set, err = locate.IG(ctx, m, data, locate.IGOptions{Concept: r.Record.Concepts[0], TopK: lp.TopK})
		case "random":
			like, e := locate.Contrib(st, locate.ContribOptions{TopK: lp.TopK})
			set, err = locate.Random(like, st.Layers, st.Neurons, lp.Seed), e
		}
		if err != nil {
			return nil, err
		}
		if lp.Label != "" {
			keep := set.Neurons[:0]
			for _, n := range set.Neurons {
				if n.Label == lp.Label {
					keep = append(keep, n)
				}
			}
			set.Neurons, set.Labels = keep, []string{lp.Label}
		}
		if len(set.Neurons) == 0 {
			return nil, fmt.Errorf("surgery: locate selected no neurons")
		}
		set.StatsSHA256, set.ModelSHA256 = statsHash, fp
		if err := writeSet(neuronsPath, set); err != nil {
			return nil, err
		}
		if err := locate.PlotLayers(set, st.Layers, strings.TrimSuffix(neuronsPath, ".json")+".svg"); err != nil {
			return nil, err
		}
		rnd := locate.Random(set, st.Layers, st.Neurons, r.Verify.RandomSeed)
		rnd.StatsSHA256, rnd.ModelSHA256 = statsHash, fp
		if err := writeSet(randomPath, rnd); err != nil {
			return nil, err
		}
	}
	set, err := neuronset.ReadFile(neuronsPath)
	if err != nil {
		return nil, err
	}
	rnd, err := neuronset.ReadFile(randomPath)
	if err != nil {
		return nil, err
	}
	neuronsHash, _ := fileHash(neuronsPath)
	randomHash, _ := fileHash(randomPath)

	// patch
	var ops []patch.Op
	var swapOp *patch.Op
	for _, s := range r.Patch.Ops {
		op, err := patch.ParseOp(s)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		op.Seed = r.Patch.Seed
		ops = append(ops, op)
		if op.Kind == "swap" {
			swapOp = &ops[len(ops)-1]
		}
	}
	editPath := filepath.Join(work, "edit-"+key(fp, neuronsHash, r.Patch)+".nsd")
	randomEditPath := filepath.Join(work, "edit-random-"+key(fp, randomHash, r.Patch)+".nsd")
	if exists(editPath) && exists(randomEditPath) {
		res.Cached = append(res.Cached, "patch")
	} else {
		log("patch: " + fmt.Sprint(r.Patch.Ops))
		for _, p := range []struct {
			set  *neuronset.Set
			path string
		}{{set, editPath}, {rnd, randomEditPath}} {
			changed, err := patch.Apply(patch.Inputs{Base: base, Tokenizer: m.Tokenizer}, p.set, ops)
			if err != nil {
				return nil, err
			}
			e, err := edit.Build(base, changed, map[string]string{"neurosurg.version": Version})
			if err != nil {
				return nil, err
			}
			if err := e.WriteFile(p.path); err != nil {
				return nil, err
			}
		}
	}
	e, err := edit.ReadFile(editPath, base)
	if err != nil {
		return nil, err
	}
	editHash, _ := fileHash(editPath)
	randomEditHash, _ := fileHash(randomEditPath)

	// verify
	benchPath := r.Path(r.Verify.Bench)
	if benchPath == "" {
		benchPath = dataPath
	}
	benchHash, err := fileHash(benchPath)
	if err != nil {
		return nil, err
	}
	reportPath := filepath.Join(work, "report-"+key(editHash, randomEditHash, benchHash, r.Verify.MaxTokens, swapOp)+".json")
	var rep verify.Report
	if exists(reportPath) {
		res.Cached = append(res.Cached, "verify")
		b, _ := os.ReadFile(reportPath)
		if err := json.Unmarshal(b, &rep); err != nil {
			return nil, fmt.Errorf("%s: %w", reportPath, err)
		}
	} else {
		log("verify: " + benchPath)
		bench, err := samples.ReadFile(benchPath)
		if err != nil {
			return nil, err
		}
		var variants []verify.Variant
		for _, v := range []struct{ name, path string }{{"edited", editPath}, {"random", randomEditPath}} {
			ed, err := edit.ReadFile(v.path, base)
			if err != nil {
				return nil, err
			}
			ov, err := ed.Overlay(base)
			if err != nil {
				return nil, err
			}
			vm, err := model.Load(base.ConfigJSON, ov)
			if err != nil {
				return nil, err
			}
			variants = append(variants, verify.Variant{Name: v.name, Model: vm})
		}
		vo := verify.Options{MaxTokens: r.Verify.MaxTokens}
		if swapOp != nil {
			vo.Source, vo.Target = swapOp.Src, swapOp.Tgt
		}
		got, err := verify.Run(ctx, m, variants, bench, vo)
		if err != nil {
			return nil, err
		}
		rep = *got
		b, _ := json.MarshalIndent(rep, "", "  ")
		if err := os.WriteFile(reportPath, append(b, '\n'), 0o644); err != nil {
			return nil, err
		}
		if err := rep.Plot(strings.TrimSuffix(reportPath, ".json") + ".svg"); err != nil {
			return nil, err
		}
		if err := os.WriteFile(strings.TrimSuffix(reportPath, ".json")+".md", []byte(rep.Markdown()), 0o644); err != nil {
			return nil, err
		}
	}
	gateErr := rep.CheckGates("edited", r.Verify.Gates)
	if gateErr != nil && !errors.Is(gateErr, verify.ErrGate) {
		return nil, gateErr
	}
	res.Report = &rep
	res.Files = map[string]string{"stats": statsPath, "neurons": neuronsPath, "neurons_random": randomPath, "edit": editPath, "edit_random": randomEditPath, "report": reportPath}
	if gateErr != nil && !o.Force {
		return res, fmt.Errorf("surgery: no checkpoint written: %w", gateErr)
	}
	res.Forced = gateErr != nil

	// write
	log("write: " + out)
	hashes := map[string]string{"recipe": sum(rb), "data": dataHash, "bench": benchHash, "stats": statsHash, "neurons": neuronsHash, "neurons_random": randomHash, "edit": editHash, "model_fingerprint": fp}
	prov := map[string]any{"neurosurg_version": Version, "recipe": string(rb), "hashes": hashes, "verify": rep, "forced": res.Forced}
	_, err = edit.Apply(ctx, base, e, out, hfdir.WriteOptions{
		BaseModel: r.Card.BaseModel, Tags: r.Card.Tags, Description: r.Card.Description + "\n\n## Verify\n\n" + rep.Markdown(),
		Provenance: prov,
	})
	if err != nil {
		return nil, err
	}
	res.Written = true
	if gateErr != nil {
		return res, fmt.Errorf("surgery: written with --force although %w", gateErr)
	}
	return res, nil
}

func writeSet(path string, s *neuronset.Set) error {
	b, err := s.Marshal()
	if err != nil {
		return err
	}
	return atomicfile.Write(path, b)
}

// key hashes stage inputs into a short cache key.
func key(parts ...any) string {
	b, _ := json.Marshal(parts)
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:8])
}

func sum(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

func fileHash(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	return sum(b), nil
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }
