package tokenizer_test

import (
	"os"
	"testing"

	"github.com/neurosurg/neurosurg/model/tokenizer"
)

func TestChatTemplates(t *testing.T) {
	msgs := []tokenizer.Message{{Role: "user", Content: "Hi"}, {Role: "assistant", Content: "Hello!"}, {Role: "user", Content: "Tell a story."}}
	qwen, err := tokenizer.Load(qwen2)
	if err != nil {
		t.Fatal(err)
	}
	got, err := qwen.ApplyChatTemplate(msgs, true)
	if err != nil {
		t.Fatal(err)
	}
	// Read off the template: a default system turn, each message in im_start/im_end, then the prompt.
	want := "<|im_start|>system\nYou are a helpful assistant<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\nTell a story.<|im_end|>\n<|im_start|>assistant\n"
	if got != want {
		t.Errorf("qwen2:\n got %q\nwant %q", got, want)
	}
	tiny, _ := os.ReadFile("../../testdata/chat/chat_template.jinja")
	got, err = tokenizer.RenderChatTemplate(string(tiny), msgs[:1], true, "<s>", "</s>")
	if err != nil {
		t.Fatal(err)
	}
	want = "<|user|>\nHi</s>\n<|assistant|>\n"
	if got != want {
		t.Errorf("tinyllama:\n got %q\nwant %q", got, want)
	}
	if _, err := tokenizer.RenderChatTemplate("{{ raise_exception('no system role') }}", msgs, true, "", ""); err == nil {
		t.Error("raise_exception should fail the render")
	}
}

// The real templates of the target families (testdata/chat, copied from shared/models), with
// the strings transformers renders for them, read off the templates.
func TestRealMultimodalTemplates(t *testing.T) {
	mm := []tokenizer.Message{{Role: "user", Parts: []tokenizer.Part{{Type: "image"}, {Type: "text", Text: "What is this?"}}}}
	txt := []tokenizer.Message{{Role: "user", Content: "Hi"}}
	cases := []struct {
		file string
		msgs []tokenizer.Message
		want string
	}{
		{"llava-1.5.jinja", mm, "USER: <image>\nWhat is this? ASSISTANT:"},
		{"qwen2-vl.jinja", mm, "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>What is this?<|im_end|>\n<|im_start|>assistant\n"},
		{"smolvlm.jinja", mm, "<|im_start|>User:<image>What is this?<end_of_utterance>\nAssistant:"},
		{"qwen2.5.jinja", txt, "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"},
	}
	for _, c := range cases {
		b, err := os.ReadFile("../../testdata/chat/" + c.file)
		if err != nil {
			t.Fatal(err)
		}
		got, err := tokenizer.RenderChatTemplate(string(b), c.msgs, true, "<s>", "</s>")
		if err != nil || got != c.want {
			t.Errorf("%s: %v\n got %q\nwant %q", c.file, err, got, c.want)
		}
	}
}

// A part's URL reaches the template as "<type>_url" (Qwen2-Audio's processor template tests
// "'audio_url' in content"); parts without one have no such key.
func TestPartURL(t *testing.T) {
	tpl := `{% for c in messages[0]['content'] %}{% if 'audio_url' in c %}[{{ c['audio_url'] }}]{% elif 'image_url' in c %}<img>{% else %}{{ c['text'] }}{% endif %}{% endfor %}`
	msgs := []tokenizer.Message{{Role: "user", Parts: []tokenizer.Part{{Type: "audio", URL: "a.wav"}, {Type: "image"}, {Type: "text", Text: "hi"}}}}
	got, err := tokenizer.RenderChatTemplate(tpl, msgs, false, "", "")
	if err != nil || got != "[a.wav]hi" {
		t.Errorf("got %q, %v; want %q", got, err, "[a.wav]hi")
	}
}
