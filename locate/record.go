package locate

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/neurosurg/neurosurg/formats/samples"
	"github.com/neurosurg/neurosurg/model"
	"github.com/neurosurg/neurosurg/model/kernels"
)

// recorder is the tap that fills Stats during forward passes: every module's FFN events go
// to that module's accumulators; concepts and MINER's scores are the language model's.
type recorder struct {
	s           *Stats
	llm         *ModuleStats            // the language model's accumulators (nil if not recorded)
	mods        map[string]*ModuleStats // module -> accumulators
	cur         map[string]*LabelStats  // module -> the current sample's label
	ids         []int32                 // token ids of the current sample
	textStart   int                     // the current sample's first position after its media
	concepts    map[int32]*ConceptStats // concept token id -> accumulators
	product     bool                    // concepts accumulate a·u instead of a
	miner       bool                    // MINER importance scores
	types       []int                   // token type of each position of the current sample
	ismCur      *ISMStats
	attn        []float32       // mean-over-heads non-causal attention of the current layer (T×T)
	rawBuf      [7][3][]float64 // per modality the raw fire count, Σ a and max a of the current layer
	exp         []float64       // exp(attn), MINER's second softmax's numerators (expTable)
	rowConcepts []*ConceptStats // per row of the current FFN event: the concept it generates
	firsts      []firstStep     // per concept the current sample generates: its first step
	err         error           // the first event that does not fit the stats
	// The current sample's sums, added to the exact accumulators when it ends (a sample's
	// own sum is float64 in a fixed order; across samples the sums are exact, so that shards
	// merge to a single pass's bits).
	sampleSum  map[string][]float64        // module -> Σ a of this sample [layer*N+j]
	conceptSum map[*ConceptStats][]float64 // concept -> Σ a (or a·u) of this sample
	touched    map[*ConceptStats]bool      // concepts this sample generates
}

func newRecorder(s *Stats) *recorder {
	r := &recorder{s: s, llm: s.Module("llm"), mods: map[string]*ModuleStats{}, cur: map[string]*LabelStats{}, concepts: map[int32]*ConceptStats{},
		sampleSum: map[string][]float64{}, conceptSum: map[*ConceptStats][]float64{}, touched: map[*ConceptStats]bool{}}
	for _, m := range s.Modules {
		r.mods[m.Module] = m
		r.sampleSum[m.Module] = make([]float64, m.Layers*m.Neurons)
	}
	return r
}

// addConcept makes c a concept the samples feed.
func (r *recorder) addConcept(c *ConceptStats) {
	r.concepts[c.TokenID] = c
	r.conceptSum[c] = make([]float64, len(c.ActSum))
}

// startSample points every module's accumulators at label.
func (r *recorder) startSample(label string) {
	for name, m := range r.mods {
		r.cur[name] = m.label(label)
	}
}

// endSample counts the sample under its label in every module and adds its sums to the exact
// accumulators.
func (r *recorder) endSample() {
	for name, ls := range r.cur {
		ls.Samples++
		foldSample(ls.Sum, ls.SumExact, r.sampleSum[name])
	}
	for c := range r.touched {
		foldSample(c.ActSum, c.ActSumExact, r.conceptSum[c])
		delete(r.touched, c)
	}
}

// foldSample adds one sample's sums to an exact accumulator and clears them.
func foldSample(view []float64, exact []Fixed, sample []float64) {
	for i, v := range sample {
		if v == 0 {
			continue // adds nothing, exactly
		}
		addTerm(view, exact, i, v)
		sample[i] = 0
	}
}

// firstStep is where a sample first generates a concept: the position whose next token is the
// concept, and the [layer*N+j] row of ConceptStats.First its activations go to.
type firstStep struct {
	pos int
	dst []float64
}

// WantsAttention asks for MINER's non-causal attention when MINER scores are recorded.
func (r *recorder) WantsAttention() (bool, bool) { return false, r.miner }

// MeanOnly tells the runtime that MINER reads only the mean over heads (AttnEvent.Mean).
func (r *recorder) MeanOnly() bool { return true }

