use std::path::PathBuf;
use std::time::Duration;

use super::*;
use crate::app::state::Settings;
use crate::model::{RgbImage, StageTimings};
use crate::test_fixtures::{demo_model_info, intent, type_text};
use crate::worker::{JobId, JobOutput};

fn at(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

fn worker(state: &mut AppState, event: Event, ms: u64) -> Vec<Effect> {
    update(state, Action::Worker { event, at: at(ms) })
}

fn loaded(state: &mut AppState, secs: f64, ms: u64) -> Vec<Effect> {
    let info = demo_model_info();
    worker(state, Event::Loaded { info, secs }, ms)
}

fn load_failed(state: &mut AppState, message: impl Into<String>, ms: u64) -> Vec<Effect> {
    let message = message.into();
    worker(state, Event::LoadFailed { message }, ms)
}

fn stage(state: &mut AppState, job: JobId, stage: Stage, ms: u64) {
    worker(state, Event::Stage { job, stage }, ms);
}

/// The job finishes with `output(job)`.
fn done(state: &mut AppState, job: JobId, ms: u64) -> Vec<Effect> {
    let output = output(job);
    worker(state, Event::Done { job, output }, ms)
}

fn failed(state: &mut AppState, job: JobId, kind: FailureKind, message: &str, ms: u64) -> Vec<Effect> {
    let message = message.into();
    worker(state, Event::Failed { job, kind, message }, ms)
}

fn settings() -> Settings {
    Settings {
        width: 256,
        height: 256,
        steps: 4,
        output_dir: PathBuf::from("/out"),
        output_prefix: "t".into(),
        previews: true,
    }
}

fn ready() -> AppState {
    let mut s = AppState::new(settings(), 7);
    loaded(&mut s, 1.5, 1500);
    s
}

/// Types a prompt and queues it; returns the effects of queueing.
fn queue(state: &mut AppState, prompt: &str) -> Vec<Effect> {
    intent(state, Intent::EditPrompt);
    type_text(state, prompt);
    intent(state, Intent::FinishInsert);
    intent(state, Intent::QueueDraft)
}

fn submitted(effects: &[Effect]) -> Vec<&Job> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Worker(Command::Submit(job)) => Some(job),
            _ => None,
        })
        .collect()
}

fn output(job: JobId) -> Box<JobOutput> {
    let _ = job;
    Box::new(JobOutput {
        path: Some(PathBuf::from(format!("/out/{job}.png"))),
        image: RgbImage {
            width: 2,
            height: 2,
            pixels: vec![0; 12],
        },
        timings: StageTimings {
            encode: Duration::from_millis(100),
            steps: vec![Duration::from_millis(200); 4],
            decode: Duration::from_millis(300),
        },
        save: Duration::from_millis(10),
        peak_vram_bytes: Some(3 << 30),
        warnings: vec![],
    })
}

#[test]
fn a_queued_prompt_is_submitted_with_its_settings_once_the_model_is_ready() {
    let mut s = AppState::new(settings(), 7);
    let effects = queue(&mut s, "a red fox");
    assert!(submitted(&effects).is_empty(), "no model yet");
    assert_eq!(s.queue.len(), 1);
    assert_eq!(s.queue[0].status, JobStatus::Queued);
    assert_eq!(
        s.draft.prompt_text(),
        "",
        "the editor is cleared for the next prompt"
    );
    assert_eq!(s.draft.history, vec!["a red fox"]);

    let effects = loaded(&mut s, 1.0, 1000);
    let jobs = submitted(&effects);
    assert_eq!(jobs.len(), 1);
    let job = jobs[0];
    assert_eq!(job.request.prompt, "a red fox");
    assert_eq!(
        (job.request.width, job.request.height, job.request.steps),
        (256, 256, 4)
    );
    let seed = s.queue[0].used_seed.expect("seed drawn at start");
    assert_eq!(job.request.seed, seed);
    assert_eq!(job.output, Some(PathBuf::from(format!("/out/t-001-{seed}.png"))));
    assert_eq!(s.queue[0].status, JobStatus::Running { step: 0, total: 4 });
    assert_eq!(s.running_job(), Some(1));
}

