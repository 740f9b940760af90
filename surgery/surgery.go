// Package surgery runs a recipe end to end: record → locate → patch → verify → write. Each
// stage's output is cached under the hash of its inputs, so changing only the op reruns only
// patch onward; verify gates decide whether the checkpoint is written. The stages are the
// calls the CLI's verbs make (package pipeline), so a recipe and the CLI mean the same thing.
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
	"github.com/neurosurg/neurosurg/formats/samples"
	"github.com/neurosurg/neurosurg/locate"
	"github.com/neurosurg/neurosurg/model"
	"github.com/neurosurg/neurosurg/patch"
	"github.com/neurosurg/neurosurg/pipeline"
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

// Run executes the recipe at path: the recipe is checked whole first, then each stage runs
// or is served from the cache, then the gates decide whether the checkpoint is written.
func Run(ctx context.Context, path string, o Options) (res *Result, err error) {
	s, err := start(path, o)
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, s.close()) }()
	for _, stage := range []func(context.Context) error{s.open, s.record, s.locate, s.patch, s.verify} {
		if err := stage(ctx); err != nil {
			return nil, err
		}
	}
	return s.finish(ctx)
}

// run is one run of a recipe: what the stages read and what each one made.
type run struct {
	path   string // the recipe
	recipe []byte // its bytes, as hashed into the provenance
	r      *recipe.Recipe
	pl     *plan
	force  bool
	log    func(string)
	out    string // the checkpoint to write
	work   string // its cache directory, out + ".surgery"
	res    *Result

	m       *model.Model
	base    *hfdir.Checkpoint // m's checkpoint
	unlock  func()
	data    []samples.Sample
	dataSrc string
	// hashes go into the provenance and the page: the recipe's, the data's, the bench's,
	// every stage file's, the model's fingerprint and content. Each stage keys its cache on
	// the hashes of the files before it.
	hashes map[string]string
	files  map[string]string // every stage's file

	st       *locate.Stats
	set, rnd *neuronset.Set
	edit     *edit.Edit
	rep      *verify.Report
}

// start reads and checks the recipe (every stage's parameters, the ops, the gates, the paths)
// before anything is opened or written.
func start(path string, o Options) (*run, error) {
	log := o.Log
	if log == nil {
		log = func(string) {}
	}
	// The recipe is read once: the bytes hashed into the provenance are the bytes that ran.
	rb, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	r, err := recipe.Parse(rb, path)
	if err != nil {
		return nil, err
	}
	r.Dir = filepath.Dir(path)
	pl, err := check(r, path)
	if err != nil {
		return nil, err
	}
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
	return &run{path: path, recipe: rb, r: r, pl: pl, force: o.Force, log: log, out: out, work: work,
		res:    &Result{Out: out, Files: map[string]string{}},
		hashes: map[string]string{"recipe": pipeline.SHA256(rb)}, files: map[string]string{}}, nil
}

// open opens the model, checks the ops against its tokenizer, locks the work directory and
// reads the data.
func (s *run) open(context.Context) error {
	var err error
	if s.m, err = pipeline.OpenModel(s.r.Path(s.r.Model)); err != nil {
		return err
	}
	s.base = s.m.Checkpoint()
	if err := patch.CheckOps(patch.Inputs{Base: s.base, Tokenizer: s.m.Tokenizer}, s.pl.ops); err != nil {
		return fmt.Errorf("%s: %w", s.path, err)
	}
	if err := os.MkdirAll(s.work, 0o755); err != nil {
		return err
	}
	if s.unlock, err = lockWork(s.work, s.log); err != nil {
		return err
	}
	s.dataSrc = s.r.Path(s.r.Data)
	if s.data, err = samples.ReadFile(s.dataSrc); err != nil {
		return err
	}
	if s.hashes["data"], err = pipeline.FileSHA256(s.dataSrc); err != nil {
		return err
	}
	s.hashes["model_fingerprint"] = s.base.Fingerprint()
	// Cached stages are keyed by the weights' content, not only the headers: a base whose
	// weights changed under the same layout must not get the old one's statistics or edits.
	// The shards' hashes come from the stat-keyed hash cache after the first run.
	s.hashes["model_content"] = s.base.ContentSHA256()
	return nil
}

