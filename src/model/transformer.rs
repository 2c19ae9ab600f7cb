//! `ZImageTransformer2DModel` (diffusers 0.42.1, basic text-to-image mode, batch 1).
//!
//! Sequence layout, as diffusers builds it for one image:
//! - image: 2×2 patches → `x_embedder`, padded to a multiple of 32 with the learned `x_pad_token`;
//!   positions `(cap_padded + 1, h, w)`, pad tokens at `(0, 0, 0)`; refined by `noise_refiner`
//!   blocks (adaLN).
//! - caption: `cap_embedder` (RMSNorm + Linear), padded with `cap_pad_token`; positions
//!   `(1 + i, 0, 0)` for every token including the pads; refined by `context_refiner` blocks
//!   (no adaLN, so independent of the timestep: computed once per generation here).
//! - unified `[image, caption]` → main `layers` → final layer → unpatchify.
//!
//! With one image every sequence has the same length, so diffusers passes no attention mask and
//! neither do we: pad tokens attend and are attended to. That keeps `attention` mask-free.
//!
//! Precision follows diffusers: the timestep embedding, RoPE and attention scores/softmax are
//! computed in f32, RMSNorm and LayerNorm reduce in f32 inside candle's kernels, everything else
//! runs in the weights' dtype.

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{Linear, VarBuilder};
use serde::Deserialize;

use super::profile::scope;
use super::{fused, ModelError, Result};

/// Token sequences are padded to a multiple of this.
pub const SEQ_MULTIPLE: usize = 32;
/// Width of the adaLN conditioning (timestep embedding) when `dim` is larger.
const ADALN_EMBED_DIM: usize = 256;
/// Sinusoidal timestep features fed to the timestep MLP.
const TIME_FREQ_DIM: usize = 256;
/// Hidden width of the timestep MLP.
const TIME_MLP_DIM: usize = 1024;
/// The patch sizes the text-to-image pipeline uses.
const PATCH: usize = 2;
const F_PATCH: usize = 1;

/// `transformer/config.json`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ZImageTransformerConfig {
    #[serde(default = "default_patch")]
    pub all_patch_size: Vec<usize>,
    #[serde(default = "default_f_patch")]
    pub all_f_patch_size: Vec<usize>,
    pub in_channels: usize,
    pub dim: usize,
    pub n_layers: usize,
    pub n_refiner_layers: usize,
    pub n_heads: usize,
    #[serde(default)]
    pub n_kv_heads: Option<usize>,
    #[serde(default = "default_norm_eps")]
    pub norm_eps: f64,
    #[serde(default = "default_true")]
    pub qk_norm: bool,
    pub cap_feat_dim: usize,
    #[serde(default = "default_rope_theta")]
    pub rope_theta: f64,
    #[serde(default = "default_t_scale")]
    pub t_scale: f64,
    pub axes_dims: Vec<usize>,
    pub axes_lens: Vec<usize>,
}

fn default_patch() -> Vec<usize> {
    vec![PATCH]
}
fn default_f_patch() -> Vec<usize> {
    vec![F_PATCH]
}
fn default_norm_eps() -> f64 {
    1e-5
}
fn default_true() -> bool {
    true
}
fn default_rope_theta() -> f64 {
    256.0
}
fn default_t_scale() -> f64 {
    1000.0
}

impl ZImageTransformerConfig {
    /// Z-Image-Turbo: dim 3840, 30 layers + 2 + 2 refiners, 30 heads × 128.
    pub fn turbo() -> Self {
        Self {
            all_patch_size: default_patch(),
            all_f_patch_size: default_f_patch(),
            in_channels: 16,
            dim: 3840,
            n_layers: 30,
            n_refiner_layers: 2,
            n_heads: 30,
            n_kv_heads: Some(30),
            norm_eps: 1e-5,
            qk_norm: true,
            cap_feat_dim: 2560,
            rope_theta: 256.0,
            t_scale: 1000.0,
            axes_dims: vec![32, 48, 48],
            axes_lens: vec![1024, 512, 512],
        }
    }

    /// A tiny model of the same architecture (every block type present), for the demo model.
    /// `cap_feat_dim` must match the text encoder's hidden size.
    pub fn tiny(cap_feat_dim: usize) -> Self {
        Self {
            dim: 64,
            n_layers: 2,
            n_refiner_layers: 1,
            n_heads: 2,
            n_kv_heads: Some(2),
            cap_feat_dim,
            axes_dims: vec![8, 12, 12],
            ..Self::turbo()
        }
    }