#[test]
fn one_job_runs_at_a_time_and_the_next_starts_when_it_finishes() {
    let mut s = ready();
    assert_eq!(submitted(&queue(&mut s, "one")).len(), 1);
    assert!(submitted(&queue(&mut s, "two")).is_empty());
    // Job 1 denoises in four steps of 0.25 s.
    let step = |s: &mut AppState, step, ms| {
        let event = Event::Step {
            job: 1,
            step,
            total: 4,
            secs: 0.25,
        };
        worker(s, event, ms);
    };
    worker(&mut s, Event::Started { job: 1 }, 2000);
    stage(&mut s, 1, Stage::Encode, 2000);
    stage(&mut s, 1, Stage::Denoise, 2100);
    step(&mut s, 1, 2350);
    step(&mut s, 2, 2600);
    assert_eq!(s.queue[0].status, JobStatus::Running { step: 2, total: 4 });
    let run = s.running.as_ref().unwrap();
    assert_eq!(run.encode_secs, Some(0.1));
    assert_eq!(run.iterations_per_sec(), Some(4.0));
    assert_eq!(run.eta_secs(None), Some(0.5));
    step(&mut s, 3, 2850);
    step(&mut s, 4, 3100);
    stage(&mut s, 1, Stage::Decode, 3100);
    let effects = done(&mut s, 1, 3500);
    assert_eq!(s.queue[0].status, JobStatus::Done { secs: 1.5 });
    assert_eq!(s.queue[0].output, Some(PathBuf::from("/out/1.png")));
    assert_eq!(s.queue[0].peak_vram_bytes, Some(3 << 30));
    let last = s.last_run.as_ref().unwrap();
    assert!(
        (last.save_secs.unwrap() - 0.01).abs() < 1e-9,
        "{:?}",
        last.save_secs
    );
    assert_eq!(
        s.preview.as_ref().unwrap().step,
        None,
        "the finished image replaces the latent preview"
    );
    let jobs = submitted(&effects);
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].request.prompt, "two");
}

#[test]
fn a_failed_job_shows_its_reason_and_the_queue_goes_on() {
    let mut s = ready();
    queue(&mut s, "one");
    queue(&mut s, "two");
    let effects = failed(
        &mut s,
        1,
        FailureKind::OutOfMemory,
        "out of memory: 2 GiB more needed",
        2000,
    );
    assert!(
        matches!(&s.queue[0].status, JobStatus::Failed { kind: FailureKind::OutOfMemory, reason } if reason.contains("2 GiB"))
    );
    assert_eq!(submitted(&effects).len(), 1);
    assert_eq!(s.running_job(), Some(2));
}

#[test]
fn ctrl_c_cancels_the_running_job_first_then_quits() {
    let mut s = ready();
    queue(&mut s, "one");
    queue(&mut s, "two");
    let effects = intent(&mut s, Intent::Interrupt);
    assert!(matches!(effects.as_slice(), [Effect::Worker(Command::Cancel(1))]));
    assert!(!s.quitting);
    assert!(s.paused, "the next job must not start by itself");
    let effects = failed(&mut s, 1, FailureKind::Cancelled, "cancelled", 2000);
    assert_eq!(s.queue[0].status, JobStatus::Cancelled);
    assert!(submitted(&effects).is_empty());
    intent(&mut s, Intent::Interrupt);
    assert!(s.quitting);
}

#[test]
fn a_second_ctrl_c_quits_even_if_the_cancel_is_still_pending() {
    let mut s = ready();
    queue(&mut s, "one");
    intent(&mut s, Intent::Interrupt);
    let effects = intent(&mut s, Intent::Interrupt);
    assert!(effects.is_empty(), "cancel is sent once");
    assert!(s.quitting);
}

#[test]
fn q_asks_before_quitting_while_a_job_runs() {
    let mut s = ready();
    queue(&mut s, "one");
    intent(&mut s, Intent::Quit);
    assert_eq!(s.mode, Mode::ConfirmQuit);
    assert!(!s.quitting);
    intent(&mut s, Intent::ConfirmNo);
    assert_eq!(s.mode, Mode::Normal);
    intent(&mut s, Intent::Quit);
    let effects = intent(&mut s, Intent::ConfirmYes);
    assert!(matches!(effects.as_slice(), [Effect::Worker(Command::Cancel(1))]));
    assert!(s.quitting);

    let mut idle = ready();
    intent(&mut idle, Intent::Quit);
    assert!(idle.quitting);
}

fn prompts(s: &AppState) -> Vec<&str> {
    s.queue.iter().map(|e| e.prompt.as_str()).collect()
}

#[test]
fn queue_editing_moves_duplicates_deletes_and_reruns() {
    let mut s = AppState::new(settings(), 7); // no model: nothing starts
    for p in ["a", "b", "c"] {
        queue(&mut s, p);
    }
    s.focus = Pane::Queue;
    assert_eq!(s.selected, 2);
    intent(&mut s, Intent::MoveJobUp);
    assert_eq!(prompts(&s), ["a", "c", "b"]);
    assert_eq!(s.selected, 1);
    intent(&mut s, Intent::Top);
    intent(&mut s, Intent::MoveJobUp); // already first: no change
    assert_eq!(prompts(&s), ["a", "c", "b"]);
    intent(&mut s, Intent::MoveJobDown);
    assert_eq!(prompts(&s), ["c", "a", "b"]);
    intent(&mut s, Intent::DuplicateJob);
    assert_eq!(prompts(&s), ["c", "a", "a", "b"]);
    assert_eq!(s.queue[2].id, 4);
    assert_eq!(s.selected, 2);
    intent(&mut s, Intent::DeleteJob);
    assert_eq!(prompts(&s), ["c", "a", "b"]);
    intent(&mut s, Intent::Bottom);
    intent(&mut s, Intent::DeleteJob);
    assert_eq!(prompts(&s), ["c", "a"]);
    assert_eq!(s.selected, 1);
    let before = s.revision;
    intent(&mut s, Intent::RerunJob);
    assert_eq!(prompts(&s), ["c", "a", "a"]);
    assert!(matches!(s.queue[2].seed, SeedChoice::Fixed(_)));
    assert!(s.revision > before, "changes trigger autosave");
    intent(&mut s, Intent::CancelJob);
    assert_eq!(s.queue[2].status, JobStatus::Cancelled);
}