func (r *recorder) Attention(e *model.AttnEvent) {
	if !e.NonCausal || e.Pos0 != 0 {
		return
	}
	T := e.Cols
	r.attn = append(r.attn[:0], e.Mean[:e.Rows*T]...) // the event's buffer is the runtime's
}

// addISM adds one layer's MINER scores of the current sample (prefill only, §2.3). A prompt of
// one position is scored too, as the official hook does (its output then has the prompt's
// shape), so the "prompt" count is the dataset's sample count (ISMStats.Samples).
func (r *recorder) addISM(e *model.FFNEvent) {
	if e.Pos0 != 0 {
		return
	}
	L, N := r.llm.Layers, e.Neurons
	// The token types are those of the prompt BuildInput laid out; a forward with more rows
	// would have expanded placeholders itself, and its positions would have no type.
	if e.Rows > len(r.types) {
		if r.err == nil {
			r.err = fmt.Errorf("%w: the language model ran %d positions for a prompt of %d tokens: MINER's modality split needs the placeholders expanded in the prompt", ErrStats, e.Rows, len(r.types))
		}
		return
	}
	masks := modalityMasks(r.types[:e.Rows])
	var E []float64
	if len(r.attn) == e.Rows*e.Rows {
		r.exp = expTable(r.attn, e.Rows, r.exp)
		E = r.exp
	}
	raw := r.ismCur.Raw
	if raw != nil && len(r.rawBuf[0][0]) != N {
		for m := range r.rawBuf {
			r.rawBuf[m] = [3][]float64{make([]float64, N), make([]float64, N), make([]float64, N)}
		}
	}
	l := e.Site.Layer
	var done [7][5][]float64
	for m, idx := range masks {
		if len(idx) == 0 {
			continue
		}
		// Modalities holding the same positions (text-only prompts: special_text = prompt)
		// have the same scores and raw sums.
		var sc [5][]float64
		src := m
		for p := 0; p < m; p++ {
			if done[p][0] != nil && slices.Equal(masks[p], idx) {
				sc, src = done[p], p
				break
			}
		}
		if sc[0] == nil {
			var sums *[3][]float64
			if raw != nil {
				sums = &r.rawBuf[m]
			}
			sc = ismSampleExp(e.Act, N, E, e.Rows, idx, sums)
			done[m] = sc
		}
		if raw != nil {
			raw.Positions[m*L+l] += float64(len(idx))
			base := (m*L + l) * N
			rb := &r.rawBuf[src]
			for j := 0; j < N; j++ {
				raw.Fire[base+j] += rb[0][j]
				// One sample's sum per term, exact across samples: shards merge to one pass.
				addTerm(raw.Sum, raw.SumExact, base+j, rb[1][j])
				raw.Max[base+j] = max(raw.Max[base+j], rb[2][j])
			}
		}
		for i := 0; i < 5; i++ {
			base := ((i*7+m)*L + e.Site.Layer) * N
			for j, v := range sc[i] {
				addTerm(r.ismCur.Sum, r.ismCur.SumExact, base+j, v)
			}
		}
		if e.Site.Layer == 0 {
			r.ismCur.Count[m]++
		}
	}
}

// WantsUp asks the runtime for u = up_proj x when contribution scores use a·u.
func (r *recorder) WantsUp() bool { return r.product }

