//! Worker behaviour with a scripted engine (the real pipeline implements the same trait; the
//! end-to-end path through the real demo model is tested in tests/cli_gen.rs).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use candle_core::{DType, Device, Tensor};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

use super::*;
use crate::model::pipeline::Generated;
use crate::model::weights::ProgressFn;
use crate::model::{ModelError, Progress, Result};

/// Generates a flat grey image in `request.steps` steps of `step_time` each; prompts starting
/// with "oom" fail like a CUDA out-of-memory error after the first step.
struct ScriptedEngine {
    info: ModelInfo,
    step_time: Duration,
    runs: Arc<AtomicUsize>,
}

impl Engine for ScriptedEngine {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn generate(&self, request: &GenerationRequest, progress: &mut dyn Progress) -> Result<Generated> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        progress.stage(Stage::Encode);
        progress.stage(Stage::Denoise);
        let latents = Tensor::zeros((1, 16, 4, 4), DType::F32, &Device::Cpu)?;
        let mut timings = StageTimings::default();
        for step in 1..=request.steps {
            if progress.cancelled() {
                return Err(ModelError::Cancelled);
            }
            std::thread::sleep(self.step_time);
            if request.prompt.starts_with("oom") {
                return Err(ModelError::OutOfMemory("CUDA_ERROR_OUT_OF_MEMORY".into()));
            }
            timings.steps.push(self.step_time);
            progress.step(step, request.steps, self.step_time, &latents);
        }
        if progress.cancelled() {
            return Err(ModelError::Cancelled);
        }
        progress.stage(Stage::Decode);
        let (w, h) = (request.width, request.height);
        let image = RgbImage {
            width: w,
            height: h,
            pixels: vec![128; (w * h * 3) as usize],
        };
        Ok(Generated {
            image,
            timings,
            warnings: vec![],
        })
    }
}

struct ScriptedLoader {
    step_time: Duration,
    runs: Arc<AtomicUsize>,
}

impl EngineLoader for ScriptedLoader {
    fn load(&mut self, spec: &ModelSpec, _: &LoadOptions, progress: ProgressFn) -> Result<Box<dyn Engine>> {
        if let ModelSpec::Dir(path) = spec {
            return Err(ModelError::load(path, "missing (expected model_index.json)"));
        }
        for part in ["text_encoder", "transformer", "vae"] {
            progress(crate::model::loader::LoadProgress {
                part: part.into(),
                done: 10,
                total: 10,
            });
        }
        let info = ModelInfo {
            label: "scripted".into(),
            random_weights: true,
            dtype: "f32".into(),
            device: "cpu".into(),
            parameters: vec![],
        };
        Ok(Box::new(ScriptedEngine {
            info,
            step_time: self.step_time,
            runs: self.runs.clone(),
        }))
    }
}

fn start(step_time: Duration) -> (WorkerHandle, UnboundedReceiver<Event>, Arc<AtomicUsize>) {
    let runs = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = unbounded_channel();
    let config = WorkerConfig {
        loader: Box::new(ScriptedLoader {
            step_time,
            runs: runs.clone(),
        }),
        vram: None,
    };
    let worker = spawn_with(config, tx).expect("spawn worker");
    worker.load_model(ModelSpec::Demo, LoadOptions::default());
    (worker, rx, runs)
}

fn job(id: JobId, prompt: &str, steps: usize) -> Job {
    Job::new(
        id,
        GenerationRequest {
            prompt: prompt.into(),
            width: 32,
            height: 16,
            steps,
            seed: 1,
        },
    )
}

/// Events until job `id` ends (Done or Failed), with a timeout.
fn until_end(rx: &mut UnboundedReceiver<Event>, id: JobId) -> Vec<Event> {
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while std::time::Instant::now() < deadline {
        match rx.try_recv() {
            Ok(event) => {
                let end = matches!(&event, Event::Done { job, .. } | Event::Failed { job, .. } if *job == id);
                seen.push(event);
                if end {
                    return seen;
                }
            }
            Err(_) => std::thread::sleep(Duration::from_millis(2)),
        }
    }
    panic!("job {id} did not end; events: {seen:?}");
}

