//! Z-Image-Turbo in candle: text encoder, transformer, scheduler, VAE decoder and the pipeline
//! that ties them. Equal to diffusers' `ZImagePipeline` (see tests/parity*). No UI, no tokio.

pub mod assemble;
pub mod demo;
pub mod error;
pub mod fused;
pub mod loader;
pub mod pipeline;
pub mod preview;
pub mod profile;
pub mod scheduler;
pub mod text_encoder;
pub mod tokenizer;
pub mod transformer;
pub mod vae;
pub mod weights;

use std::time::Duration;

pub use error::{ModelError, Result};

/// Largest side we accept; larger sizes are refused before any compute.
pub const MAX_SIDE: u32 = 4096;
/// Sides must be multiples of this (VAE factor 8 × patch 2).
pub const SIZE_MULTIPLE: u32 = 16;
pub const MAX_STEPS: usize = 100;
/// Prompts longer than this many tokens are truncated (with a warning), as diffusers does.
pub const MAX_PROMPT_TOKENS: usize = 512;

/// One image to generate.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GenerationRequest {
    pub prompt: String,
    pub width: u32,
    pub height: u32,
    pub steps: usize,
    pub seed: u64,
}

impl GenerationRequest {
    /// Checks everything that can be checked without a model; the message is for the user.
    pub fn validate(&self) -> Result<()> {
        for (name, side) in [("width", self.width), ("height", self.height)] {
            if side == 0 || side > MAX_SIDE {
                return Err(ModelError::BadInput(format!(
                    "{name} {side} is out of range (16..={MAX_SIDE})"
                )));
            }
            if side % SIZE_MULTIPLE != 0 {
                return Err(ModelError::BadInput(format!(
                    "{name} {side} is not a multiple of {SIZE_MULTIPLE}"
                )));
            }
        }
        if self.steps == 0 || self.steps > MAX_STEPS {
            return Err(ModelError::BadInput(format!(
                "steps {} is out of range (1..={MAX_STEPS})",
                self.steps
            )));
        }
        if self.prompt.trim().is_empty() {
            return Err(ModelError::BadInput("the prompt is empty".into()));
        }
        Ok(())
    }
}

/// The pipeline's stages, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Stage {
    Encode,
    Denoise,
    Decode,
}

/// Wall time of each stage of one generation (device synchronised before each timestamp).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StageTimings {
    #[serde(with = "secs")]
    pub encode: Duration,
    #[serde(with = "secs_vec")]
    pub steps: Vec<Duration>,
    #[serde(with = "secs")]
    pub decode: Duration,
}

impl StageTimings {
    pub fn denoise(&self) -> Duration {
        self.steps.iter().sum()
    }
    pub fn total(&self) -> Duration {
        self.encode + self.denoise() + self.decode
    }
}

/// An 8-bit RGB image, row-major, no padding.
#[derive(Debug, Clone, PartialEq)]
pub struct RgbImage {
    pub width: u32,
    pub height: u32,
    pub pixels: Vec<u8>,
}

/// Observer of a running generation: progress out, cancellation in.
/// Called on the worker thread; keep it cheap.
pub trait Progress {
    fn stage(&mut self, _stage: Stage) {}
    /// After denoising step `step` (1-based) of `total`; `latents` are the current fp32 latents
    /// `[1, 16, h/8, w/8]`, for live previews.
    fn step(&mut self, _step: usize, _total: usize, _elapsed: Duration, _latents: &candle_core::Tensor) {}
    /// Polled between steps and before decode; `true` stops the job with `ModelError::Cancelled`.
    fn cancelled(&self) -> bool {
        false
    }
}

/// A `Progress` that observes nothing.
pub struct NoProgress;
impl Progress for NoProgress {}

/// Serde helpers: durations as fractional seconds (readable in TOML/JSON).
pub mod secs {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let v = f64::deserialize(d)?;
        Duration::try_from_secs_f64(v).map_err(serde::de::Error::custom)
    }
}

pub mod secs_vec {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;
    pub fn serialize<S: Serializer>(d: &[Duration], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(d.iter().map(|d| d.as_secs_f64()))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Duration>, D::Error> {
        let v = Vec::<f64>::deserialize(d)?;
        v.into_iter()
            .map(|x| Duration::try_from_secs_f64(x).map_err(serde::de::Error::custom))
            .collect()
    }
}
