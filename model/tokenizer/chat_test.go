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