func (r *recorder) FFN(e *model.FFNEvent) {
	ms := r.mods[e.Site.Module]
	N, l := e.Neurons, e.Site.Layer
	if ms == nil || N != ms.Neurons || l < 0 || l >= ms.Layers {
		if r.err == nil {
			r.err = fmt.Errorf("%w: the model reports FFN site %s/%d of %d neurons; the stats hold %s", ErrStats, e.Site.Module, l, N, describe(r.s))
		}
		return
	}
	// Concepts and MINER's modality split are read off the decoder's tokens.
	decoder := ms == r.llm
	if r.miner && decoder {
		r.addISM(e)
	}
	// Each module counts its own positions (an encoder's patches, the decoder's tokens).
	ls := r.cur[e.Site.Module]
	ls.Positions[l] += float64(e.Rows)
	// The concept each row generates: the next token is the concept.
	conc := r.rowConcepts[:0]
	for t := 0; t < e.Rows; t++ {
		var c *ConceptStats
		// A concept is a word the model writes after the image (Pan et al. score the caption).
		if p := e.Pos0 + t; decoder && p+1 < len(r.ids) && p+1 >= r.textStart {
			c = r.concepts[r.ids[p+1]]
		}
		if c != nil && l == 0 {
			c.Steps++
			r.touched[c] = true
		}
		conc = append(conc, c)
	}
	r.rowConcepts = conc
	useUp := r.product && e.Up != nil
	// Neurons are independent: spans of them go to the cores, each accumulating its rows in
	// order (the same sums as one loop). Once the forward pass got fast, this loop alone cost
	// more than the pass (8×128 tokens on a 4-layer Qwen2 shape: 28 vs 35 ms).
	kernels.Parallel(N, coreSpan(N, e.Rows), func(j0, j1 int) {
		fire, sum, mx := ls.Fire[l*N+j0:l*N+j1], r.sampleSum[e.Site.Module][l*N+j0:l*N+j1], ls.Max[l*N+j0:l*N+j1]
		for t := 0; t < e.Rows; t++ {
			a := e.Act[t*N+j0 : t*N+j1]
			for j, v := range a {
				// Branch-free: whether a neuron fires is a coin toss the predictor loses.
				var fired uint64
				if v > 0 {
					fired = 1
				}
				fire[j] += float64(fired)
				sum[j] += float64(v)
				mx[j] = max(mx[j], float64(v))
			}
			c := conc[t]
			if c == nil {
				continue
			}
			acc := r.conceptSum[c][l*N+j0 : l*N+j1]
			if useUp {
				u := e.Up[t*N+j0 : t*N+j1]
				for j, v := range a {
					acc[j] += float64(v) * float64(u[j])
				}
			} else {
				for j, v := range a {
					acc[j] += float64(v)
				}
			}
		}
	})
	if !decoder {
		return
	}
	for _, f := range r.firsts {
		t := f.pos - e.Pos0
		if t < 0 || t >= e.Rows {
			continue
		}
		dst := f.dst[l*N : (l+1)*N]
		for j, v := range e.Act[t*N : (t+1)*N] {
			if useUp {
				dst[j] = float64(v) * float64(e.Up[t*N+j])
			} else {
				dst[j] = float64(v)
			}
		}
	}
}

// RecordOptions control Record.
type RecordOptions struct {
	Concepts  []string // words whose generating steps feed contribution scores
	Skip      map[string]bool
	ModelHash string
	Progress  func(done, total int)
	// Product makes contribution scores use the neuron's true coefficient c = a·u (up_proj
	// output included, sign and all) instead of the papers' a = act(gate).
	Product bool
	// MINER records MINER's per-sample importance scores (needs attention: slower).
	MINER bool
	// ConceptsFromLabels adds every sample label as a concept word.
	ConceptsFromLabels bool
	// PerSample also keeps, for every concept and every sample that generates it, the
	// activations at the sample's first generating step (ConceptStats.First): what Contrib's
	// per-sample mode, Pan et al.'s official reading, scores. L·N floats per such sample.
	PerSample bool
	// Chat wraps each sample's text as a user turn of the checkpoint's chat template
	// (with the generation prompt); otherwise the prompt is BOS + text.
	Chat bool
	// Shard, when not nil, records only that shard's block of the samples (Shard.Range); the
	// data hash is still that of all of them, so the shards' stats merge to a single pass's.
	Shard *Shard
	// ConceptsFromText adds the content words of every sample's text (CaptionWords: Pan et
	// al.'s nouns of the caption, approximated without a POS tagger) as concept words.
	ConceptsFromText bool
	// ShuffleSeed, when not nil, permutes every image's encoder input rows (its patches) with
	// the seeded permutation of model.ShuffleMedia before encoding: Pan et al.'s patch-order
	// control (algorithms.md §4.7). The seed is part of the stats' data hash.
	ShuffleSeed *uint64
}

