//! Peak-memory estimate of one generation from the shapes alone, so a `--max-vram` budget can
//! refuse a job before any compute.
//!
//! The formula (all sizes in bytes, `b` = bytes per element of the model dtype):
//!
//! ```text
//! peak = runtime + overhead + max(encode, denoise, decode)
//!   encode  = weights_at_encode          + 512 · (6·2560 + 3·9728) · b        (Qwen3-4B, ≤ 512 tokens)
//!   denoise = weights_resident           + T · (6·hidden + 3·ffn) · b          (one DiT block live)
//!   decode  = weights_resident           + P_vae · 1220 · b                    (VAE decoder at full res)
//!   T       = pad32((h/16)·(w/16)) + pad32(caption tokens),  hidden 3840, ffn 10240
//!   P_vae   = h·w, or the tile's pixels when the decode is tiled
//!   weights_resident  = weights_all, minus the text encoder in low-VRAM mode
//!   weights_at_encode = weights_all, or only the text encoder in low-VRAM mode (it never shares
//!                       the device with the transformer there)
//! ```
//!
//! Attention is assumed fused (the T×T score matrix is never materialised). The decoder term
//! dominates at every size for the full model: its 1220 elements per output pixel (≈ 4.8 live
//! 256-channel tensors at full resolution: upsample output, conv output, group-norm temporaries)
//! and the 210 MiB `overhead` (latents, embeddings, library workspaces) come from a least-squares
//! fit of diffusers' peak allocation on an H100 (512² … 2048², residuals < 0.01 GiB; see
//! `tests::calibrated_against_diffusers_h100`). `runtime` is what the allocator does not see but
//! the device meter does: the CUDA context on a GPU, the process's own code and heap on the CPU.

use crate::model::pipeline::ModelInfo;
use crate::model::GenerationRequest;

pub const MIB: u64 = 1 << 20;
pub const GIB: u64 = 1 << 30;

/// Shape constants of the model family the estimate is for.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EstimatorShapes {
    pub dit_hidden: u64,
    pub dit_ffn: u64,
    pub te_hidden: u64,
    pub te_ffn: u64,
    pub te_max_tokens: u64,
    /// Live elements per output pixel at the decoder's peak.
    pub vae_elements_per_pixel: u64,
    /// Fixed device allocations beside weights and activations.
    pub overhead_bytes: u64,
}

impl EstimatorShapes {
    /// Z-Image-Turbo (6B DiT, Qwen3-4B, 16-channel VAE).
    pub const TURBO: Self = Self {
        dit_hidden: 3840,
        dit_ffn: 10240,
        te_hidden: 2560,
        te_ffn: 9728,
        te_max_tokens: 512,
        vae_elements_per_pixel: 1220,
        overhead_bytes: 210 * MIB,
    };
}

/// The model-dependent inputs: weight bytes by component and the element size.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MemoryEstimator {
    pub shapes: EstimatorShapes,
    /// Bytes per element of activations and weights.
    pub dtype_bytes: u64,
    pub weights_bytes: u64,
    pub text_encoder_bytes: u64,
    /// Text encoder dropped from the device after encoding.
    pub low_vram: bool,
    /// Pixels per VAE tile when decoding is tiled; `None` = whole image at once.
    pub vae_tile_pixels: Option<u64>,
    /// Memory the device meter sees beyond the allocator (CUDA context, process image).
    pub runtime_bytes: u64,
}

/// Bytes per element for a dtype name as `ModelInfo::dtype` writes it.
pub fn dtype_bytes(dtype: &str) -> u64 {
    match dtype.to_ascii_lowercase().as_str() {
        "f32" | "float32" | "fp32" => 4,
        "f64" | "float64" => 8,
        "u8" | "i8" | "f8e4m3" | "fp8" => 1,
        // bf16, f16 and anything unknown: the common GPU case.
        _ => 2,
    }
}

/// CUDA context and library handles, as seen by NVML but not by an allocator.
const CUDA_RUNTIME_BYTES: u64 = 512 * MIB;
/// The process's own code, heap and thread stacks when the meter is process RSS.
const CPU_RUNTIME_BYTES: u64 = 64 * MIB;
/// Tile assumed for a tiled (low-VRAM) decode: 512² output pixels plus overlap.
const DEFAULT_TILE_PIXELS: u64 = 640 * 640;

impl MemoryEstimator {
    /// From what the loaded model reports about itself.
    pub fn for_model(info: &ModelInfo, low_vram: bool) -> Self {
        let dtype_bytes = dtype_bytes(&info.dtype);
        let params_where = |pred: &dyn Fn(&str) -> bool| -> u64 {
            info.parameters
                .iter()
                .filter(|(name, _)| pred(name))
                .map(|(_, n)| *n)
                .sum()
        };
        let all = params_where(&|_| true);
        let te = params_where(&|name| name.contains("text"));
        let on_gpu = info.device.to_ascii_lowercase().contains("cuda");
        Self {
            shapes: EstimatorShapes::TURBO,
            dtype_bytes,
            weights_bytes: all * dtype_bytes,
            text_encoder_bytes: te * dtype_bytes,
            low_vram,
            vae_tile_pixels: low_vram.then_some(DEFAULT_TILE_PIXELS),
            runtime_bytes: if on_gpu {
                CUDA_RUNTIME_BYTES
            } else {
                CPU_RUNTIME_BYTES
            },
        }
    }

