//! The bench runner through the real worker thread (its queue, events, failure mapping and the
//! `inject_oom_after_step` hook), on an engine that does real candle work sized by the request.
//! The same runner through `zimage-tui bench` on the demo model: tests/bench_cli.rs.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use candle_core::{DType, Device, Tensor};
use tokio::sync::mpsc::unbounded_channel;

use zimage_tui::bench::{
    self, BenchPlan, Outcome, Report, Runner, RunsPlan, Silent, SoakPlan, SweepPlan, WorkerChannels,
};
use zimage_tui::model::loader::{LoadOptions, ModelSpec};
use zimage_tui::model::pipeline::{Generated, ModelInfo};
use zimage_tui::model::weights::ProgressFn;
use zimage_tui::model::{GenerationRequest, ModelError, Progress, Result, RgbImage, Stage, StageTimings};
use zimage_tui::worker::{self, Engine, EngineLoader, WorkerConfig};

/// Per step: a `[tokens, 64] × [64, 64]` matmul with tokens = (h/16)(w/16); decode allocates the
/// f32 image. Polls `cancelled` where the pipeline does (after encode, after every step).
struct MatmulEngine {
    info: ModelInfo,
    seen: Arc<Mutex<Vec<(u32, u32)>>>,
}

impl Engine for MatmulEngine {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn generate(&self, request: &GenerationRequest, progress: &mut dyn Progress) -> Result<Generated> {
        self.seen.lock().unwrap().push((request.width, request.height));
        let mut timings = StageTimings::default();
        progress.stage(Stage::Encode);
        let started = Instant::now();
        let weight = Tensor::randn(0f32, 1.0, (64, 64), &Device::Cpu)?;
        timings.encode = started.elapsed();
        if progress.cancelled() {
            return Err(ModelError::Cancelled);
        }
        progress.stage(Stage::Denoise);
        let tokens = (request.width as usize / 16) * (request.height as usize / 16);
        let mut x = Tensor::ones((tokens, 64), DType::F32, &Device::Cpu)?;
        for step in 1..=request.steps {
            let started = Instant::now();
            x = (x.matmul(&weight)?.tanh()? + 0.5)?;
            timings.steps.push(started.elapsed());
            progress.step(step, request.steps, started.elapsed(), &x);
            if progress.cancelled() {
                return Err(ModelError::Cancelled);
            }
        }
        progress.stage(Stage::Decode);
        let started = Instant::now();
        let (w, h) = (request.width as usize, request.height as usize);
        let pixels = Tensor::zeros((3, h, w), DType::F32, &Device::Cpu)?.affine(1.0, 128.0)?;
        let pixels: Vec<u8> = pixels.to_dtype(DType::U8)?.flatten_all()?.to_vec1()?;
        timings.decode = started.elapsed();
        Ok(Generated {
            image: RgbImage {
                width: request.width,
                height: request.height,
                pixels,
            },
            timings,
            warnings: vec![],
        })
    }
}

struct MatmulLoader {
    seen: Arc<Mutex<Vec<(u32, u32)>>>,
    loads: Arc<Mutex<usize>>,
}

impl EngineLoader for MatmulLoader {
    fn load(&mut self, _: &ModelSpec, _: &LoadOptions, _: ProgressFn) -> Result<Box<dyn Engine>> {
        *self.loads.lock().unwrap() += 1;
        let info = ModelInfo {
            label: "matmul engine (random weights)".into(),
            random_weights: true,
            dtype: "f32".into(),
            device: "cpu".into(),
            parameters: vec![("transformer".into(), 64 * 64)],
        };
        Ok(Box::new(MatmulEngine {
            info,
            seen: self.seen.clone(),
        }))
    }
}

struct Harness {
    seen: Arc<Mutex<Vec<(u32, u32)>>>,
    loads: Arc<Mutex<usize>>,
}

/// Runs `plan` through a fresh worker; returns the report and what the engine saw.
fn run(plan: &BenchPlan) -> (Report, Harness) {
    let harness = Harness {
        seen: Arc::default(),
        loads: Arc::default(),
    };
    let config = WorkerConfig {
        loader: Box::new(MatmulLoader {
            seen: harness.seen.clone(),
            loads: harness.loads.clone(),
        }),
        vram: None,
    };
    let (tx, rx) = unbounded_channel();
    let handle = worker::spawn_with(config, tx).expect("worker starts");
    let mut port = WorkerChannels::new(handle, rx);
    let mut meter = bench::meter::open("cpu").expect("sampler thread");
    let mut silent = Silent;
    let mut runner = Runner::new(&mut port, &mut meter, &mut silent);
    runner
        .load(ModelSpec::Demo, LoadOptions::default())
        .expect("loads");
    let report = runner.run(plan).expect("runs");
    (report, harness)
}

fn plan() -> BenchPlan {
    BenchPlan {
        runs: Some(RunsPlan {
            count: 3,
            width: 64,
            height: 64,
            steps: 3,
            seed: 42,
            prompt: "a cat".into(),
        }),
        sweep: Some(SweepPlan {
            sizes: vec![(32, 32), (64, 48), (48, 64)],
            steps: 2,
            seed: 42,
            prompt: "a cat".into(),
        }),
        soak: Some(SoakPlan {
            count: 6,
            width: 32,
            height: 32,
            steps: 2,
            seed: 7,
            prompts: bench::prompts::built_in(),
            prompt_source: "built-in".into(),
            interval: Duration::from_millis(5),
        }),
        warmup: 1,
        max_vram_bytes: None,
        inject_oom_sizes: vec![],
    }
}