    pub fn from_file(path: &std::path::Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).map_err(|e| ModelError::load(path, format!("cannot read: {e}")))?;
        let config: Self = serde_json::from_str(&text)
            .map_err(|e| ModelError::load(path, format!("not a valid transformer config: {e}")))?;
        config
            .validate()
            .map_err(|problem| ModelError::load(path, problem))?;
        Ok(config)
    }

    pub fn head_dim(&self) -> usize {
        self.dim / self.n_heads.max(1)
    }

    /// SwiGLU width: `int(dim / 3 * 8)` as in diffusers.
    pub fn ffn_dim(&self) -> usize {
        (self.dim as f64 / 3.0 * 8.0) as usize
    }

    /// Width of the timestep embedding that drives adaLN.
    pub fn adaln_dim(&self) -> usize {
        self.dim.min(ADALN_EMBED_DIM)
    }

    /// Number of weights the checkpoint holds for this config (for `ModelInfo`).
    pub fn parameter_count(&self) -> u64 {
        let (dim, adaln, head) = (self.dim as u64, self.adaln_dim() as u64, self.head_dim() as u64);
        let patch = (PATCH * PATCH * F_PATCH * self.in_channels) as u64;
        let cap = self.cap_feat_dim as u64;
        let qk_norm = if self.qk_norm { 2 * head } else { 0 };
        let block = 4 * dim * dim + qk_norm + 3 * dim * self.ffn_dim() as u64 + 4 * dim;
        let modulation = adaln * 4 * dim + 4 * dim;
        let (layers, refiners) = (self.n_layers as u64, self.n_refiner_layers as u64);
        let blocks = layers * (block + modulation) + refiners * (block + modulation) + refiners * block;
        let time = TIME_FREQ_DIM as u64 * TIME_MLP_DIM as u64
            + TIME_MLP_DIM as u64
            + TIME_MLP_DIM as u64 * adaln
            + adaln;
        let embedders = patch * dim + dim + cap + cap * dim + dim + 2 * dim;
        let final_layer = dim * patch + patch + adaln * dim + dim;
        blocks + time + embedders + final_layer
    }

    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.n_heads == 0 || self.dim % self.n_heads != 0 {
            return Err(format!(
                "dim {} is not divisible by n_heads {}",
                self.dim, self.n_heads
            ));
        }
        if let Some(kv) = self.n_kv_heads {
            if kv != self.n_heads {
                return Err(format!(
                    "n_kv_heads {kv} != n_heads {} is not supported",
                    self.n_heads
                ));
            }
        }
        let has_patch = self
            .all_patch_size
            .iter()
            .zip(&self.all_f_patch_size)
            .any(|(&p, &f)| p == PATCH && f == F_PATCH);
        if !has_patch {
            return Err(format!(
                "no {PATCH}-{F_PATCH} patch embedder in all_patch_size/all_f_patch_size"
            ));
        }
        if self.axes_dims.len() != 3 || self.axes_lens.len() != 3 {
            return Err("axes_dims and axes_lens must have 3 entries (frame, height, width)".into());
        }
        if self.axes_dims.iter().any(|d| d % 2 != 0) {
            return Err(format!("axes_dims {:?} must be even", self.axes_dims));
        }
        if self.axes_dims.iter().sum::<usize>() != self.head_dim() {
            return Err(format!(
                "axes_dims {:?} must sum to the head dim {}",
                self.axes_dims,
                self.head_dim()
            ));
        }
        Ok(())
    }
}

/// RMSNorm with a learned scale, reduced in f32 and rounded as diffusers rounds (`fused::rms_norm`).
#[derive(Debug, Clone)]
struct RmsNorm {
    weight: Tensor,
    eps: f32,
}

