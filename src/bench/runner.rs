//! Drives the worker through its `Command`/`Event` channels, one job at a time, and turns what
//! comes back into `JobRecord`s. The same runner serves `zimage-tui bench` and the Stress view.

use std::time::{Duration, Instant};

use super::estimate::{MemoryEstimate, MemoryEstimator};
use super::record::{JobRecord, MemoryReading, Outcome};
use super::report::{
    DeviceDescription, Header, Report, RunsSection, RunsStats, SoakSection, SoakStats, SweepSection,
};
use super::{BenchError, BenchPlan, Section};
use crate::model::loader::{LoadOptions, ModelSpec};
use crate::model::pipeline::ModelInfo;
use crate::model::{GenerationRequest, Stage};
use crate::worker::{Command, Event, FailureKind, Job, JobId};

/// The worker as the runner sees it: commands in, events out (blocking).
pub trait WorkerPort {
    fn send(&mut self, command: Command) -> Result<(), BenchError>;
    /// The next event; an error when the worker has gone away.
    fn recv(&mut self) -> Result<Event, BenchError>;
}

/// Measures memory around each job: device memory on a GPU, process RSS on the CPU.
pub trait MemoryMeter {
    fn device(&self) -> DeviceDescription;
    /// Called right before a job is submitted: start tracking its peak.
    fn job_started(&mut self);
    /// Called when the job's result arrived: its peak and the state right after.
    fn job_finished(&mut self) -> MemoryReading;
}

/// Live progress for a face (progress bars, the Stress view). All methods are optional.
pub trait Observer {
    fn loading(&mut self, _part: &str, _done: u64, _total: u64) {}
    /// A section begins with this many jobs (warm-ups included).
    fn section(&mut self, _section: Section, _jobs: usize) {}
    fn job_started(&mut self, _section: Section, _request: &GenerationRequest, _warmup: bool) {}
    fn stage(&mut self, _stage: Stage) {}
    fn step(&mut self, _step: usize, _total: usize) {}
    fn job_finished(&mut self, _section: Section, _record: &JobRecord) {}
    /// The soak waits this long before its next image (`--interval`).
    fn waiting(&mut self, _interval: Duration) {}
    fn log(&mut self, _message: &str) {}
    /// Polled between jobs; `true` ends the run early (the report keeps what was measured).
    fn stop_requested(&self) -> bool {
        false
    }
}

/// An observer that watches nothing.
pub struct Silent;
impl Observer for Silent {}

pub struct Runner<'a> {
    engine: &'a mut dyn WorkerPort,
    meter: &'a mut dyn MemoryMeter,
    observer: &'a mut dyn Observer,
    next_job: JobId,
    model: Option<(ModelInfo, f64)>,
    estimator: Option<MemoryEstimator>,
}

impl<'a> Runner<'a> {
    pub fn new(
        engine: &'a mut dyn WorkerPort,
        meter: &'a mut dyn MemoryMeter,
        observer: &'a mut dyn Observer,
    ) -> Self {
        Self {
            engine,
            meter,
            observer,
            next_job: 1,
            model: None,
            estimator: None,
        }
    }

    /// Loads the model and waits for it; returns what was loaded and the seconds it took.
    pub fn load(&mut self, spec: ModelSpec, options: LoadOptions) -> Result<ModelInfo, BenchError> {
        let low_vram = options.low_vram;
        self.engine.send(Command::LoadModel { spec, options })?;
        loop {
            match self.engine.recv()? {
                Event::Loading { part, done, total } => self.observer.loading(&part, done, total),
                Event::Loaded { info, secs } => {
                    self.estimator = Some(MemoryEstimator::for_model(&info, low_vram));
                    self.model = Some((info.clone(), secs));
                    return Ok(info);
                }
                Event::LoadFailed { message } => return Err(BenchError::Load(message)),
                Event::Log { message } => self.observer.log(&message),
                _ => {}
            }
        }
    }

    /// Uses a model that is already loaded (the dashboard's), instead of loading one.
    pub fn use_loaded(&mut self, info: ModelInfo, load_s: f64, low_vram: bool) {
        self.estimator = Some(MemoryEstimator::for_model(&info, low_vram));
        self.model = Some((info, load_s));
    }

    /// The shape-based peak estimate for a request, once a model is loaded.
    pub fn estimate(&self, request: &GenerationRequest) -> Option<MemoryEstimate> {
        self.estimator.as_ref().map(|e| e.estimate(request))
    }

