package model

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/neurosurg/neurosurg/formats/safetensors"
	"github.com/neurosurg/neurosurg/model/tokenizer"
)

// The test family's placeholder comes from its encoder and its config's image_token_index;
// MediaEnd is the position after the last placeholder of an input.
func TestMediaTokensTinyVLM(t *testing.T) {
	m, _ := tinyVLM(t, safetensors.F32)
	defer m.Close()
	mt := m.MediaTokens()
	if !reflect.DeepEqual(mt.Placeholders, map[string][]int32{"image": {3}}) || len(mt.Markup) != 0 {
		t.Fatalf("media tokens %+v, want image 3", mt)
	}
	if mt.Kind(3) != "image" || mt.Kind(4) != "" {
		t.Errorf("Kind(3)=%q Kind(4)=%q", mt.Kind(3), mt.Kind(4))
	}
	for _, c := range []struct {
		toks []int32
		want int
	}{
		{[]int32{1, 3, 3, 3, 3, 9, 10}, 5},
		{[]int32{1, 9, 10}, 0},
		{[]int32{3, 3, 9, 3, 11}, 4},
		{nil, 0},
	} {
		if got := mt.MediaEnd(Input{Tokens: c.toks}); got != c.want {
			t.Errorf("MediaEnd(%v) = %d, want %d", c.toks, got, c.want)
		}
	}
	// A caller's embedding span counts as media too.
	if got := mt.MediaEnd(Input{Tokens: []int32{1, 9, 9, 9}, Embeds: []EmbedSpan{{Start: 1, Rows: 2}}}); got != 3 {
		t.Errorf("MediaEnd with a span = %d, want 3", got)
	}
}

// The ids a config names for media are read whatever the family: Qwen2-VL's image, video and
// vision markup, Qwen2-Audio's audio_token_index, and ids outside the vocabulary are ignored.
func TestMediaTokensFromConfig(t *testing.T) {
	m, _ := tinyVLM(t, safetensors.F32)
	defer m.Close()
	m.arch.Config = map[string]any{"image_token_id": 3.0, "video_token_id": 5.0, "vision_start_token_id": 6.0, "vision_end_token_id": 7.0,
		"text_config": map[string]any{"audio_token_index": 8.0}, "audio_bos_token_id": 1e9}
	mt := m.MediaTokens()
	want := MediaTokens{Placeholders: map[string][]int32{"image": {3}, "video": {5}, "audio": {8}}, Markup: []int32{6, 7}}
	if !reflect.DeepEqual(mt, want) {
		t.Errorf("%+v, want %+v", mt, want)
	}
	if got := mt.MediaEnd(Input{Tokens: []int32{1, 6, 5, 5, 7, 9}}); got != 5 {
		t.Errorf("MediaEnd after vision_end = %d, want 5", got)
	}
}

func TestInputPrefix(t *testing.T) {
	in := Input{Tokens: []int32{1, 3, 3, 9, 10}, Positions: []int32{0, 1, 1, 2, 3, 0, 1, 2, 3, 4, 0, 2, 1, 3, 4},
		Embeds: []EmbedSpan{{Start: 1, Rows: 2}, {Start: 3, Rows: 2}}, Media: []Media{{Kind: "image", Rows: 2}}}
	p := in.Prefix(4)
	if !slices.Equal(p.Tokens, []int32{1, 3, 3, 9}) || !slices.Equal(p.Positions, []int32{0, 1, 1, 2, 0, 1, 2, 3, 0, 2, 1, 3}) {
		t.Errorf("prefix %v positions %v", p.Tokens, p.Positions)
	}
	if len(p.Embeds) != 1 || p.Embeds[0].Start != 1 || len(p.Media) != 1 {
		t.Errorf("prefix spans %v media %d", p.Embeds, len(p.Media))
	}
	if p1 := (Input{Tokens: []int32{1, 2, 3}, Positions: []int32{5, 6, 7}}).Prefix(2); !slices.Equal(p1.Positions, []int32{5, 6}) {
		t.Errorf("1-D positions %v", p1.Positions)
	}
}

