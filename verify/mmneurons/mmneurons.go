// Package mmneurons measures Pan et al.'s four properties of a concept's multi-modal neurons
// (algorithms.md §4.10) on captioned images: semantic sensitivity, region invariance,
// cross-image invariance and specificity, each beside a random baseline, and the patch-order
// shuffle control (§4.7). The paper's exact definitions are unverified; the ones measured
// here are documented in docs/metrics.md.
//
// A sample is a captioned image: its text is the caption the model writes after the image
// (prompt prefill included), its label the concept word, its optional bbox the concept's
// region. A concept's neurons in one image are the top-n neurons of Pan et al.'s per-sample
// contribution score (locate.Contrib, per-sample mode) at the concept's first step after the
// image.
package mmneurons

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/neurosurg/neurosurg/formats/atomicfile"
	"github.com/neurosurg/neurosurg/formats/neuronset"
	"github.com/neurosurg/neurosurg/formats/samples"
	"github.com/neurosurg/neurosurg/locate"
	"github.com/neurosurg/neurosurg/media/imageproc"
	"github.com/neurosurg/neurosurg/model"
)

// ErrOption reports options Evaluate cannot use.
var ErrOption = errors.New("mmneurons: bad option")

// Options control Evaluate.
type Options struct {
	TopN  int    // neurons per (concept, image) list (default 50)
	LensK int    // top tokens per neuron for semantic sensitivity (default 10, as the paper keeps)
	Seed  uint64 // the random baseline's draw
	// ShuffleSeed, when not nil, also locates the lists with every image's patches permuted
	// (model.ShuffleMedia) and reports their overlap with the unshuffled lists.
	ShuffleSeed *uint64
	Chat        bool // prompts as chat turns (as record --chat)
	// Fill is the colour outside a concept's region; nil: the processor's mean colour
	// (FillColour).
	Fill *[3]uint8
	// TempDir holds the region-restricted pictures while they are read (default os.TempDir).
	TempDir string
}

// Validate reports options Evaluate cannot use.
func (o Options) Validate() error {
	if o.TopN < 0 || o.LensK < 0 {
		return fmt.Errorf("%w: top-n %d and lens-k %d must not be negative", ErrOption, o.TopN, o.LensK)
	}
	return nil
}

// Report is what Evaluate measured. A metric without anything to measure it on is nil (no
// bbox in the samples: no region invariance; no concept in two images: no cross-image
// invariance).
type Report struct {
	TopN  int    `json:"top_n"`
	LensK int    `json:"lens_k"`
	Seed  uint64 `json:"seed"`
	Lists int    `json:"lists"` // (concept, image) pairs located
	// Semantic sensitivity: the share of a list's neurons whose top LensK tokens (logit lens
	// of their down-projection columns) include the concept, and the drop of the concept's
	// probability at its step when the list is zeroed; each beside as many random neurons.
	SemanticLens       float64 `json:"semantic_lens"`
	SemanticLensRandom float64 `json:"semantic_lens_random"`
	ProbDrop           float64 `json:"prob_drop"`
	ProbDropRandom     float64 `json:"prob_drop_random"`
	// Specificity: |Δp| of the concept over |Δp| of the concept plus the mean |Δp| of every
	// other concept at its step in every image, when the list is zeroed (1: only the concept
	// moves; 0.5: no preference); the same for random neurons.
	SelfChange        float64  `json:"self_change"`
	OtherChange       float64  `json:"other_change"`
	Specificity       *float64 `json:"specificity"`
	SpecificityRandom *float64 `json:"specificity_random"`
	// Cross-image invariance: the mean Jaccard index of a concept's lists over pairs of
	// images, averaged over concepts; the same for random lists.
	CrossImage       *float64 `json:"cross_image"`
	CrossImageRandom *float64 `json:"cross_image_random"`
	// Region invariance: the mean Jaccard index of a concept's list on the image and on the
	// image restricted to the concept's bbox.
	RegionInvariance *float64 `json:"region_invariance"`
	RegionSamples    int      `json:"region_samples"`
	// ShuffleOverlap: the mean Jaccard index of a list and the list located with the image's
	// patches permuted (Options.ShuffleSeed).
	ShuffleSeed    *uint64   `json:"shuffle_seed,omitempty"`
	ShuffleOverlap *float64  `json:"shuffle_overlap"`
	Concepts       []Concept `json:"concepts"`
}

