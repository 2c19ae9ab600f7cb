//! The Qwen3 text encoder (transformers' `Qwen3Model`) as the Z-Image pipeline uses it: the
//! prompt's embeddings are `hidden_states[-2]`, i.e. the output of the second-to-last decoder
//! layer, not final-normed (transformers records the input of layer 0 and then each layer's
//! output, and replaces only the last entry by the normed output). So the last layer and the final
//! norm are never needed: they are neither loaded nor run.
//!
//! Only the real (unpadded) tokens are run. diffusers pads on the right to 512 and masks the pads;
//! under a causal mask the real tokens never see the pads, so the result is the same.

use std::path::Path;

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{Embedding, Linear, VarBuilder};

use super::pipeline::PromptEmbedder;
use super::tokenizer::PromptTokenizer;
use super::{ModelError, Result};

/// `text_encoder/config.json` (the fields this model uses).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Qwen3Config {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub head_dim: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    pub attention_bias: bool,
}

/// The file's shape: transformers ≥ 5 writes `rope_parameters`, older versions `rope_theta`.
#[derive(serde::Deserialize)]
struct RawQwen3Config {
    vocab_size: usize,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    num_key_value_heads: Option<usize>,
    head_dim: Option<usize>,
    rms_norm_eps: Option<f64>,
    rope_theta: Option<f64>,
    rope_parameters: Option<RawRopeParameters>,
    rope_scaling: Option<RawRopeParameters>,
    #[serde(default)]
    attention_bias: bool,
    hidden_act: Option<String>,
    #[serde(default)]
    use_sliding_window: bool,
}

#[derive(serde::Deserialize)]
struct RawRopeParameters {
    rope_theta: Option<f64>,
    rope_type: Option<String>,
}

impl Qwen3Config {
    /// Qwen3-4B, the encoder of Z-Image-Turbo.
    pub fn qwen3_4b() -> Self {
        Self {
            vocab_size: 151_936,
            hidden_size: 2560,
            intermediate_size: 9728,
            num_hidden_layers: 36,
            num_attention_heads: 32,
            num_key_value_heads: 8,
            head_dim: 128,
            rms_norm_eps: 1e-6,
            rope_theta: 1_000_000.0,
            attention_bias: false,
        }
    }

    /// A tiny encoder with every block type (GQA, q/k norms), for the demo model.
    pub fn tiny(vocab_size: usize) -> Self {
        Self {
            vocab_size,
            hidden_size: 64,
            intermediate_size: 128,
            num_hidden_layers: 3,
            num_attention_heads: 4,
            num_key_value_heads: 2,
            head_dim: 16,
            rms_norm_eps: 1e-6,
            rope_theta: 1_000_000.0,
            attention_bias: false,
        }
    }

    /// Parses `config.json` text; `source` names the file in errors.
    pub fn from_json(text: &str, source: &Path) -> Result<Self> {
        let raw: RawQwen3Config = serde_json::from_str(text)
            .map_err(|err| ModelError::load(source, format!("not a Qwen3 config: {err}")))?;
        let bad = |problem: String| ModelError::load(source, problem);
        if let Some(act) = raw.hidden_act.as_deref() {
            if act != "silu" {
                return Err(bad(format!(
                    "hidden_act {act:?} is not supported (expected \"silu\")"
                )));
            }
        }
        if raw.use_sliding_window {
            return Err(bad("sliding-window attention is not supported".into()));
        }
        let rope = raw.rope_parameters.as_ref().or(raw.rope_scaling.as_ref());
        if let Some(kind) = rope.and_then(|r| r.rope_type.as_deref()) {
            if kind != "default" {
                return Err(bad(format!(
                    "rope_type {kind:?} is not supported (expected \"default\")"
                )));
            }
        }
        let rope_theta = raw
            .rope_theta
            .or_else(|| rope.and_then(|r| r.rope_theta))
            .ok_or_else(|| bad("no rope_theta (neither top-level nor in rope_parameters)".into()))?;
        let heads = raw.num_attention_heads;
        let kv_heads = raw.num_key_value_heads.unwrap_or(heads);
        if heads == 0 || kv_heads == 0 || heads % kv_heads != 0 {
            return Err(bad(format!(
                "num_attention_heads {heads} must be a positive multiple of num_key_value_heads {kv_heads}"
            )));
        }
        let head_dim = raw.head_dim.unwrap_or(raw.hidden_size / heads);
        if head_dim == 0 || head_dim % 2 != 0 {
            return Err(bad(format!("head_dim {head_dim} must be even and positive")));
        }
        if raw.num_hidden_layers == 0 {
            return Err(bad("num_hidden_layers is 0".into()));
        }
        Ok(Self {
            vocab_size: raw.vocab_size,
            hidden_size: raw.hidden_size,
            intermediate_size: raw.intermediate_size,
            num_hidden_layers: raw.num_hidden_layers,
            num_attention_heads: heads,
            num_key_value_heads: kv_heads,
            head_dim,
            rms_norm_eps: raw.rms_norm_eps.unwrap_or(1e-6),
            rope_theta,
            attention_bias: raw.attention_bias,
        })
    }