func TestVideoFrames(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"frame10.png", "frame2.PNG", "frame1.jpg", "notes.txt", "frame02b.webp"} {
		os.WriteFile(filepath.Join(dir, f), []byte("x"), 0o644)
	}
	os.Mkdir(filepath.Join(dir, "sub.png"), 0o755)
	got, err := VideoFrames([]string{dir})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, g := range got {
		names = append(names, filepath.Base(g))
	}
	if want := "frame1.jpg frame2.PNG frame02b.webp frame10.png"; strings.Join(names, " ") != want {
		t.Errorf("frames %v, want %s", names, want)
	}
	// A list, or one file, is the frames as given.
	if got, _ := VideoFrames([]string{"b.png", "a.png"}); !slices.Equal(got, []string{"b.png", "a.png"}) {
		t.Errorf("list %v", got)
	}
	if got, _ := VideoFrames([]string{filepath.Join(dir, "frame1.jpg")}); len(got) != 1 {
		t.Errorf("one file %v", got)
	}
	empty := t.TempDir()
	os.WriteFile(filepath.Join(empty, "readme.md"), nil, 0o644)
	if _, err := VideoFrames([]string{empty}); err == nil || !strings.Contains(err.Error(), empty+": a directory without frames") {
		t.Errorf("empty dir: %v", err)
	}
	for _, c := range []struct {
		a, b string
		less bool
	}{{"f2", "f10", true}, {"f10", "f2", false}, {"a", "b", true}, {"f1", "f01", false}, {"x9y", "x10", true}, {"ab", "abc", true}} {
		if got := naturalCompare(c.a, c.b) < 0; got != c.less {
			t.Errorf("naturalCompare(%q, %q) < 0 = %v", c.a, c.b, got)
		}
	}
}

// A video directory reaches the family as its frames; the test family has no video encoder,
// so it is refused naming the sample, and a directory without frames names the directory.
func TestBuildInputVideo(t *testing.T) {
	m, _ := tinyVLM(t, safetensors.F32)
	defer m.Close()
	tok, err := tokenizer.Load("../testdata/stories260K")
	if err != nil {
		t.Fatal(err)
	}
	m.Tokenizer = tok
	dir := t.TempDir()
	if _, err := m.BuildInput("sample v", Prompt{Text: "x", Media: []Medium{{Kind: "video", Paths: []string{dir}}}}); err == nil || !strings.Contains(err.Error(), "sample v: video: "+dir+": a directory without frames") {
		t.Errorf("empty video dir: %v", err)
	}
	os.WriteFile(filepath.Join(dir, "1.png"), []byte("x"), 0o644)
	if _, err := m.BuildInput("sample v", Prompt{Text: "x", Media: []Medium{{Kind: "video", Paths: []string{dir}}}}); !errors.Is(err, ErrMedia) || !strings.Contains(err.Error(), "sample v has video input") {
		t.Errorf("video on the test family: %v", err)
	}
	// Two images: the default layout has one run per kind, so it refuses naming the sample.
	img := filepath.Join(dir, "1.png")
	if _, err := m.BuildInput("sample w", Prompt{Text: "x", Media: []Medium{{Kind: "image", Paths: []string{img}}, {Kind: "image", Paths: []string{img}}}}); !errors.Is(err, ErrMedia) || !strings.Contains(err.Error(), "sample w has more than one image") {
		t.Errorf("two images: %v", err)
	}
}

func TestInputExtend(t *testing.T) {
	in := Input{Tokens: []int32{1, 3, 3, 9}, Positions: []int32{0, 1, 1, 2, 0, 1, 2, 3, 0, 2, 1, 3}}
	e := in.Extend([]int32{7, 8})
	if !slices.Equal(e.Tokens, []int32{1, 3, 3, 9, 7, 8}) || !slices.Equal(e.Positions, []int32{0, 1, 1, 2, 4, 5, 0, 1, 2, 3, 4, 5, 0, 2, 1, 3, 4, 5}) {
		t.Errorf("M-RoPE extend: %v %v", e.Tokens, e.Positions)
	}
	if len(in.Tokens) != 4 || len(in.Positions) != 12 {
		t.Error("Extend changed its input")
	}
	if e := (Input{Tokens: []int32{1, 2}}).Extend([]int32{3}); e.Positions != nil || !slices.Equal(e.Tokens, []int32{1, 2, 3}) {
		t.Errorf("no positions: %v", e)
	}
	if e := (Input{Tokens: []int32{1, 2}, Positions: []int32{4, 9}}).Extend([]int32{3}); !slices.Equal(e.Positions, []int32{4, 9, 10}) {
		t.Errorf("1-D: %v", e.Positions)
	}
}