impl RmsNorm {
    fn load(dim: usize, eps: f64, vb: VarBuilder) -> Result<Self> {
        let weight = vb.get(dim, "weight")?;
        // the fused kernels read the weight in f32: converted once here, not at every call
        let weight = if fused::uses_fused_kernels(vb.device(), vb.dtype()) {
            weight.to_dtype(DType::F32)?
        } else {
            weight
        };
        Ok(Self {
            weight,
            eps: eps as f32,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(fused::rms_norm(
            &x.contiguous()?,
            &self.weight,
            f64::from(self.eps),
        )?)
    }

    /// `norm(x) · modulation` (adaLN's `1 + scale`), fused on CUDA.
    fn modulated(&self, x: &Tensor, modulation: Option<&Tensor>) -> Result<Tensor> {
        Ok(fused::rms_norm_modulated(
            x,
            &self.weight,
            modulation,
            f64::from(self.eps),
        )?)
    }

    /// `x + gate · norm(branch)` (the sandwich norm and gated residual), fused on CUDA.
    fn gated_residual(&self, x: &Tensor, branch: &Tensor, gate: Option<&Tensor>) -> Result<Tensor> {
        Ok(fused::gated_residual_norm(
            x,
            branch,
            &self.weight,
            gate,
            f64::from(self.eps),
        )?)
    }
}

fn linear(in_dim: usize, out_dim: usize, bias: bool, vb: VarBuilder) -> Result<Linear> {
    Ok(if bias {
        candle_nn::linear(in_dim, out_dim, vb)?
    } else {
        candle_nn::linear_no_bias(in_dim, out_dim, vb)?
    })
}

/// Rotary tables for one token sequence: `[seq, head_dim / 2]`, f32, in the form the fused
/// attention path takes.
#[derive(Debug, Clone)]
pub struct Rope {
    tables: fused::Rope,
}

impl Rope {
    /// diffusers' `RopeEmbedder`: per axis, `freq_j = 1 / theta^(2j / d)` in f64, angle
    /// `pos · freq_j` rounded to f32, then cos/sin; the three axes concatenated.
    fn new(positions: &[[u32; 3]], config: &ZImageTransformerConfig, device: &Device) -> Result<Self> {
        let axis_freqs: Vec<Vec<f64>> = config
            .axes_dims
            .iter()
            .map(|&d| {
                (0..d / 2)
                    .map(|j| 1.0 / config.rope_theta.powf((2 * j) as f64 / d as f64))
                    .collect()
            })
            .collect();
        let half = config.head_dim() / 2;
        let mut cos = Vec::with_capacity(positions.len() * half);
        let mut sin = Vec::with_capacity(positions.len() * half);
        for pos in positions {
            for (axis, freqs) in axis_freqs.iter().enumerate() {
                if pos[axis] as usize >= config.axes_lens[axis] {
                    return Err(ModelError::BadInput(format!(
                        "position {} on axis {axis} exceeds the model's RoPE length {}",
                        pos[axis], config.axes_lens[axis]
                    )));
                }
                for &freq in freqs {
                    let angle = (f64::from(pos[axis]) * freq) as f32;
                    cos.push(angle.cos());
                    sin.push(angle.sin());
                }
            }
        }
        let shape = (positions.len(), half);
        Ok(Self {
            tables: fused::Rope::new(
                Tensor::from_vec(cos, shape, device)?,
                Tensor::from_vec(sin, shape, device)?,
            )?,
        })
    }

    fn concat(parts: &[&Rope]) -> Result<Self> {
        let cos: Vec<&Tensor> = parts.iter().map(|r| &r.tables.cos).collect();
        let sin: Vec<&Tensor> = parts.iter().map(|r| &r.tables.sin).collect();
        Ok(Self {
            tables: fused::Rope::new(Tensor::cat(&cos, 0)?, Tensor::cat(&sin, 0)?)?,
        })
    }

    /// `cos` and `sin`, each `[seq, head_dim / 2]`.
    pub fn cos_sin(&self) -> (&Tensor, &Tensor) {
        (&self.tables.cos, &self.tables.sin)
    }
}

/// Unmasked scaled-dot-product attention over `[b, seq, heads, head_dim]` (one image per
/// batch, so no mask). Reference path in f32, as torch's fused SDPA keeps scores; the CUDA path
/// goes through `fused::self_attention`.
pub fn attention(q: &Tensor, k: &Tensor, v: &Tensor) -> Result<Tensor> {
    Ok(fused::attention(q, k, v)?)
}

/// Self-attention with QK RMSNorm and RoPE. The checkpoint's to_q/to_k/to_v are merged into one
/// `[3·dim, dim]` projection at load: one GEMM instead of three, and the fused attention path
/// reads q, k and v straight out of its output.
#[derive(Debug, Clone)]
struct Attention {
    to_qkv: Linear,
    to_out: Linear,
    qk_norms: fused::QkNorms,
    n_heads: usize,
}

/// Concatenates the checkpoint's separate projections `[out_i, in]` into one `[Σ out_i, in]`.
fn merged_linear(in_dim: usize, out_dim: usize, names: &[&str], vb: &VarBuilder) -> Result<Linear> {
    let weights = names
        .iter()
        .map(|name| vb.pp(*name).get((out_dim, in_dim), "weight"))
        .collect::<candle_core::Result<Vec<_>>>()?;
    Ok(Linear::new(Tensor::cat(&weights, 0)?, None))
}

impl Attention {
    fn load(config: &ZImageTransformerConfig, vb: VarBuilder) -> Result<Self> {
        let (dim, head_dim) = (config.dim, config.head_dim());
        // diffusers' Attention builds the QK norms with eps 1e-5 regardless of norm_eps; without
        // qk_norm the RMSNorm is absent, which a unit weight cannot express — refuse such configs.
        if !config.qk_norm {
            return Err(ModelError::BadInput(
                "transformers without qk_norm are not supported".into(),
            ));
        }
        Ok(Self {
            to_qkv: merged_linear(dim, dim, &["to_q", "to_k", "to_v"], &vb)?,
            to_out: linear(dim, dim, false, vb.pp("to_out").pp("0"))?,
            qk_norms: fused::QkNorms::new(
                vb.pp("norm_q").get(head_dim, "weight")?,
                vb.pp("norm_k").get(head_dim, "weight")?,
            )?,
            n_heads: config.n_heads,
        })
    }

    /// `x`: `[b, seq, dim]` → `[b, seq, dim]`.
    fn forward(&self, x: &Tensor, rope: &Rope) -> Result<Tensor> {
        let dev = x.device();
        let qkv = scope("dit.gemm qkv", dev, || self.to_qkv.forward(x))?;
        let out = scope("dit.attention (qk-norm, rope, sdpa)", dev, || {
            fused::self_attention(&qkv, self.n_heads, &self.qk_norms, &rope.tables, QK_NORM_EPS)
        })?;
        Ok(scope("dit.gemm out", dev, || self.to_out.forward(&out))?)
    }
}

/// diffusers' Attention builds its QK RMSNorms with this eps.
const QK_NORM_EPS: f64 = 1e-5;

/// Tokens per feed-forward chunk (1024² images have 4128 tokens and run in one).
const FFN_CHUNK_TOKENS: usize = 8192;

/// SwiGLU: `w2(silu(w1 x) · w3 x)`; W1 and W3 merged into one `[2·hidden, dim]` projection.
#[derive(Debug, Clone)]
struct FeedForward {
    w13: Linear,
    w2: Linear,
}

impl FeedForward {
    fn load(dim: usize, hidden: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            w13: merged_linear(dim, hidden, &["w1", "w3"], &vb)?,
            w2: linear(hidden, dim, false, vb.pp("w2"))?,
        })
    }

