//! Errors of the model layer. Every variant says what the user can act on.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A model file is missing, truncated, corrupt or of the wrong shape.
    #[error("{}: {problem}", file.display())]
    Load { file: PathBuf, problem: String },
    /// The request itself is invalid (size, steps, prompt).
    #[error("invalid request: {0}")]
    BadInput(String),
    /// The device ran out of memory; the job fails, the model stays usable.
    #[error("out of memory: {0}")]
    OutOfMemory(String),
    /// The caller asked to stop (checked between steps and before decode).
    #[error("cancelled")]
    Cancelled,
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Compute(String),
}

impl ModelError {
    pub fn load(file: impl Into<PathBuf>, problem: impl Into<String>) -> Self {
        Self::Load {
            file: file.into(),
            problem: problem.into(),
        }
    }
}

impl From<candle_core::Error> for ModelError {
    /// CUDA allocation failures become `OutOfMemory` so callers can contain them.
    fn from(err: candle_core::Error) -> Self {
        let text = err.to_string();
        if is_out_of_memory(&text) {
            Self::OutOfMemory(text)
        } else {
            Self::Compute(text)
        }
    }
}

fn is_out_of_memory(text: &str) -> bool {
    text.contains("OUT_OF_MEMORY") || text.contains("out of memory")
}

pub type Result<T, E = ModelError> = std::result::Result<T, E>;
