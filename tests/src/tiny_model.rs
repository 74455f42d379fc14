//! A tiny safetensors model written on the spot, for tests of what only safetensors models take
//! (in-situ quantization, LoRA adapters) with no download: a two-layer Llama with fixed
//! pseudo-random weights, a byte-level tokenizer (one token per byte, no merges), ChatML special
//! tokens and chat template. Its answers are noise, but they come from mistral.rs running it.
//! Likewise a tiny sentence-transformers embedding model (a two-layer Qwen 3 with pooling and
//! normalization), for the embeddings route with a real engine.

use std::path::Path;

use serde_json::{json, Value};

const HIDDEN: usize = 256;
const INTERMEDIATE: usize = 512;
const LAYERS: usize = 2;
const HEADS: usize = 4;
const KV_HEADS: usize = 2;
const HEAD_DIM: usize = HIDDEN / HEADS;
/// 256 byte tokens, then `<|im_start|>` and `<|im_end|>`.
const VOCAB: usize = 258;
/// LoRA rank of [`write_lora`].
const RANK: usize = 4;

/// Writes the model into `dir` (created): config.json, tokenizer.json, tokenizer_config.json
/// (with the chat template) and model.safetensors.
pub fn write_model(dir: &Path) {
    std::fs::create_dir_all(dir).expect("model dir");
    let config = config(json!({
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
    }));
    write_json(&dir.join("config.json"), &config);
    write_json(&dir.join("tokenizer.json"), &tokenizer());
    write_json(
        &dir.join("tokenizer_config.json"),
        &json!({
            "bos_token": "<|im_start|>",
            "eos_token": "<|im_end|>",
            "unk_token": null,
            "add_bos_token": false,
            "chat_template": "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}",
        }),
    );
    let mut random = Lcg(42);
    let mut tensors = transformer_tensors("model.", false, &mut random);
    let mut head = random_matrix(VOCAB, HIDDEN, &mut random);
    // The special tokens' logits stay 0, below the best of 256 random ones: greedy answers never
    // end early, so they are always `max_tokens` long.
    head[256 * HIDDEN..].fill(0.0);
    tensors.push(("lm_head.weight".into(), vec![VOCAB, HIDDEN], head));
    write_safetensors(&dir.join("model.safetensors"), &tensors);
}

type Tensors = Vec<(String, Vec<usize>, Vec<f32>)>;

/// config.json: the sizes both tiny models share, then `specific` (architecture, norms, rope).
fn config(specific: Value) -> Value {
    let mut config = json!({
        "hidden_act": "silu",
        "hidden_size": HIDDEN,
        "intermediate_size": INTERMEDIATE,
        "vocab_size": VOCAB,
        "num_hidden_layers": LAYERS,
        "num_attention_heads": HEADS,
        "num_key_value_heads": KV_HEADS,
        "max_position_embeddings": 512,
        "tie_word_embeddings": false,
        "bos_token_id": 256,
        "eos_token_id": 257,
        "torch_dtype": "float32",
    });
    if let (Some(config), Value::Object(specific)) = (config.as_object_mut(), specific) {
        config.extend(specific);
    }
    config
}

/// A `rows` x `cols` matrix of fixed pseudo-random weights scaled by 1/sqrt(cols).
fn random_matrix(rows: usize, cols: usize, random: &mut Lcg) -> Vec<f32> {
    let scale = 1.0 / (cols as f64).sqrt();
    (0..rows * cols)
        .map(|_| (random.next() * scale) as f32)
        .collect()
}