    /// `x`: `[1, seq, dim]`. Long sequences go through in chunks of tokens: the hidden
    /// activations (2·hidden wide, 0.67 GB at 2048²) then never exist for all tokens at once,
    /// and the chunks are still large GEMMs.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let tokens = x.dim(1)?;
        if tokens <= FFN_CHUNK_TOKENS {
            return self.forward_chunk(x);
        }
        let chunks = (0..tokens)
            .step_by(FFN_CHUNK_TOKENS)
            .map(|start| self.forward_chunk(&x.narrow(1, start, FFN_CHUNK_TOKENS.min(tokens - start))?))
            .collect::<Result<Vec<_>>>()?;
        Ok(Tensor::cat(&chunks, 1)?)
    }

    fn forward_chunk(&self, x: &Tensor) -> Result<Tensor> {
        let dev = x.device();
        let h = scope("dit.gemm w1|w3", dev, || self.w13.forward(x))?;
        let gated = scope("dit.swiglu", dev, || fused::swiglu(&h))?;
        Ok(scope("dit.gemm w2", dev, || self.w2.forward(&gated))?)
    }
}

/// One transformer block with sandwich RMSNorms; adaLN (scale + tanh gate) when `modulation`.
#[derive(Debug, Clone)]
struct TransformerBlock {
    attention: Attention,
    feed_forward: FeedForward,
    attention_norm1: RmsNorm,
    attention_norm2: RmsNorm,
    ffn_norm1: RmsNorm,
    ffn_norm2: RmsNorm,
    /// `adaLN_modulation.0`: conditioning → (scale_msa, gate_msa, scale_mlp, gate_mlp).
    modulation: Option<Linear>,
}

impl TransformerBlock {
    fn load(config: &ZImageTransformerConfig, modulation: bool, vb: VarBuilder) -> Result<Self> {
        let (dim, eps) = (config.dim, config.norm_eps);
        let modulation = if modulation {
            Some(linear(
                config.adaln_dim(),
                4 * dim,
                true,
                vb.pp("adaLN_modulation").pp("0"),
            )?)
        } else {
            None
        };
        Ok(Self {
            attention: Attention::load(config, vb.pp("attention"))?,
            feed_forward: FeedForward::load(dim, config.ffn_dim(), vb.pp("feed_forward"))?,
            attention_norm1: RmsNorm::load(dim, eps, vb.pp("attention_norm1"))?,
            attention_norm2: RmsNorm::load(dim, eps, vb.pp("attention_norm2"))?,
            ffn_norm1: RmsNorm::load(dim, eps, vb.pp("ffn_norm1"))?,
            ffn_norm2: RmsNorm::load(dim, eps, vb.pp("ffn_norm2"))?,
            modulation,
        })
    }

