//! The Stress view through the reducer: the form (shared defaults, validation), starting a run
//! (one `Command::Stress`, refusals), its events (live stats, the end), cancel, and the queue
//! waiting meanwhile.

use std::path::PathBuf;

use super::*;
use crate::app::state::{JobStatus, Settings};
use crate::app::{update, Action};
use crate::bench::record::{MemoryReading, Outcome};
use crate::bench::report::{DeviceDescription, Header, SoakSection, SoakStats};
use crate::bench::stats;
use crate::test_fixtures::{demo_model_info, intent, tiny_request, type_text};
use crate::worker::{Event, FailureKind};

fn worker(state: &mut AppState, event: Event) -> Vec<Effect> {
    update(
        state,
        Action::Worker {
            event,
            at: Duration::from_secs(2),
        },
    )
}

fn stress(state: &mut AppState, event: StressEvent) -> Vec<Effect> {
    worker(state, Event::Stress(event))
}

fn ready() -> AppState {
    let mut s = AppState::new(
        Settings {
            output_dir: PathBuf::from("/out"),
            output_prefix: "t".into(),
            ..Settings::default()
        },
        7,
    );
    worker(
        &mut s,
        Event::Loaded {
            info: demo_model_info(),
            secs: 1.0,
        },
    );
    s
}

/// Edits one form row: select it, Enter, replace the text, accept.
fn set_field(state: &mut AppState, field: StressField, text: &str) {
    state.stress.field = field;
    intent(state, Intent::EditField);
    intent(state, Intent::ClearLine);
    type_text(state, text);
    intent(state, Intent::SubmitLine);
}

fn stress_command(effects: &[Effect]) -> Option<&StressRequest> {
    effects.iter().find_map(|e| match e {
        Effect::Worker(Command::Stress(request)) => Some(&**request),
        _ => None,
    })
}

fn has_command(effects: &[Effect], want: fn(&Command) -> bool) -> bool {
    effects
        .iter()
        .any(|e| matches!(e, Effect::Worker(command) if want(command)))
}

fn record(index: usize, warmup: bool, outcome: Outcome, total_s: f64, used_mib: u64) -> JobRecord {
    let mib = 1u64 << 20;
    JobRecord {
        index,
        warmup,
        request: tiny_request(),
        outcome,
        message: None,
        encode_s: Some(0.01),
        step_s: vec![total_s / 4.0; 2],
        decode_s: Some(total_s / 2.0 - 0.01),
        total_s: Some(total_s),
        wall_s: total_s,
        memory: MemoryReading {
            peak_bytes: Some((used_mib + 50) * mib),
            used_after_bytes: Some(used_mib * mib),
            free_after_bytes: None,
            total_bytes: None,
        },
        estimate_bytes: None,
    }
}

fn report(jobs: Vec<JobRecord>) -> Report {
    let mut report = Report::new(Header {
        tool: "zimage-tui test".into(),
        git_commit: None,
        date_utc: "2026-11-26T00:00:00Z".into(),
        model: demo_model_info(),
        model_load_s: Some(1.0),
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
        width: 64,
        height: 64,
        steps: 2,
        interval_s: 0.0,
        prompt_source: "test".into(),
        warmup: Vec::new(),
        jobs,
        stats,
    });
    report
}

#[test]
fn the_form_starts_from_the_cli_defaults_and_refuses_bad_values_clearly() {
    let mut s = ready();
    intent(&mut s, Intent::ToggleStress);
    assert!(s.stress.open);
    assert_eq!(s.stress.settings, PlanSettings::default());
    assert_eq!(s.stress.settings.soak_images, bench::DEFAULT_SOAK_IMAGES);

    // j/k move through the rows and stop at the ends.
    for _ in 0..20 {
        intent(&mut s, Intent::Down);
    }
    assert_eq!(s.stress.field, StressField::Warmup);
    intent(&mut s, Intent::Top);
    assert_eq!(s.stress.field, StressField::Mode);

    intent(&mut s, Intent::StressNextMode);
    assert_eq!(s.stress.settings.mode, BenchMode::Runs);
    set_field(&mut s, StressField::Mode, "SOAK");
    assert_eq!(s.stress.settings.mode, BenchMode::Soak);

    for (field, bad, needle) in [
        (StressField::Soak, "0", "out of range"),
        (StressField::Soak, "99999999", "out of range"),
        (StressField::Runs, "five", "not a whole number"),
        (StressField::Interval, "-1", "seconds"),
        (StressField::Interval, "NaN", "seconds"),
        (StressField::Size, "1000x1000", "16"),
        (StressField::Sweep, "512x512,huge", "huge"),
        (StressField::Warmup, "1000", "out of range"),
        (StressField::Mode, "forever", "not a mode"),
    ] {
        let before = s.stress.settings.clone();
        set_field(&mut s, field, bad);
        assert_eq!(
            s.mode,
            Mode::LineInput(LineInputPurpose::Stress(field)),
            "{bad}: the input stays open"
        );
        let message = s.message.as_ref().map(|m| m.text.clone()).unwrap_or_default();
        assert!(message.contains(needle), "{bad}: {message}");
        assert_eq!(s.stress.settings, before, "{bad} changed nothing");
        intent(&mut s, Intent::CancelLine);
    }

    set_field(&mut s, StressField::Soak, "3");
    set_field(&mut s, StressField::Size, "64x64");
    set_field(&mut s, StressField::Interval, "0.5");
    set_field(&mut s, StressField::Sweep, "64x64, 128x96");
    assert_eq!(s.mode, Mode::Normal);
    let settings = &s.stress.settings;
    assert_eq!(settings.soak_images, 3);
    assert_eq!(settings.size, (64, 64));
    assert_eq!(settings.interval, Duration::from_millis(500));
    assert_eq!(settings.sweep_sizes, vec![(64, 64), (128, 96)]);

    intent(&mut s, Intent::ToggleStress);
    assert!(!s.stress.open);
}