    /// Runs every section of the plan and returns the report (also when stopped early).
    pub fn run(&mut self, plan: &BenchPlan) -> Result<Report, BenchError> {
        plan.validate()?;
        let (model, load_s) = self.model.clone().ok_or(BenchError::NoModel)?;
        let mut report = Report::new(Header {
            tool: format!("zimage-tui {}", crate::VERSION),
            git_commit: super::git_commit(),
            date_utc: super::now_utc(),
            model,
            model_load_s: Some(load_s),
            device: self.meter.device(),
            max_vram_bytes: plan.max_vram_bytes,
            warmup_per_series: plan.warmup,
        });
        if let Some(runs) = &plan.runs {
            let request = GenerationRequest {
                prompt: runs.prompt.clone(),
                width: runs.width,
                height: runs.height,
                steps: runs.steps,
                seed: runs.seed,
            };
            self.observer.section(Section::Runs, plan.warmup + runs.count);
            let warmup = self.series(
                Section::Runs,
                plan,
                std::iter::repeat_n(request.clone(), plan.warmup),
                true,
            )?;
            let jobs = self.series(
                Section::Runs,
                plan,
                std::iter::repeat_n(request, runs.count),
                false,
            )?;
            let stats = RunsStats::compute(&jobs);
            report.runs = Some(RunsSection {
                width: runs.width,
                height: runs.height,
                steps: runs.steps,
                seed: runs.seed,
                prompt: runs.prompt.clone(),
                warmup,
                jobs,
                stats,
            });
        }
        if let Some(sweep) = &plan.sweep {
            self.observer
                .section(Section::Sweep, sweep.sizes.len() * (plan.warmup + 1));
            let mut section = SweepSection {
                steps: sweep.steps,
                seed: sweep.seed,
                prompt: sweep.prompt.clone(),
                warmup: Vec::new(),
                jobs: Vec::new(),
            };
            for (i, &(width, height)) in sweep.sizes.iter().enumerate() {
                let request = GenerationRequest {
                    prompt: sweep.prompt.clone(),
                    width,
                    height,
                    steps: sweep.steps,
                    seed: sweep.seed,
                };
                let warm = self.series(
                    Section::Sweep,
                    plan,
                    std::iter::repeat_n(request.clone(), plan.warmup),
                    true,
                )?;
                // A size whose warm-up already ran out of memory is not tried again.
                let mut job = match warm.iter().find(|j| !j.outcome.is_ok()) {
                    Some(failed) => JobRecord {
                        warmup: false,
                        ..failed.clone()
                    },
                    None => match self
                        .series(Section::Sweep, plan, std::iter::once(request), false)?
                        .pop()
                    {
                        Some(job) => job,
                        None => break, // stopped
                    },
                };
                job.index = i + 1;
                section.warmup.extend(warm);
                section.jobs.push(job);
                if self.observer.stop_requested() {
                    break;
                }
            }
            report.sweep = Some(section);
        }
        if let Some(soak) = &plan.soak {
            self.observer.section(Section::Soak, plan.warmup + soak.count);
            let request = |i: usize| GenerationRequest {
                prompt: soak.prompts[i % soak.prompts.len()].clone(),
                width: soak.width,
                height: soak.height,
                steps: soak.steps,
                seed: soak.seed.wrapping_add(i as u64),
            };
            let warmup = self.series(Section::Soak, plan, (0..plan.warmup).map(&request), true)?;
            let mut jobs = Vec::with_capacity(soak.count);
            for i in 0..soak.count {
                if self.observer.stop_requested() {
                    break;
                }
                if i > 0 && !soak.interval.is_zero() {
                    self.pause(soak.interval);
                }
                let record = self.job(Section::Soak, plan, request(i), i + 1, false)?;
                if self.stopped_mid_job(&record) {
                    break;
                }
                jobs.push(record);
            }
            let stats = SoakStats::compute(&jobs);
            report.soak = Some(SoakSection {
                width: soak.width,
                height: soak.height,
                steps: soak.steps,
                interval_s: soak.interval.as_secs_f64(),
                prompt_source: soak.prompt_source.clone(),
                warmup,
                jobs,
                stats,
            });
        }
        Ok(report)
    }

    /// Sleeps between soak images, waking early when a stop is requested.
    fn pause(&mut self, interval: Duration) {
        self.observer.waiting(interval);
        let until = Instant::now() + interval;
        while Instant::now() < until && !self.observer.stop_requested() {
            std::thread::sleep((until - Instant::now()).min(Duration::from_millis(50)));
        }
    }

