//! The AutoencoderKL decoder (diffusers' `autoencoders/vae.py` `Decoder`) and the pipeline's
//! latents → RGB8 step: `latents / scaling_factor + shift_factor` → decoder → `[-1, 1]` →
//! `round((x/2 + 0.5).clamp(0, 1) · 255)` (numpy's round: half to even).
//!
//! Tiled decoding keeps memory bounded at large sizes. Unlike diffusers' `tiled_decode` (which runs
//! the whole decoder per tile), the cheap low-resolution part — `conv_in` and the mid block with its
//! global attention — runs once on the full latent, so attention and the first norms see the whole
//! image; only the up blocks (where the memory goes) run per tile, and tiles are cross-faded over
//! their overlap with linear weights.

use std::path::Path;

use candle_core::{DType, Device, Module, Tensor, D};
use candle_nn::{Conv2d, Conv2dConfig, Linear, VarBuilder};

use super::pipeline::LatentDecoder;
use super::profile::scope;
use super::{ModelError, Result, RgbImage};

#[cfg(feature = "cudnn")]
mod cuda;
mod layout;
mod norm;
mod tiling;

pub use layout::ActivationLayout;
use norm::{CoreRegion, GroupNorm, NormContext, StatsRecorder};
use tiling::{tile_spans, weight_sums};

/// `vae/config.json` (the decoder's part).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct VaeConfig {
    pub out_channels: usize,
    pub latent_channels: usize,
    pub block_out_channels: Vec<usize>,
    pub layers_per_block: usize,
    pub norm_num_groups: usize,
    pub mid_block_add_attention: bool,
    pub use_post_quant_conv: bool,
    pub scaling_factor: f64,
    pub shift_factor: f64,
}

/// The file's shape; defaults are diffusers' `AutoencoderKL.__init__` defaults.
#[derive(serde::Deserialize)]
struct RawVaeConfig {
    #[serde(default = "default_three")]
    out_channels: usize,
    #[serde(default = "default_four")]
    latent_channels: usize,
    block_out_channels: Vec<usize>,
    #[serde(default = "default_one")]
    layers_per_block: usize,
    #[serde(default = "default_groups")]
    norm_num_groups: usize,
    #[serde(default = "default_true")]
    mid_block_add_attention: bool,
    #[serde(default = "default_true")]
    use_post_quant_conv: bool,
    #[serde(default = "default_scaling")]
    scaling_factor: f64,
    shift_factor: Option<f64>,
    act_fn: Option<String>,
    up_block_types: Option<Vec<String>>,
}

fn default_three() -> usize {
    3
}
fn default_four() -> usize {
    4
}
fn default_one() -> usize {
    1
}
fn default_groups() -> usize {
    32
}
fn default_true() -> bool {
    true
}
fn default_scaling() -> f64 {
    0.18215
}

impl VaeConfig {
    /// The 16-channel Flux-style VAE of Z-Image-Turbo.
    pub fn z_image() -> Self {
        Self {
            out_channels: 3,
            latent_channels: 16,
            block_out_channels: vec![128, 256, 512, 512],
            layers_per_block: 2,
            norm_num_groups: 32,
            mid_block_add_attention: true,
            use_post_quant_conv: false,
            scaling_factor: 0.3611,
            shift_factor: 0.1159,
        }
    }

    /// Same structure (4 levels, factor 8, mid attention, channel-changing resnets), tiny widths.
    pub fn tiny() -> Self {
        Self {
            out_channels: 3,
            latent_channels: 16,
            block_out_channels: vec![16, 32, 32, 32],
            layers_per_block: 1,
            norm_num_groups: 8,
            mid_block_add_attention: true,
            use_post_quant_conv: false,
            scaling_factor: 0.3611,
            shift_factor: 0.1159,
        }
    }

    pub fn from_json(text: &str, source: &Path) -> Result<Self> {
        let raw: RawVaeConfig = serde_json::from_str(text)
            .map_err(|err| ModelError::load(source, format!("not an AutoencoderKL config: {err}")))?;
        let bad = |problem: String| ModelError::load(source, problem);
        if let Some(act) = raw.act_fn.as_deref() {
            if act != "silu" {
                return Err(bad(format!(
                    "act_fn {act:?} is not supported (expected \"silu\")"
                )));
            }
        }
        if let Some(kinds) = &raw.up_block_types {
            if let Some(other) = kinds.iter().find(|k| k.as_str() != "UpDecoderBlock2D") {
                return Err(bad(format!(
                    "up block {other:?} is not supported (expected UpDecoderBlock2D)"
                )));
            }
            if kinds.len() != raw.block_out_channels.len() {
                return Err(bad(
                    "up_block_types and block_out_channels differ in length".into()
                ));
            }
        }
        if raw.block_out_channels.is_empty() {
            return Err(bad("block_out_channels is empty".into()));
        }
        let groups = raw.norm_num_groups;
        if groups == 0 || raw.block_out_channels.iter().any(|c| c % groups != 0) {
            return Err(bad(format!(
                "norm_num_groups {groups} does not divide every block_out_channels entry"
            )));
        }
        if raw.scaling_factor == 0.0 {
            return Err(bad("scaling_factor is 0".into()));
        }
        Ok(Self {
            out_channels: raw.out_channels,
            latent_channels: raw.latent_channels,
            block_out_channels: raw.block_out_channels,
            layers_per_block: raw.layers_per_block,
            norm_num_groups: groups,
            mid_block_add_attention: raw.mid_block_add_attention,
            use_post_quant_conv: raw.use_post_quant_conv,
            scaling_factor: raw.scaling_factor,
            shift_factor: raw.shift_factor.unwrap_or(0.0),
        })
    }

    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|err| ModelError::load(path, format!("cannot read: {err}")))?;
        Self::from_json(&text, path)
    }

    /// Image pixels per latent pixel (8 for Z-Image).
    pub fn scale_factor(&self) -> usize {
        1 << (self.block_out_channels.len() - 1)
    }
}

