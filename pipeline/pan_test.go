package pipeline

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/neurosurg/neurosurg/formats/samples"
	"github.com/neurosurg/neurosurg/locate"
	"github.com/neurosurg/neurosurg/verify/mmneurons"
)

// Pan et al.'s identification on captioned images of the test family: the caption's content
// words become concepts, each image gets its own per-sample list at the concept's first step
// after the image, and shuffling the images' patches (§4.7) changes the lists and the data
// hash; a shuffled recording does not extend an unshuffled one.
func TestCaptionContribAndShuffle(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	m, err := OpenModel(tinyVLMWithTokenizer(t, dir))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	var data []samples.Sample
	for i, c := range []string{"An image of Lily with a ball", "An image of Tim and Lily", "An image of Tim in the park"} {
		p := filepath.Join(dir, string(rune('a'+i))+".png")
		writePNG(t, p, 7+i, 9, [3]int{60 * i, 120, 200 - 60*i})
		data = append(data, samples.Sample{ID: "c" + string(rune('0'+i)), Text: c, Image: p})
	}
	st, err := Record(ctx, m, data, nil, RecordParams{ConceptsFromText: true, PerSample: true})
	if err != nil {
		t.Fatal(err)
	}
	var words []string
	for _, c := range st.Module("llm").Concepts {
		words = append(words, c.Word)
	}
	// "image", "Lily", "ball", "Tim", "park" unless two start with one token (then the first).
	for _, w := range []string{"Lily", "Tim"} {
		if !slices.Contains(words, w) {
			t.Errorf("concepts %v lack %q", words, w)
		}
	}
	if slices.Contains(words, "of") || slices.Contains(words, "the") {
		t.Errorf("concepts %v hold function words", words)
	}
	set, err := locate.Contrib(st, locate.ContribOptions{TopK: 10, Mode: locate.ContribPerSample})
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range []string{"Lily@c0", "Lily@c1", "Tim@c1", "Tim@c2"} {
		if !slices.Contains(set.Labels, l) {
			t.Errorf("per-sample lists %v lack %s", set.Labels, l)
		}
	}
	if slices.Contains(set.Labels, "Lily@c2") {
		t.Error("c2 does not write Lily, yet has a Lily list")
	}

	seed := uint64(7)
	// Lists take the labels as concepts: label the samples by a word they write.
	labelled := slices.Clone(data)
	labelled[0].Label, labelled[1].Label, labelled[2].Label = "Lily", "Tim", "Tim"
	plain, _, err := mmneurons.Lists(ctx, m, labelled, 10, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	shuffled, _, err := mmneurons.Lists(ctx, m, labelled, 10, false, &seed)
	if err != nil {
		t.Fatal(err)
	}
	same, changed, sum := 0, 0, 0.0
	for k, l := range plain {
		sum += mmneurons.Jaccard(l, shuffled[k])
		if mmneurons.Jaccard(l, shuffled[k]) == 1 {
			same++
		} else {
			changed++
		}
	}
	if changed == 0 {
		t.Errorf("shuffling the patches changed none of %d lists", same)
	}
	t.Logf("shuffled patches: %d of %d top-10 lists changed, mean Jaccard %.3f", changed, len(plain), sum/float64(len(plain)))
	sh, err := Record(ctx, m, data, nil, RecordParams{ConceptsFromText: true, ShuffleSeed: &seed})
	if err != nil {
		t.Fatal(err)
	}
	if sh.DataHash == st.DataHash {
		t.Error("shuffled and unshuffled recordings have one data hash")
	}
	if _, err := Record(ctx, m, data, st, RecordParams{ShuffleSeed: &seed}); err == nil || !strings.Contains(err.Error(), "shuffled") {
		t.Errorf("extending stats with shuffled patches: %v, want an error", err)
	}
}
