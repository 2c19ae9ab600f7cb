//! Process-wide hooks (the tracing subscriber, the panic hook), tested in their own test binary
//! so they cannot disturb other tests.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use zimage_tui::logging::{init_file_logging, LogLine, LOG_FILE_NAME};

#[test]
fn file_logging_writes_the_file_and_feeds_the_pane() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log_dir = dir.path().join("state/zimage-tui");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<LogLine>();
    let guard = init_file_logging(&log_dir, Some((tx, tracing::Level::WARN))).expect("init logging");
    assert_eq!(guard.path, log_dir.join(LOG_FILE_NAME));
    tracing::info!("an info line for the file only");
    tracing::warn!(job = 7, "a warning for the pane");
    // A second logger cannot be installed; that is an error, not a panic.
    assert!(init_file_logging(&log_dir, None).is_err());

    let line = rx.try_recv().expect("the warning reached the pane");
    assert_eq!(line.level, tracing::Level::WARN);
    assert_eq!(line.message, "a warning for the pane job=7");
    assert!(line.target.contains("process_globals"), "{}", line.target);
    assert!(rx.try_recv().is_err(), "info lines are below the pane's level");

    drop(guard); // flushes the background writer
    let text = std::fs::read_to_string(log_dir.join(LOG_FILE_NAME)).expect("log file");
    assert!(text.contains("an info line for the file only"), "{text}");
    assert!(text.contains("a warning for the pane"), "{text}");
    assert!(!text.contains("\x1b["), "no colour codes in the file");
}

#[test]
fn panic_hook_restores_first_then_runs_the_previous_hook() {
    let order = Arc::new(AtomicUsize::new(0));
    let previous_ran_at = Arc::new(AtomicUsize::new(0));
    let restored_at = Arc::new(AtomicUsize::new(0));
    {
        let (order, previous_ran_at) = (Arc::clone(&order), Arc::clone(&previous_ran_at));
        std::panic::set_hook(Box::new(move |_| {
            previous_ran_at.store(order.fetch_add(1, Ordering::SeqCst) + 1, Ordering::SeqCst);
        }));
    }
    {
        let (order, restored_at) = (Arc::clone(&order), Arc::clone(&restored_at));
        zimage_tui::terminal::chain_panic_hook(move || {
            restored_at.store(order.fetch_add(1, Ordering::SeqCst) + 1, Ordering::SeqCst);
        });
    }
    let result = std::panic::catch_unwind(|| panic!("boom"));
    assert!(result.is_err());
    assert_eq!(restored_at.load(Ordering::SeqCst), 1, "restore runs first");
    assert_eq!(
        previous_ran_at.load(Ordering::SeqCst),
        2,
        "then the previous hook"
    );
    let _ = std::panic::take_hook();
}

/// The CPU per-job peak is exact: memory allocated and freed between two samples still counts.
/// (Here, not in the library's tests: resetting the high-water mark is process-wide.)
#[test]
fn process_high_water_mark_catches_memory_freed_between_samples() {
    use zimage_tui::gpu::{ProcessTelemetry, Telemetry};
    let mut telemetry = ProcessTelemetry::new("test");
    telemetry.job_started();
    let before = telemetry.sample().expect("sample");
    let Some(start_mark) = before.memory_high_water else {
        // Only where the kernel refuses the reset (no /proc/self/clear_refs): nothing to check.
        assert!(std::fs::write("/proc/self/clear_refs", "5").is_err());
        return;
    };
    assert!(start_mark >= before.memory_used);
    let chunk = vec![1u8; 96 << 20]; // written, so resident
    std::hint::black_box(&chunk);
    drop(chunk);
    let after = telemetry.sample().expect("sample");
    let mark = after.memory_high_water.expect("high-water mark");
    assert!(
        mark >= before.memory_used + (90 << 20),
        "mark {mark}, before {}",
        before.memory_used
    );
}