const NORM_EPS: f64 = 1e-6;

/// A convolution: candle's (channels-first) in the weights' dtype, except on the CPU where candle
/// has no bf16/f16 conv kernel: there it runs in f32 (weights upcast once at load) and casts back;
/// or, channels-last, a cuDNN graph with the bias (and a residual) fused.
enum Conv {
    ChannelsFirst(Conv2d),
    #[cfg(feature = "cudnn")]
    ChannelsLast {
        conv: cuda::ChannelsLastConv,
        out_channels: usize,
    },
}

impl Conv {
    fn new(
        cin: usize,
        cout: usize,
        kernel: usize,
        vb: VarBuilder,
        layout: ActivationLayout,
    ) -> candle_core::Result<Self> {
        let config = Conv2dConfig {
            padding: kernel / 2,
            ..Default::default()
        };
        let conv = candle_nn::conv2d(cin, cout, kernel, config, vb.clone())?;
        if layout == ActivationLayout::ChannelsLast {
            #[cfg(feature = "cudnn")]
            return Ok(Self::ChannelsLast {
                conv: cuda::ChannelsLastConv::new(conv.weight(), conv.bias())?,
                out_channels: cout,
            });
        }
        let half = matches!(vb.dtype(), DType::BF16 | DType::F16);
        Ok(Self::ChannelsFirst(if half && vb.device().is_cpu() {
            let bias = conv.bias().map(|b| b.to_dtype(DType::F32)).transpose()?;
            Conv2d::new(conv.weight().to_dtype(DType::F32)?, bias, config)
        } else {
            conv
        }))
    }

    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        self.forward_plus(xs, None)
    }

    /// `conv(xs) + residual` (the residual's add is fused on the channels-last path).
    fn forward_plus(&self, xs: &Tensor, residual: Option<&Tensor>) -> candle_core::Result<Tensor> {
        scope("vae.conv", xs.device(), || self.run(xs, residual))
    }

    fn run(&self, xs: &Tensor, residual: Option<&Tensor>) -> candle_core::Result<Tensor> {
        match self {
            Self::ChannelsFirst(conv) => {
                let compute = conv.weight().dtype();
                let out = if xs.dtype() == compute {
                    conv.forward(xs)?
                } else {
                    conv.forward(&xs.to_dtype(compute)?)?.to_dtype(xs.dtype())?
                };
                match residual {
                    Some(r) => r + out,
                    None => Ok(out),
                }
            }
            #[cfg(feature = "cudnn")]
            Self::ChannelsLast { conv, out_channels } => {
                let out = conv.forward(xs, residual)?;
                if *out_channels == conv.out_channels() {
                    Ok(out)
                } else {
                    out.narrow(3, 0, *out_channels)
                }
            }
        }
    }
}

fn conv3x3(cin: usize, cout: usize, vb: VarBuilder, layout: ActivationLayout) -> candle_core::Result<Conv> {
    Conv::new(cin, cout, 3, vb, layout)
}

struct ResnetBlock {
    norm1: GroupNorm,
    conv1: Conv,
    norm2: GroupNorm,
    conv2: Conv,
    conv_shortcut: Option<Conv>,
}

impl ResnetBlock {
    fn new(
        cin: usize,
        cout: usize,
        groups: usize,
        vb: VarBuilder,
        layout: ActivationLayout,
    ) -> candle_core::Result<Self> {
        let conv_shortcut = if cin != cout {
            Some(Conv::new(cin, cout, 1, vb.pp("conv_shortcut"), layout)?)
        } else {
            None
        };
        Ok(Self {
            norm1: GroupNorm::new(groups, cin, NORM_EPS, vb.pp("norm1"), layout)?,
            conv1: conv3x3(cin, cout, vb.pp("conv1"), layout)?,
            norm2: GroupNorm::new(groups, cout, NORM_EPS, vb.pp("norm2"), layout)?,
            conv2: conv3x3(cout, cout, vb.pp("conv2"), layout)?,
            conv_shortcut,
        })
    }

