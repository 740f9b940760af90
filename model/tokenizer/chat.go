package tokenizer

import (
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/nikolalohinski/gonja/v2"
	"github.com/nikolalohinski/gonja/v2/exec"
	"github.com/nikolalohinski/gonja/v2/loaders"
	"github.com/sirupsen/logrus"
)

var quietGonja sync.Once

// ApplyChatTemplate renders the checkpoint's Jinja chat template for messages.
func (t *Tokenizer) ApplyChatTemplate(messages []Message, addGenerationPrompt bool) (string, error) {
	if t.template == "" {
		return "", fmt.Errorf("tokenizer: the checkpoint has no chat template")
	}
	bos, eos := "", ""
	if t.hasBOS {
		bos = t.Token(t.bos)
	}
	if len(t.eos) > 0 {
		eos = t.Token(t.eos[0])
	}
	return RenderChatTemplate(t.template, messages, addGenerationPrompt, bos, eos)
}

// RenderChatTemplate renders a Hugging Face Jinja chat template.
func RenderChatTemplate(template string, messages []Message, addGenerationPrompt bool, bos, eos string) (string, error) {
	quietGonja.Do(func() { gonja.SetLoggerOutput(io.Discard); gonja.SetLoggerLevel(logrus.PanicLevel) })
	// gonja lacks a few jinja2 conveniences real templates use; map them to what it has.
	src := strings.NewReplacer(".strip()", "|trim", ".lstrip()", "|trim", ".rstrip()", "|trim", ".title()", "|title", ".upper()", "|upper", ".lower()", "|lower",
		// transformers' assistant-mask markers render as nothing.
		"{% generation %}", "", "{% endgeneration %}", "", "{%- generation %}", "", "{%- endgeneration %}", "").Replace(template)
	// transformers renders with trim_blocks and lstrip_blocks.
	cfg := gonja.DefaultConfig.Inherit()
	cfg.TrimBlocks, cfg.LeftStripBlocks = true, true
	loader, err := loaders.NewFileSystemLoader("")
	if err != nil {
		return "", err
	}
	root := "chat-template"
	shifted, err := loaders.NewShiftedLoader(root, strings.NewReader(src), loader)
	if err != nil {
		return "", err
	}
	tpl, err := exec.NewTemplate(root, cfg, shifted, gonja.DefaultEnvironment)
	if err != nil {
		return "", fmt.Errorf("tokenizer: chat template: %w", err)
	}
	msgs := make([]map[string]any, len(messages))
	for i, m := range messages {
		msgs[i] = map[string]any{"role": m.Role, "content": m.Content}
		if m.Parts != nil {
			parts := make([]map[string]any, len(m.Parts))
			for j, p := range m.Parts {
				parts[j] = map[string]any{"type": p.Type, "text": p.Text}
				if p.URL != "" {
					parts[j][p.Type+"_url"] = p.URL
				}
			}
			msgs[i]["content"] = parts
		}
	}
	ctx := exec.NewContext(map[string]any{
		"messages":              msgs,
		"add_generation_prompt": addGenerationPrompt,
		"bos_token":             bos,
		"eos_token":             eos,
		"raise_exception":       func(msg string) (string, error) { return "", fmt.Errorf("template: %s", msg) },
	})
	out, err := tpl.ExecuteToString(ctx)
	if err != nil {
		return "", fmt.Errorf("tokenizer: chat template: %w", err)
	}
	return out, nil
}