// Concept is one concept's share of the report.
type Concept struct {
	Word             string   `json:"word"`
	Images           []string `json:"images"` // samples whose lists were located
	SemanticLens     float64  `json:"semantic_lens"`
	ProbDrop         float64  `json:"prob_drop"`
	ProbDropRandom   float64  `json:"prob_drop_random"`
	CrossImage       *float64 `json:"cross_image"`
	RegionInvariance *float64 `json:"region_invariance"`
	ShuffleOverlap   *float64 `json:"shuffle_overlap"`
}

// Metrics are the report's headline numbers under "mm/" names, for a metrics table.
func (r *Report) Metrics() map[string]float64 {
	out := map[string]float64{
		"mm/semantic_lens": r.SemanticLens, "mm/semantic_lens_random": r.SemanticLensRandom,
		"mm/prob_drop": r.ProbDrop, "mm/prob_drop_random": r.ProbDropRandom,
	}
	for k, v := range map[string]*float64{"mm/specificity": r.Specificity, "mm/specificity_random": r.SpecificityRandom,
		"mm/cross_image": r.CrossImage, "mm/cross_image_random": r.CrossImageRandom,
		"mm/region_invariance": r.RegionInvariance, "mm/shuffle_overlap": r.ShuffleOverlap} {
		if v != nil {
			out[k] = *v
		}
	}
	return out
}

// Key names one list: a concept in one image (sample).
type Key struct{ Concept, Sample string }

// Jaccard is |a ∩ b| / |a ∪ b| of two neuron sets (module, layer and index; labels and scores
// ignored); two empty sets are identical (1).
func Jaccard(a, b []neuronset.Neuron) float64 {
	type id struct {
		m    string
		l, j int
	}
	in := map[id]int{}
	for _, n := range a {
		in[id{n.Module, n.Layer, n.Index}] |= 1
	}
	for _, n := range b {
		in[id{n.Module, n.Layer, n.Index}] |= 2
	}
	if len(in) == 0 {
		return 1
	}
	both := 0
	for _, v := range in {
		if v == 3 {
			both++
		}
	}
	return float64(both) / float64(len(in))
}

// MeanPairwiseJaccard is the mean Jaccard index over the unordered pairs of sets, and the
// number of pairs (0, and NaN, for fewer than two sets).
func MeanPairwiseJaccard(sets [][]neuronset.Neuron) (float64, int) {
	sum, n := 0.0, 0
	for i := range sets {
		for k := i + 1; k < len(sets); k++ {
			sum += Jaccard(sets[i], sets[k])
			n++
		}
	}
	if n == 0 {
		return math.NaN(), 0
	}
	return sum / float64(n), n
}

// FillColour is the colour a processor normalises to zero, what a concept's region is
// surrounded with: the test family's mean 0.5; OpenAI CLIP's mean for every other image
// family (the CLIP, LLaVA, LLaVA-NeXT, InstructBLIP/BLIP-2, Qwen2-VL and mPLUG-Owl2
// processors all default to it).
func FillColour(architecture string) [3]uint8 {
	if architecture == "TinyVLMForConditionalGeneration" {
		return imageproc.MeanColour([3]float64{0.5, 0.5, 0.5})
	}
	return imageproc.MeanColour(imageproc.OpenAICLIPMean)
}

// Lists locates the per-sample contribution lists of every label concept of data (its top n
// neurons at the concept's first step after the image), with the images' patches shuffled
// when shuffle is not nil. A label the model never writes after a sample's image has no list.
func Lists(ctx context.Context, m *model.Model, data []samples.Sample, n int, chat bool, shuffle *uint64) (map[Key][]neuronset.Neuron, *neuronset.Set, error) {
	st, err := locate.Record(ctx, m, data, nil, locate.RecordOptions{ConceptsFromLabels: true, PerSample: true, Chat: chat, ShuffleSeed: shuffle})
	if err != nil {
		return nil, nil, err
	}
	llm := st.Module("llm")
	if llm == nil {
		return nil, nil, fmt.Errorf("mmneurons: the model has no language model (module llm) to write concepts")
	}
	kept := llm.Concepts[:0]
	for _, c := range llm.Concepts {
		if c.Steps > 0 {
			kept = append(kept, c)
		}
	}
	llm.Concepts = kept
	if len(kept) == 0 {
		return nil, nil, fmt.Errorf("mmneurons: no sample writes its label after its image: nothing to locate")
	}
	set, err := locate.Contrib(st, locate.ContribOptions{TopK: n, Mode: locate.ContribPerSample})
	if err != nil {
		return nil, nil, err
	}
	return byKey(set), set, nil
}