    fn forward(&self, xs: &Tensor, norms: &mut NormContext) -> candle_core::Result<Tensor> {
        let h = self.conv1.forward(&self.norm1.forward(xs, norms, true)?)?;
        let h = self.norm2.forward(&h, norms, true)?;
        let shortcut = match &self.conv_shortcut {
            Some(conv) => conv.forward(xs)?,
            None => xs.clone(),
        };
        self.conv2.forward_plus(&h, Some(&shortcut))
    }
}

/// Single-head self-attention over all pixels (diffusers' deprecated-attn-block `Attention`).
struct SpatialAttention {
    group_norm: GroupNorm,
    layout: ActivationLayout,
    to_q: Linear,
    to_k: Linear,
    to_v: Linear,
    to_out: Linear,
}

/// Bytes of f32 scores one attention chunk may hold; bounds memory at large sizes.
const SCORE_BLOCK_BYTES: usize = 128 << 20;

/// `softmax(q kᵀ · scale) v` for `[b, n, c]` inputs without ever holding all n² scores: keys go in
/// blocks, with a running row maximum and sum (the online softmax of flash attention). Both
/// products of a block take every query at once, so they are large GEMMs (query chunks made
/// the second product a thin, slow one: 0.58 s at 2048², 65536 pixels). Scores and the softmax
/// are f32; probabilities are rounded to the values' dtype for the second product.
/// `block_bytes` bounds one block's f32 scores.
fn attention_by_key_blocks(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    scale: f64,
    block_bytes: usize,
) -> candle_core::Result<Tensor> {
    let (b, n, _) = q.dims3()?;
    #[cfg(feature = "cudnn")]
    if q.device().is_cuda() && q.dtype() == DType::BF16 && b == 1 {
        return attention_by_key_blocks_fused(q, k, v, scale, block_bytes);
    }
    let block = (block_bytes / (4 * n * b).max(1)).clamp(1, n);
    let mut state: Option<(Tensor, Tensor, Tensor)> = None; // row max, row sum, unnormalised output
    for start in (0..n).step_by(block) {
        let len = block.min(n - start);
        let scores = (q.matmul(&k.narrow(1, start, len)?.t()?)?.to_dtype(DType::F32)? * scale)?;
        let block_max = scores.max_keepdim(D::Minus1)?;
        let max = match &state {
            Some((max, _, _)) => max.maximum(&block_max)?,
            None => block_max,
        };
        let probs = scores.broadcast_sub(&max)?.exp()?;
        let block_sum = probs.sum_keepdim(D::Minus1)?;
        let block_out = probs
            .to_dtype(v.dtype())?
            .matmul(&v.narrow(1, start, len)?)?
            .to_dtype(DType::F32)?;
        state = Some(match state {
            None => (max, block_sum, block_out),
            Some((old_max, sum, out)) => {
                let rescale = (old_max - &max)?.exp()?;
                let sum = ((sum * &rescale)? + block_sum)?;
                let out = (out.broadcast_mul(&rescale)? + block_out)?;
                (max, sum, out)
            }
        });
    }
    let (_, sum, out) = state.ok_or_else(|| candle_core::Error::Msg("attention over no pixels".into()))?;
    out.broadcast_div(&sum)?.to_dtype(v.dtype())
}

/// The same on CUDA in bf16 with the softmax steps fused (vae/cuda.rs): bf16 scores straight
/// from the GEMM, one statistics pass and one probabilities pass over them, and the running
/// output rescaled and accumulated in one kernel (the op-by-op version above took 0.4 s at 2048²).
#[cfg(feature = "cudnn")]
fn attention_by_key_blocks_fused(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    scale: f64,
    block_bytes: usize,
) -> candle_core::Result<Tensor> {
    let (_, n, _) = q.dims3()?;
    let block = (block_bytes / (2 * n).max(1)).clamp(1, n);
    let scale = scale as f32;
    let mut running: Option<(Tensor, Tensor, Tensor)> = None; // row max, row sum, output
    for start in (0..n).step_by(block) {
        let len = block.min(n - start);
        let scores = q.matmul(&k.narrow(1, start, len)?.t()?)?;
        let stats = cuda::softmax_stats(&scores, running.as_ref().map(|(max, _, _)| max), scale)?;
        let probs = cuda::softmax_probs(&scores, &stats, scale)?;
        let block_out = probs.matmul(&v.narrow(1, start, len)?)?;
        let out = cuda::softmax_accumulate(running.as_ref().map(|(_, _, out)| out), &block_out, &stats)?;
        let sum = match &running {
            Some((_, sum, _)) => ((sum * stats.get(2)?)? + stats.get(1)?)?,
            None => stats.get(1)?,
        };
        running = Some((stats.get(0)?, sum, out));
    }
    let (_, sum, out) = running.ok_or_else(|| candle_core::Error::Msg("attention over no pixels".into()))?;
    out.broadcast_div(&sum.reshape((1, n, 1))?)?.to_dtype(v.dtype())
}