#[test]
fn the_running_job_cannot_be_deleted_but_can_be_cancelled() {
    let mut s = ready();
    queue(&mut s, "one");
    s.focus = Pane::Queue;
    intent(&mut s, Intent::DeleteJob);
    assert_eq!(s.queue.len(), 1);
    assert!(s.message.as_ref().unwrap().text.contains("c cancels"));
    let effects = intent(&mut s, Intent::CancelJob);
    assert!(matches!(effects.as_slice(), [Effect::Worker(Command::Cancel(1))]));
}

#[test]
fn editing_a_queued_job_updates_it_and_editing_a_finished_one_makes_a_copy() {
    let mut s = AppState::new(settings(), 7);
    queue(&mut s, "first");
    s.focus = Pane::Queue;
    intent(&mut s, Intent::EditJob);
    assert_eq!(s.mode, Mode::InsertPrompt);
    assert_eq!(s.draft.prompt_text(), "first");
    type_text(&mut s, " edited");
    intent(&mut s, Intent::FinishInsert);
    intent(&mut s, Intent::QueueDraft);
    assert_eq!(prompts(&s), ["first edited"]);

    s.queue[0].status = JobStatus::Done { secs: 1.0 };
    s.focus = Pane::Queue;
    intent(&mut s, Intent::EditJob);
    intent(&mut s, Intent::FinishInsert);
    intent(&mut s, Intent::QueueDraft);
    assert_eq!(prompts(&s), ["first edited", "first edited"]);
    assert_eq!(s.queue[1].status, JobStatus::Queued);
}

#[test]
fn an_empty_prompt_is_refused_with_a_message() {
    let mut s = ready();
    intent(&mut s, Intent::QueueDraft);
    assert!(s.queue.is_empty());
    assert_eq!(s.message.as_ref().unwrap().level, LogLevel::Warn);
}

#[test]
fn field_inputs_validate_and_keep_the_input_open_on_error() {
    let mut s = ready();
    s.focus = Pane::Editor;
    intent(&mut s, Intent::Down); // Size
    intent(&mut s, Intent::EditField);
    assert_eq!(s.mode, Mode::LineInput(LineInputPurpose::Size));
    assert_eq!(s.draft.line_text(), "256x256");
    s.draft.line = new_line_input("1000x512");
    intent(&mut s, Intent::SubmitLine);
    assert_eq!(
        s.mode,
        Mode::LineInput(LineInputPurpose::Size),
        "stays open to fix"
    );
    assert!(s.message.as_ref().unwrap().text.contains("multiple of 16"));
    s.draft.line = new_line_input("1024x512");
    intent(&mut s, Intent::SubmitLine);
    assert_eq!(s.mode, Mode::Normal);
    assert_eq!((s.draft.width, s.draft.height), (1024, 512));

    intent(&mut s, Intent::Down); // Steps
    intent(&mut s, Intent::Down); // Seed
    intent(&mut s, Intent::EditField);
    s.draft.line = new_line_input("1234");
    intent(&mut s, Intent::SubmitLine);
    assert_eq!(s.draft.seed, SeedChoice::Fixed(1234));
}

#[test]
fn draft_shortcuts_change_steps_size_and_seed() {
    let mut s = ready();
    intent(&mut s, Intent::StepsUp);
    assert_eq!(s.draft.steps, 5);
    for _ in 0..10 {
        intent(&mut s, Intent::StepsDown);
    }
    assert_eq!(s.draft.steps, 1);
    intent(&mut s, Intent::NextSize); // 256² is the last preset: wraps to the first
    assert_eq!((s.draft.width, s.draft.height), SIZE_PRESETS[0]);
    intent(&mut s, Intent::ToggleSeed);
    assert!(matches!(s.draft.seed, SeedChoice::Fixed(_)));
    intent(&mut s, Intent::ToggleSeed);
    assert_eq!(s.draft.seed, SeedChoice::Random);
}

#[test]
fn paste_in_normal_mode_starts_typing_and_keeps_wide_text() {
    let mut s = ready();
    s.focus = Pane::Queue;
    update(&mut s, Action::Paste("一只猫\r\n在窗台上".into()));
    assert_eq!(s.mode, Mode::InsertPrompt);
    assert_eq!(s.focus, Pane::Editor);
    assert_eq!(s.draft.prompt_text(), "一只猫\n在窗台上");
}

