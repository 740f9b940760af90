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
	"github.com/neurosurg/neurosurg/formats/outpath"
	"github.com/neurosurg/neurosurg/formats/recipe"
	"github.com/neurosurg/neurosurg/formats/safetensors"
	"github.com/neurosurg/neurosurg/formats/samples"
	"github.com/neurosurg/neurosurg/locate"
	"github.com/neurosurg/neurosurg/model"
	"github.com/neurosurg/neurosurg/model/tokenizer"
	"github.com/neurosurg/neurosurg/patch"
	"github.com/neurosurg/neurosurg/report"
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
	pl, err := check(r, path)
	if err != nil {
		return nil, err
	}
	ops, swapOp := pl.ops, pl.swap
	out := r.Path(r.Out)
	if _, err := os.Lstat(out); err == nil {
		return nil, fmt.Errorf("surgery: %s: %w (remove it to run again)", out, hfdir.ErrExists)
	}
	work := out + ".surgery"
	for _, o := range []string{out, work} {
		if err := outpath.Check(o, pl.inputs...); err != nil {
			return nil, fmt.Errorf("%s: %w: out: %w", path, recipe.ErrRecipe, err)
		}
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
	if err := patch.CheckOps(patch.Inputs{Base: base, Tokenizer: m.Tokenizer}, ops); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if err := os.MkdirAll(work, 0o755); err != nil {
		return nil, err
	}
	unlock, err := lockWork(work, log)
	if err != nil {
		return nil, err
	}
	defer unlock()
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
	// Cached stages are keyed by the weights' content, not only the headers: a base whose
	// weights changed under the same layout must not get the old one's statistics or edits.
	// The shards' hashes come from the stat-keyed hash cache after the first run.
	weights := base.ContentSHA256()

	// record; contrib's per-sample mode needs each sample's first generating step kept too
	perSample := r.Locate.Method == "contrib" && r.Locate.ContribMode == locate.ContribPerSample
	recordKey := []any{weights, dataHash, r.Record}
	if perSample {
		recordKey = append(recordKey, "per-sample")
	}
	statsPath := filepath.Join(work, "stats-"+key(recordKey...)+".st")
	if usable(statsPath, log, func(p string) error { _, err := locate.ReadStats(p); return err }) {
		res.Cached = append(res.Cached, "record")
	} else {
		log("record: " + dataPath)
		st, err := locate.Record(ctx, m, data, nil, locate.RecordOptions{Concepts: r.Record.Concepts, ModelHash: fp, Product: r.Record.Coefficient == "au", MINER: r.Record.MINER, Chat: r.Record.Chat, PerSample: perSample})
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
	if usable(neuronsPath, log, readSet) && usable(randomPath, log, readSet) {
		res.Cached = append(res.Cached, "locate")
	} else {
		log("locate: " + lp.Method)
		var set *neuronset.Set
		switch lp.Method {
		case "miner":
			set, err = locate.MINER(st, pl.miner)
		case "dape":
			set, err = locate.DAPE(st, pl.dape)
		case "contrib":
			set, err = locate.Contrib(st, pl.contrib)
		case "ig":
			set, err = locate.IG(ctx, m, data, pl.ig)
		case "random":
			var like *neuronset.Set
			if like, err = locate.Contrib(st, locate.ContribOptions{TopK: lp.TopK}); err == nil {
				set, err = locate.Random(like, st.Geometry(), lp.Seed)
			}
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
		st.Stamp(set)
		set.StatsSHA256, set.ModelSHA256 = statsHash, fp
		if err := writeSet(neuronsPath, set); err != nil {
			return nil, err
		}
		if err := atomically(strings.TrimSuffix(neuronsPath, ".json")+".svg", func(p string) error { return locate.PlotLayers(set, st.Geometry(), p) }); err != nil {
			return nil, err
		}
		rnd, err := locate.Random(set, st.Geometry(), r.Verify.RandomSeed)
		if err != nil {
			return nil, err
		}
		st.Stamp(rnd)
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
	editPath := filepath.Join(work, "edit-"+key(weights, neuronsHash, r.Patch)+".nsd")
	randomEditPath := filepath.Join(work, "edit-random-"+key(weights, randomHash, r.Patch)+".nsd")
	if usable(editPath, log, readEdit(base)) && usable(randomEditPath, log, readEdit(base)) {
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
	if usable(reportPath, log, func(p string) error { return readReport(p, &rep) }) {
		res.Cached = append(res.Cached, "verify")
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
		b, err := json.MarshalIndent(rep, "", "  ")
		if err != nil {
			return nil, fmt.Errorf("%s: %w", reportPath, err)
		}
		// Plot and table first, the report last: the report's presence is what marks the
		// stage done, and each file appears whole or not at all (a full disk once left an
		// empty report that every rerun then failed to read).
		if err := atomically(strings.TrimSuffix(reportPath, ".json")+".svg", rep.Plot); err != nil {
			return nil, err
		}
		if err := atomicfile.Write(strings.TrimSuffix(reportPath, ".json")+".md", []byte(rep.Markdown())); err != nil {
			return nil, err
		}
		if err := atomicfile.Write(reportPath, append(b, '\n')); err != nil {
			return nil, err
		}
	}
	gateErr := rep.CheckGates("edited", r.Verify.Gates)
	if gateErr != nil && !errors.Is(gateErr, verify.ErrGate) {
		return nil, gateErr
	}
	res.Report = &rep
	htmlPath := filepath.Join(work, "report.html")
	res.Files = map[string]string{"stats": statsPath, "neurons": neuronsPath, "neurons_random": randomPath, "edit": editPath, "edit_random": randomEditPath, "report": reportPath, "report_html": htmlPath}
	hashes := map[string]string{"recipe": sum(rb), "data": dataHash, "bench": benchHash, "stats": statsHash, "neurons": neuronsHash, "neurons_random": randomHash, "edit": editHash, "model_fingerprint": fp, "model_content": weights}
	// The page names paths as the recipe writes them, so the same recipe gives the same page
	// wherever it runs (the page is one of the checkpoint's hashed files).
	page := &report.Input{Title: "neurosurg surgery: " + filepath.Base(path), Tool: "neurosurg " + Version, RecipePath: filepath.Base(path), Recipe: string(rb),
		Model: r.Model, ModelHash: fp, Hashes: hashes, Out: r.Out, Ops: r.Patch.Ops, Verify: &rep, Neurons: set, Random: rnd, Stats: st, LM: m}
	if gateErr != nil && !o.Force {
		if err := report.WriteFile(htmlPath, page); err != nil {
			return nil, err
		}
		return res, fmt.Errorf("surgery: no checkpoint written: %w", gateErr)
	}
	res.Forced = gateErr != nil

	// write
	log("write: " + out)
	page.Written, page.Forced = true, res.Forced
	html, err := report.HTML(page)
	if err != nil {
		return nil, err
	}
	prov := map[string]any{"neurosurg_version": Version, "recipe": string(rb), "hashes": hashes, "verify": rep, "forced": res.Forced}
	_, err = edit.Apply(ctx, base, e, out, hfdir.WriteOptions{
		BaseModel: r.Card.BaseModel, Tags: r.Card.Tags, Description: r.Card.Description + "\n\n## Verify\n\n" + rep.Markdown() + "\n" + report.Card(page, report.CardFile),
		Provenance: prov, Files: map[string][]byte{report.CardFile: html},
	})
	if err != nil {
		return nil, err
	}
	if err := atomicfile.Write(htmlPath, html); err != nil {
		return nil, err
	}
	res.Written = true
	if gateErr != nil {
		return res, fmt.Errorf("surgery: written with --force although %w", gateErr)
	}
	return res, nil
}

// plan is a recipe checked before any stage runs: every value the stages will use.
type plan struct {
	ops     []patch.Op
	swap    *patch.Op
	miner   locate.MINEROptions
	dape    locate.DAPEOptions
	contrib locate.ContribOptions
	ig      locate.IGOptions
	inputs  []string // every file or directory the run reads (out must stay clear of them)
}

// check validates every stage's parameters, the ops and the gates, and that the files the
// later stages read exist, so a bad value fails before record runs, not after it.
func check(r *recipe.Recipe, path string) (*plan, error) {
	bad := func(err error) error { return fmt.Errorf("%s: %w: %w", path, recipe.ErrRecipe, err) }
	lp := r.Locate
	pl := &plan{inputs: []string{path, r.Path(r.Model), r.Path(r.Data), r.Path(r.Verify.Bench)}}
	var err error
	switch lp.Method {
	case "miner":
		pl.miner = locate.MINEROptions{Ratio: lp.Ratio, Strategy: lp.Strategy, Split: lp.Split, Seed: lp.Seed}
		if len(lp.Weights) == 5 {
			copy(pl.miner.Weights[:], lp.Weights)
		} else if len(lp.Weights) != 0 {
			return nil, bad(fmt.Errorf("locate.weights needs 5 numbers (prob, mean, max, attn_k, attn_q), got %d", len(lp.Weights)))
		}
		err = pl.miner.Validate()
	case "dape":
		pl.dape = locate.DAPEOptions{TopRate: lp.TopRate, FilterRate: lp.FilterRate, ActivationBarRatio: lp.ActivationBarRatio}
		err = pl.dape.Validate()
	case "contrib", "random":
		pl.contrib = locate.ContribOptions{TopK: lp.TopK, Layers: lp.Layers, Mode: lp.ContribMode}
		err = pl.contrib.Validate()
	case "ig":
		if len(r.Record.Concepts) != 1 {
			return nil, bad(fmt.Errorf("locate.method ig needs exactly one record.concepts word, got %d", len(r.Record.Concepts)))
		}
		pl.ig = locate.IGOptions{Concept: r.Record.Concepts[0], TopK: lp.TopK}
		err = pl.ig.Validate()
	}
	if err != nil {
		return nil, bad(err)
	}
	for _, s := range r.Patch.Ops {
		op, err := patch.ParseOp(s)
		if err != nil {
			return nil, bad(err)
		}
		op.Seed = r.Patch.Seed
		if op.Kind == "set" {
			op.Path = r.Path(op.Path) // relative to the recipe, as every path it names
			pl.inputs = append(pl.inputs, op.Path)
			f, err := safetensors.Open(op.Path)
			if err != nil {
				return nil, bad(fmt.Errorf("patch.ops %q: %w", s, err))
			}
			f.Close()
		}
		pl.ops = append(pl.ops, op)
	}
	vo := verify.Options{MaxTokens: r.Verify.MaxTokens}
	for i := range pl.ops {
		if pl.ops[i].Kind == "swap" {
			pl.swap = &pl.ops[i]
			vo.Source, vo.Target = pl.swap.Src, pl.swap.Tgt
		}
	}
	if err := vo.Validate(); err != nil {
		return nil, bad(err)
	}
	if _, err := verify.ParseGates(r.Verify.Gates); err != nil {
		return nil, bad(err)
	}
	if b := r.Verify.Bench; b != "" {
		// Read now (benches are small) so a bad line fails before record, not after patch.
		if _, err := samples.ReadFile(r.Path(b)); err != nil {
			return nil, bad(fmt.Errorf("verify.bench: %w", err))
		}
	}
	return pl, nil
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

// usable reports whether the cache entry at path exists and reads. An entry that does not read
// (empty or truncated by a full disk, corrupt, from an older version) is a miss, not an
// error: it is removed, said in the log, and the stage recomputes it.
func usable(path string, log func(string), read func(path string) error) bool {
	if _, err := os.Stat(path); err != nil {
		return false
	}
	if err := read(path); err != nil {
		log(fmt.Sprintf("cache: %s does not read (%v): recomputing it", path, err))
		os.Remove(path)
		return false
	}
	return true
}

func readSet(p string) error { _, err := neuronset.ReadFile(p); return err }

// readEdit returns a check that an edit file reads against base.
func readEdit(base *hfdir.Checkpoint) func(string) error {
	return func(p string) error { _, err := edit.ReadFile(p, base); return err }
}

// readReport reads a cached verify report into rep.
func readReport(p string, rep *verify.Report) error {
	b, err := os.ReadFile(p)
	if err != nil {
		return err
	}
	var r verify.Report
	if err := json.Unmarshal(b, &r); err != nil {
		return err
	}
	if r.Metrics["edited"] == nil {
		return fmt.Errorf("no metrics of the edited model")
	}
	*rep = r
	return nil
}

// atomically has write make path under a temporary name beside it, then renames it into
// place: a killed run leaves a stray temporary (which lockWork removes), never a torn file.
func atomically(path string, write func(tmp string) error) error {
	tmp := filepath.Join(filepath.Dir(path), ".tmp-"+filepath.Base(path))
	if err := write(tmp); err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, path)
}

// lockWork locks the work directory for this run (a second run of the same recipe at the same
// time is refused rather than let the two interleave their cache files) and then removes the
// temporary files killed runs left there: with the lock held, no live process is writing one.
func lockWork(work string, log func(string)) (unlock func(), err error) {
	unlock, err = atomicfile.LockDir(work)
	if err != nil {
		return nil, fmt.Errorf("surgery: %w (is another run of this recipe in progress?)", err)
	}
	ents, err := os.ReadDir(work)
	if err != nil {
		unlock()
		return nil, err
	}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".tmp-") {
			p := filepath.Join(work, e.Name())
			if os.RemoveAll(p) == nil {
				log("cache: removed " + p + ", left by a run that was killed")
			}
		}
	}
	return unlock, nil
}