    /// Reads `text_encoder/config.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|err| ModelError::load(path, format!("cannot read: {err}")))?;
        Self::from_json(&text, path)
    }

    /// Decoder layers that run: all but the last (whose output only feeds `hidden_states[-1]`).
    pub fn layers_used(&self) -> usize {
        self.num_hidden_layers - 1
    }
}

struct Attention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    o_proj: Linear,
    q_norm: RmsNorm,
    k_norm: RmsNorm,
    num_heads: usize,
    num_kv_heads: usize,
    head_dim: usize,
}

impl Attention {
    fn new(cfg: &Qwen3Config, vb: VarBuilder) -> candle_core::Result<Self> {
        let (h, d) = (cfg.hidden_size, cfg.head_dim);
        let q_out = cfg.num_attention_heads * d;
        let kv_out = cfg.num_key_value_heads * d;
        let bias = cfg.attention_bias;
        Ok(Self {
            q_proj: candle_nn::linear_b(h, q_out, bias, vb.pp("q_proj"))?,
            k_proj: candle_nn::linear_b(h, kv_out, bias, vb.pp("k_proj"))?,
            v_proj: candle_nn::linear_b(h, kv_out, bias, vb.pp("v_proj"))?,
            o_proj: candle_nn::linear_b(q_out, h, bias, vb.pp("o_proj"))?,
            q_norm: RmsNorm::load(d, cfg.rms_norm_eps, vb.pp("q_norm"))?,
            k_norm: RmsNorm::load(d, cfg.rms_norm_eps, vb.pp("k_norm"))?,
            num_heads: cfg.num_attention_heads,
            num_kv_heads: cfg.num_key_value_heads,
            head_dim: d,
        })
    }

    /// `xs`: `[1, seq, hidden]`; `cos`/`sin`: `[seq, head_dim/2]`; `mask`: `[seq, seq]` f32 additive.
    fn forward(&self, xs: &Tensor, rope: &Rope, mask: &Tensor) -> candle_core::Result<Tensor> {
        let (b, seq, _) = xs.dims3()?;
        let heads = |proj: &Linear, n: usize| -> candle_core::Result<Tensor> {
            proj.forward(xs)?.reshape((b, seq, n, self.head_dim))
        };
        // q/k norms act on each head's vector, before the heads move to dim 1 (as transformers).
        let q = self
            .q_norm
            .forward(&heads(&self.q_proj, self.num_heads)?)?
            .transpose(1, 2)?
            .contiguous()?;
        let k = self
            .k_norm
            .forward(&heads(&self.k_proj, self.num_kv_heads)?)?
            .transpose(1, 2)?
            .contiguous()?;
        let v = heads(&self.v_proj, self.num_kv_heads)?
            .transpose(1, 2)?
            .contiguous()?;
        let q = candle_nn::rotary_emb::rope(&q, &rope.cos, &rope.sin)?;
        let k = candle_nn::rotary_emb::rope(&k, &rope.cos, &rope.sin)?;
        let group = self.num_heads / self.num_kv_heads;
        let k = repeat_kv(&k, group)?;
        let v = repeat_kv(&v, group)?;

        let scale = 1.0 / (self.head_dim as f64).sqrt();
        // Scores and softmax in f32 whatever the model dtype, as PyTorch's fused attention
        // kernels accumulate them (bf16 scores would round the logits before the softmax).
        let scores = (q.to_dtype(DType::F32)?.matmul(&k.to_dtype(DType::F32)?.t()?)? * scale)?;
        let probs = candle_nn::ops::softmax_last_dim(&scores.broadcast_add(mask)?)?.to_dtype(v.dtype())?;
        let out = probs
            .matmul(&v)?
            .transpose(1, 2)?
            .reshape((b, seq, self.num_heads * self.head_dim))?;
        self.o_proj.forward(&out)
    }
}