#[test]
fn saving_and_loading_go_through_a_path_input() {
    let mut s = ready();
    intent(&mut s, Intent::SaveSession);
    assert_eq!(s.mode, Mode::LineInput(LineInputPurpose::SaveSession));
    s.draft.line = new_line_input("/tmp/x.toml");
    let effects = intent(&mut s, Intent::SubmitLine);
    assert!(matches!(effects.as_slice(), [Effect::SaveSession(p)] if p == &PathBuf::from("/tmp/x.toml")));
    update(&mut s, Action::SessionSaved(Ok(PathBuf::from("/tmp/x.toml"))));
    assert_eq!(s.session_path, Some(PathBuf::from("/tmp/x.toml")));
}

#[test]
fn a_loaded_session_replaces_the_queue_and_requeues_interrupted_jobs() {
    let mut s = AppState::new(settings(), 7);
    let job = |id, status| QueueEntry {
        id,
        prompt: format!("p{id}"),
        width: 256,
        height: 256,
        steps: 4,
        seed: SeedChoice::Fixed(1),
        used_seed: Some(1),
        status,
        output: None,
        timings: None,
        peak_vram_bytes: None,
    };
    let session = LoadedSession {
        path: PathBuf::from("/s.toml"),
        jobs: vec![
            job(3, JobStatus::Done { secs: 2.0 }),
            job(9, JobStatus::Running { step: 2, total: 4 }),
        ],
        prompt_history: vec!["older".into()],
        settings: None,
    };
    update(&mut s, Action::SessionLoaded(Ok(session)));
    assert_eq!(s.queue[1].status, JobStatus::Queued);
    assert_eq!(s.next_id, 10);
    assert_eq!(s.session_path, Some(PathBuf::from("/s.toml")));
    assert!(s.draft.history.contains(&"older".to_string()));

    update(&mut s, Action::SessionLoaded(Err("newer version".into())));
    assert_eq!(s.queue.len(), 2, "a refused file changes nothing");
    assert_eq!(s.message.as_ref().unwrap().level, LogLevel::Error);
}

#[test]
fn a_job_with_invalid_settings_fails_at_start_and_the_next_runs() {
    let mut s = AppState::new(settings(), 7);
    queue(&mut s, "bad");
    queue(&mut s, "good");
    s.queue[0].width = 1000;
    let effects = loaded(&mut s, 1.0, 1000);
    assert!(matches!(
        &s.queue[0].status,
        JobStatus::Failed {
            kind: FailureKind::BadInput,
            ..
        }
    ));
    assert_eq!(submitted(&effects)[0].request.prompt, "good");
}

#[test]
fn model_load_failure_is_kept_for_the_error_screen() {
    let mut s = AppState::new(settings(), 7);
    worker(
        &mut s,
        Event::Loading {
            part: "transformer".into(),
            done: 1,
            total: 3,
        },
        10,
    );
    assert!(matches!(&s.model, ModelStatus::Loading { part, .. } if part == "transformer"));
    load_failed(&mut s, "no such dir", 20);
    assert!(matches!(&s.model, ModelStatus::Failed { message } if message == "no such dir"));
    queue(&mut s, "x");
    assert!(s.running.is_none());
}

#[test]
fn random_seeds_are_reproducible_from_the_generator_seed() {
    let mut a = AppState::new(settings(), 42);
    let mut b = AppState::new(settings(), 42);
    let seeds: Vec<u64> = (0..3).map(|_| a.next_random_seed()).collect();
    assert_eq!(seeds, (0..3).map(|_| b.next_random_seed()).collect::<Vec<_>>());
    assert!(seeds[0] != seeds[1] && seeds.iter().all(|s| *s <= i64::MAX as u64));
}

#[test]
fn gpu_history_is_bounded() {
    let mut s = ready();
    for i in 0..(GPU_HISTORY + 10) {
        update(
            &mut s,
            Action::Gpu(GpuReading {
                used_bytes: i as u64,
                total_bytes: 100,
                ..Default::default()
            }),
        );
    }
    assert_eq!(s.gpu.history.len(), GPU_HISTORY);
    assert_eq!(s.gpu.history.back(), Some(&((GPU_HISTORY + 9) as u64)));
    update(
        &mut s,
        Action::GpuUnavailable {
            reason: "NVML not found".into(),
            process_rss_bytes: Some(5),
            memory_total_bytes: Some(100),
        },
    );
    assert!(s.gpu.reading.is_none());
    assert_eq!(s.gpu.unavailable.as_deref(), Some("NVML not found"));
}

#[test]
fn log_scrolls_up_from_the_bottom_and_is_bounded() {
    let mut s = ready();
    for i in 0..(crate::app::state::LOG_LINES + 5) {
        s.push_log(LogLevel::Info, format!("line {i}"));
    }
    assert_eq!(s.log.len(), crate::app::state::LOG_LINES);
    s.focus = Pane::Log;
    intent(&mut s, Intent::Up);
    intent(&mut s, Intent::Up);
    assert_eq!(s.log_scroll, 2);
    intent(&mut s, Intent::Bottom);
    assert_eq!(s.log_scroll, 0);
}