    /// Runs requests one after another, numbering them from 1; stops early on request.
    fn series(
        &mut self,
        section: Section,
        plan: &BenchPlan,
        requests: impl Iterator<Item = GenerationRequest>,
        warmup: bool,
    ) -> Result<Vec<JobRecord>, BenchError> {
        let mut out = Vec::new();
        for (i, request) in requests.enumerate() {
            if self.observer.stop_requested() {
                break;
            }
            let record = self.job(section, plan, request, i + 1, warmup)?;
            if self.stopped_mid_job(&record) {
                break;
            }
            out.push(record);
        }
        Ok(out)
    }

    /// A job cancelled because the run was asked to stop measured nothing: it is left out of the
    /// report rather than counted as a failure.
    fn stopped_mid_job(&self, record: &JobRecord) -> bool {
        record.outcome
            == Outcome::Failed {
                failure: FailureKind::Cancelled,
            }
            && self.observer.stop_requested()
    }

    /// One job: refused when over budget, otherwise submitted and awaited.
    pub fn job(
        &mut self,
        section: Section,
        plan: &BenchPlan,
        request: GenerationRequest,
        index: usize,
        warmup: bool,
    ) -> Result<JobRecord, BenchError> {
        self.observer.job_started(section, &request, warmup);
        let estimate_bytes = self.estimate(&request).map(|e| e.peak);
        let mut record = JobRecord {
            index,
            warmup,
            request,
            outcome: Outcome::Ok,
            message: None,
            encode_s: None,
            step_s: Vec::new(),
            decode_s: None,
            total_s: None,
            wall_s: 0.0,
            memory: MemoryReading::default(),
            estimate_bytes,
        };
        if let (Some(budget), Some(estimate)) = (plan.max_vram_bytes, estimate_bytes) {
            if estimate > budget {
                record.outcome = Outcome::OverBudget {
                    estimate_bytes: estimate,
                    budget_bytes: budget,
                };
                record.message = Some(format!(
                    "estimated peak {:.2} GiB exceeds the --max-vram budget of {:.2} GiB; not run",
                    estimate as f64 / super::estimate::GIB as f64,
                    budget as f64 / super::estimate::GIB as f64
                ));
                self.observer.job_finished(section, &record);
                return Ok(record);
            }
        }
        let id = self.next_job;
        self.next_job += 1;
        self.meter.job_started();
        let started = Instant::now();
        let mut job = Job::new(id, record.request.clone());
        if plan
            .inject_oom_sizes
            .contains(&(record.request.width, record.request.height))
        {
            job.inject_oom_after_step = Some(1.min(record.request.steps));
        }
        self.engine.send(Command::Submit(job))?;
        loop {
            match self.engine.recv()? {
                Event::Stage { job, stage } if job == id => self.observer.stage(stage),
                Event::Step { job, step, total, .. } if job == id => self.observer.step(step, total),
                Event::Log { message } => self.observer.log(&message),
                Event::Done { job, output } if job == id => {
                    record.wall_s = started.elapsed().as_secs_f64();
                    let t = &output.timings;
                    record.encode_s = Some(t.encode.as_secs_f64());
                    record.step_s = t.steps.iter().map(Duration::as_secs_f64).collect();
                    record.decode_s = Some(t.decode.as_secs_f64());
                    record.total_s = Some(t.total().as_secs_f64());
                    record.memory = self.meter.job_finished();
                    // The worker samples at stage and step boundaries, the meter in between: keep
                    // the higher of the two.
                    record.memory.peak_bytes = record.memory.peak_bytes.max(output.peak_vram_bytes);
                    break;
                }
                Event::Failed { job, kind, message } if job == id => {
                    record.wall_s = started.elapsed().as_secs_f64();
                    record.memory = self.meter.job_finished();
                    record.outcome = match kind {
                        FailureKind::OutOfMemory => Outcome::OutOfMemory,
                        failure => Outcome::Failed { failure },
                    };
                    record.message = Some(message);
                    break;
                }
                _ => {}
            }
        }
        self.observer.job_finished(section, &record);
        Ok(record)
    }
}

#[cfg(test)]
mod tests {
    //! The runner against a scripted engine that follows the worker's event contract; the real
    //! worker on the demo model is exercised in tests/bench_cli.rs.
    use std::collections::VecDeque;

    use super::*;
    use crate::bench::report::MemorySource;
    use crate::bench::{RunsPlan, SoakPlan, SweepPlan};
    use crate::model::StageTimings;
    use crate::worker::JobOutput;

    /// Answers each submitted job with the worker's events; 1 ms per step per 32² of image.
    #[derive(Default)]
    struct ScriptedEngine {
        pending: VecDeque<Event>,
        submitted: Vec<Job>,
        loads: usize,
    }

