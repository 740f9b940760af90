package report

import (
	"fmt"
	"sort"
	"strings"

	"github.com/neurosurg/neurosurg/locate"
)

// CardFile is the report's name inside a written checkpoint.
const CardFile = "neurosurg.report.html"

// Card is the report's essentials as Markdown for a model card: the gate verdicts, where the
// neurons are, the top neurons and what they write, and a link to the full page (htmlName,
// relative to the card).
func Card(in *Input, htmlName string) string {
	var b strings.Builder
	b.WriteString("## Surgery report\n\n")
	if htmlName != "" {
		fmt.Fprintf(&b, "The full report — verify charts, the neuron map beside the random baseline's, generations before and after — is [`%s`](%s), one self-contained page.\n\n", htmlName, htmlName)
	}
	if rep := in.Verify; rep != nil && len(rep.Gates) > 0 {
		verdict := "**PASS**"
		if !rep.Passed {
			verdict = "**FAIL**"
			if in.Forced {
				verdict += " (written with --force)"
			}
		}
		var gs []string
		for _, g := range rep.Gates {
			mark := "✓"
			if !g.Passed {
				mark = "✗"
			}
			gs = append(gs, fmt.Sprintf("%s `%s` (%s)", mark, g.Gate, formatNum(g.Value)))
		}
		fmt.Fprintf(&b, "Gates: %s — %s\n\n", verdict, strings.Join(gs, ", "))
	}
	if set := in.Neurons; set != nil {
		geo := in.geometry()
		fmt.Fprintf(&b, "Neurons: %d selected by `%s`", len(set.Neurons), set.Method)
		if len(in.Ops) > 0 {
			fmt.Fprintf(&b, ", patched with `%s`", strings.Join(in.Ops, "`, `"))
		}
		b.WriteString(".\n\n| module | label | neurons per layer |\n|---|---|---|\n")
		for _, mod := range in.modules() {
			for _, l := range locate.SetLabels(set) {
				per := make([]int, min(geo[mod].Layers, maxLayers))
				n := 0
				for _, nr := range set.Neurons {
					if nr.Module == mod && nr.Label == l && nr.Layer < len(per) {
						per[nr.Layer]++
						n++
					}
				}
				if n == 0 {
					continue
				}
				var parts []string
				for layer, c := range per {
					if c > 0 {
						parts = append(parts, fmt.Sprintf("L%d: %d", layer, c))
					}
				}
				fmt.Fprintf(&b, "| %s | %s | %s |\n", cell(mod), cell(labelName(l)), strings.Join(parts, ", "))
			}
		}
		b.WriteString("\n")
		top := in.topNeurons()
		if len(top) > 0 {
			sort.SliceStable(top, func(a, c int) bool { return top[a].Score > top[c].Score })
			top = top[:min(10, len(top))]
			b.WriteString("Top neurons:\n\n| label | module | layer | neuron | score | writes |\n|---|---|---:|---:|---:|---|\n")
			for _, n := range top {
				var w []string
				for _, t := range in.writes(n, 5) {
					w = append(w, "`"+strings.ReplaceAll(t, "`", "'")+"`")
				}
				fmt.Fprintf(&b, "| %s | %s | %d | %d | %s | %s |\n", cell(labelName(n.Label)), cell(n.Module), n.Layer, n.Index, formatNum(n.Score), cell(strings.Join(w, " ")))
			}
			b.WriteString("\n")
		}
	}
	return b.String()
}

func labelName(l string) string {
	if l == "" {
		return "(no label)"
	}
	return l
}

// cell keeps a value inside its Markdown table cell.
func cell(s string) string {
	return strings.NewReplacer("|", `\|`, "\n", " ", "\r", " ").Replace(s)
}
