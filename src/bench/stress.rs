//! The bench as the dashboard's Stress view runs it: a `StressRequest` goes to the worker
//! (`Command::Stress`), which drives the same `Runner` as `zimage-tui bench` on the model it
//! already holds; `Forwarder` turns the runner's `Observer` calls into `StressEvent`s for the
//! app, and the report is written by the same `write_report`.

use std::path::PathBuf;
use std::time::Duration;

use super::record::JobRecord;
use super::report::{MemorySource, Report};
use super::runner::Observer;
use super::{BenchPlan, Section};
use crate::model::GenerationRequest;

/// A bench run asked for by the dashboard.
#[derive(Debug, Clone, PartialEq)]
pub struct StressRequest {
    pub plan: BenchPlan,
    /// report.md and report.json go here (created if missing).
    pub out_dir: PathBuf,
}

/// Where both report files went.
#[derive(Debug, Clone, PartialEq)]
pub struct WrittenReport {
    pub markdown: PathBuf,
    pub json: PathBuf,
}

/// Live progress of a stress run, in order: `Started`, then per section `Section` and per job
/// `JobStarted`, `Step`s and `JobFinished`; finally exactly one of `Finished` or `Failed`.
#[derive(Debug, Clone, PartialEq)]
pub enum StressEvent {
    Started {
        /// Every generation the plan may submit, warm-ups included.
        jobs: usize,
        /// What the memory figures are (VRAM from NVML, or process RSS on the CPU).
        memory: MemorySource,
    },
    Section {
        section: Section,
        jobs: usize,
    },
    JobStarted {
        section: Section,
        request: GenerationRequest,
        warmup: bool,
    },
    Step {
        step: usize,
        total: usize,
    },
    JobFinished {
        section: Section,
        record: Box<JobRecord>,
    },
    /// The soak's interval: the next image starts after this pause.
    Waiting {
        interval: Duration,
    },
    /// The run ended (all jobs, or stopped early); the report holds what was measured.
    Finished {
        report: Box<Report>,
        /// Where the report was written, or why it could not be.
        written: Result<WrittenReport, String>,
        /// Cancelled before the plan was complete.
        stopped: bool,
    },
    /// The run could not go on (no model, the worker's engine vanished, bad plan).
    Failed {
        message: String,
    },
}

/// An `Observer` that hands every callback to `send` as a `StressEvent` (or a log line) and
/// asks `stop` between jobs.
pub struct Forwarder<S, L, Q> {
    send: S,
    log: L,
    stop: Q,
}

impl<S, L, Q> Forwarder<S, L, Q>
where
    S: FnMut(StressEvent),
    L: FnMut(&str),
    Q: Fn() -> bool,
{
    pub fn new(send: S, log: L, stop: Q) -> Self {
        Self { send, log, stop }
    }
}

impl<S, L, Q> Observer for Forwarder<S, L, Q>
where
    S: FnMut(StressEvent),
    L: FnMut(&str),
    Q: Fn() -> bool,
{
    fn section(&mut self, section: Section, jobs: usize) {
        (self.send)(StressEvent::Section { section, jobs });
    }

    fn job_started(&mut self, section: Section, request: &GenerationRequest, warmup: bool) {
        (self.send)(StressEvent::JobStarted {
            section,
            request: request.clone(),
            warmup,
        });
    }

    fn step(&mut self, step: usize, total: usize) {
        (self.send)(StressEvent::Step { step, total });
    }

    fn job_finished(&mut self, section: Section, record: &JobRecord) {
        (self.send)(StressEvent::JobFinished {
            section,
            record: Box::new(record.clone()),
        });
    }

    fn waiting(&mut self, interval: Duration) {
        (self.send)(StressEvent::Waiting { interval });
    }

    fn log(&mut self, message: &str) {
        (self.log)(message);
    }

    fn stop_requested(&self) -> bool {
        (self.stop)()
    }
}
