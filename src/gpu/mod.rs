//! GPU telemetry for the dashboard, the worker and the bench.
//!
//! - [`Telemetry`]: one device's readings on demand. Two real implementations: [`NvmlTelemetry`]
//!   (NVIDIA, libnvidia-ml loaded at run time) and [`ProcessTelemetry`] (no GPU telemetry: this
//!   process's resident memory from `/proc`). [`ScriptedTelemetry`] replays fixed readings for
//!   tests and snapshots.
//! - [`open`] picks one for a device string ("cpu", "cuda", "cuda:N"); NVML failing to load is
//!   not an error, it falls back to [`ProcessTelemetry`] with the reason.
//! - [`Sampler`]: a thread polling a `Telemetry` into a history ring (sparklines), the latest
//!   sample, an optional channel of samples for the TUI, and per-job peak windows
//!   ([`PeakTracker`]) that raise the rate to the job rate (≥ 20 Hz) while open.

mod nvml;
mod process;
mod sampler;
mod scripted;

use std::time::Instant;

pub use nvml::NvmlTelemetry;
pub use process::ProcessTelemetry;
pub use sampler::{PeakMemory, PeakTracker, PeakWindow, Sampler, SamplerConfig};
pub use scripted::{ScriptFeeder, ScriptedTelemetry};

/// Static facts about what is being watched.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceInfo {
    /// Card name ("NVIDIA H100 80GB HBM3"), or a description of the machine without telemetry.
    pub name: String,
    /// NVIDIA driver version, when known.
    pub driver_version: Option<String>,
    /// Where the memory figures come from.
    pub source: MemorySource,
    /// Why there is no GPU telemetry (`source == ProcessRss`), for the "no GPU telemetry" state.
    pub unavailable_reason: Option<String>,
}

impl DeviceInfo {
    pub fn has_gpu_telemetry(&self) -> bool {
        self.source == MemorySource::DeviceVram
    }
}

/// What `GpuSample::memory_used` measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemorySource {
    /// Device memory in use by all processes (NVML), against the card's total.
    DeviceVram,
    /// This process's resident set size, against the machine's RAM: no GPU telemetry.
    ProcessRss,
}

impl MemorySource {
    /// Short label for gauges and reports: "VRAM" or "RSS".
    pub fn label(self) -> &'static str {
        match self {
            MemorySource::DeviceVram => "VRAM",
            MemorySource::ProcessRss => "RSS",
        }
    }
}

/// One reading. Fields a device cannot report are `None`.
#[derive(Debug, Clone, PartialEq)]
pub struct GpuSample {
    /// When it was taken.
    pub at: Instant,
    /// Bytes in use: device memory (all processes) or, without GPU telemetry, this process's RSS.
    pub memory_used: u64,
    /// Bytes available in total: the card's memory or the machine's RAM.
    pub memory_total: Option<u64>,
    /// Percent of the last sample period a kernel was running.
    pub utilization_percent: Option<u32>,
    pub temperature_c: Option<u32>,
    pub power_watts: Option<f64>,
    pub power_limit_watts: Option<f64>,
    /// This process's memory: its device memory per NVML (None when the driver does not list it,
    /// e.g. inside a container's PID namespace), or its RSS without GPU telemetry.
    pub process_memory: Option<u64>,
    /// The highest `memory_used` since the last [`Telemetry::job_started`], as the OS tracked it
    /// between samples (process RSS high-water mark); `None` where there is no such counter.
    pub memory_high_water: Option<u64>,
}

/// A reading failed; the sampler logs it and keeps polling.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("NVML: {0}")]
    Nvml(#[from] nvml_wrapper::error::NvmlError),
    #[error("reading process memory: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Other(String),
}

/// A source of readings for one device. Implementations must be cheap to call at 20 Hz.
pub trait Telemetry: Send {
    fn info(&self) -> &DeviceInfo;
    fn sample(&mut self) -> Result<GpuSample, TelemetryError>;
    /// A peak window opened: restart any high-water counter (see `GpuSample::memory_high_water`).
    fn job_started(&mut self) {}
}

/// The telemetry for a device string from the config: "cpu" → process memory; "cuda" /
/// "cuda:N" (or anything else, e.g. "auto") → NVML for that ordinal, falling back to process
/// memory with the reason when NVML or the device is unavailable. Never fails.
pub fn open(device: &str) -> Box<dyn Telemetry> {
    open_with_library(device, None)
}

/// As [`open`], loading NVML from `nvml_library` instead of the system's libnvidia-ml.
pub fn open_with_library(device: &str, nvml_library: Option<&std::ffi::OsStr>) -> Box<dyn Telemetry> {
    let device = device.trim().to_ascii_lowercase();
    if device == "cpu" {
        return Box::new(ProcessTelemetry::new("the device is the CPU"));
    }
    let ordinal = cuda_ordinal(&device);
    match NvmlTelemetry::open(ordinal, nvml_library) {
        Ok(nvml) => Box::new(nvml),
        Err(err) => {
            tracing::info!("no GPU telemetry: {err}");
            Box::new(ProcessTelemetry::new(&format!("NVML unavailable: {err}")))
        }
    }
}

/// "cuda:3" → 3; "cuda", "auto" or anything unparsable → 0.
fn cuda_ordinal(device: &str) -> u32 {
    device
        .strip_prefix("cuda:")
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuda_ordinals() {
        assert_eq!(cuda_ordinal("cuda"), 0);
        assert_eq!(cuda_ordinal("cuda:2"), 2);
        assert_eq!(cuda_ordinal("cuda:x"), 0);
        assert_eq!(cuda_ordinal("auto"), 0);
    }

    #[test]
    fn cpu_device_has_no_gpu_telemetry_and_reports_rss() {
        let mut telemetry = open("cpu");
        let info = telemetry.info().clone();
        assert!(!info.has_gpu_telemetry());
        assert_eq!(info.source.label(), "RSS");
        assert!(info.unavailable_reason.as_deref().unwrap_or("").contains("CPU"));
        let sample = telemetry.sample().expect("reading /proc/self/status");
        assert!(
            sample.memory_used > 1024 * 1024,
            "a test process uses more than 1 MiB"
        );
        assert_eq!(sample.process_memory, Some(sample.memory_used));
        assert!(sample.memory_total.unwrap_or(0) > sample.memory_used);
        assert_eq!(sample.utilization_percent, None);
        // No high-water mark before a job reset it: it would cover the whole process lifetime.
        assert_eq!(sample.memory_high_water, None);
    }

    #[test]
    fn nvml_failing_to_load_falls_back_to_process_memory() {
        let missing = std::ffi::OsStr::new("/nonexistent/libnvidia-ml.so.1");
        assert!(NvmlTelemetry::open(0, Some(missing)).is_err());
        let mut telemetry = open_with_library("cuda:0", Some(missing));
        let info = telemetry.info();
        assert!(!info.has_gpu_telemetry());
        let reason = info.unavailable_reason.clone().unwrap_or_default();
        assert!(reason.starts_with("NVML unavailable"), "{reason}");
        assert!(telemetry.sample().is_ok());
    }
}