#[test]
fn without_gpu_telemetry_the_job_peak_is_the_sampled_process_memory() {
    let mut s = ready();
    queue(&mut s, "one");
    for rss in [100, 300, 200] {
        update(
            &mut s,
            Action::GpuUnavailable {
                reason: "cpu".into(),
                process_rss_bytes: Some(rss),
                memory_total_bytes: None,
            },
        );
    }
    assert_eq!(s.running.as_ref().unwrap().peak_memory_bytes, Some(300));
    done(&mut s, 1, 2000);
    assert_eq!(s.last_run.as_ref().unwrap().peak_memory_sampled, Some(300));
}

// ---------------------------------------------------------------------------------------------
// model picker and model jobs (download, verify)

mod models {
    use super::*;
    use crate::app::models::{
        CandidateOrigin, Discovery, ModelCandidate, ModelJobEvent, ModelJobKind, ModelJobOutcome,
        ModelJobRequest, ModelJobStatus, ModelsAction, ModelsEffect,
    };
    use crate::app::state::{LineInputPurpose, Mode, ModelStatus, Pane};
    use crate::fetch::Source;
    use crate::model::loader::{LoadOptions, ModelSource, ModelSpec};

    fn hf_dir() -> PathBuf {
        PathBuf::from("/hf/models--Tongyi-MAI--Z-Image-Turbo/snapshots/abc")
    }

    fn ms_dir() -> PathBuf {
        PathBuf::from("/ms/Tongyi-MAI/Z-Image-Turbo")
    }

    fn checkpoint(dir: PathBuf, source: ModelSource, complete: bool) -> ModelCandidate {
        ModelCandidate {
            spec: ModelSpec::Dir(dir),
            origin: CandidateOrigin::Found(source),
            bytes: Some(32 << 30),
            complete,
            problem: (!complete)
                .then(|| "transformer/diffusion_pytorch_model-00002-of-00003.safetensors: missing".into()),
            dtypes: vec![("transformer".into(), [("F32".into(), 6_150_000_000)].into())],
            bf16_cache: false,
            partial_files: usize::from(!complete),
            default: complete,
        }
    }

    fn discovery() -> Discovery {
        Discovery {
            candidates: vec![
                checkpoint(hf_dir(), ModelSource::HuggingFaceCache, true),
                checkpoint(ms_dir(), ModelSource::ModelScopeCache, false),
            ],
            targets: vec![
                (
                    Source::HuggingFace,
                    PathBuf::from("/hf/models--Tongyi-MAI--Z-Image-Turbo"),
                ),
                (Source::ModelScope, ms_dir()),
            ],
        }
    }

    fn options() -> LoadOptions {
        LoadOptions {
            device: "cpu".into(),
            dtype: Some("f32".into()),
            low_vram: true,
        }
    }

    fn models(state: &mut AppState, action: ModelsAction) -> Vec<Effect> {
        update(state, Action::Models(action))
    }

    /// The app as the dashboard starts it: the demo model asked for (with the config's load
    /// options) and loaded.
    fn demo_loaded() -> AppState {
        let mut s = AppState::new(settings(), 7);
        let effects = models(
            &mut s,
            ModelsAction::Load {
                spec: ModelSpec::Demo,
                options: options(),
            },
        );
        assert!(matches!(
            &effects[..],
            [Effect::Worker(Command::LoadModel {
                spec: ModelSpec::Demo,
                ..
            })]
        ));
        loaded(&mut s, 0.1, 100);
        s
    }

    fn picker_open() -> AppState {
        let mut s = demo_loaded();
        let effects = intent(&mut s, Intent::OpenModels);
        assert_eq!(s.mode, Mode::Models);
        assert!(s.models.picker.scanning);
        assert!(matches!(
            &effects[..],
            [Effect::Models(ModelsEffect::Discover { .. })]
        ));
        models(&mut s, ModelsAction::Found(discovery()));
        s
    }

    fn load_effects(effects: &[Effect]) -> Vec<(&ModelSpec, &LoadOptions)> {
        effects
            .iter()
            .filter_map(|e| match e {
                Effect::Worker(Command::LoadModel { spec, options }) => Some((spec, options)),
                _ => None,
            })
            .collect()
    }

    fn started(effects: &[Effect]) -> Vec<&ModelJobRequest> {
        effects
            .iter()
            .filter_map(|e| match e {
                Effect::Models(ModelsEffect::Start(request)) => Some(request),
                _ => None,
            })
            .collect()
    }

    fn job_event(state: &mut AppState, id: u64, event: ModelJobEvent, ms: u64) -> Vec<Effect> {
        models(
            state,
            ModelsAction::Job {
                id,
                event,
                at: at(ms),
            },
        )
    }

    fn file_started(state: &mut AppState, id: u64, path: &str, size: u64, ms: u64) {
        let path = path.into();
        job_event(state, id, ModelJobEvent::FileStarted { path, size }, ms);
    }