// close releases the work directory's lock and the model; it is safe to call twice.
func (s *run) close() error {
	if s.unlock != nil {
		s.unlock()
		s.unlock = nil
	}
	if s.m == nil {
		return nil
	}
	m := s.m
	s.m = nil
	return m.Close()
}

// done records a stage's files (their paths and hashes) and whether the cache served them.
func (s *run) done(stage string, cached bool, files map[string]string) error {
	if cached {
		s.res.Cached = append(s.res.Cached, stage)
	}
	for k, p := range files {
		h, err := pipeline.FileSHA256(p)
		if err != nil {
			return err
		}
		s.hashes[k], s.files[k] = h, p
	}
	return nil
}

// record runs the data through the model into a stats file; contrib's per-sample mode needs
// each sample's first generating step kept too.
func (s *run) record(ctx context.Context) error {
	perSample := s.pl.locator.PerSample()
	k := []any{s.hashes["model_content"], s.hashes["data"], s.r.Record}
	if perSample {
		k = append(k, "per-sample")
	}
	p, err := entry(s.work, "stats", ".st", k...)
	if err != nil {
		return err
	}
	cached := usable(p, s.log, func(p string) error { _, err := locate.ReadStats(p); return err })
	if !cached {
		s.log("record: " + s.dataSrc)
		st, err := pipeline.Record(ctx, s.m, s.data, nil, pipeline.RecordParams{Concepts: s.r.Record.Concepts,
			Product: s.r.Record.Coefficient == "au", MINER: s.r.Record.MINER, Chat: s.r.Record.Chat, PerSample: perSample})
		if err != nil {
			return err
		}
		if err := st.WriteFile(p); err != nil {
			return err
		}
	}
	if err := s.done("record", cached, map[string]string{"stats": p}); err != nil {
		return err
	}
	s.st, err = locate.ReadStats(p)
	return err
}

// locate selects the neurons and draws the random baseline (the same count per label, module
// and layer) that verify measures beside them.
func (s *run) locate(ctx context.Context) error {
	statsHash := s.hashes["stats"]
	k := []any{statsHash, s.r.Locate}
	if s.pl.likeHash != "" {
		k = append(k, s.pl.likeHash)
	}
	neurons, err := entry(s.work, "neurons", ".json", k...)
	if err != nil {
		return err
	}
	random, err := entry(s.work, "neurons-random", ".json", append(k, s.r.Verify.RandomSeed)...)
	if err != nil {
		return err
	}
	cached := usable(neurons, s.log, readSet) && usable(random, s.log, readSet)
	if !cached {
		if err := s.selectSets(ctx, neurons, random); err != nil {
			return err
		}
	}
	if err := s.done("locate", cached, map[string]string{"neurons": neurons, "neurons_random": random}); err != nil {
		return err
	}
	if s.set, err = neuronset.ReadFile(neurons); err != nil {
		return err
	}
	s.rnd, err = neuronset.ReadFile(random)
	return err
}

// selectSets writes the selected set with its per-layer plot, then the random baseline drawn
// like it (the same count per label, module and layer; seed verify.random_seed).
func (s *run) selectSets(ctx context.Context, neurons, random string) error {
	s.log("locate: " + s.pl.locator.Method())
	statsHash := s.hashes["stats"]
	set, err := s.pl.locator.Locate(ctx, pipeline.LocateInputs{Stats: s.st, StatsSHA256: statsHash, Model: s.m, Data: s.data})
	if err != nil {
		return err
	}
	if len(set.Neurons) == 0 {
		return fmt.Errorf("surgery: locate selected no neurons")
	}
	if err := pipeline.WriteSet(neurons, set); err != nil {
		return err
	}
	if err := pipeline.PlotLayers(set, s.st, strings.TrimSuffix(neurons, ".json")+".svg"); err != nil {
		return err
	}
	rnd, err := pipeline.RandomBaseline(ctx, set, s.st, statsHash, s.r.Verify.RandomSeed)
	if err != nil {
		return err
	}
	return pipeline.WriteSet(random, rnd)
}

