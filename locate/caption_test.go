package locate

import (
	"slices"
	"testing"
)

func TestCaptionWords(t *testing.T) {
	for _, c := range []struct {
		caption string
		want    []string
	}{
		{"An image of a dog on the beach.", []string{"image", "dog", "beach"}},
		{"a red car parked next to two trees, and a man's bike", []string{"red", "car", "parked", "next", "trees", "man's", "bike"}},
		{"The dog.The dog chases a dog-toy", []string{"dog", "chases", "dog-toy"}},
		{"Dog and dog", []string{"Dog", "dog"}},
		{"of the in 42 --", nil},
		{"", nil},
	} {
		if got := CaptionWords(c.caption); !slices.Equal(got, c.want) {
			t.Errorf("CaptionWords(%q) = %q, want %q", c.caption, got, c.want)
		}
	}
}