/// The transformer's tensors, names under `prefix` (`model.` as a causal LM stores them, none as
/// a sentence-transformers model does): embeddings, [`LAYERS`] layers and the final norm;
/// `qk_norm` adds Qwen 3's per-head query and key norms.
fn transformer_tensors(prefix: &str, qk_norm: bool, random: &mut Lcg) -> Tensors {
    let mut tensors = Tensors::new();
    let mut matrix = |name: String, rows: usize, cols: usize, random: &mut Lcg| {
        tensors.push((name, vec![rows, cols], random_matrix(rows, cols, random)));
    };
    matrix(
        format!("{prefix}embed_tokens.weight"),
        VOCAB,
        HIDDEN,
        random,
    );
    for l in 0..LAYERS {
        let p = format!("{prefix}layers.{l}");
        let kv = KV_HEADS * HEAD_DIM;
        matrix(
            format!("{p}.self_attn.q_proj.weight"),
            HIDDEN,
            HIDDEN,
            random,
        );
        matrix(format!("{p}.self_attn.k_proj.weight"), kv, HIDDEN, random);
        matrix(format!("{p}.self_attn.v_proj.weight"), kv, HIDDEN, random);
        matrix(
            format!("{p}.self_attn.o_proj.weight"),
            HIDDEN,
            HIDDEN,
            random,
        );
        matrix(
            format!("{p}.mlp.gate_proj.weight"),
            INTERMEDIATE,
            HIDDEN,
            random,
        );
        matrix(
            format!("{p}.mlp.up_proj.weight"),
            INTERMEDIATE,
            HIDDEN,
            random,
        );
        matrix(
            format!("{p}.mlp.down_proj.weight"),
            HIDDEN,
            INTERMEDIATE,
            random,
        );
    }
    let ones = |n: usize| vec![1.0; n];
    for l in 0..LAYERS {
        let p = format!("{prefix}layers.{l}");
        for norm in ["input_layernorm", "post_attention_layernorm"] {
            tensors.push((format!("{p}.{norm}.weight"), vec![HIDDEN], ones(HIDDEN)));
        }
        if qk_norm {
            for norm in ["q_norm", "k_norm"] {
                let name = format!("{p}.self_attn.{norm}.weight");
                tensors.push((name, vec![HEAD_DIM], ones(HEAD_DIM)));
            }
        }
    }
    tensors.push((format!("{prefix}norm.weight"), vec![HIDDEN], ones(HIDDEN)));
    tensors
}

/// Writes a sentence-transformers embedding model into `dir` (created): a two-layer Qwen 3 with
/// fixed pseudo-random weights and the byte-level tokenizer, last-token pooling, then
/// normalization, so its vectors have [`EMBEDDING_DIMENSION`] unit-length components. mistral.rs
/// loads a directory with `config_sentence_transformers.json` as an embedding model.
pub fn write_embedding_model(dir: &Path) {
    std::fs::create_dir_all(dir.join("1_Pooling")).expect("model dir");
    let config = config(json!({
        "architectures": ["Qwen3ForCausalLM"],
        "model_type": "qwen3",
        "head_dim": HEAD_DIM,
        "rms_norm_eps": 1e-6,
        "rope_theta": 1000000.0,
        "max_window_layers": LAYERS,
        "use_sliding_window": false,
        "sliding_window": null,
    }));
    write_json(&dir.join("config.json"), &config);
    write_json(&dir.join("tokenizer.json"), &tokenizer());
    write_json(
        &dir.join("tokenizer_config.json"),
        &json!({"bos_token": null, "eos_token": "<|im_end|>", "unk_token": null}),
    );
    write_json(
        &dir.join("config_sentence_transformers.json"),
        &json!({"prompts": {}, "default_prompt_name": null, "similarity_fn_name": "cosine"}),
    );
    write_json(
        &dir.join("modules.json"),
        &json!([
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
            {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
        ]),
    );
    write_json(
        &dir.join("1_Pooling/config.json"),
        &json!({
            "word_embedding_dimension": HIDDEN,
            "pooling_mode_cls_token": false,
            "pooling_mode_mean_tokens": false,
            "pooling_mode_max_tokens": false,
            "pooling_mode_mean_sqrt_len_tokens": false,
            "pooling_mode_weightedmean_tokens": false,
            "pooling_mode_lasttoken": true,
            "include_prompt": true,
        }),
    );
    let tensors = transformer_tensors("", true, &mut Lcg(11));
    write_safetensors(&dir.join("model.safetensors"), &tensors);
}

/// Length of the vectors [`write_embedding_model`]'s model returns.
pub const EMBEDDING_DIMENSION: usize = HIDDEN;

/// Writes a PEFT LoRA adapter for [`write_model`] into `dir` (created): adapter_config.json and
/// adapter_model.safetensors, rank 4 on every layer's q_proj and v_proj.
pub fn write_lora(dir: &Path) {
    std::fs::create_dir_all(dir).expect("adapter dir");
    write_json(
        &dir.join("adapter_config.json"),
        &json!({
            "peft_type": "LORA",
            "r": RANK,
            "lora_alpha": 8,
            "lora_dropout": 0.0,
            "target_modules": ["q_proj", "v_proj"],
            "base_model_name_or_path": "tiny-llama",
        }),
    );
    let mut random = Lcg(7);
    let mut tensors = Vec::new();
    for l in 0..LAYERS {
        for (module, out) in [("q_proj", HIDDEN), ("v_proj", KV_HEADS * HEAD_DIM)] {
            let p = format!("base_model.model.model.layers.{l}.self_attn.{module}");
            let a = (0..RANK * HIDDEN)
                .map(|_| (random.next() * 0.1) as f32)
                .collect();
            let b = (0..out * RANK)
                .map(|_| (random.next() * 0.1) as f32)
                .collect();
            tensors.push((format!("{p}.lora_A.weight"), vec![RANK, HIDDEN], a));
            tensors.push((format!("{p}.lora_B.weight"), vec![out, RANK], b));
        }
    }
    write_safetensors(&dir.join("adapter_model.safetensors"), &tensors);
}

/// A byte-level BPE tokenizer with one token per byte (GPT-2's byte-to-character map) and no
/// merges, plus the two ChatML special tokens.
fn tokenizer() -> Value {
    let vocab: serde_json::Map<String, Value> = byte_chars()
        .into_iter()
        .enumerate()
        .map(|(byte, c)| (c.to_string(), json!(byte)))
        .collect();
    let special = |id: usize, content: &str| {
        json!({"id": id, "content": content, "single_word": false, "lstrip": false,
               "rstrip": false, "normalized": false, "special": true})
    };
    json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [special(256, "<|im_start|>"), special(257, "<|im_end|>")],
        "normalizer": null,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
        "post_processor": null,
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {
            "type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
            "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false,
            "vocab": vocab, "merges": []
        }
    })
}

