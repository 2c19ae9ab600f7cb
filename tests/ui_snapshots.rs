//! The main screens rendered into ratatui's TestBackend at 80×24 and 160×48, compared with insta
//! snapshots (tests/snapshots/). States are built through the reducer with fixed times and seeds,
//! so the screens are deterministic. Review changes with `cargo insta review` (or delete the
//! .snap file and rerun to accept).

use std::path::PathBuf;
use std::time::Duration;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::backend::TestBackend;
use ratatui::Terminal;
use zimage_tui::app::models::{
    CandidateOrigin, Discovery, ModelCandidate, ModelJobEvent, ModelJobOutcome, ModelsAction,
};
use zimage_tui::app::state::{GpuReading, Settings};
use zimage_tui::app::{update, Action, AppState, Intent};
use zimage_tui::fetch::Source;
use zimage_tui::model::loader::{LoadOptions, ModelSource, ModelSpec};
use zimage_tui::model::pipeline::ModelInfo;
use zimage_tui::model::{RgbImage, Stage, StageTimings};
use zimage_tui::ui::{draw, Palette};
use zimage_tui::worker::{Event, FailureKind, JobOutput};

fn draw_into(state: &AppState, width: u16, height: u16) -> Terminal<TestBackend> {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).expect("test terminal");
    terminal
        .draw(|frame| {
            draw(frame, state, &Palette::default());
        })
        .expect("draw");
    terminal
}

fn render(state: &AppState, width: u16, height: u16) -> String {
    draw_into(state, width, height).backend().to_string()
}