// byKey groups a per-sample set's neurons by their label, "CONCEPT@SAMPLE".
func byKey(set *neuronset.Set) map[Key][]neuronset.Neuron {
	out := map[Key][]neuronset.Neuron{}
	for _, nr := range set.Neurons {
		w, id, _ := strings.Cut(nr.Label, "@")
		k := Key{w, id}
		out[k] = append(out[k], nr)
	}
	return out
}

// Step is where a sample writes a concept: the position whose next token is it (the first
// such position after the sample's image).
type Step struct {
	Sample int // index in the samples
	Pos    int
	ID     int32 // the concept's token (its first, for a word of several)
	Word   string
}

// ConceptSteps builds every sample's input and finds where each word is first written after
// its image (a word a sample does not write has no step there).
func ConceptSteps(m *model.Model, data []samples.Sample, words []string, chat bool) ([]model.Input, []Step, error) {
	if m.Tokenizer == nil {
		return nil, nil, fmt.Errorf("mmneurons: the checkpoint has no tokenizer")
	}
	ids := make([]int32, len(words))
	for i, w := range words {
		t, err := m.Tokenizer.WordIDs(w)
		if err != nil || len(t) == 0 {
			return nil, nil, fmt.Errorf("mmneurons: concept %q does not tokenize", w)
		}
		ids[i] = t[0]
	}
	inputs := make([]model.Input, len(data))
	var steps []Step
	media := m.MediaTokens()
	for i, s := range data {
		in, err := m.BuildInput("sample "+s.ID, locate.SamplePrompt(s, chat))
		if err != nil {
			return nil, nil, fmt.Errorf("mmneurons: %w", err)
		}
		inputs[i] = in
		for wi, w := range words {
			for p := max(0, media.MediaEnd(in)-1); p+1 < len(in.Tokens); p++ {
				if in.Tokens[p+1] == ids[wi] {
					steps = append(steps, Step{Sample: i, Pos: p, ID: ids[wi], Word: w})
					break
				}
			}
		}
	}
	return inputs, steps, nil
}

// StepProbs is m's probability of each step's concept at its step, under mask (nil: none).
func StepProbs(ctx context.Context, m *model.Model, inputs []model.Input, steps []Step, mask *model.Mask) ([]float64, error) {
	r, err := m.ForwardInputs(ctx, inputs, model.ForwardOptions{AllLogits: true, Mask: mask})
	if err != nil {
		return nil, err
	}
	V := m.Config().Vocab
	out := make([]float64, len(steps))
	for i, st := range steps {
		lp := model.LogSoftmax(r.Logits[st.Sample][st.Pos*V : (st.Pos+1)*V])
		out[i] = math.Exp(lp[st.ID])
	}
	return out, nil
}

// Specificity is |Δp| of word's steps over that plus the mean |Δp| of the other words' steps,
// between base and moved probabilities of steps (1: only the word moves; 0.5: no
// preference), with the two means; nil when either kind of step is missing or nothing moved.
func Specificity(steps []Step, base, moved []float64, word string) (ratio *float64, self, other float64) {
	var ns, no int
	for i, st := range steps {
		d := math.Abs(base[i] - moved[i])
		if st.Word == word {
			self += d
			ns++
		} else {
			other += d
			no++
		}
	}
	if ns == 0 || no == 0 {
		return nil, 0, 0
	}
	self, other = self/float64(ns), other/float64(no)
	return selfShare(self, other), self, other
}

