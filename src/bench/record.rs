//! What one benchmark job measured, kept raw for report.json.

use crate::model::GenerationRequest;
use crate::worker::FailureKind;

/// How a job ended.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Outcome {
    Ok,
    /// The device ran out of memory; the model stayed loaded.
    OutOfMemory,
    /// Refused before any compute: the estimated peak exceeds `--max-vram`.
    OverBudget {
        estimate_bytes: u64,
        budget_bytes: u64,
    },
    /// Any other failure (bad input, I/O, internal, cancelled).
    Failed {
        failure: FailureKind,
    },
}

impl Outcome {
    pub fn is_ok(&self) -> bool {
        matches!(self, Outcome::Ok)
    }

    /// Out of memory, real or predicted: the sweep's "OOM" cell.
    pub fn is_memory_limit(&self) -> bool {
        matches!(self, Outcome::OutOfMemory | Outcome::OverBudget { .. })
    }

    /// Short label for tables.
    pub fn label(&self) -> String {
        match self {
            Outcome::Ok => "ok".into(),
            Outcome::OutOfMemory => "OOM".into(),
            Outcome::OverBudget { .. } => "OOM (over budget, not run)".into(),
            Outcome::Failed { failure } => format!("failed ({failure:?})"),
        }
    }
}

/// Device memory around one job. Bytes; `None` where the meter cannot tell.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MemoryReading {
    /// Highest use seen while the job ran (VRAM from the fast sampler, or process RSS).
    pub peak_bytes: Option<u64>,
    /// In use right after the job (a leak shows as a rising series of these).
    pub used_after_bytes: Option<u64>,
    pub free_after_bytes: Option<u64>,
    pub total_bytes: Option<u64>,
}

/// One generation as measured by the runner.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct JobRecord {
    /// 1-based position within its section (warm-ups are numbered separately).
    pub index: usize,
    /// Excluded from the section's statistics.
    pub warmup: bool,
    pub request: GenerationRequest,
    pub outcome: Outcome,
    /// The worker's message for a failure.
    pub message: Option<String>,
    /// Stage times from the pipeline (device synchronised before each timestamp), seconds.
    pub encode_s: Option<f64>,
    pub step_s: Vec<f64>,
    pub decode_s: Option<f64>,
    /// encode + steps + decode.
    pub total_s: Option<f64>,
    /// Submit to result as the runner saw it (includes queueing and event hand-off).
    pub wall_s: f64,
    pub memory: MemoryReading,
    /// The shape-based estimate of the peak, bytes.
    pub estimate_bytes: Option<u64>,
}

impl JobRecord {
    /// Mean denoising step time, seconds.
    pub fn mean_step_s(&self) -> Option<f64> {
        super::stats::mean(&self.step_s)
    }

    pub fn size_label(&self) -> String {
        format!("{}×{}", self.request.width, self.request.height)
    }
}
