package model

// The decoder family: Llama, Mistral and Qwen2 — pre-norm decoder layers (RMSNorm, causal
// attention with RoPE and GQA, RMSNorm, gated MLP), an embedding and a head. Their tensors
// are in model/archdef/defs/{llama,qwen2}.json; what differs between them is data there
// (Qwen2's q/k/v biases, tied embeddings) and the quirks below.

func init() {
	Register("LlamaForCausalLM", Family{Build: buildDecoderLM})
	Register("MistralForCausalLM", Family{Build: buildDecoderLM})
	Register("Qwen2ForCausalLM", Family{Build: buildDecoderLM, Quirks: func(c *Config) {
		c.AttnBias = true // Qwen2 always has q/k/v biases (and no o bias)
	}})
}

// buildDecoderLM binds a decoder-only language model: module "llm".
func buildDecoderLM(b *Binder) error {
	bindDecoderLM(b, b.Module("llm"))
	return b.Err()
}

// bindDecoderLM binds the embedding, the decoder layers and the head of a language-model
// module into b.Model (families with encoders call it for their "llm" module).
func bindDecoderLM(b *Binder, llm *Module) { bindDecoderLMAt(b, llm, "") }

// bindDecoderLMAt is bindDecoderLM for a language model whose embedding, final norm and head
// are named under prefix ("language_model." in LLaVA's, InstructBLIP's and Qwen2-Audio's checkpoints:
// language_model.model.embed_tokens, language_model.lm_head); its layers' names come from the
// module's layer prefix.
func bindDecoderLMAt(b *Binder, llm *Module, prefix string) {
	m, cfg := b.Model, &b.Model.cfg
	// Bound in the order the forward pass uses them (FirstNonFiniteWeight blames the first).
	m.embed = Embedding{llm.Weight(prefix+"model.embed_tokens.weight", -1)}
	m.decoder = Decoder{module: "llm"}
	for i := 0; i < cfg.Layers && b.Err() == nil; i++ {
		var ly DecoderLayer
		ly.inNorm = RMSNorm{llm.Vector("input_layernorm.weight", i), cfg.Eps}
		ly.attn = Attention{
			q: llm.Linear("self_attn.q_proj", i), k: llm.Linear("self_attn.k_proj", i),
			v: llm.Linear("self_attn.v_proj", i), o: llm.Linear("self_attn.o_proj", i),
			heads: cfg.Heads, kvHeads: cfg.KVHeads, hd: cfg.HeadDim, window: cfg.SlidingWindow,
		}
		ly.postNorm = RMSNorm{llm.Vector("post_attention_layernorm.weight", i), cfg.Eps}
		ly.mlp = GatedMLP{
			gate: llm.Linear("mlp.gate_proj", i), up: llm.Linear("mlp.up_proj", i), down: llm.Linear("mlp.down_proj", i),
			act: cfg.Act, neurons: cfg.Intermediate,
		}
		m.decoder.layers = append(m.decoder.layers, ly)
	}
	// lm_head binds to the embedding when tied (archdef's tied_to): never a copy.
	m.head = Head{norm: RMSNorm{llm.Vector(prefix+"model.norm.weight", -1), cfg.Eps}, unembed: llm.Weight(prefix+"lm_head.weight", -1)}
}