fn settings() -> Settings {
    Settings {
        width: 512,
        height: 512,
        steps: 8,
        output_dir: PathBuf::from("out"),
        output_prefix: "snap".into(),
        previews: true,
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn act(state: &mut AppState, action: Action) {
    update(state, action);
}

fn worker(state: &mut AppState, event: Event, at_ms: u64) {
    act(state, Action::Worker { event, at: ms(at_ms) });
}

fn intent(state: &mut AppState, intent: Intent) {
    act(state, Action::Intent(intent));
}

fn loaded(state: &mut AppState, secs: f64, at_ms: u64) {
    let info = demo_info();
    worker(state, Event::Loaded { info, secs }, at_ms);
}

fn load_failed(state: &mut AppState, message: &str, at_ms: u64) {
    let message = message.into();
    worker(state, Event::LoadFailed { message }, at_ms);
}

fn stage(state: &mut AppState, job: u64, stage: Stage, at_ms: u64) {
    worker(state, Event::Stage { job, stage }, at_ms);
}

fn done(state: &mut AppState, job: u64, output: JobOutput, at_ms: u64) {
    let output = Box::new(output);
    worker(state, Event::Done { job, output }, at_ms);
}

fn failed(state: &mut AppState, job: u64, kind: FailureKind, message: &str, at_ms: u64) {
    let message = message.into();
    worker(state, Event::Failed { job, kind, message }, at_ms);
}

fn type_text(state: &mut AppState, text: &str) {
    for c in text.chars() {
        let key = if c == '\n' {
            KeyCode::Enter
        } else {
            KeyCode::Char(c)
        };
        act(state, Action::TextKey(KeyEvent::new(key, KeyModifiers::NONE)));
    }
}

fn queue(state: &mut AppState, prompt: &str) {
    intent(state, Intent::EditPrompt);
    type_text(state, prompt);
    intent(state, Intent::FinishInsert);
    intent(state, Intent::QueueDraft);
}

fn demo_info() -> ModelInfo {
    ModelInfo {
        label: "demo model (random weights)".into(),
        random_weights: true,
        dtype: "f32".into(),
        device: "cpu".into(),
        parameters: vec![],
    }
}

fn gradient(width: u32, height: u32) -> RgbImage {
    let mut pixels = Vec::with_capacity((width * height * 3) as usize);
    for y in 0..height {
        for x in 0..width {
            pixels.extend([
                (x * 255 / width.max(1)) as u8,
                (y * 255 / height.max(1)) as u8,
                128,
            ]);
        }
    }
    RgbImage {
        width,
        height,
        pixels,
    }
}

fn timings() -> StageTimings {
    StageTimings {
        encode: ms(120),
        steps: vec![ms(250); 8],
        decode: ms(400),
    }
}

/// A finished job's output: the fixed `timings()`, saved instantly, no warnings.
fn output(path: &str, image: RgbImage, peak_vram_bytes: Option<u64>) -> JobOutput {
    JobOutput {
        path: Some(PathBuf::from(path)),
        image,
        timings: timings(),
        save: Duration::ZERO,
        peak_vram_bytes,
        warnings: vec![],
    }
}

fn fresh() -> AppState {
    AppState::new(settings(), 1234)
}

/// A session in full swing: one job done, one failed, one cancelled, one running at step 3/8,
/// two queued; GPU telemetry present.
fn busy() -> AppState {
    let mut s = fresh();
    s.session_path = Some(PathBuf::from("/home/me/.local/share/zimage-tui/session.toml"));
    worker(
        &mut s,
        Event::Loading {
            part: "transformer".into(),
            done: 2,
            total: 3,
        },
        100,
    );
    loaded(&mut s, 1.25, 1250);
    queue(&mut s, "a red fox in fresh snow, morning light");
    queue(&mut s, "一只猫坐在窗台上，晚霞，水彩");
    queue(&mut s, "cancelled one");
    queue(&mut s, "a lighthouse in a storm\nsecond line of the prompt");
    queue(&mut s, "queued: a bowl of ramen, top view");
    queue(&mut s, "queued: mountains at dusk");
    // job 1 runs and finishes
    worker(&mut s, Event::Started { job: 1 }, 2000);
    stage(&mut s, 1, Stage::Encode, 2000);
    stage(&mut s, 1, Stage::Denoise, 2120);
    stage(&mut s, 1, Stage::Decode, 4120);
    let image = gradient(64, 64);
    done(&mut s, 1, output("out/snap-001-42.png", image, None), 4600);
    // job 2 fails
    worker(&mut s, Event::Started { job: 2 }, 4700);
    failed(
        &mut s,
        2,
        FailureKind::OutOfMemory,
        "out of memory: CUDA_ERROR_OUT_OF_MEMORY",
        4800,
    );
    // job 3 cancelled while running
    worker(&mut s, Event::Started { job: 3 }, 4900);
    failed(&mut s, 3, FailureKind::Cancelled, "cancelled", 5000);
    // job 4 running, step 3 of 8
    worker(&mut s, Event::Started { job: 4 }, 5100);
    stage(&mut s, 4, Stage::Encode, 5100);
    stage(&mut s, 4, Stage::Denoise, 5220);
    for step in 1..=3 {
        worker(
            &mut s,
            Event::Step {
                job: 4,
                step,
                total: 8,
                secs: 0.25,
            },
            5220 + 250 * step as u64,
        );
    }
    worker(
        &mut s,
        Event::Preview {
            job: 4,
            step: 3,
            image: gradient(32, 32),
        },
        5970,
    );
    for i in 0..40u64 {
        act(
            &mut s,
            Action::Gpu(GpuReading {
                name: "NVIDIA H100 80GB HBM3".into(),
                used_bytes: (20 + i) << 30,
                total_bytes: 80 << 30,
                utilization_percent: Some(97),
                temperature_c: Some(61),
                power_watts: Some(512.0),
                power_limit_watts: Some(700.0),
            }),
        );
    }
    act(&mut s, Action::Tick { at: ms(6000) });
    s.focus = zimage_tui::app::state::Pane::Queue;
    s
}

/// Idle after a finished job, on a machine without NVML.
fn finished_no_gpu() -> AppState {
    let mut s = fresh();
    loaded(&mut s, 0.5, 500);
    queue(&mut s, "a red fox in fresh snow");
    worker(&mut s, Event::Started { job: 1 }, 600);
    stage(&mut s, 1, Stage::Decode, 2600);
    let image = gradient(48, 32);
    done(
        &mut s,
        1,
        output("out/snap-001-7.png", image, Some(512 << 20)),
        3100,
    );
    for i in 0..30u64 {
        act(
            &mut s,
            Action::GpuUnavailable {
                reason: "NVML not available (no NVIDIA driver)".into(),
                process_rss_bytes: Some((300 + i * 5) << 20),
                memory_total_bytes: Some(16 << 30),
            },
        );
    }
    s
}

fn hf_snapshot() -> PathBuf {
    PathBuf::from(
        "/home/me/.cache/huggingface/hub/models--Tongyi-MAI--Z-Image-Turbo/snapshots/0123456789abcdef",
    )
}

/// What discovery might find: a complete HF cache checkpoint (the default, with a bf16 cache)
/// and a ModelScope one whose download stopped half way.
fn discovery() -> Discovery {
    let ms_dir = PathBuf::from("/home/me/.cache/modelscope/hub/models/Tongyi-MAI/Z-Image-Turbo");
    Discovery {
        candidates: vec![
            ModelCandidate {
                spec: ModelSpec::Dir(hf_snapshot()),
                origin: CandidateOrigin::Found(ModelSource::HuggingFaceCache),
                bytes: Some(32_900_000_000),
                complete: true,
                problem: None,
                dtypes: vec![
                    ("text_encoder".into(), [("BF16".into(), 4_020_000_000)].into()),
                    ("transformer".into(), [("F32".into(), 6_150_000_000)].into()),
                    ("vae".into(), [("F32".into(), 83_800_000)].into()),
                ],
                bf16_cache: true,
                partial_files: 0,
                default: true,
            },
            ModelCandidate {
                spec: ModelSpec::Dir(ms_dir.clone()),
                origin: CandidateOrigin::Found(ModelSource::ModelScopeCache),
                bytes: Some(12_400_000_000),
                complete: false,
                problem: Some(
                    "transformer/diffusion_pytorch_model-00002-of-00003.safetensors: missing".into(),
                ),
                dtypes: vec![("text_encoder".into(), [("BF16".into(), 4_020_000_000)].into())],
                bf16_cache: false,
                partial_files: 1,
                default: false,
            },
        ],
        targets: vec![
            (
                Source::HuggingFace,
                PathBuf::from("/home/me/.cache/huggingface/hub/models--Tongyi-MAI--Z-Image-Turbo"),
            ),
            (Source::ModelScope, ms_dir),
        ],
    }
}

fn models(state: &mut AppState, action: ModelsAction) {
    act(state, Action::Models(action));
}

fn job_event(state: &mut AppState, id: u64, event: ModelJobEvent, at_ms: u64) {
    let at = ms(at_ms);
    models(state, ModelsAction::Job { id, event, at });
}

fn file_started(state: &mut AppState, id: u64, path: &str, size: u64, at_ms: u64) {
    let path = path.into();
    job_event(state, id, ModelJobEvent::FileStarted { path, size }, at_ms);
}

fn file_progress(state: &mut AppState, id: u64, done: u64, at_ms: u64) {
    job_event(state, id, ModelJobEvent::FileProgress { done }, at_ms);
}

/// The picker open over an idle dashboard on the demo model, the HF checkpoint selected.
fn picker() -> AppState {
    let mut s = fresh();
    models(
        &mut s,
        ModelsAction::Load {
            spec: ModelSpec::Demo,
            options: LoadOptions::default(),
        },
    );
    loaded(&mut s, 0.5, 500);
    intent(&mut s, Intent::OpenModels);
    models(&mut s, ModelsAction::Found(discovery()));
    intent(&mut s, Intent::Top);
    s
}

/// The busy queue plus a download at 40 % (second of three files) and a finished verification.
fn downloading() -> AppState {
    let mut s = busy();
    intent(&mut s, Intent::OpenModels);
    models(&mut s, ModelsAction::Found(discovery()));
    intent(&mut s, Intent::VerifyModel);
    let verify = 1;
    job_event(
        &mut s,
        verify,
        ModelJobEvent::Planned {
            dir: None,
            files: 2,
            bytes: 20 << 20,
            present: 0,
        },
        6000,
    );
    job_event(
        &mut s,
        verify,
        ModelJobEvent::Finished(ModelJobOutcome::Verified {
            checked: 14,
            bytes: 32_900_000_000,
            basis: "against the hub's file list".into(),
        }),
        6000,
    );
    intent(&mut s, Intent::OpenModels);
    intent(&mut s, Intent::DownloadModel);
    let download = 2;
    job_event(
        &mut s,
        download,
        ModelJobEvent::Planned {
            dir: Some(hf_snapshot()),
            files: 3,
            bytes: 3 << 30,
            present: 11,
        },
        6000,
    );
    file_started(
        &mut s,
        download,
        "transformer/diffusion_pytorch_model-00001-of-00003.safetensors",
        1 << 30,
        6000,
    );
    file_progress(&mut s, download, 0, 6000);
    file_progress(&mut s, download, 1 << 30, 16_000);
    job_event(&mut s, download, ModelJobEvent::FileDone, 16_000);
    file_started(
        &mut s,
        download,
        "transformer/diffusion_pytorch_model-00002-of-00003.safetensors",
        1 << 30,
        16_000,
    );
    file_progress(&mut s, download, 0, 16_000);
    file_progress(&mut s, download, 1 << 28, 18_000);
    act(&mut s, Action::Tick { at: ms(18_000) });
    s
}

/// A stress soak of 20 images at 512² with 12 done (one warm-up first): times wobble around
/// 1.4 s, memory in use creeps up 2 MiB per image; image 7 ran out of memory.
fn stress_mid_soak() -> AppState {
    use zimage_tui::bench::record::{MemoryReading, Outcome};
    use zimage_tui::bench::report::MemorySource;
    use zimage_tui::bench::stress::StressEvent;
    use zimage_tui::bench::{JobRecord, Mode, Section};
    use zimage_tui::model::GenerationRequest;

    let mut s = fresh();
    loaded(&mut s, 0.5, 500);
    intent(&mut s, Intent::ToggleStress);
    s.stress.settings.mode = Mode::Soak;
    s.stress.settings.soak_images = 20;
    s.stress.settings.size = (512, 512);
    intent(&mut s, Intent::StartStress);
    let event = |s: &mut AppState, e: StressEvent, at: u64| worker(s, Event::Stress(e), at);
    event(
        &mut s,
        StressEvent::Started {
            jobs: 21,
            memory: MemorySource::ProcessRss,
        },
        600,
    );
    event(
        &mut s,
        StressEvent::Section {
            section: Section::Soak,
            jobs: 21,
        },
        600,
    );
    let request = GenerationRequest {
        prompt: "p".into(),
        width: 512,
        height: 512,
        steps: 9,
        seed: 42,
    };
    for i in 0..13usize {
        let warmup = i == 0;
        let total = if warmup {
            2.9
        } else {
            1.4 + 0.05 * ((i * 7 % 5) as f64 - 2.0)
        };
        let used = (1000 + 2 * i as u64) << 20;
        let oom = i == 7;
        let record = JobRecord {
            index: if warmup { 1 } else { i },
            warmup,
            request: request.clone(),
            outcome: if oom { Outcome::OutOfMemory } else { Outcome::Ok },
            message: oom.then(|| "CUDA_ERROR_OUT_OF_MEMORY".to_string()),
            encode_s: Some(0.1),
            step_s: vec![(total - 0.3) / 9.0; 9],
            decode_s: Some(0.2),
            total_s: (!oom).then_some(total),
            wall_s: total,
            memory: MemoryReading {
                peak_bytes: Some(used + (300 << 20) + ((i as u64 % 3) << 20)),
                used_after_bytes: Some(used),
                free_after_bytes: None,
                total_bytes: None,
            },
            estimate_bytes: None,
        };
        event(
            &mut s,
            StressEvent::JobStarted {
                section: Section::Soak,
                request: request.clone(),
                warmup,
            },
            700,
        );
        event(
            &mut s,
            StressEvent::JobFinished {
                section: Section::Soak,
                record: Box::new(record),
            },
            800,
        );
    }
    event(
        &mut s,
        StressEvent::JobStarted {
            section: Section::Soak,
            request,
            warmup: false,
        },
        900,
    );
    event(&mut s, StressEvent::Step { step: 4, total: 9 }, 950);
    s
}

fn stress_finished() -> AppState {
    use zimage_tui::bench::report::{
        DeviceDescription, Header, MemorySource, Report, SoakSection, SoakStats,
    };
    use zimage_tui::bench::stress::{StressEvent, WrittenReport};

    let mut s = stress_mid_soak();
    let run = s.stress.run.clone().expect("a run");
    let (warmup, jobs): (Vec<_>, Vec<_>) = run.records.iter().cloned().partition(|r| r.warmup);
    let mut report = Report::new(Header {
        tool: "zimage-tui test".into(),
        git_commit: None,
        date_utc: "2026-11-26T00:00:00Z".into(),
        model: demo_info(),
        model_load_s: Some(0.5),
        device: DeviceDescription {
            card: None,
            driver: None,
            memory_source: MemorySource::ProcessRss,
            total_bytes: None,
        },
        max_vram_bytes: None,
        warmup_per_series: 1,
    });
    let stats = SoakStats::compute(&jobs);
    report.soak = Some(SoakSection {
        width: 512,
        height: 512,
        steps: 9,
        interval_s: 0.0,
        prompt_source: "built-in".into(),
        warmup,
        jobs,
        stats,
    });
    worker(
        &mut s,
        Event::Stress(StressEvent::Finished {
            report: Box::new(report),
            written: Ok(WrittenReport {
                markdown: PathBuf::from("out/snap-stress-1/report.md"),
                json: PathBuf::from("out/snap-stress-1/report.json"),
            }),
            stopped: true,
        }),
        1000,
    );
    s
}

macro_rules! screens {
    ($($name:ident: $state:expr;)*) => {$(
        #[test]
        fn $name() {
            let state = $state;
            insta::assert_snapshot!(concat!(stringify!($name), "_80x24"), render(&state, 80, 24));
            insta::assert_snapshot!(concat!(stringify!($name), "_160x48"), render(&state, 160, 48));
        }
    )*};
}

screens! {
    startup_loading: fresh();
    busy_queue: busy();
    finished_without_gpu_telemetry: finished_no_gpu();
    typing_a_wide_prompt: {
        let mut s = fresh();
        loaded(&mut s, 0.5, 500);
        intent(&mut s, Intent::EditPrompt);
        type_text(&mut s, "一只猫坐在窗台上，晚霞，水彩。A cat on a windowsill at sunset, watercolour, soft light\nsecond line");
        s
    };
    help_overlay: {
        let mut s = busy();
        intent(&mut s, Intent::ToggleHelp);
        s
    };
    confirm_quit: {
        let mut s = busy();
        intent(&mut s, Intent::Quit);
        s
    };
    model_failed: {
        let mut s = fresh();
        queue(&mut s, "waiting for a model");
        load_failed(&mut s, "/models/z: transformer/config.json is missing", 300);
        s
    };
    model_picker: picker();
    model_picker_no_model_loaded: {
        let mut s = picker();
        load_failed(&mut s, "out of memory", 900);
        intent(&mut s, Intent::OpenModels);
        intent(&mut s, Intent::Down);
        s
    };
    queue_with_a_download: downloading();
    stress_view_mid_soak: stress_mid_soak();
    stress_view_finished: stress_finished();
    stress_view_before_a_run: {
        let mut s = fresh();
        loaded(&mut s, 0.5, 500);
        intent(&mut s, Intent::ToggleStress);
        intent(&mut s, Intent::Down);
        intent(&mut s, Intent::Down);
        s
    };
    editing_size_field: {
        let mut s = fresh();
        loaded(&mut s, 0.5, 500);
        intent(&mut s, Intent::Down);
        intent(&mut s, Intent::EditField);
        s
    };
}

#[test]
fn too_small_terminals_show_a_notice() {
    let state = busy();
    insta::assert_snapshot!("too_small_60x20", render(&state, 60, 20));
    // Degenerate sizes must not panic.
    for (w, h) in [(0, 0), (1, 1), (10, 3), (79, 24), (80, 23), (200, 5)] {
        draw_into(&state, w, h);
    }
}

#[test]
fn every_size_from_the_minimum_up_renders_without_panicking() {
    for state in [busy(), stress_mid_soak(), stress_finished()] {
        for w in (80..=200).step_by(7) {
            for h in (24..=60).step_by(5) {
                render(&state, w, h);
            }
        }
        for (w, h) in [(0, 0), (1, 1), (79, 24), (80, 23)] {
            draw_into(&state, w, h);
        }
    }
}

#[test]
fn the_stress_view_counts_down_the_soak_interval() {
    use zimage_tui::bench::stress::StressEvent;
    let mut s = stress_mid_soak();
    worker(
        &mut s,
        Event::Stress(StressEvent::Waiting {
            interval: Duration::from_secs(30),
        }),
        1000,
    );
    act(&mut s, Action::Tick { at: ms(11_000) });
    let screen = render(&s, 80, 24);
    assert!(screen.contains("next image in 20.0 s"), "{screen}");
}