    fn file_progress(state: &mut AppState, id: u64, done: u64, ms: u64) {
        job_event(state, id, ModelJobEvent::FileProgress { done }, ms);
    }

    fn message(state: &AppState) -> &str {
        state.message.as_ref().map_or("", |m| m.text.as_str())
    }

    #[test]
    fn the_picker_lists_what_was_found_plus_the_demo_and_selects_the_current_model() {
        let mut s = picker_open();
        let picker = &s.models.picker;
        assert!(!picker.scanning);
        let specs: Vec<_> = picker.candidates.iter().map(|c| c.spec.clone()).collect();
        assert_eq!(
            specs,
            [
                ModelSpec::Dir(hf_dir()),
                ModelSpec::Dir(ms_dir()),
                ModelSpec::Demo
            ]
        );
        // The demo is current, so it is selected.
        assert_eq!(picker.selected, 2);
        // j/k/g/G move in the picker, not in the queue.
        queue(&mut s, "a fox");
        intent(&mut s, Intent::OpenModels);
        let selected_row = s.selected;
        intent(&mut s, Intent::Top);
        assert_eq!(s.models.picker.selected, 0);
        intent(&mut s, Intent::Down);
        intent(&mut s, Intent::Down);
        intent(&mut s, Intent::Down);
        assert_eq!(s.models.picker.selected, 2, "clamped to the last entry");
        intent(&mut s, Intent::Up);
        assert_eq!(s.models.picker.selected, 1);
        assert_eq!(s.selected, selected_row);
        // A rescan keeps the selection on the same entry.
        intent(&mut s, Intent::RescanModels);
        models(&mut s, ModelsAction::Found(discovery()));
        assert_eq!(s.models.picker.selected, 1);
        intent(&mut s, Intent::CloseModels);
        assert_eq!(s.mode, Mode::Normal);
    }

    #[test]
    fn enter_loads_the_selected_checkpoint_through_the_worker_and_jobs_wait_for_it() {
        let mut s = picker_open();
        intent(&mut s, Intent::Top);
        let effects = intent(&mut s, Intent::LoadModel);
        let loads = load_effects(&effects);
        assert_eq!(loads.len(), 1);
        assert_eq!(loads[0].0, &ModelSpec::Dir(hf_dir()));
        assert_eq!(loads[0].1, &options(), "the config's load options are kept");
        assert_eq!(s.mode, Mode::Normal);
        assert!(matches!(s.model, ModelStatus::Loading { .. }));
        // Nothing is submitted while the new model loads, and no second load is asked for.
        assert!(submitted(&queue(&mut s, "a fox")).is_empty());
        intent(&mut s, Intent::OpenModels);
        intent(&mut s, Intent::Bottom);
        assert!(load_effects(&intent(&mut s, Intent::LoadModel)).is_empty());
        assert!(message(&s).contains("A model is loading"), "{}", message(&s));
        intent(&mut s, Intent::CloseModels);
        let effects = loaded(&mut s, 2.0, 2000);
        assert_eq!(submitted(&effects).len(), 1);
        assert_eq!(s.models.loaded, Some(ModelSpec::Dir(hf_dir())));
        // Loading the current model again is a no-op with a message.
        intent(&mut s, Intent::OpenModels);
        models(&mut s, ModelsAction::Found(discovery()));
        intent(&mut s, Intent::Top);
        assert!(load_effects(&intent(&mut s, Intent::LoadModel)).is_empty());
        assert!(
            message(&s).contains("already the current model"),
            "{}",
            message(&s)
        );
    }

    #[test]
    fn an_incomplete_checkpoint_is_not_loaded_and_the_current_model_stays() {
        let mut s = picker_open();
        intent(&mut s, Intent::Top);
        intent(&mut s, Intent::Down);
        let effects = intent(&mut s, Intent::LoadModel);
        assert!(load_effects(&effects).is_empty());
        assert!(s.model_ready());
        assert!(
            message(&s).contains("00002-of-00003.safetensors: missing"),
            "{}",
            message(&s)
        );
        assert_eq!(s.mode, Mode::Models, "the picker stays open to pick another");
    }

    #[test]
    fn a_failed_switch_goes_back_to_the_previous_model_once() {
        let mut s = picker_open();
        intent(&mut s, Intent::Top);
        intent(&mut s, Intent::LoadModel);
        let message_text = "transformer/config.json: missing".to_string();
        let effects = load_failed(&mut s, message_text, 900);
        let loads = load_effects(&effects);
        assert_eq!(loads.len(), 1, "the previous model is loaded again");
        assert_eq!(loads[0].0, &ModelSpec::Demo);
        assert!(
            message(&s).contains("Going back to demo model"),
            "{}",
            message(&s)
        );
        assert!(matches!(s.model, ModelStatus::Loading { .. }));
        loaded(&mut s, 0.1, 1000);
        assert!(s.model_ready());
        assert_eq!(s.models.loaded, Some(ModelSpec::Demo));

        // When going back fails too, the app says no model is loaded and stops trying.
        intent(&mut s, Intent::OpenModels);
        models(&mut s, ModelsAction::Found(discovery()));
        intent(&mut s, Intent::Top);
        intent(&mut s, Intent::LoadModel);
        load_failed(&mut s, "out of memory", 1100);
        let effects = load_failed(&mut s, "disk gone", 1200);
        assert!(load_effects(&effects).is_empty());
        assert!(matches!(s.model, ModelStatus::Failed { .. }));
        assert!(message(&s).contains("No model is loaded"), "{}", message(&s));
        assert_eq!(s.models.loaded, None);
    }

