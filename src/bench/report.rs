//! The report: every raw figure (report.json) plus the statistics the tables print (report.md).

use super::estimate::MIB;
use super::record::JobRecord;
use super::stats::{self, LinearFit, Spread};
use crate::model::pipeline::ModelInfo;

pub const SCHEMA_VERSION: u32 = 1;

/// Where memory figures come from.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum MemorySource {
    /// Device memory from NVML, sampled at `sample_hz` while a job runs.
    Nvml { sample_hz: f64 },
    /// The process's resident set size (CPU runs): same report, different meaning.
    ProcessRss,
    /// No meter could be opened; memory columns stay empty.
    Unavailable,
}

impl MemorySource {
    pub fn describe(&self) -> String {
        match self {
            MemorySource::Nvml { sample_hz } => {
                format!("device memory (NVML), peak sampled at {sample_hz:.0} Hz during each job")
            }
            MemorySource::ProcessRss => "process resident memory (RSS); no GPU memory meter".into(),
            MemorySource::Unavailable => "no memory meter available".into(),
        }
    }

    /// Column heading for memory figures.
    pub fn short(&self) -> &'static str {
        match self {
            MemorySource::Nvml { .. } => "VRAM",
            MemorySource::ProcessRss => "RSS",
            MemorySource::Unavailable => "memory",
        }
    }
}

/// The machine the numbers come from.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DeviceDescription {
    /// e.g. "NVIDIA H100 80GB HBM3", or the CPU's name.
    pub card: Option<String>,
    pub driver: Option<String>,
    pub memory_source: MemorySource,
    pub total_bytes: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Header {
    /// "zimage-tui 0.1.0".
    pub tool: String,
    pub git_commit: Option<String>,
    /// RFC 3339, UTC.
    pub date_utc: String,
    pub model: ModelInfo,
    pub model_load_s: Option<f64>,
    pub device: DeviceDescription,
    pub max_vram_bytes: Option<u64>,
    /// Warm-up generations before each measured series (excluded from every statistic).
    pub warmup_per_series: usize,
}

/// N generations at one size.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RunsSection {
    pub width: u32,
    pub height: u32,
    pub steps: usize,
    pub seed: u64,
    pub prompt: String,
    pub warmup: Vec<JobRecord>,
    pub jobs: Vec<JobRecord>,
    pub stats: RunsStats,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RunsStats {
    pub ok: usize,
    pub failed: usize,
    pub total_s: Option<Spread>,
    pub encode_s: Option<Spread>,
    /// Of each run's mean step time.
    pub step_s: Option<Spread>,
    pub decode_s: Option<Spread>,
    pub peak_bytes: Option<Spread>,
}

impl RunsStats {
    pub fn compute(jobs: &[JobRecord]) -> Self {
        let ok: Vec<&JobRecord> = jobs.iter().filter(|j| !j.warmup && j.outcome.is_ok()).collect();
        let series = |f: &dyn Fn(&JobRecord) -> Option<f64>| -> Option<Spread> {
            Spread::of(&ok.iter().filter_map(|j| f(j)).collect::<Vec<_>>())
        };
        Self {
            ok: ok.len(),
            failed: jobs.iter().filter(|j| !j.warmup && !j.outcome.is_ok()).count(),
            total_s: series(&|j| j.total_s),
            encode_s: series(&|j| j.encode_s),
            step_s: series(&|j| j.mean_step_s()),
            decode_s: series(&|j| j.decode_s),
            peak_bytes: series(&|j| j.memory.peak_bytes.map(|b| b as f64)),
        }
    }
}

/// One generation per size; a size that runs out of memory is recorded and the sweep goes on.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SweepSection {
    pub steps: usize,
    pub seed: u64,
    pub prompt: String,
    pub warmup: Vec<JobRecord>,
    /// One measured job per size, in sweep order.
    pub jobs: Vec<JobRecord>,
}