// Record runs every sample through m (plain prompts: BOS + text) and accumulates statistics of
// the FFN neurons of every module of the model per label. into, when not nil, is extended
// (resume / merge) and must hold the model's modules.
func Record(ctx context.Context, m *model.Model, ss []samples.Sample, into *Stats, o RecordOptions) (*Stats, error) {
	if m.Tokenizer == nil {
		return nil, fmt.Errorf("record: the checkpoint has no tokenizer")
	}
	geom := m.Geometry()
	s := into
	if s == nil {
		s = NewStatsFor(geom)
	}
	if s.ModelHash == "" {
		s.ModelHash = o.ModelHash
	} else if o.ModelHash != "" && o.ModelHash != s.ModelHash {
		return nil, fmt.Errorf("%w: the stats were recorded on another model", ErrStats)
	}
	if !maps.Equal(s.Geometry(), geom) {
		return nil, fmt.Errorf("%w: the stats hold %s, the model %s", ErrStats, describe(s), describe(NewStatsFor(geom)))
	}
	lo, hi := 0, len(ss)
	if o.Shard != nil {
		if err := o.Shard.Check(); err != nil {
			return nil, err
		}
		lo, hi = o.Shard.Range(len(ss))
	}
	if into != nil && o.ShuffleSeed != nil {
		// The stats file does not say whether its patches were shuffled: extending one with
		// shuffled images would mix the two unseen.
		return nil, fmt.Errorf("%w: shuffled patches are recorded into new stats only (no resume)", ErrStats)
	}
	if into != nil && !sameShard(into.Shard, o.Shard) {
		return nil, fmt.Errorf("%w: the stats to extend are %s, this run records %s", ErrStats, shardName(into.Shard), shardName(o.Shard))
	}
	if into == nil && o.Shard != nil {
		sh := *o.Shard
		s.Shard = &sh
	}
	for _, ms := range s.Modules {
		ms.ensureExact()
	}
	r := newRecorder(s)
	r.product, r.miner = o.Product, o.MINER
	concepts := append([]string(nil), o.Concepts...)
	if o.ConceptsFromLabels {
		concepts = append(concepts, samples.Labels(ss)...)
	}
	fromText := map[string]bool{}
	if o.ConceptsFromText {
		for _, smp := range ss {
			for _, w := range CaptionWords(smp.Text) {
				if !fromText[w] {
					fromText[w] = true
					concepts = append(concepts, w)
				}
			}
		}
	}
	for _, w := range concepts {
		if w == "" {
			continue
		}
		if r.llm == nil {
			return nil, fmt.Errorf("record: concept %q: the model has no language model (module llm) to generate it", w)
		}
		ids, err := m.Tokenizer.WordIDs(w)
		if err != nil || len(ids) == 0 {
			if fromText[w] {
				continue // a caption word the tokenizer cannot write is no concept
			}
			return nil, fmt.Errorf("record: concept %q does not tokenize", w)
		}
		// Two words that start with one token are one concept to the recorder (its steps are
		// read off token ids): a caption word is dropped for an earlier one.
		if c := r.concepts[ids[0]]; c != nil && fromText[w] {
			continue
		}
		// A multi-token word is represented by its first token: the step that starts it.
		var phi []float64
		for l := 0; l < r.llm.Layers; l++ {
			for _, v := range m.DirectLogitWeights(model.Site{Module: "llm", Layer: l}, ids[0]) {
				phi = append(phi, float64(v))
			}
		}
		r.addConcept(r.llm.concept(w, ids[0], phi))
	}
	if o.MINER && r.llm == nil {
		return nil, fmt.Errorf("record: MINER scores the language model's neurons (module llm); the model has none")
	}
	mt := m.MediaTokens()
	h := sha256.New()
	if o.ShuffleSeed != nil {
		// Shuffled patches are other data: their stats must not merge with unshuffled ones.
		fmt.Fprintf(h, "shuffle\x00%d\n", *o.ShuffleSeed)
	}
	media := m.MediaTokens() // where a sample's media end: Pan et al. score the caption after them
	for i, smp := range ss {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		fmt.Fprintf(h, "%s\x00%s\x00%s\n", smp.ID, smp.Label, smp.Text)
		// A medium's files are part of the data by their names as the samples file writes
		// them (text samples and one-image samples hash as they did).
		for _, md := range smp.Media() {
			fmt.Fprintf(h, "%s\x00%s\n", md.Kind, strings.Join(md.Paths, "\x00"))
		}
		if i < lo || i >= hi || o.Skip[smp.ID] {
			continue
		}
		in, err := m.BuildInput("sample "+smp.ID, SamplePrompt(smp, o.Chat))
		if err != nil {
			return nil, fmt.Errorf("record: %w", err)
		}
		if o.ShuffleSeed != nil {
			if in, _, err = model.ShuffleMedia(in, "image", *o.ShuffleSeed); err != nil {
				return nil, fmt.Errorf("record: sample %s: %w", smp.ID, err)
			}
		}
		ids := in.Tokens
		if len(ids) == 0 {
			continue
		}
		r.startSample(smp.Label)
		r.ids = ids
		r.textStart = media.MediaEnd(in)
		r.firsts = r.firsts[:0]
		if o.PerSample && r.llm != nil {
			seen := map[*ConceptStats]bool{}
			for p := max(0, r.textStart-1); p+1 < len(ids); p++ {
				if c := r.concepts[ids[p+1]]; c != nil && !seen[c] {
					seen[c] = true
					dst := make([]float64, r.llm.Layers*r.llm.Neurons)
					c.First, c.FirstIDs = append(c.First, dst), append(c.FirstIDs, smp.ID)
					r.firsts = append(r.firsts, firstStep{pos: p, dst: dst})
				}
			}
		}
		if o.MINER {
			ds := smp.Dataset
			if ds == "" {
				ds = smp.Label
			}
			r.ismCur = r.llm.ism(ds)
			r.types = tokenTypes(r.types[:0], m.Tokenizer, mt, ids)
		}
		if _, err := m.ForwardInputs(ctx, []model.Input{in}, model.ForwardOptions{Taps: []model.Tap{r}}); err != nil {
			return nil, fmt.Errorf("record: sample %s: %w", smp.ID, err)
		}
		if r.err != nil {
			return nil, fmt.Errorf("record: sample %s: %w", smp.ID, r.err)
		}
		r.endSample()
		s.SampleIDs = append(s.SampleIDs, smp.ID)
		if o.Progress != nil {
			o.Progress(i+1, len(ss))
		}
	}
	if s.DataHash == "" {
		s.DataHash = hex.EncodeToString(h.Sum(nil))
	}
	return s, nil
}