impl SpatialAttention {
    fn new(
        channels: usize,
        groups: usize,
        vb: VarBuilder,
        layout: ActivationLayout,
    ) -> candle_core::Result<Self> {
        Ok(Self {
            group_norm: GroupNorm::new(groups, channels, NORM_EPS, vb.pp("group_norm"), layout)?,
            layout,
            to_q: candle_nn::linear(channels, channels, vb.pp("to_q"))?,
            to_k: candle_nn::linear(channels, channels, vb.pp("to_k"))?,
            to_v: candle_nn::linear(channels, channels, vb.pp("to_v"))?,
            to_out: candle_nn::linear(channels, channels, vb.pp("to_out.0"))?,
        })
    }

    fn forward(&self, xs: &Tensor, norms: &mut NormContext) -> candle_core::Result<Tensor> {
        let (h, w) = self.layout.spatial_size(xs)?;
        let (b, c) = (xs.dim(0)?, xs.dim(self.layout.channel_axis())?);
        let normed = self.group_norm.forward(xs, norms, false)?;
        scope("vae.attention", xs.device(), || {
            self.attend(xs, &normed, (b, c, h, w))
        })
    }

    /// Attention over the normed features; `xs` is the block input (the residual).
    fn attend(
        &self,
        xs: &Tensor,
        normed: &Tensor,
        (b, c, h, w): (usize, usize, usize, usize),
    ) -> candle_core::Result<Tensor> {
        let pixels = h * w;
        // [b, pixels, c]: a reshape channels-last, a transpose channels-first
        let seq = match self.layout {
            ActivationLayout::ChannelsFirst => {
                normed.reshape((b, c, pixels))?.transpose(1, 2)?.contiguous()?
            }
            ActivationLayout::ChannelsLast => normed.reshape((b, pixels, c))?,
        };
        let q = self.to_q.forward(&seq)?;
        let k = self.to_k.forward(&seq)?;
        let v = self.to_v.forward(&seq)?;
        let attended = attention_by_key_blocks(&q, &k, &v, 1.0 / (c as f64).sqrt(), SCORE_BLOCK_BYTES)?;
        let out = self.to_out.forward(&attended)?;
        let out = match self.layout {
            ActivationLayout::ChannelsFirst => out.transpose(1, 2)?.reshape((b, c, h, w))?,
            ActivationLayout::ChannelsLast => out.reshape((b, h, w, c))?,
        };
        xs + out
    }
}

struct MidBlock {
    resnet_in: ResnetBlock,
    attention: Option<SpatialAttention>,
    resnet_out: ResnetBlock,
}

impl MidBlock {
    fn new(
        channels: usize,
        groups: usize,
        attention: bool,
        vb: VarBuilder,
        layout: ActivationLayout,
    ) -> candle_core::Result<Self> {
        let attention = if attention {
            Some(SpatialAttention::new(
                channels,
                groups,
                vb.pp("attentions.0"),
                layout,
            )?)
        } else {
            None
        };
        Ok(Self {
            resnet_in: ResnetBlock::new(channels, channels, groups, vb.pp("resnets.0"), layout)?,
            attention,
            resnet_out: ResnetBlock::new(channels, channels, groups, vb.pp("resnets.1"), layout)?,
        })
    }

    fn forward(&self, xs: &Tensor, norms: &mut NormContext) -> candle_core::Result<Tensor> {
        let mut xs = self.resnet_in.forward(xs, norms)?;
        if let Some(attention) = &self.attention {
            xs = attention.forward(&xs, norms)?;
        }
        self.resnet_out.forward(&xs, norms)
    }
}

struct UpBlock {
    resnets: Vec<ResnetBlock>,
    upsample_conv: Option<Conv>,
    layout: ActivationLayout,
}

impl UpBlock {
    fn forward(&self, xs: &Tensor, norms: &mut NormContext) -> candle_core::Result<Tensor> {
        let mut xs = xs.clone();
        for resnet in &self.resnets {
            xs = resnet.forward(&xs, norms)?;
        }
        if let Some(conv) = &self.upsample_conv {
            let upsampled = scope("vae.upsample", xs.device(), || match self.layout {
                ActivationLayout::ChannelsFirst => {
                    let (h, w) = self.layout.spatial_size(&xs)?;
                    xs.upsample_nearest2d(2 * h, 2 * w)
                }
                #[cfg(feature = "cudnn")]
                ActivationLayout::ChannelsLast => cuda::upsample2x(&xs),
                #[cfg(not(feature = "cudnn"))]
                ActivationLayout::ChannelsLast => {
                    candle_core::bail!("channels-last needs the `cudnn` feature")
                }
            })?;
            xs = conv.forward(&upsampled)?;
        }
        Ok(xs)
    }
}

struct Decoder {
    layout: ActivationLayout,
    conv_in: Conv,
    mid_block: MidBlock,
    up_blocks: Vec<UpBlock>,
    conv_norm_out: GroupNorm,
    conv_out: Conv,
}