/// Many images in a row, watching for memory growth and slow-down.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SoakSection {
    pub width: u32,
    pub height: u32,
    pub steps: usize,
    pub interval_s: f64,
    /// "built-in (16 prompts, Chinese and English)" or the file's path.
    pub prompt_source: String,
    pub warmup: Vec<JobRecord>,
    pub jobs: Vec<JobRecord>,
    pub stats: SoakStats,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SoakFailure {
    pub index: usize,
    pub outcome: String,
    pub message: Option<String>,
}

/// Soak statistics over the measured (non-warm-up) images that succeeded.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SoakStats {
    pub images: usize,
    pub ok: usize,
    pub failures: Vec<SoakFailure>,
    pub total_s: Option<Spread>,
    /// Least-squares slope of memory in use after each image against the image index, MiB/image.
    pub used_after_slope_mib_per_image: Option<f64>,
    /// The same for each image's peak, MiB/image.
    pub peak_slope_mib_per_image: Option<f64>,
    /// Mean time of the last tenth of images against the first tenth, percent.
    pub time_drift_percent: Option<f64>,
    /// Images in each tenth used for the drift.
    pub drift_tenth_len: usize,
    pub used_after_bytes: Option<Spread>,
    pub peak_bytes: Option<Spread>,
}

impl SoakStats {
    pub fn compute(jobs: &[JobRecord]) -> Self {
        let measured: Vec<&JobRecord> = jobs.iter().filter(|j| !j.warmup).collect();
        let ok: Vec<&JobRecord> = measured.iter().copied().filter(|j| j.outcome.is_ok()).collect();
        let slope_of = |f: &dyn Fn(&JobRecord) -> Option<u64>| -> Option<f64> {
            let points: Vec<(f64, f64)> = ok
                .iter()
                .filter_map(|j| f(j).map(|b| (j.index as f64, b as f64 / MIB as f64)))
                .collect();
            stats::linear_fit(&points).map(|LinearFit { slope, .. }| slope)
        };
        let times: Vec<f64> = ok.iter().filter_map(|j| j.total_s).collect();
        let bytes = |f: &dyn Fn(&JobRecord) -> Option<u64>| -> Option<Spread> {
            Spread::of(
                &ok.iter()
                    .filter_map(|j| f(j).map(|b| b as f64))
                    .collect::<Vec<_>>(),
            )
        };
        Self {
            images: measured.len(),
            ok: ok.len(),
            failures: measured
                .iter()
                .filter(|j| !j.outcome.is_ok())
                .map(|j| SoakFailure {
                    index: j.index,
                    outcome: j.outcome.label(),
                    message: j.message.clone(),
                })
                .collect(),
            total_s: Spread::of(&times),
            used_after_slope_mib_per_image: slope_of(&|j| j.memory.used_after_bytes),
            peak_slope_mib_per_image: slope_of(&|j| j.memory.peak_bytes),
            time_drift_percent: stats::drift_percent(&times),
            drift_tenth_len: stats::tenth_len(times.len()),
            used_after_bytes: bytes(&|j| j.memory.used_after_bytes),
            peak_bytes: bytes(&|j| j.memory.peak_bytes),
        }
    }
}

/// Everything one `bench` invocation measured.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Report {
    pub schema_version: u32,
    pub header: Header,
    pub runs: Option<RunsSection>,
    pub sweep: Option<SweepSection>,
    pub soak: Option<SoakSection>,
}

impl Report {
    pub fn new(header: Header) -> Self {
        Self {
            schema_version: SCHEMA_VERSION,
            header,
            runs: None,
            sweep: None,
            soak: None,
        }
    }

    /// Every job, warm-ups included, in the order they ran within each section.
    pub fn all_jobs(&self) -> impl Iterator<Item = &JobRecord> {
        let runs = self.runs.iter().flat_map(|s| s.warmup.iter().chain(&s.jobs));
        let sweep = self.sweep.iter().flat_map(|s| s.warmup.iter().chain(&s.jobs));
        let soak = self.soak.iter().flat_map(|s| s.warmup.iter().chain(&s.jobs));
        runs.chain(sweep).chain(soak)
    }

