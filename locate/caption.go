package locate

import (
	"strings"
	"unicode"
)

// CaptionWords are the concept words Pan et al. would take from a caption (algorithms.md §4.3),
// approximated without their POS tagger (Stanford CoreNLP): the caption's words in order of
// first appearance, split at anything but letters, digits, apostrophes and hyphens, "." read
// as a space as the official code does, without the closed-class words of English (articles,
// pronouns, prepositions, conjunctions, auxiliaries, determiners, numerals in words, and a few
// common adverbs) — what is left is mostly nouns, with the caption's adjectives and verbs.
// Give --concept words instead where only nouns must count.
func CaptionWords(caption string) []string {
	var out []string
	seen := map[string]bool{}
	for _, w := range strings.FieldsFunc(caption, func(r rune) bool {
		return !(unicode.IsLetter(r) || unicode.IsDigit(r) || r == '\'' || r == '-')
	}) {
		w = strings.Trim(w, "'-")
		if w == "" || !hasLetter(w) || functionWords[strings.ToLower(w)] || seen[w] {
			continue
		}
		seen[w] = true
		out = append(out, w)
	}
	return out
}

func hasLetter(w string) bool {
	return strings.IndexFunc(w, unicode.IsLetter) >= 0
}

// functionWords are the closed-class words CaptionWords drops.
var functionWords = func() map[string]bool {
	m := map[string]bool{}
	for _, w := range strings.Fields(`a an the this that these those some any each every no all both either neither
		another other such what which whose who whom i me my mine you your yours he him his she her hers it its
		we us our ours they them their theirs myself yourself himself herself itself ourselves themselves
		of in on at by for with without from to into onto upon over under above below between among through
		across along around behind beside besides near off out up down about against after before during
		since until till toward towards within beyond via per like unlike than as
		and or but nor so yet if then because while although though whether
		is am are was were be been being has have had having do does did done doing will would shall should
		can could may might must 's 're 've 'd 'll not n't
		very too also just only really quite rather there here where when why how
		one two three four five six seven eight nine ten many much more most few several lots lot`) {
		m[w] = true
	}
	return m
}()