    /// Estimated peak of one generation, by stage.
    pub fn estimate(&self, request: &GenerationRequest) -> MemoryEstimate {
        let s = &self.shapes;
        let b = self.dtype_bytes;
        let image_tokens = pad32(u64::from(request.width / 16) * u64::from(request.height / 16));
        let caption_tokens = pad32(caption_tokens(&request.prompt).min(s.te_max_tokens));
        let tokens = image_tokens + caption_tokens;
        let resident = if self.low_vram {
            self.weights_bytes - self.text_encoder_bytes
        } else {
            self.weights_bytes
        };
        let pixels = u64::from(request.width) * u64::from(request.height);
        let vae_pixels = self.vae_tile_pixels.map_or(pixels, |tile| tile.min(pixels));
        let fixed = self.runtime_bytes + s.overhead_bytes;
        let at_encode = if self.low_vram {
            self.text_encoder_bytes
        } else {
            self.weights_bytes
        };
        let encode = fixed + at_encode + s.te_max_tokens * (6 * s.te_hidden + 3 * s.te_ffn) * b;
        let denoise = fixed + resident + tokens * (6 * s.dit_hidden + 3 * s.dit_ffn) * b;
        let decode = fixed + resident + vae_pixels * s.vae_elements_per_pixel * b;
        MemoryEstimate {
            tokens,
            encode,
            denoise,
            decode,
            peak: encode.max(denoise).max(decode),
        }
    }
}

/// An estimate in bytes, per stage and overall.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MemoryEstimate {
    /// Transformer sequence length (image + caption, each padded to 32).
    pub tokens: u64,
    pub encode: u64,
    pub denoise: u64,
    pub decode: u64,
    pub peak: u64,
}

fn pad32(n: u64) -> u64 {
    n.div_ceil(32) * 32
}

/// An upper bound on the caption's token count without the tokenizer: one token per character
/// (true for CJK, generous for English) plus the chat template's tokens.
fn caption_tokens(prompt: &str) -> u64 {
    prompt.chars().count() as u64 + 16
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(width: u32, height: u32) -> GenerationRequest {
        GenerationRequest {
            prompt: "a cat".into(),
            width,
            height,
            steps: 9,
            seed: 42,
        }
    }

    fn diffusers_like() -> MemoryEstimator {
        // Parameter counts and peaks from ../shared/anchors/diffusers_h100.json (bf16, H100 80GB,
        // torch.cuda.max_memory_allocated, so without the CUDA context).
        let info = ModelInfo {
            label: "anchor".into(),
            random_weights: true,
            dtype: "bf16".into(),
            device: "cuda:0".into(),
            parameters: vec![
                ("transformer".into(), 6_154_908_736),
                ("text_encoder".into(), 4_022_468_096),
                ("vae".into(), 83_819_683),
            ],
        };
        MemoryEstimator {
            runtime_bytes: 0,
            ..MemoryEstimator::for_model(&info, false)
        }
    }

    #[test]
    fn calibrated_against_diffusers_h100() {
        let est = diffusers_like();
        for (w, h, peak_gib) in [
            (512, 512, 19.914),
            (1024, 1024, 21.700),
            (768, 1280, 21.551),
            (1536, 1536, 24.679),
            (2048, 2048, 28.847),
        ] {
            let got = est.estimate(&request(w, h)).peak as f64 / GIB as f64;
            assert!(
                (got - peak_gib).abs() < 0.05,
                "{w}x{h}: estimate {got:.3} GiB vs measured {peak_gib} GiB"
            );
        }
    }

    #[test]
    fn tokens_and_stages() {
        let est = diffusers_like();
        let e = est.estimate(&request(1024, 1024));
        // 64·64 = 4096 image tokens; "a cat" → 5 + 16 = 21 → 32.
        assert_eq!(e.tokens, 4096 + 32);
        assert_eq!(e.peak, e.decode);
        assert!(e.denoise > e.encode);
        // Low-VRAM: the text encoder leaves after encoding and the decode is tiled.
        let low = MemoryEstimator {
            low_vram: true,
            vae_tile_pixels: Some(DEFAULT_TILE_PIXELS),
            ..est
        };
        let l = low.estimate(&request(2048, 2048));
        assert_eq!(l.peak, l.denoise);
        assert!(l.encode < l.denoise);
        assert!(l.decode < est.estimate(&request(2048, 2048)).decode);
        assert!((l.peak as f64) < 14.0 * GIB as f64);
    }

    #[test]
    fn dtype_sizes() {
        assert_eq!(dtype_bytes("bf16"), 2);
        assert_eq!(dtype_bytes("F32"), 4);
        assert_eq!(dtype_bytes("f16"), 2);
    }
}