/// Qwen3's RMSNorm: f32 statistics, rounded to the model dtype after the norm and again after the
/// weight, as transformers' `Qwen3RMSNorm` (`fused::rms_norm`; fused on CUDA).
#[derive(Debug, Clone)]
struct RmsNorm {
    weight: Tensor,
    eps: f64,
}

impl RmsNorm {
    fn load(dim: usize, eps: f64, vb: VarBuilder) -> candle_core::Result<Self> {
        let weight = vb.get_with_hints(dim, "weight", candle_nn::Init::Const(1.0))?;
        // the fused kernel reads the weight in f32: converted once here, not at every call
        let weight = if super::fused::uses_fused_kernels(vb.device(), vb.dtype()) {
            weight.to_dtype(DType::F32)?
        } else {
            weight
        };
        Ok(Self { weight, eps })
    }

    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        super::fused::rms_norm(&xs.contiguous()?, &self.weight, self.eps)
    }
}

/// `[b, kv, seq, d]` → `[b, kv·n, seq, d]`, each kv head repeated `n` times in place.
fn repeat_kv(xs: &Tensor, n: usize) -> candle_core::Result<Tensor> {
    if n == 1 {
        return Ok(xs.clone());
    }
    let (b, kv, seq, d) = xs.dims4()?;
    xs.unsqueeze(2)?
        .expand((b, kv, n, seq, d))?
        .reshape((b, kv * n, seq, d))
}

struct Mlp {
    gate_proj: Linear,
    up_proj: Linear,
    down_proj: Linear,
}

impl Mlp {
    fn new(cfg: &Qwen3Config, vb: VarBuilder) -> candle_core::Result<Self> {
        let (h, i) = (cfg.hidden_size, cfg.intermediate_size);
        Ok(Self {
            gate_proj: candle_nn::linear_no_bias(h, i, vb.pp("gate_proj"))?,
            up_proj: candle_nn::linear_no_bias(h, i, vb.pp("up_proj"))?,
            down_proj: candle_nn::linear_no_bias(i, h, vb.pp("down_proj"))?,
        })
    }

    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        let gate = candle_nn::ops::silu(&self.gate_proj.forward(xs)?)?;
        self.down_proj.forward(&(gate * self.up_proj.forward(xs)?)?)
    }
}

struct DecoderLayer {
    input_layernorm: RmsNorm,
    self_attn: Attention,
    post_attention_layernorm: RmsNorm,
    mlp: Mlp,
}

impl DecoderLayer {
    fn new(cfg: &Qwen3Config, vb: VarBuilder) -> candle_core::Result<Self> {
        Ok(Self {
            input_layernorm: RmsNorm::load(cfg.hidden_size, cfg.rms_norm_eps, vb.pp("input_layernorm"))?,
            self_attn: Attention::new(cfg, vb.pp("self_attn"))?,
            post_attention_layernorm: RmsNorm::load(
                cfg.hidden_size,
                cfg.rms_norm_eps,
                vb.pp("post_attention_layernorm"),
            )?,
            mlp: Mlp::new(cfg, vb.pp("mlp"))?,
        })
    }

    fn forward(&self, xs: &Tensor, rope: &Rope, mask: &Tensor) -> candle_core::Result<Tensor> {
        let attn = self
            .self_attn
            .forward(&self.input_layernorm.forward(xs)?, rope, mask)?;
        let xs = (xs + attn)?;
        let mlp = self.mlp.forward(&self.post_attention_layernorm.forward(&xs)?)?;
        xs + mlp
    }
}