    /// `x`: `[b, seq, dim]`; `adaln`: `[b, adaln_dim]`, required iff the block is modulated.
    /// Each half is `x + gate · norm2(branch(norm1(x) · scale))`, done by two fused calls.
    fn forward(&self, x: &Tensor, rope: &Rope, adaln: Option<&Tensor>) -> Result<Tensor> {
        let dev = x.device();
        let mods = match (&self.modulation, adaln) {
            (Some(modulation), Some(adaln)) => Some(scope("dit.adaLN", dev, || {
                let m = modulation.forward(adaln)?.flatten_all()?.chunk(4, 0)?;
                Ok::<_, candle_core::Error>([(&m[0] + 1.0)?, m[1].tanh()?, (&m[2] + 1.0)?, m[3].tanh()?])
            })?),
            (None, None) => None,
            _ => {
                return Err(ModelError::Compute(
                    "adaLN input given to the wrong kind of block".into(),
                ))
            }
        };
        let [scale_msa, gate_msa, scale_mlp, gate_mlp] = match &mods {
            Some([a, b, c, d]) => [Some(a), Some(b), Some(c), Some(d)],
            None => [None; 4],
        };
        let x = x.contiguous()?;
        const MODULATE: &str = "dit.norm·modulate";
        const RESIDUAL: &str = "dit.norm·gate + residual";
        let attn_in = scope(MODULATE, dev, || self.attention_norm1.modulated(&x, scale_msa))?;
        let attn_out = self.attention.forward(&attn_in, rope)?;
        let x = scope(RESIDUAL, dev, || {
            self.attention_norm2.gated_residual(&x, &attn_out, gate_msa)
        })?;
        let ffn_in = scope(MODULATE, dev, || self.ffn_norm1.modulated(&x, scale_mlp))?;
        let ffn_out = self.feed_forward.forward(&ffn_in)?;
        scope(RESIDUAL, dev, || {
            self.ffn_norm2.gated_residual(&x, &ffn_out, gate_mlp)
        })
    }
}

/// Sinusoidal features + MLP (`t_embedder`).
#[derive(Debug, Clone)]
struct TimestepEmbedder {
    linear1: Linear,
    linear2: Linear,
    /// `exp(−ln(10000) · i / half)`, f32, `[1, half]`.
    freqs: Tensor,
}

impl TimestepEmbedder {
    fn load(out_dim: usize, vb: VarBuilder) -> Result<Self> {
        let half = TIME_FREQ_DIM / 2;
        let log_period = -(10000f64.ln() as f32);
        let freqs: Vec<f32> = (0..half)
            .map(|i| (log_period * i as f32 / half as f32).exp())
            .collect();
        Ok(Self {
            linear1: linear(TIME_FREQ_DIM, TIME_MLP_DIM, true, vb.pp("mlp").pp("0"))?,
            linear2: linear(TIME_MLP_DIM, out_dim, true, vb.pp("mlp").pp("2"))?,
            freqs: Tensor::from_vec(freqs, (1, half), vb.device())?,
        })
    }

    /// `t`: `[b]` f32, already multiplied by `t_scale` → `[b, out_dim]` in the weights' dtype.
    fn forward(&self, t: &Tensor, dtype: DType) -> Result<Tensor> {
        let args = t.to_dtype(DType::F32)?.unsqueeze(1)?.broadcast_mul(&self.freqs)?;
        let features = Tensor::cat(&[args.cos()?, args.sin()?], 1)?.to_dtype(dtype)?;
        let hidden = candle_nn::ops::silu(&self.linear1.forward(&features)?)?;
        Ok(self.linear2.forward(&hidden)?)
    }
}

/// LayerNorm (no affine, eps 1e-6), adaLN scale from `silu(c)`, linear to patch pixels.
#[derive(Debug, Clone)]
struct FinalLayer {
    linear: Linear,
    modulation: Linear,
    ones: Tensor,
    zeros: Tensor,
}

impl FinalLayer {
    fn load(config: &ZImageTransformerConfig, out_dim: usize, vb: VarBuilder) -> Result<Self> {
        let dim = config.dim;
        Ok(Self {
            linear: linear(dim, out_dim, true, vb.pp("linear"))?,
            modulation: linear(config.adaln_dim(), dim, true, vb.pp("adaLN_modulation").pp("1"))?,
            ones: Tensor::ones(dim, vb.dtype(), vb.device())?,
            zeros: Tensor::zeros(dim, vb.dtype(), vb.device())?,
        })
    }

    fn forward(&self, x: &Tensor, c: &Tensor) -> Result<Tensor> {
        let scale = (self.modulation.forward(&candle_nn::ops::silu(c)?)? + 1.0)?.unsqueeze(1)?;
        let normed = candle_nn::ops::layer_norm(&x.contiguous()?, &self.ones, &self.zeros, 1e-6)?;
        Ok(self.linear.forward(&normed.broadcast_mul(&scale)?)?)
    }
}