    #[test]
    fn a_download_is_a_queue_row_with_progress_rate_eta_and_can_be_cancelled() {
        let mut s = picker_open();
        queue(&mut s, "a fox");
        intent(&mut s, Intent::OpenModels);
        let effects = intent(&mut s, Intent::DownloadModel);
        let requests = started(&effects);
        assert_eq!(requests.len(), 1);
        assert_eq!(
            requests[0].kind,
            ModelJobKind::Download {
                source: Source::HuggingFace,
                dir: None
            }
        );
        let id = requests[0].id;
        // The picker closes on the queue pane, the new row selected after the image job.
        assert_eq!(s.mode, Mode::Normal);
        assert_eq!(s.focus, Pane::Queue);
        assert_eq!(s.selected, 1);
        assert_eq!(crate::app::models::selected_job(&s).map(|j| j.id), Some(id));
        // A second download while one runs is refused.
        intent(&mut s, Intent::OpenModels);
        assert!(started(&intent(&mut s, Intent::DownloadModel)).is_empty());
        intent(&mut s, Intent::CloseModels);

        let snapshot = hf_dir();
        job_event(
            &mut s,
            id,
            ModelJobEvent::Planned {
                dir: Some(snapshot.clone()),
                files: 2,
                bytes: 300 << 20,
                present: 1,
            },
            10_000,
        );
        file_started(&mut s, id, "a", 100 << 20, 10_000);
        file_progress(&mut s, id, 0, 10_000);
        file_progress(&mut s, id, 50 << 20, 11_000);
        file_progress(&mut s, id, 100 << 20, 12_000);
        job_event(&mut s, id, ModelJobEvent::FileDone, 12_000);
        // The second file resumes: its first report is what was already on disk.
        file_started(&mut s, id, "b", 200 << 20, 12_000);
        file_progress(&mut s, id, 100 << 20, 12_000);
        file_progress(&mut s, id, 150 << 20, 13_000);
        let job = &s.models.jobs[0];
        assert_eq!(job.dir.as_ref(), Some(&snapshot));
        assert_eq!(job.files_done, 1);
        assert_eq!(job.bytes_done(), 250 << 20);
        assert_eq!(job.fraction(), Some(250.0 / 300.0));
        assert_eq!(job.moved, 150 << 20, "the resumed prefix was not transferred now");
        let rate = job.rate().expect("rate");
        assert!((rate - (50 << 20) as f64).abs() < 1.0, "{rate}");
        let eta = job.eta_secs().expect("eta");
        assert!((eta - 1.0).abs() < 1e-6, "{eta}");
        // Image jobs are not blocked: the fox job runs meanwhile.
        assert_eq!(s.running_job(), Some(1));

        // c on the row cancels it; the job says so when it stops.
        s.focus = Pane::Queue;
        s.selected = 1;
        let effects = intent(&mut s, Intent::CancelJob);
        assert!(matches!(&effects[..], [Effect::Models(ModelsEffect::Cancel(i))] if *i == id));
        assert!(s.models.jobs[0].cancel_requested);
        assert!(intent(&mut s, Intent::CancelJob).is_empty(), "asked once");
        job_event(
            &mut s,
            id,
            ModelJobEvent::Finished(ModelJobOutcome::Cancelled),
            13_500,
        );
        let job = &s.models.jobs[0];
        assert_eq!(job.status, ModelJobStatus::Cancelled);
        assert!(job
            .summary
            .as_deref()
            .unwrap_or("")
            .contains("partial files kept"));
        // Late events are ignored; a finished row can be deleted.
        job_event(&mut s, id, ModelJobEvent::FileDone, 14_000);
        assert_eq!(s.models.jobs[0].files_done, 1);
        intent(&mut s, Intent::DeleteJob);
        assert!(s.models.jobs.is_empty());
        assert_eq!(s.queue.len(), 1, "the image job is untouched");
    }