#[test]
fn every_section_is_measured_through_the_worker() {
    let (report, harness) = run(&plan());
    assert_eq!(*harness.loads.lock().unwrap(), 1);
    // 1 + 3 runs, 3 × (1 + 1) sweep, 1 + 6 soak.
    assert_eq!(harness.seen.lock().unwrap().len(), 4 + 6 + 7);

    for job in report.all_jobs() {
        assert_eq!(job.outcome, Outcome::Ok, "{job:?}");
        assert_eq!(job.step_s.len(), job.request.steps);
        let total = job.total_s.unwrap();
        let parts = job.encode_s.unwrap() + job.decode_s.unwrap() + job.step_s.iter().sum::<f64>();
        assert!((total - parts).abs() < 1e-9);
        assert!(job.wall_s >= total, "wall {} < pipeline {}", job.wall_s, total);
        assert!(job.memory.peak_bytes.unwrap() >= job.memory.used_after_bytes.unwrap() / 2);
        assert!(job.estimate_bytes.unwrap() > 0);
    }
    let runs = report.runs.as_ref().unwrap();
    assert_eq!(runs.stats.ok, 3);
    let soak = report.soak.as_ref().unwrap();
    assert_eq!(soak.stats.ok, 6);
    assert!(soak.stats.used_after_slope_mib_per_image.is_some());
    assert!(soak.stats.time_drift_percent.is_some());
    // The soak cycles the built-in list: image i has prompt i and seed 7 + i.
    assert_eq!(soak.jobs[1].request.prompt, bench::prompts::BUILT_IN[1]);
    assert_eq!(soak.jobs[5].request.seed, 12);

    let dir = tempfile::tempdir().unwrap();
    let (md, json) = bench::write_report(dir.path(), &report).unwrap();
    let md = std::fs::read_to_string(md).unwrap();
    for heading in [
        "## Timed runs",
        "## Resolution sweep",
        "## Soak",
        "## Summary",
        "RANDOM WEIGHTS",
    ] {
        assert!(md.contains(heading), "report.md lacks {heading}");
    }
    // report.json holds every job (floats are compared loosely: JSON text rounds the last bit).
    let back: Report = serde_json::from_str(&std::fs::read_to_string(json).unwrap()).unwrap();
    assert_eq!(
        (&back.header.model, &back.header.device),
        (&report.header.model, &report.header.device)
    );
    assert_eq!(back.all_jobs().count(), report.all_jobs().count());
    for (a, b) in back.all_jobs().zip(report.all_jobs()) {
        assert_eq!(
            (&a.request, &a.outcome, a.warmup, a.memory),
            (&b.request, &b.outcome, b.warmup, b.memory)
        );
        assert!((a.total_s.unwrap() - b.total_s.unwrap()).abs() < 1e-12);
    }
}

#[test]
fn an_injected_oom_fails_that_job_only() {
    let plan = BenchPlan {
        runs: None,
        soak: None,
        warmup: 0,
        inject_oom_sizes: vec![(64, 48)],
        ..plan()
    };
    let (report, harness) = run(&plan);
    let sweep = report.sweep.unwrap();
    let outcomes: Vec<&Outcome> = sweep.jobs.iter().map(|j| &j.outcome).collect();
    assert_eq!(outcomes, vec![&Outcome::Ok, &Outcome::OutOfMemory, &Outcome::Ok]);
    let failed = &sweep.jobs[1];
    assert!(
        failed.message.as_deref().unwrap().contains("out of memory"),
        "{failed:?}"
    );
    // It ran its first step, then failed; the model was not reloaded for the next size.
    assert!(failed.total_s.is_none());
    assert_eq!(*harness.loads.lock().unwrap(), 1);
    assert_eq!(
        harness.seen.lock().unwrap().as_slice(),
        &[(32, 32), (64, 48), (48, 64)]
    );
}

#[test]
fn over_budget_jobs_never_reach_the_worker() {
    let plan = BenchPlan {
        runs: None,
        soak: None,
        sweep: Some(SweepPlan {
            sizes: vec![(32, 32), (1024, 1024), (48, 32)],
            steps: 2,
            seed: 1,
            prompt: "p".into(),
        }),
        max_vram_bytes: Some(1 << 30),
        ..plan()
    };
    let (report, harness) = run(&plan);
    let sweep = report.sweep.unwrap();
    assert_eq!(sweep.jobs[0].outcome, Outcome::Ok);
    match &sweep.jobs[1].outcome {
        Outcome::OverBudget {
            estimate_bytes,
            budget_bytes,
        } => {
            assert_eq!(*budget_bytes, 1 << 30);
            assert!(*estimate_bytes > 1 << 30);
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(sweep.jobs[1].message.as_deref().unwrap().contains("--max-vram"));
    assert_eq!(sweep.jobs[2].outcome, Outcome::Ok);
    // Warm-up and measured run of the small sizes only: 1024² was never submitted.
    let seen = harness.seen.lock().unwrap();
    assert!(!seen.contains(&(1024, 1024)), "{seen:?}");
    assert_eq!(seen.len(), 4);
}