// tokenTypes appends the MINER token type of each id of an expanded prompt (algorithms.md
// §2.2): the model's image/video/audio placeholder ids by their kind (model.MediaTokens, read
// from the config and the encoders), its media markup ids (<|vision_start|>, <|audio_bos|>…)
// and the tokenizer's other special tokens (<|im_start|>, BOS) as special, the rest as text.
// The prompt is the one the forward pass runs, placeholders expanded to the encoder's rows, so
// every position the FFN sees has its type.
func tokenTypes(dst []int, tok interface{ IsSpecial(int32) bool }, mt model.MediaTokens, ids []int32) []int {
	for _, id := range ids {
		t := TokText
		switch mt.Kind(id) {
		case "image":
			t = TokImage
		case "video":
			t = TokVideo
		case "audio":
			t = TokAudio
		default:
			if slices.Contains(mt.Markup, id) || tok.IsSpecial(id) {
				t = TokSpecial
			}
		}
		dst = append(dst, t)
	}
	return dst
}

// SamplePrompt is a sample's prompt as model.BuildInput takes it: its text, its media in
// prompt order — images, then the video, then the audio (samples.Sample.Media) — with their
// paths resolved against the samples file's directory, chat or plain.
func SamplePrompt(s samples.Sample, chat bool) model.Prompt {
	p := model.Prompt{Text: s.Text, Chat: chat}
	for _, md := range s.Media() {
		files := make([]string, len(md.Paths))
		for i, f := range md.Paths {
			files[i] = s.Resolve(f)
		}
		p.Media = append(p.Media, model.Medium{Kind: md.Kind, Paths: files})
	}
	return p
}

func sameShard(a, b *Shard) bool { return a == nil && b == nil || a != nil && b != nil && *a == *b }

func shardName(sh *Shard) string {
	if sh == nil {
		return "a whole recording"
	}
	return "shard " + sh.String()
}