// Evaluate measures the four properties on data (docs/metrics.md).
func Evaluate(ctx context.Context, m *model.Model, data []samples.Sample, o Options) (*Report, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if o.TopN == 0 {
		o.TopN = 50
	}
	if o.LensK == 0 {
		o.LensK = 10
	}
	tok := m.Tokenizer
	if tok == nil {
		return nil, fmt.Errorf("mmneurons: the checkpoint has no tokenizer")
	}
	lists, set, err := Lists(ctx, m, data, o.TopN, o.Chat, nil)
	if err != nil {
		return nil, err
	}
	rnd, err := locate.Random(set, m.Geometry(), o.Seed)
	if err != nil {
		return nil, err
	}
	random := byKey(rnd)
	keys := make([]Key, 0, len(lists))
	for k := range lists {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(a, b int) bool {
		if keys[a].Concept != keys[b].Concept {
			return keys[a].Concept < keys[b].Concept
		}
		return keys[a].Sample < keys[b].Sample
	})
	rep := &Report{TopN: o.TopN, LensK: o.LensK, Seed: o.Seed, Lists: len(keys), ShuffleSeed: o.ShuffleSeed}

	// Every sample's input and the steps at which it writes each concept.
	var order []string
	for _, k := range keys {
		if len(order) == 0 || order[len(order)-1] != k.Concept {
			order = append(order, k.Concept)
		}
	}
	inputs, steps, err := ConceptSteps(m, data, order, o.Chat)
	if err != nil {
		return nil, err
	}
	words := map[string]int32{}
	for _, st := range steps {
		words[st.Word] = st.ID
	}
	probs := func(mask *model.Mask) ([]float64, error) { return StepProbs(ctx, m, inputs, steps, mask) }
	base, err := probs(nil)
	if err != nil {
		return nil, err
	}
	self := func(k Key) int {
		for i, st := range steps {
			if st.Word == k.Concept && data[st.Sample].ID == k.Sample {
				return i
			}
		}
		return -1
	}
	// lens[w] is the decoded, trimmed, lower-cased text of concept w's token.
	norm := func(id int32) string { return strings.ToLower(strings.TrimSpace(tok.Decode([]int32{id}))) }
	lensShare := func(k Key, ns []neuronset.Neuron) float64 {
		if len(ns) == 0 {
			return 0
		}
		want, hit := norm(words[k.Concept]), 0
		for _, n := range ns {
			for _, t := range m.TopTokensOfNeuron(model.Site{Module: n.Module, Layer: n.Layer}, n.Index, o.LensK) {
				if norm(t) == want {
					hit++
					break
				}
			}
		}
		return float64(hit) / float64(len(ns))
	}
	// effect zeroes the list and returns the concept's own drop and |Δp| and the mean |Δp| of
	// the other concepts' steps.
	effect := func(k Key, ns []neuronset.Neuron) (drop, selfAbs, other float64, others bool, err error) {
		mask := model.NewMask()
		for _, n := range ns {
			mask.Set(model.Site{Module: n.Module, Layer: n.Layer}, n.Index, 0)
		}
		p, err := probs(mask)
		if err != nil {
			return 0, 0, 0, false, err
		}
		si := self(k)
		if si < 0 {
			return 0, 0, 0, false, fmt.Errorf("mmneurons: concept %q has a list in sample %s but no step there", k.Concept, k.Sample)
		}
		cnt := 0
		for i, st := range steps {
			if st.Word == k.Concept {
				continue
			}
			other += math.Abs(base[i] - p[i])
			cnt++
		}
		if cnt > 0 {
			other /= float64(cnt)
		}
		return base[si] - p[si], math.Abs(base[si] - p[si]), other, cnt > 0, nil
	}
	per := map[string]*Concept{}
	var sumLens, sumLensR, sumDrop, sumDropR, sumSelf, sumOther, sumSelfR, sumOtherR float64
	otherSeen := false
	for _, k := range keys {
		c := per[k.Concept]
		if c == nil {
			c = &Concept{Word: k.Concept}
			per[k.Concept] = c
		}
		c.Images = append(c.Images, k.Sample)
		l, lr := lensShare(k, lists[k]), lensShare(k, random[k])
		d, sa, ot, others, err := effect(k, lists[k])
		if err != nil {
			return nil, err
		}
		dr, sar, otr, _, err := effect(k, random[k])
		if err != nil {
			return nil, err
		}
		c.SemanticLens += l
		c.ProbDrop += d
		c.ProbDropRandom += dr
		sumLens, sumLensR, sumDrop, sumDropR = sumLens+l, sumLensR+lr, sumDrop+d, sumDropR+dr
		sumSelf, sumOther, sumSelfR, sumOtherR = sumSelf+sa, sumOther+ot, sumSelfR+sar, sumOtherR+otr
		otherSeen = otherSeen || others
	}
	n := float64(len(keys))
	rep.SemanticLens, rep.SemanticLensRandom = sumLens/n, sumLensR/n
	rep.ProbDrop, rep.ProbDropRandom = sumDrop/n, sumDropR/n
	rep.SelfChange, rep.OtherChange = sumSelf/n, sumOther/n
	if otherSeen {
		rep.Specificity = selfShare(sumSelf, sumOther)
		rep.SpecificityRandom = selfShare(sumSelfR, sumOtherR)
	}

	// Cross-image invariance per concept, beside random lists.
	var crossSum, crossSumR float64
	crossN := 0
	for _, w := range order {
		var sets, rsets [][]neuronset.Neuron
		for _, k := range keys {
			if k.Concept == w {
				sets, rsets = append(sets, lists[k]), append(rsets, random[k])
			}
		}
		j, pairs := MeanPairwiseJaccard(sets)
		if pairs == 0 {
			continue
		}
		jr, _ := MeanPairwiseJaccard(rsets)
		per[w].CrossImage = &j
		crossSum, crossSumR = crossSum+j, crossSumR+jr
		crossN++
	}
	if crossN > 0 {
		rep.CrossImage, rep.CrossImageRandom = ptr(crossSum/float64(crossN)), ptr(crossSumR/float64(crossN))
	}

	// Region invariance: the lists of each sample's label concept on its image restricted to
	// the bbox.
	if err := region(ctx, m, data, lists, per, rep, o); err != nil {
		return nil, err
	}

	// The patch-order control.
	if o.ShuffleSeed != nil {
		shuffled, _, err := Lists(ctx, m, data, o.TopN, o.Chat, o.ShuffleSeed)
		if err != nil {
			return nil, fmt.Errorf("mmneurons: shuffled patches: %w", err)
		}
		sum, cnt := 0.0, 0
		sums, cnts := map[string]float64{}, map[string]int{}
		for _, k := range keys {
			j := Jaccard(lists[k], shuffled[k]) // a concept the shuffled image no longer has a list for: 0
			sum, cnt = sum+j, cnt+1
			sums[k.Concept] += j
			cnts[k.Concept]++
		}
		rep.ShuffleOverlap = ptr(sum / float64(cnt))
		for w, c := range per {
			c.ShuffleOverlap = ptr(sums[w] / float64(cnts[w]))
		}
	}
	for _, w := range order {
		c := per[w]
		k := float64(len(c.Images))
		c.SemanticLens, c.ProbDrop, c.ProbDropRandom = c.SemanticLens/k, c.ProbDrop/k, c.ProbDropRandom/k
		rep.Concepts = append(rep.Concepts, *c)
	}
	for k, v := range rep.Metrics() {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, fmt.Errorf("mmneurons: metric %s is %v", k, v)
		}
	}
	return rep, nil
}