impl Decoder {
    fn new(cfg: &VaeConfig, vb: VarBuilder, layout: ActivationLayout) -> candle_core::Result<Self> {
        let groups = cfg.norm_num_groups;
        let top = *cfg.block_out_channels.last().unwrap_or(&cfg.latent_channels);
        let reversed: Vec<usize> = cfg.block_out_channels.iter().rev().copied().collect();
        let mut up_blocks = Vec::with_capacity(reversed.len());
        let mut prev = top;
        for (i, &out) in reversed.iter().enumerate() {
            let vb = vb.pp(format!("up_blocks.{i}"));
            let resnets = (0..=cfg.layers_per_block)
                .map(|j| {
                    ResnetBlock::new(
                        if j == 0 { prev } else { out },
                        out,
                        groups,
                        vb.pp(format!("resnets.{j}")),
                        layout,
                    )
                })
                .collect::<candle_core::Result<Vec<_>>>()?;
            let upsample_conv = if i + 1 < reversed.len() {
                Some(conv3x3(out, out, vb.pp("upsamplers.0.conv"), layout)?)
            } else {
                None
            };
            up_blocks.push(UpBlock {
                resnets,
                upsample_conv,
                layout,
            });
            prev = out;
        }
        let bottom = cfg.block_out_channels[0];
        Ok(Self {
            layout,
            conv_in: conv3x3(cfg.latent_channels, top, vb.pp("conv_in"), layout)?,
            mid_block: MidBlock::new(
                top,
                groups,
                cfg.mid_block_add_attention,
                vb.pp("mid_block"),
                layout,
            )?,
            up_blocks,
            conv_norm_out: GroupNorm::new(groups, bottom, NORM_EPS, vb.pp("conv_norm_out"), layout)?,
            conv_out: conv3x3(bottom, cfg.out_channels, vb.pp("conv_out"), layout)?,
        })
    }

    /// conv_in + mid block: the latent-resolution part. `z` is `[b, c, h, w]`; the result is in
    /// the decoder's layout.
    fn low_res(&self, z: &Tensor) -> candle_core::Result<Tensor> {
        let z = self.layout.from_channels_first(z)?;
        self.mid_block
            .forward(&self.conv_in.forward(&z)?, &mut NormContext::local())
    }

    /// Up blocks + output head: latent-resolution features (decoder layout) → image `[b, 3, H, W]`.
    fn high_res(&self, xs: &Tensor, norms: &mut NormContext) -> candle_core::Result<Tensor> {
        let mut xs = xs.clone();
        for block in &self.up_blocks {
            xs = block.forward(&xs, norms)?;
        }
        let xs = self.conv_norm_out.forward(&xs, norms, true)?;
        self.layout.to_channels_first(&self.conv_out.forward(&xs)?)
    }
}

/// Tile geometry for tiled decoding, in latent pixels (×8 for image pixels).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TileOptions {
    /// Largest tile side; tiles shrink so the fewest tiles cover the latent with `overlap`.
    pub tile: usize,
    /// Minimum overlap between neighbouring tiles, cross-faded linearly.
    pub overlap: usize,
    /// Passes over all tiles that first estimate whole-image GroupNorm statistics (each costs
    /// about one more decode). 0 = per-tile statistics, as diffusers' tiled decode.
    pub stats_passes: usize,
}

impl Default for TileOptions {
    /// Tiles of at most 512 px with at least 128-px overlap, one statistics pass.
    fn default() -> Self {
        Self {
            tile: 64,
            overlap: 16,
            stats_passes: 1,
        }
    }
}

/// How `VaeDecoder::decode` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum DecodeMode {
    /// One pass over the whole latent, as diffusers does by default.
    Full,
    /// Always tiled.
    Tiled(TileOptions),
    /// Tiled when a latent side exceeds `above` latent pixels, else full.
    Auto { above: usize, tiles: TileOptions },
}

impl Default for DecodeMode {
    /// Full up to 1024 px per side; above, tiles of at most 1024 px (2048² → 3×3 tiles of 768 px),
    /// since only memory forces tiling there and bigger tiles cost less overlap.
    fn default() -> Self {
        Self::Auto {
            above: 128,
            tiles: TileOptions {
                tile: 128,
                ..TileOptions::default()
            },
        }
    }
}

/// The VAE decoder with the pipeline's scaling; runs in the dtype of its weights.
pub struct VaeDecoder {
    decoder: Decoder,
    post_quant_conv: Option<Conv>,
    cfg: VaeConfig,
    dtype: DType,
    device: Device,
    /// Used by `LatentDecoder::decode` (the pipeline's call).
    mode: DecodeMode,
}

impl VaeDecoder {
    /// `vb` points at the VAE's root (`vae/` safetensors: `decoder.*`, `post_quant_conv.*`).
    /// Uses the fastest activation layout for the weights' device and dtype.
    pub fn new(vb: VarBuilder, cfg: &VaeConfig) -> Result<Self> {
        let layout = ActivationLayout::fastest_for(vb.device(), vb.dtype());
        Self::with_layout(vb, cfg, layout)
    }