/// Token counts, positions and rotary tables for one (caption length, latent size) pair.
/// Built once per generation; every step reuses it.
#[derive(Debug, Clone)]
pub struct SequenceLayout {
    pub caption_len: usize,
    pub caption_padded: usize,
    /// Latent height / width (pixels / 8).
    pub latent_height: usize,
    pub latent_width: usize,
    pub image_len: usize,
    pub image_padded: usize,
    /// RoPE positions (frame, height, width) of the padded image and caption tokens.
    pub image_positions: Vec<[u32; 3]>,
    pub caption_positions: Vec<[u32; 3]>,
    image_rope: Rope,
    caption_rope: Rope,
    unified_rope: Rope,
}

impl SequenceLayout {
    /// The unified sequence's rotary tables `(cos, sin)`, `[image_padded + caption_padded, head_dim / 2]`.
    pub fn unified_rope(&self) -> (&Tensor, &Tensor) {
        self.unified_rope.cos_sin()
    }
}

fn padded(len: usize) -> usize {
    len.div_ceil(SEQ_MULTIPLE) * SEQ_MULTIPLE
}

/// The whole transformer.
#[derive(Debug, Clone)]
pub struct ZImageTransformer {
    config: ZImageTransformerConfig,
    x_embedder: Linear,
    final_layer: FinalLayer,
    noise_refiner: Vec<TransformerBlock>,
    context_refiner: Vec<TransformerBlock>,
    layers: Vec<TransformerBlock>,
    t_embedder: TimestepEmbedder,
    cap_norm: RmsNorm,
    cap_linear: Linear,
    x_pad_token: Tensor,
    cap_pad_token: Tensor,
    device: Device,
    dtype: DType,
}

impl ZImageTransformer {
    /// Loads from a `VarBuilder` whose names follow the checkpoint (`layers.0.attention.to_q.weight`,
    /// ...). The VarBuilder's dtype is the compute dtype.
    pub fn load(config: &ZImageTransformerConfig, vb: VarBuilder) -> Result<Self> {
        config.validate().map_err(ModelError::BadInput)?;
        let dim = config.dim;
        let patch_key = format!("{PATCH}-{F_PATCH}");
        let patch_dim = F_PATCH * PATCH * PATCH * config.in_channels;
        let blocks = |prefix: &str, count: usize, modulation: bool| -> Result<Vec<TransformerBlock>> {
            (0..count)
                .map(|i| TransformerBlock::load(config, modulation, vb.pp(prefix).pp(i)))
                .collect()
        };
        Ok(Self {
            x_embedder: linear(patch_dim, dim, true, vb.pp("all_x_embedder").pp(&patch_key))?,
            final_layer: FinalLayer::load(config, patch_dim, vb.pp("all_final_layer").pp(&patch_key))?,
            noise_refiner: blocks("noise_refiner", config.n_refiner_layers, true)?,
            context_refiner: blocks("context_refiner", config.n_refiner_layers, false)?,
            layers: blocks("layers", config.n_layers, true)?,
            t_embedder: TimestepEmbedder::load(config.adaln_dim(), vb.pp("t_embedder"))?,
            cap_norm: RmsNorm::load(
                config.cap_feat_dim,
                config.norm_eps,
                vb.pp("cap_embedder").pp("0"),
            )?,
            cap_linear: linear(config.cap_feat_dim, dim, true, vb.pp("cap_embedder").pp("1"))?,
            x_pad_token: vb.get((1, dim), "x_pad_token")?,
            cap_pad_token: vb.get((1, dim), "cap_pad_token")?,
            device: vb.device().clone(),
            dtype: vb.dtype(),
            config: config.clone(),
        })
    }