    impl WorkerPort for ScriptedEngine {
        fn send(&mut self, command: Command) -> Result<(), BenchError> {
            match command {
                Command::LoadModel { .. } => {
                    self.loads += 1;
                    self.pending.push_back(Event::Loaded {
                        info: ModelInfo {
                            label: "scripted".into(),
                            random_weights: true,
                            dtype: "f32".into(),
                            device: "cpu".into(),
                            parameters: vec![("transformer".into(), 1000)],
                        },
                        secs: 0.5,
                    });
                }
                Command::Submit(job) => {
                    let id = job.id;
                    let r = &job.request;
                    let step = Duration::from_micros(u64::from(r.width * r.height) * 1000 / 1024);
                    self.pending.push_back(Event::Started { job: id });
                    self.pending.push_back(Event::Stage {
                        job: id,
                        stage: Stage::Denoise,
                    });
                    let fail_at = job.inject_oom_after_step;
                    for i in 1..=r.steps {
                        if fail_at == Some(i - 1) {
                            break;
                        }
                        self.pending.push_back(Event::Step {
                            job: id,
                            step: i,
                            total: r.steps,
                            secs: 0.0,
                        });
                    }
                    self.pending.push_back(match fail_at {
                        Some(_) => Event::Failed {
                            job: id,
                            kind: FailureKind::OutOfMemory,
                            message: "injected".into(),
                        },
                        None => Event::Done {
                            job: id,
                            output: Box::new(JobOutput {
                                path: None,
                                image: crate::model::RgbImage {
                                    width: 1,
                                    height: 1,
                                    pixels: vec![0; 3],
                                },
                                timings: StageTimings {
                                    encode: Duration::from_millis(2),
                                    steps: vec![step; r.steps],
                                    decode: Duration::from_millis(3),
                                },
                                save: Duration::ZERO,
                                peak_vram_bytes: None,
                                warnings: vec![],
                            }),
                        },
                    });
                    self.submitted.push(job);
                }
                Command::Cancel(_) | Command::Shutdown | Command::Stress(_) | Command::CancelStress => {}
            }
            Ok(())
        }
        fn recv(&mut self) -> Result<Event, BenchError> {
            self.pending.pop_front().ok_or(BenchError::WorkerGone)
        }
    }

    /// Memory "in use" grows 1 MiB per job: a leak the soak must see.
    #[derive(Default)]
    struct LeakyMeter {
        jobs: u64,
    }

    impl MemoryMeter for LeakyMeter {
        fn device(&self) -> DeviceDescription {
            DeviceDescription {
                card: Some("test".into()),
                driver: None,
                memory_source: MemorySource::ProcessRss,
                total_bytes: None,
            }
        }
        fn job_started(&mut self) {}
        fn job_finished(&mut self) -> MemoryReading {
            self.jobs += 1;
            let used = (100 + self.jobs) * crate::bench::estimate::MIB;
            MemoryReading {
                peak_bytes: Some(used + 1),
                used_after_bytes: Some(used),
                ..Default::default()
            }
        }
    }

    fn plan() -> BenchPlan {
        BenchPlan {
            runs: Some(RunsPlan {
                count: 3,
                width: 32,
                height: 32,
                steps: 2,
                seed: 7,
                prompt: "p".into(),
            }),
            sweep: Some(SweepPlan {
                sizes: vec![(32, 32), (64, 64), (4096, 4096), (48, 48)],
                steps: 2,
                seed: 7,
                prompt: "p".into(),
            }),
            soak: Some(SoakPlan {
                count: 5,
                width: 32,
                height: 32,
                steps: 2,
                seed: 100,
                prompts: vec!["a".into(), "b".into()],
                prompt_source: "test".into(),
                interval: Duration::ZERO,
            }),
            warmup: 1,
            max_vram_bytes: Some(2 * crate::bench::estimate::GIB),
            inject_oom_sizes: vec![(64, 64)],
        }
    }