    /// As `new` with a chosen layout (channels-first is the reference path on any device).
    pub fn with_layout(vb: VarBuilder, cfg: &VaeConfig, layout: ActivationLayout) -> Result<Self> {
        if layout == ActivationLayout::ChannelsLast
            && ActivationLayout::fastest_for(vb.device(), vb.dtype()) != layout
        {
            return Err(ModelError::BadInput(
                "the channels-last VAE needs bf16 weights on CUDA and the `cudnn` feature".into(),
            ));
        }
        // post_quant_conv runs on the latent before the layout change
        let post_quant_conv = if cfg.use_post_quant_conv {
            let c = cfg.latent_channels;
            Some(Conv::new(
                c,
                c,
                1,
                vb.pp("post_quant_conv"),
                ActivationLayout::ChannelsFirst,
            )?)
        } else {
            None
        };
        let decoder = Decoder::new(cfg, vb.pp("decoder"), layout)?;
        Ok(Self {
            decoder,
            post_quant_conv,
            cfg: cfg.clone(),
            dtype: vb.dtype(),
            device: vb.device().clone(),
            mode: DecodeMode::default(),
        })
    }

    pub fn config(&self) -> &VaeConfig {
        &self.cfg
    }

    pub fn layout(&self) -> ActivationLayout {
        self.decoder.layout
    }

    /// Sets how the pipeline's `decode` call runs (e.g. always tiled in low-VRAM mode).
    pub fn with_mode(mut self, mode: DecodeMode) -> Self {
        self.mode = mode;
        self
    }

    pub fn mode(&self) -> DecodeMode {
        self.mode
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The pipeline's latents (`[b, C, h, w]`, any float dtype) → VAE input, as diffusers:
    /// cast to the VAE dtype, then `/ scaling_factor + shift_factor`.
    pub fn unscale_latents(&self, latents: &Tensor) -> Result<Tensor> {
        let z = latents.to_dtype(self.dtype)?;
        Ok(((z / self.cfg.scaling_factor)? + self.cfg.shift_factor)?)
    }

    /// diffusers' `vae.decode(z)` without tiling: `[b, C, h, w]` → `[b, 3, 8h, 8w]` in the VAE dtype.
    pub fn decode_raw(&self, z: &Tensor) -> Result<Tensor> {
        let z = self.check_latents(z)?;
        Ok(self
            .decoder
            .high_res(&self.decoder.low_res(&z)?, &mut NormContext::local())?)
    }

    /// Pipeline latents → image tensor `[b, 3, 8h, 8w]` in f32, roughly in `[-1, 1]`.
    pub fn decode(&self, latents: &Tensor, mode: DecodeMode) -> Result<Tensor> {
        let z = self.unscale_latents(latents)?;
        let (_, _, h, w) = z.dims4()?;
        let tiles = match mode {
            DecodeMode::Full => None,
            DecodeMode::Tiled(tiles) => Some(tiles),
            DecodeMode::Auto { above, tiles } => (h > above || w > above).then_some(tiles),
        };
        match tiles {
            None => Ok(self.decode_raw(&z)?.to_dtype(DType::F32)?),
            Some(tiles) => self.decode_tiled(&z, tiles),
        }
    }

    /// Pipeline latents of one image → RGB8, as the pipeline's image processor postprocesses.
    pub fn decode_to_rgb(&self, latents: &Tensor, mode: DecodeMode) -> Result<RgbImage> {
        image_to_rgb8(&self.decode(latents, mode)?)
    }

    fn check_latents(&self, z: &Tensor) -> Result<Tensor> {
        let (_, c, h, w) = z.dims4().map_err(|_| {
            ModelError::BadInput(format!(
                "latents must be [batch, channels, h, w], got {:?}",
                z.dims()
            ))
        })?;
        if c != self.cfg.latent_channels || h == 0 || w == 0 {
            return Err(ModelError::BadInput(format!(
                "latents {:?} do not fit a VAE with {} latent channels",
                z.dims(),
                self.cfg.latent_channels
            )));
        }
        let z = z.to_dtype(self.dtype)?;
        Ok(match &self.post_quant_conv {
            Some(conv) => conv.forward(&z)?,
            None => z,
        })
    }

    /// Low-resolution part on the whole latent, then up blocks per tile, cross-faded; GroupNorm
    /// statistics estimated over the whole image first when `tiles.stats_passes > 0`.
    fn decode_tiled(&self, z: &Tensor, tiles: TileOptions) -> Result<Tensor> {
        if tiles.tile == 0 || tiles.overlap >= tiles.tile {
            return Err(ModelError::BadInput(format!(
                "tile {} must be positive and larger than overlap {}",
                tiles.tile, tiles.overlap
            )));
        }
        let features = self.decoder.low_res(&self.check_latents(z)?)?;
        let layout = self.decoder.layout;
        let (h, w) = layout.spatial_size(&features)?;
        let (axis_y, axis_x) = layout.spatial_axes();
        let rows = tile_spans(h, tiles.tile, tiles.overlap);
        let cols = tile_spans(w, tiles.tile, tiles.overlap);
        let tile_at = |row: &tiling::TileSpan, col: &tiling::TileSpan| -> candle_core::Result<Tensor> {
            features
                .narrow(axis_y, row.start, row.len)?
                .narrow(axis_x, col.start, col.len)?
                .contiguous()
        };

        let mut stats = None;
        for _ in 0..tiles.stats_passes {
            let mut recorder = StatsRecorder::default();
            for row in &rows {
                for col in &cols {
                    let core = CoreRegion {
                        origin: (row.start, col.start),
                        size: (row.len, col.len),
                        rows: row.core(),
                        cols: col.core(),
                    };
                    let mut norms = NormContext::new(stats.as_deref(), Some((core, &mut recorder)));
                    self.decoder.high_res(&tile_at(row, col)?, &mut norms)?;
                }
            }
            stats = Some(recorder.finish()?);
        }

        let scale = self.cfg.scale_factor();
        let device = features.device();
        let mut image: Option<Tensor> = None;
        for row in &rows {
            let mut strip: Option<Tensor> = None;
            for col in &cols {
                let mut norms = NormContext::new(stats.as_deref(), None);
                let decoded = self
                    .decoder
                    .high_res(&tile_at(row, col)?, &mut norms)?
                    .to_dtype(DType::F32)?;
                let weights = Tensor::from_vec(col.weights(scale), (1, 1, 1, col.len * scale), device)?;
                let placed = decoded.broadcast_mul(&weights)?.pad_with_zeros(
                    3,
                    col.start * scale,
                    (w - col.end()) * scale,
                )?;
                strip = Some(match strip {
                    Some(acc) => (acc + placed)?,
                    None => placed,
                });
            }
            let Some(strip) = strip else { continue };
            let col_sums = Tensor::from_vec(weight_sums(&cols, w, scale), (1, 1, 1, w * scale), device)?;
            let weights = Tensor::from_vec(row.weights(scale), (1, 1, row.len * scale, 1), device)?;
            let placed = strip
                .broadcast_div(&col_sums)?
                .broadcast_mul(&weights)?
                .pad_with_zeros(2, row.start * scale, (h - row.end()) * scale)?;
            image = Some(match image {
                Some(acc) => (acc + placed)?,
                None => placed,
            });
        }
        let image = image.ok_or_else(|| ModelError::BadInput("empty latents".into()))?;
        let row_sums = Tensor::from_vec(weight_sums(&rows, h, scale), (1, 1, h * scale, 1), device)?;
        Ok(image.broadcast_div(&row_sums)?)
    }
}

impl LatentDecoder for VaeDecoder {
    fn decode(&self, latents: &Tensor) -> Result<RgbImage> {
        self.decode_to_rgb(latents, self.mode)
    }