// patch turns the neurons and the random baseline into an edit file each.
func (s *run) patch(context.Context) error {
	weights := s.hashes["model_content"]
	ed, err := entry(s.work, "edit", ".nsd", weights, s.hashes["neurons"], s.r.Patch)
	if err != nil {
		return err
	}
	random, err := entry(s.work, "edit-random", ".nsd", weights, s.hashes["neurons_random"], s.r.Patch)
	if err != nil {
		return err
	}
	cached := usable(ed, s.log, readEdit(s.base)) && usable(random, s.log, readEdit(s.base))
	if !cached {
		s.log("patch: " + fmt.Sprint(s.r.Patch.Ops))
		for _, p := range []struct {
			set        *neuronset.Set
			from, path string
		}{{s.set, s.files["neurons"], ed}, {s.rnd, s.files["neurons_random"], random}} {
			e, err := pipeline.Patch(s.base, s.m.Tokenizer, p.set, p.from, s.pl.ops, map[string]string{"neurosurg.version": Version})
			if err != nil {
				return err
			}
			if err := e.WriteFile(p.path); err != nil {
				return err
			}
		}
	}
	if err := s.done("patch", cached, map[string]string{"edit": ed, "edit_random": random}); err != nil {
		return err
	}
	s.edit, err = edit.ReadFile(ed, s.base)
	return err
}

// verify measures both edits against the base on the bench (the data when the recipe names
// none) and writes the report with its table and plot.
func (s *run) verify(ctx context.Context) error {
	bench := s.r.Path(s.r.Verify.Bench)
	if bench == "" {
		bench = s.dataSrc
	}
	benchHash, err := pipeline.FileSHA256(bench)
	if err != nil {
		return err
	}
	s.hashes["bench"] = benchHash
	p, err := entry(s.work, "report", ".json", s.hashes["edit"], s.hashes["edit_random"], benchHash, s.r.Verify.MaxTokens, s.pl.swap)
	if err != nil {
		return err
	}
	cached := usable(p, s.log, func(p string) error { _, err := pipeline.ReadReport(p); return err })
	if !cached {
		s.log("verify: " + bench)
		ss, err := samples.ReadFile(bench)
		if err != nil {
			return err
		}
		rep, err := pipeline.Verify(ctx, s.m, []pipeline.EditVariant{{Name: "edited", Edit: s.files["edit"]}, {Name: "random", Edit: s.files["edit_random"]}}, ss, s.pl.verify)
		if err != nil {
			return err
		}
		if err := pipeline.WriteReport(rep, strings.TrimSuffix(p, ".json")); err != nil {
			return err
		}
	}
	if cached {
		s.res.Cached = append(s.res.Cached, "verify")
	}
	s.files["report"] = p
	s.rep, err = pipeline.ReadReport(p)
	return err
}

// finish checks the gates and writes the HTML report and, when they pass (or the run is
// forced), the checkpoint.
func (s *run) finish(ctx context.Context) (*Result, error) {
	failed, err := pipeline.Gates(s.rep, "edited", s.r.Verify.Gates)
	if err != nil {
		return nil, err
	}
	res := s.res
	res.Report = s.rep
	html := filepath.Join(s.work, "report.html")
	res.Files = map[string]string{"report_html": html}
	for k, p := range s.files {
		res.Files[k] = p
	}
	hashes := map[string]string{}
	for k, h := range s.hashes {
		if k != "edit_random" { // the provenance hashes the edit that ships, not the baseline's
			hashes[k] = h
		}
	}
	// The page names paths as the recipe writes them, so the same recipe gives the same page
	// wherever it runs (the page is one of the checkpoint's hashed files).
	page := &report.Input{Title: "neurosurg surgery: " + filepath.Base(s.path), Tool: "neurosurg " + Version,
		RecipePath: filepath.Base(s.path), Recipe: string(s.recipe), Model: s.r.Model, ModelHash: s.hashes["model_fingerprint"],
		Hashes: hashes, Out: s.r.Out, Ops: s.r.Patch.Ops, Verify: s.rep, Neurons: s.set, Random: s.rnd, Stats: s.st, LM: s.m}
	if failed != nil && !s.force {
		if err := report.WriteFile(html, page); err != nil {
			return nil, err
		}
		return res, fmt.Errorf("surgery: no checkpoint written: %w", failed)
	}
	res.Forced = failed != nil
	if err := s.write(ctx, page, hashes, html); err != nil {
		return nil, err
	}
	res.Written = true
	if failed != nil {
		return res, fmt.Errorf("surgery: written with --force although %w", failed)
	}
	return res, nil
}