    #[test]
    fn sections_failures_and_refusals() {
        let mut engine = ScriptedEngine::default();
        let mut meter = LeakyMeter::default();
        let mut silent = Silent;
        let report = {
            let mut runner = Runner::new(&mut engine, &mut meter, &mut silent);
            runner.load(ModelSpec::Demo, LoadOptions::default()).unwrap();
            runner.run(&plan()).unwrap()
        };

        let runs = report.runs.as_ref().unwrap();
        assert_eq!((runs.warmup.len(), runs.jobs.len(), runs.stats.ok), (1, 3, 3));
        assert!(runs.warmup[0].warmup && !runs.jobs[0].warmup);
        assert_eq!(
            runs.jobs.iter().map(|j| j.index).collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
        assert!((runs.jobs[0].total_s.unwrap() - 0.007).abs() < 1e-9);

        let sweep = report.sweep.as_ref().unwrap();
        let outcomes: Vec<String> = sweep.jobs.iter().map(|j| j.outcome.label()).collect();
        assert_eq!(outcomes, vec!["ok", "OOM", "OOM (over budget, not run)", "ok"]);
        assert!(sweep.jobs.iter().all(|j| !j.warmup));
        assert_eq!(
            sweep.jobs.iter().map(|j| j.index).collect::<Vec<_>>(),
            vec![1, 2, 3, 4]
        );
        // A failed warm-up is not repeated: 64² was submitted once, 4096² never.
        let submitted = |w: u32| engine.submitted.iter().filter(|j| j.request.width == w).count();
        assert_eq!(submitted(64), 1);
        assert_eq!(submitted(4096), 0);
        assert_eq!(submitted(48), 2);

        let md = crate::bench::markdown::render(&report);
        for needle in [
            "RANDOM WEIGHTS",
            "## Timed runs",
            "## Resolution sweep",
            "## Soak",
            "## Summary",
        ] {
            assert!(md.contains(needle), "report.md lacks {needle}");
        }
        assert!(md.contains("| 64×64 | OOM |") && md.contains("| 4096×4096 | OOM (over budget, not run) |"));
        assert!(md.contains("| Sizes out of memory | 64×64, 4096×4096 |"), "{md}");
        assert!(md.contains("+1.000 MiB/image"), "{md}");
        let json: Report = serde_json::from_str(&report.to_json()).unwrap();
        assert_eq!(json.all_jobs().count(), report.all_jobs().count());
        assert_eq!(json.header.model, report.header.model);

        let soak = report.soak.as_ref().unwrap();
        assert_eq!((soak.warmup.len(), soak.jobs.len()), (1, 5));
        assert_eq!(soak.jobs[1].request.prompt, "b");
        assert_eq!(soak.jobs[1].request.seed, 101);
        // One MiB more after every job.
        assert!((soak.stats.used_after_slope_mib_per_image.unwrap() - 1.0).abs() < 1e-9);
        assert_eq!(soak.stats.time_drift_percent, Some(0.0));
    }

    #[test]
    fn the_model_loads_once_and_jobs_carry_the_hook() {
        let mut engine = ScriptedEngine::default();
        let mut meter = LeakyMeter::default();
        let mut silent = Silent;
        {
            let mut runner = Runner::new(&mut engine, &mut meter, &mut silent);
            runner.load(ModelSpec::Demo, LoadOptions::default()).unwrap();
            runner.run(&plan()).unwrap();
        }
        assert_eq!(engine.loads, 1);
        let hooked: Vec<&Job> = engine
            .submitted
            .iter()
            .filter(|j| j.inject_oom_after_step.is_some())
            .collect();
        assert_eq!(hooked.len(), 1);
        assert_eq!(hooked[0].request.width, 64);
        assert!(engine.submitted.iter().all(|j| j.output.is_none() && !j.previews));
    }

    #[test]
    fn stop_request_keeps_what_was_measured() {
        struct StopAfter(usize, usize);
        impl Observer for StopAfter {
            fn job_finished(&mut self, _: Section, _: &JobRecord) {
                self.1 += 1;
            }
            fn stop_requested(&self) -> bool {
                self.1 >= self.0
            }
        }
        let mut engine = ScriptedEngine::default();
        let mut meter = LeakyMeter::default();
        let mut stop = StopAfter(3, 0);
        let mut runner = Runner::new(&mut engine, &mut meter, &mut stop);
        runner.load(ModelSpec::Demo, LoadOptions::default()).unwrap();
        let report = runner.run(&plan()).unwrap();
        assert_eq!(report.runs.as_ref().unwrap().jobs.len(), 2);
        assert!(report.sweep.as_ref().unwrap().jobs.is_empty());
        assert!(report.soak.as_ref().unwrap().jobs.is_empty());
    }

    #[test]
    fn running_without_a_model_is_an_error() {
        let mut engine = ScriptedEngine::default();
        let mut meter = LeakyMeter::default();
        let mut silent = Silent;
        let mut runner = Runner::new(&mut engine, &mut meter, &mut silent);
        assert!(matches!(runner.run(&plan()), Err(BenchError::NoModel)));
    }
}