fn failure_of(events: &[Event], id: JobId) -> Option<(FailureKind, String)> {
    events.iter().find_map(|e| match e {
        Event::Failed { job, kind, message } if *job == id => Some((*kind, message.clone())),
        _ => None,
    })
}

#[test]
fn loads_with_progress_then_runs_a_job_with_steps_and_previews() {
    let (worker, mut rx, _) = start(Duration::ZERO);
    let mut with_previews = job(1, "a cat", 3);
    with_previews.previews = true;
    worker.submit(with_previews);
    let events = until_end(&mut rx, 1);
    assert!(events
        .iter()
        .any(|e| matches!(e, Event::Loading { part, .. } if part == "transformer")));
    assert!(events
        .iter()
        .any(|e| matches!(e, Event::Loaded { info, .. } if info.label == "scripted")));
    let steps: Vec<usize> = events
        .iter()
        .filter_map(|e| {
            if let Event::Step { step, .. } = e {
                Some(*step)
            } else {
                None
            }
        })
        .collect();
    assert_eq!(steps, vec![1, 2, 3]);
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e, Event::Preview { .. }))
            .count(),
        3
    );
    assert!(matches!(events.last(), Some(Event::Done { output, .. }) if output.image.width == 32));
}

#[test]
fn a_failing_job_is_reported_and_the_next_one_succeeds() {
    let (worker, mut rx, _) = start(Duration::ZERO);
    worker.submit(job(1, "oom please", 4));
    worker.submit(job(2, "", 4));
    worker.submit(job(3, "fine", 2));
    let events = until_end(&mut rx, 3);
    assert_eq!(
        failure_of(&events, 1).map(|f| f.0),
        Some(FailureKind::OutOfMemory)
    );
    let (kind, message) = failure_of(&events, 2).expect("empty prompt fails");
    assert_eq!(kind, FailureKind::BadInput);
    assert!(message.contains("prompt is empty"), "{message}");
    assert!(matches!(events.last(), Some(Event::Done { job: 3, .. })));
}

#[test]
fn cancel_stops_the_running_job_and_removes_a_queued_one() {
    let (worker, mut rx, runs) = start(Duration::from_millis(30));
    worker.submit(job(1, "long", 100));
    worker.submit(job(2, "queued", 2));
    worker.submit(job(3, "after", 1));
    // Wait until job 1 is running, then cancel both.
    loop {
        if let Some(Event::Step { job: 1, .. }) = rx.blocking_recv() {
            break;
        }
    }
    worker.cancel(2);
    worker.cancel(1);
    let events = until_end(&mut rx, 3);
    assert_eq!(failure_of(&events, 1).map(|f| f.0), Some(FailureKind::Cancelled));
    assert_eq!(
        failure_of(&events, 2),
        Some((FailureKind::Cancelled, "cancelled before it started".into()))
    );
    assert!(!events.iter().any(|e| matches!(e, Event::Started { job: 2 })));
    let steps_of_1 = events
        .iter()
        .filter(|e| matches!(e, Event::Step { job: 1, .. }))
        .count();
    assert!(steps_of_1 < 20, "job 1 ran {steps_of_1} more steps after cancel");
    assert!(matches!(events.last(), Some(Event::Done { job: 3, .. })));
    assert_eq!(runs.load(Ordering::SeqCst), 2, "job 2 must never run");
}