    fn spatial_scale(&self) -> usize {
        self.cfg.scale_factor()
    }
}

/// `[1, 3, H, W]` decoder output → RGB8 as diffusers' `VaeImageProcessor.postprocess` (pil):
/// `(x·0.5 + 0.5).clamp(0, 1)`, then `round(x·255)` with ties to even (numpy), all in f32. Runs on
/// the image's device, so 3 bytes a pixel cross to the host instead of 12.
pub fn image_to_rgb8(image: &Tensor) -> Result<RgbImage> {
    let (b, c, h, w) = image.dims4()?;
    if b != 1 || c != 3 {
        return Err(ModelError::BadInput(format!(
            "expected one RGB image [1, 3, H, W], got {:?}",
            image.dims()
        )));
    }
    let pixels = scope("vae.to rgb8", image.device(), || {
        let scaled = (image.to_dtype(DType::F32)?.affine(0.5, 0.5)?.clamp(0f32, 1f32)? * 255.0)?;
        round_ties_even(&scaled)?
            .squeeze(0)?
            .permute((1, 2, 0))?
            .to_dtype(DType::U8)?
            .flatten_all()?
            .to_vec1::<u8>()
    })?;
    Ok(RgbImage {
        width: w as u32,
        height: h as u32,
        pixels,
    })
}

/// Rounds f32 values in [0, 2^22] to integers, ties to even (numpy's `round`), on any device:
/// adding and removing 1.5·2^23 leaves no fraction bits, and f32 addition rounds ties to even.
fn round_ties_even(values: &Tensor) -> candle_core::Result<Tensor> {
    const SHIFT: f64 = 12_582_912.0;
    (values + SHIFT)? - SHIFT
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_nn::VarMap;

    #[test]
    fn config_defaults_follow_diffusers() {
        let text = r#"{"block_out_channels": [32, 64], "latent_channels": 16, "norm_num_groups": 8,
            "scaling_factor": 0.3611, "shift_factor": 0.1159, "use_post_quant_conv": false}"#;
        let cfg = VaeConfig::from_json(text, Path::new("vae/config.json")).expect("parses");
        assert_eq!(cfg.layers_per_block, 1);
        assert!(cfg.mid_block_add_attention);
        assert_eq!(cfg.scale_factor(), 2);
        let null_shift = r#"{"block_out_channels": [32], "shift_factor": null}"#;
        assert_eq!(
            VaeConfig::from_json(null_shift, Path::new("c"))
                .expect("parses")
                .shift_factor,
            0.0
        );
        let bad_groups = r#"{"block_out_channels": [30], "norm_num_groups": 8}"#;
        let err = VaeConfig::from_json(bad_groups, Path::new("vae/config.json")).expect_err("fails");
        assert!(err.to_string().contains("vae/config.json"), "{err}");
    }