/// GPT-2's `bytes_to_unicode`: the character standing for each byte.
fn byte_chars() -> Vec<char> {
    let printable = |b: u32| {
        (u32::from(b'!')..=u32::from(b'~')).contains(&b)
            || (0xA1..=0xAC).contains(&b)
            || (0xAE..=0xFF).contains(&b)
    };
    let mut next = 256;
    (0u32..256)
        .map(|b| {
            let code = if printable(b) {
                b
            } else {
                next += 1;
                next - 1
            };
            char::from_u32(code).expect("a character")
        })
        .collect()
}

fn write_json(path: &Path, value: &Value) {
    std::fs::write(path, serde_json::to_vec_pretty(value).expect("json")).expect("write json");
}

/// The safetensors format: an 8-byte little-endian header length, the JSON header (padded to 8
/// bytes), then the tensors' little-endian data.
fn write_safetensors(path: &Path, tensors: &Tensors) {
    let mut header = serde_json::Map::new();
    let mut offset = 0usize;
    for (name, shape, data) in tensors {
        let end = offset + data.len() * 4;
        header.insert(
            name.clone(),
            json!({"dtype": "F32", "shape": shape, "data_offsets": [offset, end]}),
        );
        offset = end;
    }
    let mut header = serde_json::to_vec(&Value::Object(header)).expect("header");
    while !header.len().is_multiple_of(8) {
        header.push(b' ');
    }
    let mut out = Vec::with_capacity(8 + header.len() + offset);
    out.extend_from_slice(&(header.len() as u64).to_le_bytes());
    out.extend_from_slice(&header);
    for (_, _, data) in tensors {
        for value in data {
            out.extend_from_slice(&value.to_le_bytes());
        }
    }
    std::fs::write(path, out).expect("write safetensors");
}

/// Fixed pseudo-random numbers in [-1, 1).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 40) as f64 / (1u64 << 24) as f64) * 2.0 - 1.0
    }
}
