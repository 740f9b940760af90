package model

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/neurosurg/neurosurg/dtype"
	"github.com/neurosurg/neurosurg/formats/hfdir"
	"github.com/neurosurg/neurosurg/formats/safetensors"
	"github.com/neurosurg/neurosurg/model/archdef"
	"github.com/neurosurg/neurosurg/model/kernels"
	"github.com/neurosurg/neurosurg/model/synth"
)

const (
	qwen2AudioReal = "../testdata/configs/Qwen2-Audio-7B-Instruct"
	qwen2AudioTiny = "../testdata/configs/qwen2-audio-tiny"
)

// The definition bound to the real config names exactly the 876 tensors of the real
// checkpoint's index, with the sizes its total_size implies (bf16), and the language model's
// config is Qwen2-7B's where text_config is silent (Qwen2Config's defaults).
func TestQwen2AudioRealCheckpointNames(t *testing.T) {
	cfgJSON, err := os.ReadFile(filepath.Join(qwen2AudioReal, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var ix struct {
		Metadata struct {
			TotalSize int64 `json:"total_size"`
		} `json:"metadata"`
		WeightMap map[string]string `json:"weight_map"`
	}
	b, err := os.ReadFile(filepath.Join(qwen2AudioReal, "model.safetensors.index.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &ix); err != nil {
		t.Fatal(err)
	}
	a, err := archdef.ForConfig(cfgJSON)
	if err != nil {
		t.Fatal(err)
	}
	specs, err := a.Tensors()
	if err != nil {
		t.Fatal(err)
	}
	var got, want []string
	var params int64
	for _, s := range specs {
		got = append(got, s.Name)
		n := int64(1)
		for _, d := range s.Shape {
			n *= d
		}
		params += n
	}
	for n := range ix.WeightMap {
		want = append(want, n)
	}
	sort.Strings(got)
	sort.Strings(want)
	if len(want) != 876 || !slices.Equal(got, want) {
		t.Errorf("definition lists %d tensors, the index %d; first difference: %v", len(got), len(want), firstDiff(got, want))
	}
	if 2*params != ix.Metadata.TotalSize {
		t.Errorf("definition's sizes give %d bf16 bytes, the index says %d", 2*params, ix.Metadata.TotalSize)
	}
	cfg, err := parseModuleConfig(a, cfgJSON)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Hidden != 4096 || cfg.Layers != 32 || cfg.Heads != 32 || cfg.KVHeads != 32 || cfg.Intermediate != 11008 ||
		cfg.Vocab != 156032 || cfg.Tied || !cfg.AttnBias || cfg.SlidingWindow != 0 || cfg.Eps != 1e-5 || cfg.Act != "silu" ||
		cfg.Architecture != "Qwen2AudioForConditionalGeneration" || !slices.Equal(cfg.EOS, []int32{151645}) {
		t.Errorf("language model config %+v", cfg)
	}
	groups, err := a.FFN()
	if err != nil {
		t.Fatal(err)
	}
	if len(groups) != 2 || groups[0].Module != "audio" || groups[0].Layers != 32 || groups[0].Neurons != 5120 || groups[0].Act != "gelu" ||
		groups[0].Down != "audio_tower.layers.{i}.fc2.weight" || groups[0].Gate != "" ||
		groups[1].Module != "llm" || groups[1].Layers != 32 || groups[1].Neurons != 11008 || groups[1].Up != "language_model.model.layers.{i}.mlp.up_proj.weight" {
		t.Errorf("FFN groups %+v (want audio 32×5120 and llm 32×11008; the projector has none)", groups)
	}
}

func firstDiff(a, b []string) string {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return a[i] + " vs " + b[i]
		}
	}
	return fmt.Sprintf("lengths %d and %d", len(a), len(b))
}

// qwen2AudioShrink is the tiny test config: the real one with small sizes (token ids, mel
// bins, the 30 s window and everything else unchanged).
func qwen2AudioShrink(t *testing.T) map[string]any {
	b, err := os.ReadFile(filepath.Join(qwen2AudioReal, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var c map[string]any
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	ac, tc := c["audio_config"].(map[string]any), c["text_config"].(map[string]any)
	for k, v := range map[string]float64{"encoder_layers": 2, "encoder_attention_heads": 2, "encoder_ffn_dim": 24, "d_model": 16} {
		ac[k] = v
	}
	for k, v := range map[string]float64{"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 40} {
		tc[k] = v
	}
	return c
}

// The CI config in testdata is the real config shrunk by qwen2AudioShrink.
func TestQwen2AudioTinyConfigIsShrunkReal(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(qwen2AudioTiny, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if want := qwen2AudioShrink(t); !reflect.DeepEqual(got, want) {
		t.Errorf("testdata config %v\nwant %v", got, want)
	}
}

// tinyQwen2Audio synthesises the tiny checkpoint (with its tokenizer and preprocessor files)
// in dt, sharded when shard > 0, and opens it.
func tinyQwen2Audio(t *testing.T, dt safetensors.DType, shard int64) (*Model, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "qa")
	if err := synth.Generate(qwen2AudioTiny, dir, synth.Options{DType: dt, Seed: 7, Std: 0.3, ShardSize: shard}); err != nil {
		t.Fatal(err)
	}
	m, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m, dir
}

// writeSineWAV writes a 16-bit PCM WAV of n frames at rate Hz: a 440 Hz sine (and a 660 Hz
// one in a second channel).
func writeSineWAV(t *testing.T, path string, n, rate, channels int) {
	t.Helper()
	data := make([]byte, 0, 2*n*channels)
	for i := range n {
		for c := range channels {
			f := 440.0
			if c == 1 {
				f = 660
			}
			v := int16(math.Round(12000 * math.Sin(2*math.Pi*f*float64(i)/float64(rate))))
			data = binary.LittleEndian.AppendUint16(data, uint16(v))
		}
	}
	h := []byte("RIFF")
	h = binary.LittleEndian.AppendUint32(h, uint32(36+len(data)))
	h = append(h, "WAVEfmt "...)
	h = binary.LittleEndian.AppendUint32(h, 16)
	h = binary.LittleEndian.AppendUint16(h, 1)
	h = binary.LittleEndian.AppendUint16(h, uint16(channels))
	h = binary.LittleEndian.AppendUint32(h, uint32(rate))
	h = binary.LittleEndian.AppendUint32(h, uint32(rate*2*channels))
	h = binary.LittleEndian.AppendUint16(h, uint16(2*channels))
	h = binary.LittleEndian.AppendUint16(h, 16)
	h = append(h, "data"...)
	h = binary.LittleEndian.AppendUint32(h, uint32(len(data)))
	if err := os.WriteFile(path, append(h, data...), 0o644); err != nil {
		t.Fatal(err)
	}
}

// pyFloorDiv is Python's //.
func pyFloorDiv(a, b int) int { return int(math.Floor(float64(a) / float64(b))) }

// The expansion counts: qwen2AudioFrames is the processor's formula for every mask length of
// a 30 s window.
func TestQwen2AudioFrameCounts(t *testing.T) {
	for l := 1; l <= 3000; l++ {
		in := pyFloorDiv(l-1, 2) + 1
		want := pyFloorDiv(in-2, 2) + 1
		n, got := qwen2AudioFrames(l)
		if got != want || n != in {
			t.Fatalf("L=%d: %d, %d frames, processor %d, %d", l, n, got, in, want)
		}
	}
	if n, out := qwen2AudioFrames(3000); n != 1500 || out != 750 {
		t.Errorf("30 s: %d, %d", n, out)
	}
}

// qwen2AudioRef is the audio tower and projector as transformers computes them, in float64
// and written from modeling_qwen2_audio.py: conv1 (k3, p1) + GELU and conv2 (k3, s2, p1) +
// GELU over all 3000 frames, + embed_positions, pre-LN layers over all 1500 frames with the
// padded frames masked as keys (−inf), AvgPool1d(2, 2) over all of them, layer_norm, the
// projector, and the first qwen2AudioFrames(valid) rows kept.
func qwen2AudioRef(t *testing.T, get func(string) []float64, md Media, mels, d, heads, layers int) [][]float64 {
	return qwen2AudioStages(get, md, mels, d, heads, layers).out
}

// qwen2AudioRefStages are the reference's intermediate results: the front end's 1500 frames
// (conv1, conv2, positions), the layers' 1500 frames, and the kept projected rows.
type qwen2AudioRefStages struct {
	front, layers, out [][]float64
}

func qwen2AudioStages(get func(string) []float64, md Media, mels, d, heads, layers int) qwen2AudioRefStages {
	var st qwen2AudioRefStages
	frames := md.Rows
	valid := md.Valid
	gelu := func(a float64) float64 { return 0.5 * a * (1 + math.Erf(a/math.Sqrt2)) }
	conv := func(x [][]float64, name string, in, stride int) [][]float64 {
		w, b := get(name+".weight"), get(name+".bias")
		n := (len(x)+2-3)/stride + 1
		y := make([][]float64, n)
		for o := range y {
			y[o] = make([]float64, d)
			for c := 0; c < d; c++ {
				s := b[c]
				for ci := 0; ci < in; ci++ {
					for j := 0; j < 3; j++ {
						src := o*stride - 1 + j
						if src >= 0 && src < len(x) {
							s += w[(c*in+ci)*3+j] * x[src][ci]
						}
					}
				}
				y[o][c] = gelu(s)
			}
		}
		return y
	}
	linear := func(x []float64, name string, bias bool) []float64 {
		w := get(name + ".weight")
		var b []float64
		if bias {
			b = get(name + ".bias")
		}
		out := len(w) / len(x)
		y := make([]float64, out)
		for o := range y {
			for i, v := range x {
				y[o] += w[o*len(x)+i] * v
			}
			if b != nil {
				y[o] += b[o]
			}
		}
		return y
	}
	layerNorm := func(x []float64, name string) []float64 {
		w, b := get(name+".weight"), get(name+".bias")
		var mean, v float64
		for _, a := range x {
			mean += a
		}
		mean /= float64(len(x))
		for _, a := range x {
			v += (a - mean) * (a - mean)
		}
		v /= float64(len(x))
		y := make([]float64, len(x))
		for i, a := range x {
			y[i] = (a-mean)/math.Sqrt(v+1e-5)*w[i] + b[i]
		}
		return y
	}
	mel := make([][]float64, frames)
	for f := range mel {
		mel[f] = make([]float64, mels)
		for c := range mels {
			mel[f][c] = float64(md.Features[f*mels+c])
		}
	}
	x := conv(conv(mel, "audio_tower.conv1", mels, 1), "audio_tower.conv2", d, 2)
	pos := get("audio_tower.embed_positions.weight")
	for f := range x {
		for i := range x[f] {
			x[f][i] += pos[f*d+i]
		}
	}
	st.front = clone2(x)
	feat := pyFloorDiv(valid-1, 2) + 1
	hd := d / heads
	for l := range layers {
		p := fmt.Sprintf("audio_tower.layers.%d.", l)
		q, k, v := make([][]float64, len(x)), make([][]float64, len(x)), make([][]float64, len(x))
		for f := range x {
			xn := layerNorm(x[f], p+"self_attn_layer_norm")
			q[f], k[f], v[f] = linear(xn, p+"self_attn.q_proj", true), linear(xn, p+"self_attn.k_proj", false), linear(xn, p+"self_attn.v_proj", true)
		}
		next := make([][]float64, len(x))
		for f := range x {
			att := make([]float64, d)
			for h := range heads {
				sc := make([]float64, len(x))
				mx := math.Inf(-1)
				for s := range x {
					if s >= feat { // padding_mask: −inf on the padded keys
						sc[s] = math.Inf(-1)
						continue
					}
					for i := range hd {
						sc[s] += q[f][h*hd+i] * k[s][h*hd+i]
					}
					sc[s] /= math.Sqrt(float64(hd))
					mx = math.Max(mx, sc[s])
				}
				var z float64
				for s := range sc {
					sc[s] = math.Exp(sc[s] - mx)
					z += sc[s]
				}
				for s := range sc {
					for i := range hd {
						att[h*hd+i] += sc[s] / z * v[s][h*hd+i]
					}
				}
			}
			o := linear(att, p+"self_attn.out_proj", true)
			y := slices.Clone(x[f])
			for i := range y {
				y[i] += o[i]
			}
			hid := linear(layerNorm(y, p+"final_layer_norm"), p+"fc1", true)
			for i := range hid {
				hid[i] = gelu(hid[i])
			}
			o = linear(hid, p+"fc2", true)
			for i := range y {
				y[i] += o[i]
			}
			next[f] = y
		}
		x = next
	}
	st.layers = clone2(x)
	pooled := make([][]float64, len(x)/2)
	for j := range pooled {
		pooled[j] = make([]float64, d)
		for i := range d {
			pooled[j][i] = (x[2*j][i] + x[2*j+1][i]) / 2
		}
		pooled[j] = linear(layerNorm(pooled[j], "audio_tower.layer_norm"), "multi_modal_projector.linear", true)
	}
	keep := max(pyFloorDiv(feat-2, 2)+1, 0)
	st.out = pooled[:keep]
	return st
}

func clone2(x [][]float64) [][]float64 {
	y := make([][]float64, len(x))
	for i := range x {
		y[i] = slices.Clone(x[i])
	}
	return y
}

// Stage by stage against the reference, for a short mask whose front end reads the padding's
// log-mel and one whose crop reaches past the 3000th frame (conv1's zero padding): the
// front end (conv1, conv2, positions) of the n valid frames; the layers over the valid frames
// alone equal transformers' layers over all 1500 with the padding masked as keys (the padded
// rows differ: the runtime never computes them); the pool of the layers' output.
func TestQwen2AudioStages(t *testing.T) {
	prev := kernels.Use(exactVariantInternal())
	defer kernels.Use(prev)
	m, dir := tinyQwen2Audio(t, safetensors.F32, 0)
	e := m.encoders[0].(*qwen2Audio)
	get := tensorsF64(t, dir)
	const d = 16
	cmp := func(what string, got []float32, want [][]float64, rows int) {
		t.Helper()
		worst := 0.0
		for r := range rows {
			for i := range d {
				worst = max(worst, math.Abs(float64(got[r*d+i])-want[r][i]))
			}
		}
		if worst > 1e-4 {
			t.Errorf("%s: %g from the reference", what, worst)
		}
	}
	for _, valid := range []int{6, 2999} {
		md := syntheticMel(valid)
		st := qwen2AudioStages(get, md, 128, d, 2, 2)
		n, out := qwen2AudioFrames(valid)
		sc := new(scratch)
		x, err := e.frontEnd(sc, md.Features, n)
		if err != nil {
			t.Fatal(err)
		}
		cmp(fmt.Sprintf("L=%d front end", valid), x, st.front, n)
		if err := e.encoder.Forward(context.Background(), sc, x, n, 0, nil, nil); err != nil {
			t.Fatal(err)
		}
		cmp(fmt.Sprintf("L=%d layers", valid), x, st.layers, n)
		pooled := make([]float32, out*d)
		avgPool2(pooled, x, out, d)
		want := make([][]float64, out)
		for r := range want {
			want[r] = make([]float64, d)
			for i := range d {
				want[r][i] = (st.layers[2*r][i] + st.layers[2*r+1][i]) / 2
			}
		}
		cmp(fmt.Sprintf("L=%d pool", valid), pooled, want, out)
	}
}

// tensorsF64 reads a checkpoint's tensors as float64.
func tensorsF64(t *testing.T, dir string) func(string) []float64 {
	c, err := hfdir.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	cache := map[string][]float64{}
	return func(name string) []float64 {
		if v, ok := cache[name]; ok {
			return v
		}
		info, b, err := c.Tensor(name)
		if err != nil {
			t.Fatal(err)
		}
		v := make([]float32, info.NumElements())
		dtype.ToFloat32(v, b, info.DType)
		out := make([]float64, len(v))
		for i := range v {
			out[i] = float64(v[i])
		}
		cache[name] = out
		return out
	}
}

// qwen2DecoderRef is the Qwen2 decoder of transformers in float64 over given input embeddings
// (the token embeddings with the audio rows scattered in): RMSNorm, q/k/v with biases, GQA,
// rotate_half RoPE at positions 0..n−1, SwiGLU, the final norm and lm_head.
func qwen2DecoderRef(get func(string) []float64, cfg Config, x [][]float64) [][]float64 {
	d, hd, H, KV := cfg.Hidden, cfg.HeadDim, cfg.Heads, cfg.KVHeads
	lin := func(x, w, b []float64, out int) []float64 {
		y := make([]float64, out)
		for o := range y {
			for i, v := range x {
				y[o] += w[o*len(x)+i] * v
			}
			if b != nil {
				y[o] += b[o]
			}
		}
		return y
	}
	rms := func(x, w []float64) []float64 {
		var s float64
		for _, v := range x {
			s += v * v
		}
		inv := 1 / math.Sqrt(s/float64(len(x))+float64(cfg.Eps))
		y := make([]float64, len(x))
		for i := range x {
			y[i] = x[i] * inv * w[i]
		}
		return y
	}
	rope := func(v []float64, heads, pos int) {
		for h := range heads {
			for i := range hd / 2 {
				f := float64(pos) / math.Pow(cfg.RopeTheta, float64(2*i)/float64(hd))
				a, b := v[h*hd+i], v[h*hd+i+hd/2]
				v[h*hd+i] = a*math.Cos(f) - b*math.Sin(f)
				v[h*hd+i+hd/2] = b*math.Cos(f) + a*math.Sin(f)
			}
		}
	}
	T := len(x)
	for l := range cfg.Layers {
		p := fmt.Sprintf("language_model.model.layers.%d.", l)
		qs, ks, vs := make([][]float64, T), make([][]float64, T), make([][]float64, T)
		for t := range T {
			xn := rms(x[t], get(p+"input_layernorm.weight"))
			qs[t] = lin(xn, get(p+"self_attn.q_proj.weight"), get(p+"self_attn.q_proj.bias"), H*hd)
			ks[t] = lin(xn, get(p+"self_attn.k_proj.weight"), get(p+"self_attn.k_proj.bias"), KV*hd)
			vs[t] = lin(xn, get(p+"self_attn.v_proj.weight"), get(p+"self_attn.v_proj.bias"), KV*hd)
			rope(qs[t], H, t)
			rope(ks[t], KV, t)
		}
		for t := range T {
			att := make([]float64, H*hd)
			for h := range H {
				g := h / (H / KV)
				sc := make([]float64, t+1)
				mx := math.Inf(-1)
				for s := 0; s <= t; s++ {
					for i := range hd {
						sc[s] += qs[t][h*hd+i] * ks[s][g*hd+i]
					}
					sc[s] /= math.Sqrt(float64(hd))
					mx = math.Max(mx, sc[s])
				}
				var z float64
				for s := range sc {
					sc[s] = math.Exp(sc[s] - mx)
					z += sc[s]
				}
				for s := range sc {
					for i := range hd {
						att[h*hd+i] += sc[s] / z * vs[s][g*hd+i]
					}
				}
			}
			o := lin(att, get(p+"self_attn.o_proj.weight"), nil, d)
			for i := range o {
				x[t][i] += o[i]
			}
			xn := rms(x[t], get(p+"post_attention_layernorm.weight"))
			gt := lin(xn, get(p+"mlp.gate_proj.weight"), nil, cfg.Intermediate)
			up := lin(xn, get(p+"mlp.up_proj.weight"), nil, cfg.Intermediate)
			for j := range gt {
				gt[j] = gt[j] / (1 + math.Exp(-gt[j])) * up[j]
			}
			dn := lin(gt, get(p+"mlp.down_proj.weight"), nil, d)
			for i := range dn {
				x[t][i] += dn[i]
			}
		}
	}
	out := make([][]float64, T)
	for t := range x {
		out[t] = lin(rms(x[t], get("language_model.model.norm.weight")), get("language_model.lm_head.weight"), nil, cfg.Vocab)
	}
	return out
}

// qwen2AudioModelRef is the whole model's float64 forward (transformers' order: embed the
// tokens, masked_scatter the projected audio rows over the <|AUDIO|> tokens, run the decoder).
func qwen2AudioModelRef(t *testing.T, m *Model, get func(string) []float64, in Input) [][]float64 {
	cfg := m.Config()
	emb := get("language_model.model.embed_tokens.weight")
	var audio [][]float64
	for _, md := range in.Media {
		audio = append(audio, qwen2AudioRef(t, get, md, 128, 16, 2, 2)...)
	}
	x := make([][]float64, len(in.Tokens))
	k := 0
	for i, id := range in.Tokens {
		if id == 151646 {
			x[i] = slices.Clone(audio[k])
			k++
			continue
		}
		x[i] = slices.Clone(emb[int(id)*cfg.Hidden : (int(id)+1)*cfg.Hidden])
	}
	if k != len(audio) {
		t.Fatalf("%d audio tokens, %d audio rows", k, len(audio))
	}
	return qwen2DecoderRef(get, cfg, x)
}

// syntheticMel is a 3000-frame feature block whose first valid frames vary and whose padding
// is a constant, as a padded clip's log-mel is.
func syntheticMel(valid int) Media {
	f := make([]float32, 3000*128)
	for fr := range 3000 {
		for c := range 128 {
			v := float32(-0.6)
			if fr < valid {
				v = float32(math.Sin(float64(fr)*0.37+float64(c)*0.11)) * 0.8
			}
			f[fr*128+c] = v
		}
	}
	return Media{Kind: "audio", Rows: 3000, Features: f, Valid: valid}
}

// The audio tower and projector agree with transformers' computation (all 1500 frames, the
// padding masked as keys, all pooled, the first rows kept) to 1e-4 for clips of several
// lengths, odd and even, down to one token and up to the full 30 s; F32 sharded and BF16.
func TestQwen2AudioEncoderMatchesReference(t *testing.T) {
	prev := kernels.Use(exactVariantInternal())
	defer kernels.Use(prev)
	for _, c := range []struct {
		dt    safetensors.DType
		shard int64
	}{{safetensors.F32, 4 << 20}, {safetensors.BF16, 0}} {
		m, dir := tinyQwen2Audio(t, c.dt, c.shard)
		if c.shard > 0 {
			if _, err := os.Stat(filepath.Join(dir, hfdir.IndexFile)); err != nil {
				t.Fatalf("%s: not sharded: %v", c.dt, err)
			}
		}
		get := tensorsF64(t, dir)
		lengths := []int{3, 37, 3000}
		if c.dt == safetensors.BF16 {
			lengths = []int{38}
		}
		for _, valid := range lengths {
			md := syntheticMel(valid)
			ref := qwen2AudioRef(t, get, md, 128, 16, 2, 2)
			got, err := m.encoders[0].encode(context.Background(), 0, md, nil, nil)
			if err != nil {
				t.Fatalf("%s L=%d: %v", c.dt, valid, err)
			}
			_, want := qwen2AudioFrames(valid)
			if len(ref) != want || len(got) != want*32 {
				t.Fatalf("%s L=%d: %d rows (reference %d), want %d", c.dt, valid, len(got)/32, len(ref), want)
			}
			worst := 0.0
			for r := range ref {
				for i, v := range ref[r] {
					worst = max(worst, math.Abs(float64(got[r*32+i])-v))
				}
			}
			if worst > 1e-4 {
				t.Errorf("%s L=%d: projected rows differ from the reference by %g", c.dt, valid, worst)
			}
			t.Logf("%s L=%d: %d rows within %.2g", c.dt, valid, want, worst)
		}
	}
	m, _ := tinyQwen2Audio(t, safetensors.F32, 0)
	for _, md := range []Media{{Kind: "audio", Rows: 100, Features: make([]float32, 100*128)}, {Kind: "audio", Rows: 3000, Features: make([]float32, 3000*128), Valid: 2}} {
		if _, err := m.encoders[0].encode(context.Background(), 0, md, nil, nil); !errors.Is(err, ErrMedia) {
			t.Errorf("rows %d valid %d: %v, want ErrMedia", md.Rows, md.Valid, err)
		}
	}
}

// From a WAV file to logits: the prompt builder lays out the processor's default prompt (no
// audio-aware template in the checkpoint), expands <|AUDIO|> to the clip's frames, and the
// logits at every position agree with an independent float64 forward of transformers' model
// to 1e-4 (F32 sharded; BF16 too, its weights read the same way).
func TestQwen2AudioEndToEnd(t *testing.T) {
	prev := kernels.Use(exactVariantInternal())
	defer kernels.Use(prev)
	for _, c := range []struct {
		dt    safetensors.DType
		shard int64
	}{{safetensors.F32, 4 << 20}, {safetensors.BF16, 0}} {
		m, dir := tinyQwen2Audio(t, c.dt, c.shard)
		wav := filepath.Join(dir, "sine.wav")
		writeSineWAV(t, wav, 8000, 16000, 1) // 0.5 s: 50 mel frames, 12 tokens
		in, err := m.BuildInput("s1", Prompt{Text: "hi", Media: []Medium{{Kind: "audio", Paths: []string{wav}}}, Chat: true})
		if err != nil {
			t.Fatal(err)
		}
		if len(in.Media) != 1 || in.Media[0].Valid != 50 || in.Media[0].Rows != 3000 || in.Positions != nil {
			t.Fatalf("%s: media %d, valid %d", c.dt, len(in.Media), in.Media[0].Valid)
		}
		want := "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nAudio 1: <|audio_bos|>" +
			strings.Repeat("<|AUDIO|>", 12) + "<|audio_eos|>\nhi<|im_end|>\n<|im_start|>assistant\n"
		wantIDs, err := m.Tokenizer.Encode(want, false)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(in.Tokens, wantIDs) {
			t.Fatalf("%s: tokens %v\nwant %v", c.dt, in.Tokens, wantIDs)
		}
		res, err := m.ForwardInputs(context.Background(), []Input{in}, ForwardOptions{AllLogits: true})
		if err != nil {
			t.Fatal(err)
		}
		ref := qwen2AudioModelRef(t, m, tensorsF64(t, dir), in)
		V := m.Config().Vocab
		worst, scale := 0.0, 0.0
		for p := range ref {
			for j, w := range ref[p] {
				worst = math.Max(worst, math.Abs(float64(res.Logits[0][p*V+j])-w))
				scale = math.Max(scale, math.Abs(w))
			}
		}
		t.Logf("%s: %d tokens, logits within %.3g of the float64 reference (scale %.3g)", c.dt, len(in.Tokens), worst, scale)
		if worst > 1e-4*math.Max(1, scale) {
			t.Errorf("%s: logits differ from the reference by %g", c.dt, worst)
		}
		// Generation runs the encoder once in its prefill: its first greedy token is the
		// argmax of the forward's last logits.
		gen, err := m.GenerateInputs(context.Background(), []Input{in}, GenerateOptions{MaxTokens: 2})
		if err != nil {
			t.Fatal(err)
		}
		last := res.Logits[0][(len(in.Tokens)-1)*V : len(in.Tokens)*V]
		best := 0
		for j, v := range last {
			if v > last[best] {
				best = j
			}
		}
		if len(gen[0].Tokens) == 0 || gen[0].Tokens[0] != int32(best) {
			t.Errorf("%s: generated %v, want %d first", c.dt, gen[0].Tokens, best)
		}
	}
}

// Zeroing audio-encoder neuron j with a runtime mask gives the logits of zeroing column j of
// that layer's fc2; taps see the valid frames of the clip at each audio layer.
func TestQwen2AudioMaskEqualsWeightEdit(t *testing.T) {
	m, dir := tinyQwen2Audio(t, safetensors.F32, 0)
	ctx := context.Background()
	toks := append(append([]int32{151644, 151647}, slices.Repeat([]int32{151646}, 9)...), 151648, 40, 41)
	in := Input{Tokens: toks, Media: []Media{syntheticMel(38)}} // 19 frames after conv2, 9 tokens
	tap := &siteTap{sites: map[Site]int{}}
	plain, err := m.ForwardInputs(ctx, []Input{in}, ForwardOptions{AllLogits: true, Taps: []Tap{tap}})
	if err != nil {
		t.Fatal(err)
	}
	if want := map[Site]int{{"audio", 0}: 19, {"audio", 1}: 19, {"llm", 0}: len(toks), {"llm", 1}: len(toks)}; !maps.Equal(tap.sites, want) {
		t.Errorf("taps saw %v, want %v", tap.sites, want)
	}
	for _, c := range []struct {
		layer, j int
	}{{0, 3}, {1, 23}} {
		mask := NewMask()
		mask.Set(Site{"audio", c.layer}, c.j, 0)
		masked, err := m.ForwardInputs(ctx, []Input{in}, ForwardOptions{Mask: mask, AllLogits: true})
		if err != nil {
			t.Fatal(err)
		}
		ck, err := hfdir.Open(dir)
		if err != nil {
			t.Fatal(err)
		}
		name := fmt.Sprintf("audio_tower.layers.%d.fc2.weight", c.layer)
		info, b, _ := ck.Tensor(name)
		edited := slices.Clone(b)
		for r := 0; r < int(info.Shape[0]); r++ {
			clear(edited[(r*24+c.j)*4 : (r*24+c.j+1)*4])
		}
		me, err := Load(ck.ConfigJSON, overlay{ck, map[string][]byte{name: edited}})
		if err != nil {
			t.Fatal(err)
		}
		edit, err := me.ForwardInputs(ctx, []Input{in}, ForwardOptions{AllLogits: true})
		if err != nil {
			t.Fatal(err)
		}
		worst := 0.0
		for i := range edit.Logits[0] {
			worst = max(worst, math.Abs(float64(edit.Logits[0][i]-masked.Logits[0][i])))
		}
		if worst > 1e-6 {
			t.Errorf("audio layer %d neuron %d: mask and weight edit differ by %g", c.layer, c.j, worst)
		}
		if slices.Equal(masked.Logits[0], plain.Logits[0]) {
			t.Errorf("audio layer %d neuron %d: the mask changed nothing", c.layer, c.j)
		}
		ck.Close()
	}
}

// The prompt builder: the processor's default layout without Chat, the expansion to the
// processor's count for clips of several lengths (stereo mixed down), the checkpoint's own
// audio-aware template when it has one (the processor wraps a bare <|AUDIO|> in its
// markers), text-only prompts as plain text, and clear refusals.
func TestQwen2AudioPrompts(t *testing.T) {
	m, dir := tinyQwen2Audio(t, safetensors.F32, 0)
	enc := func(s string) []int32 {
		ids, err := m.Tokenizer.Encode(s, false)
		if err != nil {
			t.Fatal(err)
		}
		return ids
	}
	for _, c := range []struct {
		samples, channels int
	}{{16000, 1}, {4801, 1}, {3200, 2}, {481, 1}, {480000, 1}, {600000, 1}} {
		wav := filepath.Join(dir, fmt.Sprintf("a%d.wav", c.samples))
		writeSineWAV(t, wav, c.samples, 16000, c.channels)
		in, err := m.BuildInput("s", Prompt{Text: "what?", Media: []Medium{{Kind: "audio", Paths: []string{wav}}}})
		if err != nil {
			t.Fatal(err)
		}
		l := min((c.samples+159)/160, 3000) // the feature attention mask's ones
		_, n := qwen2AudioFrames(l)
		want := enc("Audio 1: <|audio_bos|>" + strings.Repeat("<|AUDIO|>", n) + "<|audio_eos|>\nwhat?")
		if !slices.Equal(in.Tokens, want) || len(in.Media) != 1 || in.Media[0].Valid != l {
			t.Errorf("%d samples × %d: tokens %v (want %d audio tokens: %v), valid %d", c.samples, c.channels, in.Tokens, n, want, in.Media[0].Valid)
		}
		if _, err := m.ForwardInputs(context.Background(), []Input{in}, ForwardOptions{}); err != nil {
			t.Errorf("%d samples: %v", c.samples, err)
		}
	}
	// Text only: plain text, no markers.
	if in, err := m.BuildInput("s", Prompt{Text: "what?"}); err != nil || !slices.Equal(in.Tokens, enc("what?")) {
		t.Errorf("text only: %v, %v", in.Tokens, err)
	}
	// A clip of 20 ms or less gives no frames: markers only, no medium.
	short := filepath.Join(dir, "short.wav")
	writeSineWAV(t, short, 300, 16000, 1)
	if in, err := m.BuildInput("s", Prompt{Text: "x", Media: []Medium{{Kind: "audio", Paths: []string{short}}}}); err != nil ||
		!slices.Equal(in.Tokens, enc("Audio 1: <|audio_bos|><|audio_eos|>\nx")) || len(in.Media) != 0 {
		t.Errorf("20 ms clip: %v, %d media, %v", in.Tokens, len(in.Media), err)
	}
	wav := filepath.Join(dir, "a16000.wav")
	// Refusals: another sampling rate (with the conversion command), a text holding the marker.
	other := filepath.Join(dir, "44k.wav")
	writeSineWAV(t, other, 4410, 44100, 1)
	if _, err := m.BuildInput("s7", Prompt{Text: "x", Media: []Medium{{Kind: "audio", Paths: []string{other}}}}); err == nil ||
		!strings.Contains(err.Error(), "s7") || !strings.Contains(err.Error(), "ffmpeg") {
		t.Errorf("44.1 kHz: %v", err)
	}
	if _, err := m.BuildInput("s8", Prompt{Text: "x <|AUDIO|>", Media: []Medium{{Kind: "audio", Paths: []string{wav}}}}); !errors.Is(err, ErrMedia) {
		t.Errorf("marker in the text: %v", err)
	}
	if _, err := m.BuildInput("s9", Prompt{Text: "x", Media: []Medium{{Kind: "image", Paths: []string{wav}}}}); !errors.Is(err, ErrMedia) {
		t.Errorf("image to an audio model: %v", err)
	}
	// Without any chat template the processor's default template still applies with Chat: the
	// same ChatML turn the plain Qwen template gives.
	bare := filepath.Join(t.TempDir(), "bare")
	if err := os.MkdirAll(bare, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"config.json", "model.safetensors", "vocab.json", "merges.txt", "preprocessor_config.json", "tokenizer_config.json"} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if f == "tokenizer_config.json" {
			var tc map[string]any
			if err := json.Unmarshal(b, &tc); err != nil {
				t.Fatal(err)
			}
			delete(tc, "chat_template")
			b, _ = json.Marshal(tc)
		}
		if err := os.WriteFile(filepath.Join(bare, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	mb, err := Open(bare)
	if err != nil {
		t.Fatal(err)
	}
	defer mb.Close()
	withTpl, err := m.BuildInput("s", Prompt{Text: "what?", Media: []Medium{{Kind: "audio", Paths: []string{wav}}}, Chat: true})
	if err != nil {
		t.Fatal(err)
	}
	noTpl, err := mb.BuildInput("s", Prompt{Text: "what?", Media: []Medium{{Kind: "audio", Paths: []string{wav}}}, Chat: true})
	if err != nil || mb.Tokenizer.ChatTemplate() != "" || !slices.Equal(noTpl.Tokens, withTpl.Tokens) {
		t.Errorf("no template: %q, %v\nwant %q", mb.Tokenizer.Decode(noTpl.Tokens), err, m.Tokenizer.Decode(withTpl.Tokens))
	}
	// The checkpoint's own audio-aware template (a processor chat_template.json), here one that
	// puts a bare <|AUDIO|> after the text: the processor wraps it in its markers.
	tpl := `{% for message in messages %}<|im_start|>{{ message['role'] }}
{% for c in message['content'] %}{% if c['type'] == 'text' %}{{ c['text'] }}{% elif 'audio_url' in c %}<|AUDIO|>{% endif %}{% endfor %}<|im_end|>
{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant
{% endif %}`
	j, _ := json.Marshal(map[string]string{"chat_template": tpl})
	if err := os.WriteFile(filepath.Join(dir, "chat_template.json"), j, 0o644); err != nil {
		t.Fatal(err)
	}
	in, err := m.BuildInput("s", Prompt{Text: "what?", Media: []Medium{{Kind: "audio", Paths: []string{wav}}}, Chat: true})
	if err != nil {
		t.Fatal(err)
	}
	// The parts come in order: audio first, then the text.
	want := enc("<|im_start|>user\n<|audio_bos|>" + strings.Repeat("<|AUDIO|>", 25) + "<|audio_eos|>what?<|im_end|>\n<|im_start|>assistant\n")
	if !slices.Equal(in.Tokens, want) {
		t.Errorf("own template: %q\nwant %q", m.Tokenizer.Decode(in.Tokens), m.Tokenizer.Decode(want))
	}
}

// expandAudio follows the processor: markers kept when present, added when absent, each
// placeholder to its own count.
func TestExpandAudio(t *testing.T) {
	for _, c := range []struct {
		in     string
		counts []int
		want   string
	}{
		{"<|audio_bos|><|AUDIO|><|audio_eos|>x", []int{2}, "<|audio_bos|><|AUDIO|><|AUDIO|><|audio_eos|>x"},
		{"a<|AUDIO|>b<|AUDIO|>", []int{1, 3}, "a<|audio_bos|><|AUDIO|><|audio_eos|>b<|audio_bos|><|AUDIO|><|AUDIO|><|AUDIO|><|audio_eos|>"},
		{"<|audio_bos|><|AUDIO|>z", []int{0}, "<|audio_bos|>z"},
		{"<|AUDIO|><|AUDIO|>", []int{1, 1}, "<|audio_bos|><|AUDIO|><|audio_eos|><|audio_bos|><|AUDIO|><|audio_eos|>"},
	} {
		if got := expandAudio(c.in, c.counts); got != c.want {
			t.Errorf("%q %v: %q, want %q", c.in, c.counts, got, c.want)
		}
	}
}

// expandAudio on any text and counts: each placeholder becomes its count of copies, the text
// between them is kept, and at most two markers are added per placeholder.
func FuzzExpandAudio(f *testing.F) {
	f.Add("Audio 1: <|audio_bos|><|AUDIO|><|audio_eos|>\nhi", uint8(3), uint8(0))
	f.Add("<|AUDIO|><|AUDIO|>x<|audio_eos|>", uint8(1), uint8(2))
	f.Add("<|audio_bos|><|audio_bos|><|AUDIO|>", uint8(0), uint8(9))
	f.Fuzz(func(t *testing.T, text string, a, b uint8) {
		k := strings.Count(text, qwen2AudioToken)
		counts := make([]int, k)
		for i := range counts {
			counts[i] = int(a)
			if i%2 == 1 {
				counts[i] = int(b)
			}
		}
		got := expandAudio(text, counts)
		sum := 0
		for _, c := range counts {
			sum += c
		}
		if strings.Count(got, qwen2AudioToken) != sum {
			t.Fatalf("%q %v: %d placeholders in %q, want %d", text, counts, strings.Count(got, qwen2AudioToken), got, sum)
		}
		added := len(got) - len(text) - len(qwen2AudioToken)*(sum-k)
		if added < 0 || added > k*(len(qwen2AudioBOS)+len(qwen2AudioEOS)) {
			t.Fatalf("%q %v: %d bytes of markers added", text, counts, added)
		}
	})
}

// BenchmarkQwen2AudioEncoder30s: the audio tower and projector on 30 s of audio (1500 frames
// after conv2) at Qwen2-Audio-7B's encoder widths (d_model 1280, 20 heads, FFN 5120, 128 mels),
// BF16, with 2 of its 32 layers (the layers are identical in cost: ×16 for the real tower less
// the front end).
func BenchmarkQwen2AudioEncoder30s(b *testing.B) {
	raw, err := os.ReadFile(filepath.Join(qwen2AudioReal, "config.json"))
	if err != nil {
		b.Fatal(err)
	}
	var c map[string]any
	if err := json.Unmarshal(raw, &c); err != nil {
		b.Fatal(err)
	}
	c["audio_config"].(map[string]any)["encoder_layers"] = 2
	tc := c["text_config"].(map[string]any)
	for k, v := range map[string]any{"hidden_size": 64, "num_hidden_layers": 1, "num_attention_heads": 4, "num_key_value_heads": 4, "intermediate_size": 64, "vocab_size": 151936} {
		tc[k] = v
	}
	src := filepath.Join(b.TempDir(), "src")
	if err := os.MkdirAll(src, 0o755); err != nil {
		b.Fatal(err)
	}
	j, _ := json.Marshal(c)
	if err := os.WriteFile(filepath.Join(src, "config.json"), j, 0o644); err != nil {
		b.Fatal(err)
	}
	dir := filepath.Join(b.TempDir(), "qa")
	if err := synth.Generate(src, dir, synth.Options{DType: safetensors.BF16, Seed: 1}); err != nil {
		b.Fatal(err)
	}
	m, err := Open(dir)
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	md := syntheticMel(3000)
	for b.Loop() {
		if _, err := m.encoders[0].encode(context.Background(), 0, md, nil, nil); err != nil {
			b.Fatal(err)
		}
	}
}