    #[test]
    fn key_block_attention_is_softmax_attention() -> candle_core::Result<()> {
        let dev = Device::Cpu;
        let q = Tensor::randn(0f32, 1.0, (1, 37, 8), &dev)?;
        let k = Tensor::randn(0f32, 1.0, (1, 37, 8), &dev)?;
        let v = Tensor::randn(0f32, 1.0, (1, 37, 8), &dev)?;
        let scale = 0.3;
        let want = candle_nn::ops::softmax_last_dim(&(q.matmul(&k.t()?)? * scale)?)?.matmul(&v)?;
        // 4 bytes · 37 queries · 5 keys: blocks of 5 keys, the last one of 2
        for block_bytes in [usize::MAX / 64, 4 * 37 * 5, 1] {
            let got = attention_by_key_blocks(&q, &k, &v, scale, block_bytes)?;
            let diff = (got - &want)?.abs()?.max_all()?.to_scalar::<f32>()?;
            assert!(diff < 1e-5, "block bytes {block_bytes}: {diff}");
        }
        Ok(())
    }

    #[test]
    fn rounding_is_numpys_ties_to_even() -> candle_core::Result<()> {
        let ties = Tensor::new(
            &[0.5f32, 1.5, 2.5, 3.5, 127.5, 254.5, 254.4, 254.6, 0.0, 255.0],
            &Device::Cpu,
        )?;
        let rounded = round_ties_even(&ties)?.to_vec1::<f32>()?;
        assert_eq!(
            rounded,
            vec![0.0, 2.0, 2.0, 4.0, 128.0, 254.0, 254.0, 255.0, 0.0, 255.0]
        );
        Ok(())
    }

    #[test]
    fn postprocess_clamps_scales_and_maps_nan_to_black() {
        let values = [-1.5f32, 1.5, 0.0, f32::NAN, -1.0, 1.0];
        let image = Tensor::from_vec(values.to_vec(), (1, 1, 1, values.len()), &Device::Cpu)
            .and_then(|t| t.broadcast_as((1, 3, 1, values.len()))?.contiguous())
            .expect("tensor");
        let rgb = image_to_rgb8(&image).expect("converts");
        let red: Vec<u8> = rgb.pixels.iter().step_by(3).copied().collect();
        assert_eq!(red, vec![0, 255, 128, 0, 0, 255]);
        assert_eq!((rgb.width, rgb.height), (values.len() as u32, 1));
        let wrong = Tensor::zeros((1, 4, 2, 2), DType::F32, &Device::Cpu).expect("tensor");
        assert!(matches!(image_to_rgb8(&wrong), Err(ModelError::BadInput(_))));
    }

    #[test]
    fn tiled_matches_full_where_tiles_do_not_overlap_edges() -> Result<()> {
        let map = VarMap::new();
        let vb = VarBuilder::from_varmap(&map, DType::F32, &Device::Cpu);
        let cfg = VaeConfig {
            block_out_channels: vec![8, 8],
            norm_num_groups: 4,
            ..VaeConfig::tiny()
        };
        let vae = VaeDecoder::new(vb, &cfg)?;
        let latents = Tensor::randn(0f32, 1.0, (1, 16, 6, 10), &Device::Cpu)?;
        let full = vae.decode(&latents, DecodeMode::Full)?;
        assert_eq!(full.dims(), &[1, 3, 12, 20]);
        // One tile as big as the latent is the full decode.
        let single = vae.decode(
            &latents,
            DecodeMode::Tiled(TileOptions {
                tile: 16,
                overlap: 4,
                stats_passes: 1,
            }),
        )?;
        let diff = (full - &single)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(diff < 1e-5, "{diff}");
        let tiled = vae.decode(
            &latents,
            DecodeMode::Tiled(TileOptions {
                tile: 4,
                overlap: 2,
                stats_passes: 2,
            }),
        )?;
        assert_eq!(tiled.dims(), &[1, 3, 12, 20]);
        assert!(matches!(
            vae.decode(
                &latents,
                DecodeMode::Tiled(TileOptions {
                    tile: 4,
                    overlap: 4,
                    stats_passes: 0
                })
            ),
            Err(ModelError::BadInput(_))
        ));
        Ok(())
    }
}