#[test]
fn a_run_goes_to_the_worker_once_and_queued_jobs_wait_for_its_end() {
    let mut s = ready();
    intent(&mut s, Intent::ToggleStress);
    set_field(&mut s, StressField::Mode, "soak");
    set_field(&mut s, StressField::Soak, "3");
    let effects = intent(&mut s, Intent::StartStress);
    let request = stress_command(&effects).expect("one Stress command");
    let soak = request.plan.soak.as_ref().expect("soak plan");
    assert_eq!(soak.count, 3);
    assert!(request.plan.runs.is_none() && request.plan.sweep.is_none());
    assert_eq!(request.out_dir, PathBuf::from("/out/t-stress-1"));
    assert!(s.stress.active());
    // A second start is refused while it runs.
    let again = intent(&mut s, Intent::StartStress);
    assert!(stress_command(&again).is_none());
    assert!(s.message.as_ref().unwrap().text.contains("already"));

    // A job queued meanwhile is not submitted.
    intent(&mut s, Intent::EditPrompt);
    type_text(&mut s, "a cat");
    intent(&mut s, Intent::FinishInsert);
    let effects = intent(&mut s, Intent::QueueDraft);
    assert!(!has_command(&effects, |c| matches!(c, Command::Submit(_))));
    assert_eq!(s.queue[0].status, JobStatus::Queued);

    stress(
        &mut s,
        StressEvent::Started {
            jobs: 4,
            memory: MemorySource::ProcessRss,
        },
    );
    stress(
        &mut s,
        StressEvent::Section {
            section: Section::Soak,
            jobs: 4,
        },
    );
    let records = [
        record(1, true, Outcome::Ok, 0.5, 100),
        record(1, false, Outcome::Ok, 0.2, 100),
        record(2, false, Outcome::OutOfMemory, 0.1, 100),
        record(
            3,
            false,
            Outcome::Failed {
                failure: FailureKind::Internal,
            },
            0.1,
            100,
        ),
    ];
    for r in records.iter().take(2) {
        stress(
            &mut s,
            StressEvent::JobStarted {
                section: Section::Soak,
                request: r.request.clone(),
                warmup: r.warmup,
            },
        );
        stress(&mut s, StressEvent::Step { step: 1, total: 2 });
        let current = s.stress.run.as_ref().unwrap().current.clone().unwrap();
        assert_eq!((current.step, current.steps, current.warmup), (1, 2, r.warmup));
        stress(
            &mut s,
            StressEvent::JobFinished {
                section: Section::Soak,
                record: Box::new(r.clone()),
            },
        );
    }
    let stats = s.stress.run.as_ref().unwrap().stats();
    assert_eq!((stats.done, stats.planned, stats.warmups), (1, 3, 1));
    assert_eq!((stats.mean_s, stats.last_s), (Some(0.2), Some(0.2)));
    for r in &records[2..] {
        stress(
            &mut s,
            StressEvent::JobFinished {
                section: Section::Soak,
                record: Box::new(r.clone()),
            },
        );
    }
    let run = s.stress.run.as_ref().unwrap();
    let stats = run.stats();
    assert_eq!((stats.done, stats.failures, stats.oom), (3, 1, 1));
    assert_eq!(stats.mean_s, stats::mean(&[0.2]));
    assert_eq!(run.memory_label(), "RSS");
    assert!(s.log.iter().any(|l| l.text.contains("OOM")));

    // The end: report path in the log, and the queued job starts.
    let written = WrittenReport {
        markdown: PathBuf::from("/out/t-stress-1/report.md"),
        json: PathBuf::from("/out/t-stress-1/report.json"),
    };
    let effects = stress(
        &mut s,
        StressEvent::Finished {
            report: Box::new(report(records[1..].to_vec())),
            written: Ok(written),
            stopped: false,
        },
    );
    assert!(!s.stress.active());
    assert!(matches!(
        s.stress.run.as_ref().unwrap().end,
        Some(StressEnd::Finished { stopped: false, .. })
    ));
    assert!(s
        .log
        .iter()
        .any(|l| l.text.contains("/out/t-stress-1/report.md") && l.text.contains("report.json")));
    assert!(has_command(&effects, |c| matches!(c, Command::Submit(_))));
    // Late events of a finished run change nothing.
    stress(&mut s, StressEvent::Step { step: 2, total: 2 });
    assert!(s.stress.run.as_ref().unwrap().current.is_none());

    // The next run gets its own folder.
    let effects = intent(&mut s, Intent::StartStress);
    assert!(stress_command(&effects).is_none(), "job #1 runs now");
    worker(
        &mut s,
        Event::Failed {
            job: 1,
            kind: FailureKind::Cancelled,
            message: "cancelled".into(),
        },
    );
    let effects = intent(&mut s, Intent::StartStress);
    let request = stress_command(&effects).expect("starts once the worker is free");
    assert_eq!(request.out_dir, PathBuf::from("/out/t-stress-2"));
}