    #[test]
    fn a_finished_download_refreshes_the_picker_and_offers_to_load_it() {
        let mut s = demo_loaded();
        intent(&mut s, Intent::OpenModels);
        // Nothing found yet.
        models(&mut s, ModelsAction::Found(Discovery::default()));
        intent(&mut s, Intent::ToggleFetchSource);
        let effects = intent(&mut s, Intent::DownloadModel);
        let request = started(&effects)[0].clone();
        assert_eq!(
            request.kind,
            ModelJobKind::Download {
                source: Source::ModelScope,
                dir: None
            }
        );
        // q while a download runs asks first (quitting stops it; partial files stay).
        intent(&mut s, Intent::Quit);
        assert_eq!(s.mode, Mode::ConfirmQuit);
        intent(&mut s, Intent::ConfirmNo);
        assert!(!s.quitting);
        let effects = job_event(
            &mut s,
            request.id,
            ModelJobEvent::Finished(ModelJobOutcome::Downloaded {
                dir: ms_dir(),
                files: 12,
                fetched: 12,
                bytes: 1 << 30,
            }),
            5000,
        );
        assert!(
            effects
                .iter()
                .any(|e| matches!(e, Effect::Models(ModelsEffect::Discover { .. }))),
            "the picker list is refreshed"
        );
        assert_eq!(s.models.jobs[0].status, ModelJobStatus::Done);
        assert!(message(&s).contains("m, then Enter loads it"), "{}", message(&s));
        let mut found = discovery();
        found.candidates[1].complete = true;
        found.candidates[1].problem = None;
        models(&mut s, ModelsAction::Found(found));
        intent(&mut s, Intent::OpenModels);
        assert_eq!(s.models.picker.selected, 1, "the download is selected");
        let effects = intent(&mut s, Intent::LoadModel);
        assert_eq!(load_effects(&effects)[0].0, &ModelSpec::Dir(ms_dir()));
        assert_eq!(s.models.picker.offer, None);
    }

    #[test]
    fn verify_runs_on_a_checkpoint_counts_files_and_reports_the_first_bad_one() {
        let mut s = picker_open();
        // The demo has no files to verify.
        assert!(started(&intent(&mut s, Intent::VerifyModel)).is_empty());
        assert!(message(&s).contains("Only checkpoint directories"));
        intent(&mut s, Intent::Top);
        let request = started(&intent(&mut s, Intent::VerifyModel))[0].clone();
        assert_eq!(request.kind, ModelJobKind::Verify { dir: hf_dir() });
        // Verifying the same checkpoint twice at once is refused.
        intent(&mut s, Intent::OpenModels);
        assert!(started(&intent(&mut s, Intent::VerifyModel)).is_empty());
        let id = request.id;
        job_event(
            &mut s,
            id,
            ModelJobEvent::Planned {
                dir: None,
                files: 3,
                bytes: 30,
                present: 0,
            },
            100,
        );
        file_started(&mut s, id, "model_index.json", 10, 100);
        file_progress(&mut s, id, 10, 100);
        job_event(&mut s, id, ModelJobEvent::FileDone, 100);
        file_started(&mut s, id, "vae/x.safetensors", 10, 100);
        assert_eq!(s.models.jobs[0].files_done, 1);
        assert_eq!(s.models.jobs[0].dir, Some(hf_dir()));
        let bad = "vae/x.safetensors: sha256 mismatch: expected aa, got bb".to_string();
        job_event(
            &mut s,
            id,
            ModelJobEvent::Finished(ModelJobOutcome::BadFile(bad.clone())),
            200,
        );
        let job = &s.models.jobs[0];
        assert_eq!(job.status, ModelJobStatus::Failed { reason: bad.clone() });
        assert!(message(&s).contains(&bad));
        // A new verify of it may start now.
        assert_eq!(started(&intent(&mut s, Intent::VerifyModel)).len(), 1);
    }

    #[test]
    fn a_download_into_a_chosen_folder_is_listed_by_later_scans() {
        let mut s = picker_open();
        intent(&mut s, Intent::DownloadModelTo);
        assert_eq!(s.mode, Mode::LineInput(LineInputPurpose::DownloadDir));
        // The hub's cache is the suggestion.
        assert_eq!(s.draft.line_text(), "/hf/models--Tongyi-MAI--Z-Image-Turbo");
        intent(&mut s, Intent::ClearLine);
        assert!(started(&intent(&mut s, Intent::SubmitLine)).is_empty());
        assert_eq!(
            s.mode,
            Mode::LineInput(LineInputPurpose::DownloadDir),
            "stays open"
        );
        assert!(message(&s).contains("Enter a directory"));
        update(&mut s, Action::Paste("/data/z-image".into()));
        let request = started(&intent(&mut s, Intent::SubmitLine))[0].clone();
        let dir = PathBuf::from("/data/z-image");
        assert_eq!(
            request.kind,
            ModelJobKind::Download {
                source: Source::HuggingFace,
                dir: Some(dir.clone())
            }
        );
        assert_eq!(s.mode, Mode::Normal);
        let effects = job_event(
            &mut s,
            request.id,
            ModelJobEvent::Finished(ModelJobOutcome::Downloaded {
                dir: dir.clone(),
                files: 12,
                fetched: 12,
                bytes: 1 << 30,
            }),
            100,
        );
        assert!(
            effects.iter().any(|e| matches!(e,
                Effect::Models(ModelsEffect::Discover { also }) if *also == [dir.clone()])),
            "{effects:?}"
        );
    }
}
