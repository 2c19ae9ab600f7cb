//! encode → denoise loop (progress, cancel) → decode. Owner: model helper A.
//! Contract used by the worker: `ZImagePipeline::generate` / `generate_from_latents`, `info()`.

use candle_core::{DType, Tensor};

use super::{GenerationRequest, Progress, Result, RgbImage, StageTimings};

/// What was loaded, for display in every face (status bar, PNG metadata, reports).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ModelInfo {
    /// e.g. "Z-Image-Turbo (/path/to/dir)" or "demo model (random weights)".
    pub label: String,
    /// True for the demo model and `--random-weights`: outputs say so prominently.
    pub random_weights: bool,
    pub dtype: String,
    pub device: String,
    /// Parameter count per component (name, count).
    pub parameters: Vec<(String, u64)>,
}

/// The finished image with what it cost.
#[derive(Debug, Clone)]
pub struct Generated {
    pub image: RgbImage,
    pub timings: StageTimings,
    /// Non-fatal notes for the user, e.g. prompt truncated at 512 tokens.
    pub warnings: Vec<String>,
}

pub struct ZImagePipeline {
    pub(crate) info: ModelInfo,
}

impl ZImagePipeline {
    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// Full generation; initial latents drawn from `request.seed`.
    pub fn generate(
        &self,
        request: &GenerationRequest,
        progress: &mut dyn Progress,
    ) -> Result<Generated> {
        let _ = (request, progress);
        Err(super::ModelError::Compute(
            "pipeline not implemented yet".into(),
        ))
    }

    /// Full generation from given fp32 latents `[1, 16, h/8, w/8]` (parity tests, reproducibility).
    pub fn generate_from_latents(
        &self,
        request: &GenerationRequest,
        initial_latents: Tensor,
        progress: &mut dyn Progress,
    ) -> Result<Generated> {
        let _ = (request, initial_latents, progress, DType::F32);
        Err(super::ModelError::Compute(
            "pipeline not implemented yet".into(),
        ))
    }
}