#[test]
fn the_soak_interval_shows_as_a_wait_until_the_next_image() {
    let mut s = ready();
    intent(&mut s, Intent::ToggleStress);
    intent(&mut s, Intent::StartStress);
    stress(
        &mut s,
        StressEvent::Waiting {
            interval: Duration::from_secs(10),
        },
    );
    assert_eq!(
        s.stress.run.as_ref().unwrap().waiting,
        Some((Duration::from_secs(2), Duration::from_secs(10)))
    );
    stress(
        &mut s,
        StressEvent::JobStarted {
            section: Section::Soak,
            request: record(2, false, Outcome::Ok, 1.0, 1).request,
            warmup: false,
        },
    );
    assert_eq!(s.stress.run.as_ref().unwrap().waiting, None);
}

#[test]
fn start_is_refused_without_a_model_while_a_job_runs_or_for_a_bad_plan() {
    let mut s = AppState::new(Settings::default(), 1);
    intent(&mut s, Intent::ToggleStress);
    assert!(stress_command(&intent(&mut s, Intent::StartStress)).is_none());
    assert!(s.message.as_ref().unwrap().text.contains("not loaded"));

    let mut s = ready();
    intent(&mut s, Intent::EditPrompt);
    type_text(&mut s, "a cat");
    intent(&mut s, Intent::FinishInsert);
    intent(&mut s, Intent::QueueDraft);
    assert!(s.running.is_some());
    intent(&mut s, Intent::ToggleStress);
    assert!(stress_command(&intent(&mut s, Intent::StartStress)).is_none());
    assert!(s.message.as_ref().unwrap().text.contains("is running"));

    let mut s = ready();
    intent(&mut s, Intent::ToggleStress);
    s.stress.settings.sweep_sizes.clear();
    s.stress.settings.mode = BenchMode::Sweep;
    assert!(stress_command(&intent(&mut s, Intent::StartStress)).is_none());
    let message = s.message.as_ref().unwrap().text.clone();
    assert!(
        message.contains("not started") && message.contains("sizes"),
        "{message}"
    );
    assert!(s.stress.run.is_none());
}

#[test]
fn cancel_is_sent_once_ctrl_c_cancels_first_and_quitting_asks() {
    let mut s = ready();
    intent(&mut s, Intent::ToggleStress);
    intent(&mut s, Intent::StartStress);
    let effects = intent(&mut s, Intent::CancelStress);
    assert!(has_command(&effects, |c| matches!(c, Command::CancelStress)));
    assert!(!has_command(&intent(&mut s, Intent::CancelStress), |c| matches!(
        c,
        Command::CancelStress
    )));
    assert!(s.stress.active(), "active until the worker says it ended");
    stress(
        &mut s,
        StressEvent::Failed {
            message: "the worker stopped unexpectedly".into(),
        },
    );
    assert!(!s.stress.active());
    assert!(s.message.as_ref().unwrap().text.contains("Stress run failed"));

    let mut s = ready();
    intent(&mut s, Intent::ToggleStress);
    intent(&mut s, Intent::StartStress);
    intent(&mut s, Intent::Quit);
    assert_eq!(s.mode, Mode::ConfirmQuit);
    intent(&mut s, Intent::ConfirmNo);
    let effects = intent(&mut s, Intent::Interrupt);
    assert!(has_command(&effects, |c| matches!(c, Command::CancelStress)));
    assert!(!s.quitting);
    intent(&mut s, Intent::Interrupt);
    assert!(s.quitting);

    let mut s = ready();
    intent(&mut s, Intent::ToggleStress);
    intent(&mut s, Intent::StartStress);
    intent(&mut s, Intent::Quit);
    let effects = intent(&mut s, Intent::ConfirmYes);
    assert!(has_command(&effects, |c| matches!(c, Command::CancelStress)));
    assert!(s.quitting);
}