/// Rotary tables for positions `0..seq`, in the model dtype (transformers computes them in f32).
struct Rope {
    cos: Tensor,
    sin: Tensor,
}

impl Rope {
    fn new(
        seq: usize,
        head_dim: usize,
        theta: f64,
        dtype: DType,
        device: &Device,
    ) -> candle_core::Result<Self> {
        let half = head_dim / 2;
        let inv_freq: Vec<f32> = (0..half)
            .map(|i| 1.0 / (theta as f32).powf((2 * i) as f32 / head_dim as f32))
            .collect();
        let inv_freq = Tensor::from_vec(inv_freq, (1, half), device)?;
        let positions = Tensor::arange(0u32, seq as u32, device)?
            .to_dtype(DType::F32)?
            .reshape((seq, 1))?;
        let freqs = positions.broadcast_mul(&inv_freq)?;
        Ok(Self {
            cos: freqs.cos()?.to_dtype(dtype)?,
            sin: freqs.sin()?.to_dtype(dtype)?,
        })
    }
}

fn causal_mask(seq: usize, device: &Device) -> candle_core::Result<Tensor> {
    let mask: Vec<f32> = (0..seq)
        .flat_map(|i| (0..seq).map(move |j| if j > i { f32::NEG_INFINITY } else { 0.0 }))
        .collect();
    Tensor::from_vec(mask, (seq, seq), device)
}

/// Qwen3 up to the second-to-last layer; weights as saved by `Qwen3Model` (`embed_tokens`,
/// `layers.N...`) or `Qwen3ForCausalLM` (same under `model.`).
pub struct TextEncoder {
    embed_tokens: Embedding,
    layers: Vec<DecoderLayer>,
    cfg: Qwen3Config,
    device: Device,
    dtype: DType,
}

impl TextEncoder {
    /// `vb` points at the text encoder's root (the safetensors of `text_encoder/`).
    pub fn new(vb: VarBuilder, cfg: &Qwen3Config) -> Result<Self> {
        let vb = if vb.contains_tensor("model.embed_tokens.weight") {
            vb.pp("model")
        } else {
            vb
        };
        let embed_tokens = candle_nn::embedding(cfg.vocab_size, cfg.hidden_size, vb.pp("embed_tokens"))?;
        let layers = (0..cfg.layers_used())
            .map(|i| DecoderLayer::new(cfg, vb.pp(format!("layers.{i}"))))
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Self {
            embed_tokens,
            layers,
            cfg: cfg.clone(),
            device: vb.device().clone(),
            dtype: vb.dtype(),
        })
    }

    pub fn config(&self) -> &Qwen3Config {
        &self.cfg
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// `hidden_states[-2]` of the given ids: `[ids.len(), hidden_size]` in the model dtype.
    pub fn encode_ids(&self, ids: &[u32]) -> Result<Tensor> {
        if ids.is_empty() {
            return Err(ModelError::BadInput("no tokens to encode".into()));
        }
        if let Some(&bad) = ids.iter().find(|&&id| id as usize >= self.cfg.vocab_size) {
            return Err(ModelError::BadInput(format!(
                "token id {bad} is outside the text encoder's vocabulary ({} entries): tokenizer and model do not match",
                self.cfg.vocab_size
            )));
        }
        let seq = ids.len();
        let input = Tensor::new(ids, &self.device)?.unsqueeze(0)?;
        let mut xs = self.embed_tokens.forward(&input)?;
        let rope = Rope::new(
            seq,
            self.cfg.head_dim,
            self.cfg.rope_theta,
            self.dtype,
            &self.device,
        )?;
        let mask = causal_mask(seq, &self.device)?;
        for layer in &self.layers {
            xs = layer.forward(&xs, &rope, &mask)?;
        }
        Ok(xs.squeeze(0)?)
    }
}

/// Tokenizer + encoder: what the pipeline calls with the user's prompt.
pub struct PromptEncoder {
    pub tokenizer: PromptTokenizer,
    pub encoder: TextEncoder,
}

impl PromptEncoder {
    pub fn new(tokenizer: PromptTokenizer, encoder: TextEncoder) -> Self {
        Self { tokenizer, encoder }
    }