// region fills the report's region invariance from the samples with a bbox.
func region(ctx context.Context, m *model.Model, data []samples.Sample, lists map[Key][]neuronset.Neuron, per map[string]*Concept, rep *Report, o Options) error {
	var boxed []samples.Sample
	for _, s := range data {
		if s.BBox != nil && s.Image != "" && lists[Key{s.Label, s.ID}] != nil {
			boxed = append(boxed, s)
		}
	}
	if len(boxed) == 0 {
		return nil
	}
	fill := FillColour(m.Config().Architecture)
	if o.Fill != nil {
		fill = *o.Fill
	}
	dir, err := os.MkdirTemp(o.TempDir, "neurosurg-region-")
	if err != nil {
		return fmt.Errorf("mmneurons: region images: %w", err)
	}
	defer os.RemoveAll(dir)
	restricted := make([]samples.Sample, len(boxed))
	for i, s := range boxed {
		img, err := imageproc.DecodeFile(s.Resolve(s.Image), imageproc.DecodeOptions{})
		if err != nil {
			return fmt.Errorf("mmneurons: sample %s: %s: %w", s.ID, s.Resolve(s.Image), err)
		}
		cut, err := imageproc.MaskOutside(img, [4]float64(s.BBox), fill)
		if err != nil {
			return fmt.Errorf("mmneurons: sample %s: bbox: %w", s.ID, err)
		}
		path := filepath.Join(dir, fmt.Sprintf("%d.png", i))
		var b bytes.Buffer
		if err := imageproc.WritePNG(&b, cut); err != nil {
			return fmt.Errorf("mmneurons: sample %s: %w", s.ID, err)
		}
		if err := atomicfile.Write(path, b.Bytes()); err != nil {
			return fmt.Errorf("mmneurons: sample %s: %w", s.ID, err)
		}
		restricted[i] = s
		restricted[i].Image = path
	}
	cut, _, err := Lists(ctx, m, restricted, rep.TopN, o.Chat, nil)
	if err != nil {
		return fmt.Errorf("mmneurons: restricted images: %w", err)
	}
	sum := 0.0
	sums, cnts := map[string]float64{}, map[string]int{}
	for _, s := range boxed {
		k := Key{s.Label, s.ID}
		j := Jaccard(lists[k], cut[k])
		sum += j
		sums[s.Label] += j
		cnts[s.Label]++
	}
	rep.RegionInvariance, rep.RegionSamples = ptr(sum/float64(len(boxed))), len(boxed)
	for w, n := range cnts {
		per[w].RegionInvariance = ptr(sums[w] / float64(n))
	}
	return nil
}

// selfShare is self / (self + other), nil when both are 0 (nothing moved).
func selfShare(self, other float64) *float64 {
	if self+other == 0 {
		return nil
	}
	return ptr(self / (self + other))
}

func ptr(v float64) *float64 { return &v }