#[test]
fn load_failure_is_reported_and_jobs_say_why_they_cannot_run() {
    let (worker, mut rx, _) = start(Duration::ZERO);
    worker.load_model(
        ModelSpec::Dir("/nonexistent/model".into()),
        LoadOptions::default(),
    );
    worker.submit(job(7, "x", 1));
    let events = until_end(&mut rx, 7);
    assert!(events
        .iter()
        .any(|e| matches!(e, Event::LoadFailed { message } if message.contains("/nonexistent/model"))));
    let (kind, message) = failure_of(&events, 7).expect("job fails");
    assert_eq!(kind, FailureKind::Internal);
    assert!(message.contains("failed to load"), "{message}");
}

#[test]
fn unwritable_output_fails_before_compute_and_a_png_is_written_otherwise() {
    let (worker, mut rx, runs) = start(Duration::ZERO);
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("file");
    std::fs::write(&blocker, b"x").unwrap();
    let mut bad = job(1, "x", 1);
    bad.output = Some(blocker.join("sub/out.png"));
    let mut good = job(2, "x", 1);
    good.output = Some(dir.path().join("deep/out.png"));
    worker.submit(bad);
    worker.submit(good);
    let events = until_end(&mut rx, 2);
    assert_eq!(failure_of(&events, 1).map(|f| f.0), Some(FailureKind::Io));
    assert_eq!(
        runs.load(Ordering::SeqCst),
        1,
        "the unwritable job must not compute"
    );
    let png = crate::output::read_png_text(&dir.path().join("deep/out.png")).unwrap();
    assert_eq!((png.width, png.height), (32, 16));
    assert_eq!(png.get("model"), Some("scripted"));
}

#[test]
fn dropping_the_handle_stops_a_running_job() {
    let (worker, mut rx, _) = start(Duration::from_millis(20));
    worker.submit(job(1, "long", 100));
    loop {
        if let Some(Event::Step { .. }) = rx.blocking_recv() {
            break;
        }
    }
    let started = std::time::Instant::now();
    drop(worker);
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[test]
fn injected_oom_fails_only_that_job() {
    let (worker, mut rx, _) = start(Duration::ZERO);
    let mut failing = job(1, "x", 4);
    failing.inject_oom_after_step = Some(2);
    worker.submit(failing);
    worker.submit(job(2, "x", 1));
    let events = until_end(&mut rx, 2);
    assert_eq!(
        failure_of(&events, 1).map(|f| f.0),
        Some(FailureKind::OutOfMemory)
    );
    let steps_of_1 = events
        .iter()
        .filter(|e| matches!(e, Event::Step { job: 1, .. }))
        .count();
    assert_eq!(steps_of_1, 2);
    assert!(matches!(events.last(), Some(Event::Done { job: 2, .. })));
}

#[test]
fn the_real_demo_model_runs_fails_and_cancels_through_the_worker() {
    let (tx, mut rx) = unbounded_channel();
    let worker = spawn(tx).expect("spawn");
    worker.load_model(ModelSpec::Demo, LoadOptions::default());
    let mut too_big = job(1, "x", 1);
    too_big.request.width = 4112;
    worker.submit(too_big);
    worker.submit(job(2, "a red cube", 2));
    worker.submit(job(3, "long", 100));
    let events = until_end(&mut rx, 2);
    assert!(events
        .iter()
        .any(|e| matches!(e, Event::Loaded { info, .. } if info.label == "demo model (random weights)")));
    assert_eq!(failure_of(&events, 1).map(|f| f.0), Some(FailureKind::BadInput));
    match events.last() {
        Some(Event::Done { output, .. }) => {
            assert_eq!((output.image.width, output.image.height), (32, 16));
            assert_eq!(output.timings.steps.len(), 2);
        }
        other => panic!("job 2 should be done: {other:?}"),
    }
    loop {
        if let Some(Event::Step { job: 3, .. }) = rx.blocking_recv() {
            break;
        }
    }
    worker.cancel(3);
    let events = until_end(&mut rx, 3);
    assert_eq!(failure_of(&events, 3).map(|f| f.0), Some(FailureKind::Cancelled));
}