    /// The prompt's embeddings `[tokens, hidden]` (model dtype) and the warnings for the user
    /// (e.g. truncation at 512 tokens). Blank prompts are refused.
    pub fn encode(&self, prompt: &str) -> Result<(Tensor, Vec<String>)> {
        let tokens = self.tokenizer.tokenize(prompt)?;
        let embeddings = self.encoder.encode_ids(&tokens.ids)?;
        Ok((embeddings, tokens.warnings))
    }
}

impl PromptEmbedder for PromptEncoder {
    fn encode(&self, prompt: &str) -> Result<(Tensor, Vec<String>)> {
        PromptEncoder::encode(self, prompt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_nn::VarMap;

    fn random_encoder(cfg: &Qwen3Config) -> TextEncoder {
        let map = VarMap::new();
        let vb = VarBuilder::from_varmap(&map, DType::F32, &Device::Cpu);
        TextEncoder::new(vb, cfg).expect("builds")
    }

    #[test]
    fn config_reads_both_rope_layouts() {
        let v4 = r#"{"vocab_size": 10, "hidden_size": 8, "intermediate_size": 16, "num_hidden_layers": 2,
            "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 4, "rope_theta": 5000.0}"#;
        let v5 = r#"{"vocab_size": 10, "hidden_size": 8, "intermediate_size": 16, "num_hidden_layers": 2,
            "num_attention_heads": 2, "num_key_value_heads": 1,
            "rope_parameters": {"rope_theta": 5000.0, "rope_type": "default"}}"#;
        let a = Qwen3Config::from_json(v4, Path::new("a.json")).expect("parses");
        let b = Qwen3Config::from_json(v5, Path::new("b.json")).expect("parses");
        assert_eq!(a, b);
        assert_eq!(a.head_dim, 4);
        assert_eq!(a.layers_used(), 1);
    }

    #[test]
    fn config_errors_name_the_file() {
        let err =
            Qwen3Config::from_json(r#"{"vocab_size": 1}"#, Path::new("te/config.json")).expect_err("fails");
        assert!(err.to_string().contains("te/config.json"), "{err}");
        let no_theta = r#"{"vocab_size": 10, "hidden_size": 8, "intermediate_size": 16, "num_hidden_layers": 2,
            "num_attention_heads": 2}"#;
        let err = Qwen3Config::from_json(no_theta, Path::new("c.json")).expect_err("fails");
        assert!(err.to_string().contains("rope_theta"), "{err}");
    }

    #[test]
    fn presets_are_consistent() {
        for cfg in [Qwen3Config::qwen3_4b(), Qwen3Config::tiny(300)] {
            assert_eq!(cfg.num_attention_heads % cfg.num_key_value_heads, 0);
            assert_eq!(cfg.head_dim % 2, 0);
        }
    }

    #[test]
    fn embeddings_are_causal_and_shaped() -> Result<()> {
        let cfg = Qwen3Config::tiny(50);
        let encoder = random_encoder(&cfg);
        let long = encoder.encode_ids(&[1, 7, 3, 9, 4])?;
        assert_eq!(long.dims(), &[5, cfg.hidden_size]);
        // A token never sees later ones: a prefix gives the same rows.
        let short = encoder.encode_ids(&[1, 7, 3])?;
        let diff = (long.narrow(0, 0, 3)? - &short)?
            .abs()?
            .max_all()?
            .to_scalar::<f32>()?;
        assert!(diff < 1e-5, "prefix rows differ by {diff}");
        // ...but later rows do depend on earlier tokens.
        let other = encoder.encode_ids(&[2, 7, 3])?;
        let diff = (other.get(2)? - short.get(2)?)?
            .abs()?
            .max_all()?
            .to_scalar::<f32>()?;
        assert!(diff > 1e-4, "row 2 ignores token 0");
        Ok(())
    }

    #[test]
    fn out_of_vocab_and_empty_ids_are_refused() {
        let encoder = random_encoder(&Qwen3Config::tiny(20));
        assert!(matches!(encoder.encode_ids(&[]), Err(ModelError::BadInput(_))));
        assert!(matches!(
            encoder.encode_ids(&[3, 20]),
            Err(ModelError::BadInput(_))
        ));
    }
}