    pub fn config(&self) -> &ZImageTransformerConfig {
        &self.config
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Positions and rotary tables for a caption of `caption_len` tokens and latents of
    /// `latent_height × latent_width` (must be even).
    pub fn layout(
        &self,
        caption_len: usize,
        latent_height: usize,
        latent_width: usize,
    ) -> Result<SequenceLayout> {
        if caption_len == 0 {
            return Err(ModelError::BadInput("the caption has no tokens".into()));
        }
        if latent_height % PATCH != 0 || latent_width % PATCH != 0 || latent_height == 0 || latent_width == 0
        {
            return Err(ModelError::BadInput(format!(
                "latent size {latent_height}×{latent_width} is not a positive multiple of {PATCH}"
            )));
        }
        let caption_padded = padded(caption_len);
        let caption_positions: Vec<[u32; 3]> = (0..caption_padded).map(|i| [1 + i as u32, 0, 0]).collect();

        let (h_tokens, w_tokens) = (latent_height / PATCH, latent_width / PATCH);
        let image_len = h_tokens * w_tokens;
        let image_padded = padded(image_len);
        let frame = caption_padded as u32 + 1;
        let mut image_positions = Vec::with_capacity(image_padded);
        for h in 0..h_tokens as u32 {
            for w in 0..w_tokens as u32 {
                image_positions.push([frame, h, w]);
            }
        }
        image_positions.resize(image_padded, [0, 0, 0]);

        let image_rope = Rope::new(&image_positions, &self.config, &self.device)?;
        let caption_rope = Rope::new(&caption_positions, &self.config, &self.device)?;
        let unified_rope = Rope::concat(&[&image_rope, &caption_rope])?;
        Ok(SequenceLayout {
            caption_len,
            caption_padded,
            latent_height,
            latent_width,
            image_len,
            image_padded,
            image_positions,
            caption_positions,
            image_rope,
            caption_rope,
            unified_rope,
        })
    }

    /// Caption embedding + context refiner: `[caption_len, cap_feat_dim]` → `[1, caption_padded, dim]`.
    /// Independent of the timestep, so the pipeline runs it once per generation.
    pub fn embed_caption(&self, caption: &Tensor, layout: &SequenceLayout) -> Result<Tensor> {
        let (len, feat) = caption.dims2()?;
        if len != layout.caption_len || feat != self.config.cap_feat_dim {
            return Err(ModelError::BadInput(format!(
                "caption features are {len}×{feat}, expected {}×{}",
                layout.caption_len, self.config.cap_feat_dim
            )));
        }
        let caption = caption.to_dtype(self.dtype)?;
        let embedded = self.cap_linear.forward(&self.cap_norm.forward(&caption)?)?;
        let mut x = self.append_pad(embedded, &self.cap_pad_token, layout.caption_padded)?;
        for block in &self.context_refiner {
            x = block.forward(&x, &layout.caption_rope, None)?;
        }
        Ok(x)
    }

    /// One forward with a caption already through `embed_caption`.
    /// `latents`: `[1, C, H, W]` (any float dtype; cast to the model's), `t`: `[1]` f32 — the
    /// pipeline's `(1000 − timestep) / 1000`. Returns `[1, C, H, W]` in the model's dtype.
    pub fn forward_with_caption(
        &self,
        latents: &Tensor,
        t: &Tensor,
        caption: &Tensor,
        layout: &SequenceLayout,
    ) -> Result<Tensor> {
        let (b, channels, height, width) = latents.dims4()?;
        if b != 1
            || channels != self.config.in_channels
            || height != layout.latent_height
            || width != layout.latent_width
        {
            return Err(ModelError::BadInput(format!(
                "latents are {:?}, expected [1, {}, {}, {}]",
                latents.dims(),
                self.config.in_channels,
                layout.latent_height,
                layout.latent_width
            )));
        }
        let dev = latents.device();
        let (adaln, mut x) = scope("dit.embed (t, patches)", dev, || {
            let adaln = self
                .t_embedder
                .forward(&t.affine(self.config.t_scale, 0.0)?, self.dtype)?;
            let patches = patchify(&latents.to_dtype(self.dtype)?.squeeze(0)?)?;
            let embedded = self.x_embedder.forward(&patches)?;
            Ok::<_, ModelError>((
                adaln,
                self.append_pad(embedded, &self.x_pad_token, layout.image_padded)?,
            ))
        })?;
        for block in &self.noise_refiner {
            x = block.forward(&x, &layout.image_rope, Some(&adaln))?;
        }

        let mut unified = scope("dit.concat", dev, || Tensor::cat(&[&x, caption], 1))?;
        for block in &self.layers {
            unified = block.forward(&unified, &layout.unified_rope, Some(&adaln))?;
        }
        scope("dit.final layer", dev, || {
            let out = self.final_layer.forward(&unified, &adaln)?;
            let out = out.squeeze(0)?.narrow(0, 0, layout.image_len)?;
            Ok(unpatchify(&out, channels, height, width)?.unsqueeze(0)?)
        })
    }

    /// The whole forward, as diffusers' `ZImageTransformer2DModel.forward` for one image:
    /// `caption`: `[caption_len, cap_feat_dim]` (real tokens only).
    pub fn forward(&self, latents: &Tensor, t: &Tensor, caption: &Tensor) -> Result<Tensor> {
        let (_, _, height, width) = latents.dims4()?;
        let layout = self.layout(caption.dim(0)?, height, width)?;
        let caption = self.embed_caption(caption, &layout)?;
        self.forward_with_caption(latents, t, &caption, &layout)
    }

    /// `[len, dim]` + pad rows of `pad_token` → `[1, padded, dim]`.
    fn append_pad(&self, x: Tensor, pad_token: &Tensor, padded: usize) -> Result<Tensor> {
        let len = x.dim(0)?;
        let x = if padded > len {
            let pad = pad_token.broadcast_as((padded - len, self.config.dim))?;
            Tensor::cat(&[&x, &pad], 0)?
        } else {
            x
        };
        Ok(x.unsqueeze(0)?)
    }
}

/// `[C, H, W]` → `[(H/2)·(W/2), 2·2·C]`, patch pixels ordered (ph, pw, c) as diffusers.
fn patchify(image: &Tensor) -> Result<Tensor> {
    let (c, h, w) = image.dims3()?;
    let (ht, wt) = (h / PATCH, w / PATCH);
    Ok(image
        .reshape((c, ht, PATCH, wt, PATCH))?
        .permute((1, 3, 2, 4, 0))?
        .contiguous()?
        .reshape((ht * wt, PATCH * PATCH * c))?)
}

/// Inverse of `patchify`: `[(H/2)·(W/2), 2·2·C]` → `[C, H, W]`.
fn unpatchify(tokens: &Tensor, c: usize, h: usize, w: usize) -> Result<Tensor> {
    let (ht, wt) = (h / PATCH, w / PATCH);
    Ok(tokens
        .reshape((ht, wt, PATCH, PATCH, c))?
        .permute((4, 0, 2, 1, 3))?
        .contiguous()?
        .reshape((c, h, w))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_sequences_take_the_feed_forward_in_chunks_with_the_same_result() -> Result<()> {
        let map = candle_nn::VarMap::new();
        let vb = VarBuilder::from_varmap(&map, DType::F32, &Device::Cpu);
        let random = candle_nn::Init::Randn {
            mean: 0.0,
            stdev: 0.5,
        };
        for (name, shape) in [("w1", (16, 8)), ("w3", (16, 8)), ("w2", (8, 16))] {
            vb.pp(name).get_with_hints(shape, "weight", random)?;
        }
        let ffn = FeedForward::load(8, 16, vb)?;
        let tokens = FFN_CHUNK_TOKENS + FFN_CHUNK_TOKENS / 2 + 3;
        let x = Tensor::randn(0f32, 1.0, (1, tokens, 8), &Device::Cpu)?;
        let chunked = ffn.forward(&x)?;
        let whole = ffn.forward_chunk(&x)?;
        assert_eq!(chunked.dims(), &[1, tokens, 8]);
        assert!(
            whole.abs()?.max_all()?.to_scalar::<f32>()? > 0.1,
            "weights must not be zero"
        );
        let diff = (chunked - whole)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(diff < 1e-5, "{diff}");
        Ok(())
    }

    #[test]
    fn patchify_round_trips() {
        let x = Tensor::arange(0f32, 3.0 * 4.0 * 6.0, &Device::Cpu)
            .unwrap()
            .reshape((3, 4, 6))
            .unwrap();
        let tokens = patchify(&x).unwrap();
        assert_eq!(tokens.dims(), &[6, 12]);
        // token 0 holds pixels (0,0),(0,1),(1,0),(1,1), channels fastest.
        let first: Vec<f32> = tokens.get(0).unwrap().to_vec1().unwrap();
        assert_eq!(&first[..6], &[0.0, 24.0, 48.0, 1.0, 25.0, 49.0]);
        let back = unpatchify(&tokens, 3, 4, 6).unwrap();
        assert_eq!(back.to_vec3::<f32>().unwrap(), x.to_vec3::<f32>().unwrap());
    }

    #[test]
    fn presets_are_valid_and_turbo_matches_the_checkpoint() {
        let turbo = ZImageTransformerConfig::turbo();
        turbo.validate().unwrap();
        assert_eq!(turbo.ffn_dim(), 10240);
        assert_eq!(turbo.head_dim(), 128);
        // Z-Image-Turbo is a 6.15B-parameter DiT.
        assert_eq!(turbo.parameter_count() / 10_000_000, 615);
        ZImageTransformerConfig::tiny(32).validate().unwrap();
    }

    #[test]
    fn tiny_model_runs_on_random_weights() {
        let config = ZImageTransformerConfig::tiny(16);
        let varmap = candle_nn::VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let model = ZImageTransformer::load(&config, vb).unwrap();
        let latents = Tensor::randn(0f32, 1.0, (1, 16, 6, 4), &Device::Cpu).unwrap();
        let caption = Tensor::randn(0f32, 1.0, (5, 16), &Device::Cpu).unwrap();
        let t = Tensor::new(&[0.3f32], &Device::Cpu).unwrap();
        let out = model.forward(&latents, &t, &caption).unwrap();
        assert_eq!(out.dims(), &[1, 16, 6, 4]);
        let layout = model.layout(5, 6, 4).unwrap();
        assert_eq!(
            (layout.caption_padded, layout.image_len, layout.image_padded),
            (32, 6, 32)
        );
    }
}