// write applies the edit to the base into the output checkpoint with its card, HTML report
// and provenance, then puts the report beside the cache.
func (s *run) write(ctx context.Context, page *report.Input, hashes map[string]string, htmlPath string) error {
	s.log("write: " + s.out)
	page.Written, page.Forced = true, s.res.Forced
	html, err := report.HTML(page)
	if err != nil {
		return err
	}
	prov := map[string]any{"neurosurg_version": Version, "recipe": string(s.recipe), "hashes": hashes, "verify": s.rep, "forced": s.res.Forced}
	card := s.r.Card
	if _, err := edit.Apply(ctx, s.base, s.edit, s.out, hfdir.WriteOptions{
		BaseModel: card.BaseModel, Tags: card.Tags,
		Description: card.Description + "\n\n## Verify\n\n" + s.rep.Markdown() + "\n" + report.Card(page, report.CardFile),
		Provenance:  prov, Files: map[string][]byte{report.CardFile: html},
	}); err != nil {
		return err
	}
	return atomicfile.Write(htmlPath, html)
}

// plan is a recipe checked before any stage runs: every value the stages will use.
type plan struct {
	locator  *pipeline.Locator
	likeHash string // sha256 of locate.like's file, when the recipe names one
	ops      []patch.Op
	swap     *patch.Op
	verify   verify.Options
	inputs   []string // every file or directory the run reads (out must stay clear of them)
}

// check validates every stage's parameters, the ops and the gates, and that the files the
// later stages read exist, so a bad value fails before record runs, not after it.
func check(r *recipe.Recipe, path string) (*plan, error) {
	bad := func(err error) error { return fmt.Errorf("%s: %w: %w", path, recipe.ErrRecipe, err) }
	pl := &plan{inputs: []string{path, r.Path(r.Model), r.Path(r.Data), r.Path(r.Verify.Bench)}}
	lp, err := pipeline.RecipeLocate(r)
	if err != nil {
		return nil, bad(err)
	}
	if pl.locator, err = pipeline.NewLocator(lp); err != nil {
		return nil, bad(err)
	}
	if like := r.Path(r.Locate.Like); like != "" {
		pl.inputs = append(pl.inputs, like)
		if pl.likeHash, err = pipeline.FileSHA256(like); err != nil {
			return nil, bad(fmt.Errorf("locate.like: %w", err))
		}
	}
	// set:FILE is relative to the recipe, as every path it names.
	if pl.ops, err = pipeline.ParseOps(r.Patch.Ops, r.Patch.Seed, r.Path); err != nil {
		return nil, bad(err)
	}
	pl.inputs = append(pl.inputs, pipeline.OpPaths(pl.ops)...)
	if err := pipeline.CheckOpFiles(pl.ops); err != nil {
		return nil, bad(fmt.Errorf("patch.ops %w", err))
	}
	pl.swap = pipeline.SwapOp(pl.ops)
	if pl.verify, err = pipeline.VerifyOptions(r.Verify.MaxTokens, pl.swap, nil, r.Verify.Gates); err != nil {
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

// entry is the path of a stage's cache file: dir/prefix-KEY.ext, KEY a short hash of the
// stage's inputs. The inputs are checked recipe values and hashes, which marshal; an error
// here is a bug, and a key of fewer inputs could serve a stale entry, so it is returned.
func entry(dir, prefix, ext string, parts ...any) (string, error) {
	b, err := json.Marshal(parts)
	if err != nil {
		return "", fmt.Errorf("surgery: cache key of %s: %w", prefix, err)
	}
	h := sha256.Sum256(b)
	return filepath.Join(dir, prefix+"-"+hex.EncodeToString(h[:8])+ext), nil
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
		if err := os.Remove(path); err != nil {
			// The stage rewrites it atomically anyway; say why it may fail to.
			log(fmt.Sprintf("cache: %v", err))
		}
		return false
	}
	return true
}

func readSet(p string) error { _, err := neuronset.ReadFile(p); return err }

// readEdit returns a check that an edit file reads against base.
func readEdit(base *hfdir.Checkpoint) func(string) error {
	return func(p string) error { _, err := edit.ReadFile(p, base); return err }
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