    pub fn to_json(&self) -> String {
        // Serialising plain data with string keys cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::record::{MemoryReading, Outcome};
    use crate::test_fixtures::tiny_request;
    use crate::worker::FailureKind;

    fn job(index: usize, total_s: f64, used_mib: f64, outcome: Outcome) -> JobRecord {
        let ok = outcome.is_ok();
        JobRecord {
            index,
            warmup: false,
            request: tiny_request(),
            outcome,
            message: None,
            encode_s: ok.then_some(0.1),
            step_s: if ok { vec![0.2, 0.4] } else { vec![] },
            decode_s: ok.then_some(0.3),
            total_s: ok.then_some(total_s),
            wall_s: total_s,
            memory: MemoryReading {
                peak_bytes: ok.then_some(((used_mib + 100.0) * MIB as f64) as u64),
                used_after_bytes: ok.then_some((used_mib * MIB as f64) as u64),
                free_after_bytes: None,
                total_bytes: None,
            },
            estimate_bytes: None,
        }
    }

    #[test]
    fn soak_slope_and_drift_by_hand() {
        // used after image i: 1000 + 2·i MiB, except image 5 which is 10 MiB higher.
        // times: 4.0 for images 1..=10 except 10 (5.0) and 1 (3.0).
        let mut jobs: Vec<JobRecord> = (1..=10)
            .map(|i| {
                let used = 1000.0 + 2.0 * i as f64 + if i == 5 { 10.0 } else { 0.0 };
                let t = match i {
                    1 => 3.0,
                    10 => 5.0,
                    _ => 4.0,
                };
                job(i, t, used, Outcome::Ok)
            })
            .collect();
        // A warm-up that would wreck both statistics if it were counted.
        let mut warm = job(0, 100.0, 9000.0, Outcome::Ok);
        warm.warmup = true;
        jobs.insert(0, warm);
        // A failure in the middle is listed and left out of the fits.
        jobs.push(job(11, 0.0, 0.0, Outcome::OutOfMemory));

        let s = SoakStats::compute(&jobs);
        assert_eq!(s.images, 11);
        assert_eq!(s.ok, 10);
        assert_eq!(s.failures.len(), 1);
        assert_eq!(s.failures[0].index, 11);
        // x = 1..10, mean 5.5, Sxx = 82.5. Bump of 10 at x = 5 adds 10·(5 − 5.5)/82.5 to the slope.
        let expected = 2.0 + 10.0 * (5.0 - 5.5) / 82.5;
        let slope = s.used_after_slope_mib_per_image.unwrap();
        assert!((slope - expected).abs() < 1e-3, "slope {slope} vs {expected}"); // bytes rounding
        assert!((s.peak_slope_mib_per_image.unwrap() - expected).abs() < 1e-3);
        // 10 values → a tenth is 1 value: 3.0 → 5.0 = +66.67 %.
        assert!((s.time_drift_percent.unwrap() - 200.0 / 3.0).abs() < 1e-9);
        assert_eq!(s.drift_tenth_len, 1);
        assert!((s.total_s.unwrap().mean - 4.0).abs() < 1e-12);
    }

    #[test]
    fn runs_stats_exclude_warmup_and_failures() {
        let mut warm = job(1, 50.0, 10.0, Outcome::Ok);
        warm.warmup = true;
        let jobs = vec![
            warm,
            job(1, 4.7, 10.0, Outcome::Ok),
            job(2, 4.5, 10.0, Outcome::Ok),
            job(
                3,
                1.0,
                10.0,
                Outcome::Failed {
                    failure: FailureKind::Internal,
                },
            ),
            job(4, 4.6, 10.0, Outcome::Ok),
        ];
        let s = RunsStats::compute(&jobs);
        assert_eq!((s.ok, s.failed), (3, 1));
        assert!((s.total_s.unwrap().mean - 4.6).abs() < 1e-12);
        assert!((s.step_s.unwrap().mean - 0.3).abs() < 1e-12);
    }
}
