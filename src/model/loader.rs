//! Finding and validating model directories (HF diffusers layout, HF cache, ModelScope cache),
//! loading components with per-component progress. Owner: loader helper C.

use std::path::PathBuf;

/// Where the model comes from.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum ModelSpec {
    /// The embedded tiny random model (default when nothing is configured).
    Demo,
    /// A checkpoint directory in the diffusers layout.
    Dir(PathBuf),
    /// Random weights with a named architecture preset ("turbo" = full size, "demo" = tiny).
    RandomWeights { preset: String },
}

/// How to load: device, dtype and memory policy.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LoadOptions {
    /// "cpu" or "cuda[:N]".
    pub device: String,
    /// None = f32 on CPU, bf16 on CUDA.
    pub dtype: Option<String>,
    /// Text encoder off the GPU after encoding, tiled VAE decode.
    pub low_vram: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            device: "cpu".into(),
            dtype: None,
            low_vram: false,
        }
    }
}

/// One loading progress report: `part` is the component ("text_encoder", "transformer", ...).
#[derive(Debug, Clone, PartialEq)]
pub struct LoadProgress {
    pub part: String,
    pub done: u64,
    pub total: u64,
}
