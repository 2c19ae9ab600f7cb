//! End to end in a real terminal: the built binary runs on the demo model inside a detached tmux
//! session (own socket, temp HOME and XDG dirs). We type a prompt, queue it, wait until it is
//! done, run a short soak in the Stress view, save the session and quit; then check the PNG
//! decodes, the soak's report was written, the session TOML has the job as done, and the shell is
//! back on the normal screen. Skipped (with a message) without tmux.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

struct Tmux {
    socket: PathBuf,
}

impl Tmux {
    fn cmd(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("running tmux")
    }

    fn capture(&self) -> String {
        let out = self.cmd(&["capture-pane", "-p", "-t", "e2e"]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "e2e"];
        args.extend_from_slice(keys);
        let out = self.cmd(&args);
        assert!(
            out.status.success(),
            "send-keys failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn literal(&self, text: &str) {
        self.keys(&["-l", text]);
    }

    /// Polls the screen until `needle` shows up; fails with the screen after `timeout`.
    fn wait_for(&self, needle: &str, timeout: Duration) -> String {
        self.wait_until(needle, timeout, |screen| screen.contains(needle))
    }

    /// Polls until a line starts with `prefix` (the typed command line also contains it).
    fn wait_for_line(&self, prefix: &str, timeout: Duration) -> String {
        self.wait_until(prefix, timeout, |screen| {
            screen.lines().any(|l| l.starts_with(prefix))
        })
    }

    fn wait_until(&self, needle: &str, timeout: Duration, done: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let screen = self.capture();
            if done(&screen) {
                return screen;
            }
            assert!(
                start.elapsed() < timeout,
                "timed out waiting for {needle:?}; screen:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn alternate_screen_on(&self) -> bool {
        let out = self.cmd(&["display-message", "-p", "-t", "e2e", "#{alternate_on}"]);
        String::from_utf8_lossy(&out.stdout).trim() == "1"
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd(&["kill-server"]);
    }
}

/// Whether tmux runs here; says the test is skipped when it does not.
fn tmux_available() -> bool {
    let available = Command::new("tmux")
        .arg("-V")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !available {
        eprintln!("SKIPPED: tmux is not installed; the real-terminal end-to-end test needs it");
    }
    available
}

fn find_files(dir: &Path, want: &dyn Fn(&Path) -> bool, found: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            find_files(&path, want, found);
        } else if want(&path) {
            found.push(path);
        }
    }
}

fn find_pngs(dir: &Path, found: &mut Vec<PathBuf>) {
    find_files(dir, &|p| p.extension().is_some_and(|e| e == "png"), found);
}

/// A detached tmux session running a plain shell with a known prompt (so we can see it come back
/// after quitting), HOME and the XDG dirs under `root`, plus `extra_env` ("NAME=value ...").
fn open_terminal(root: &Path, extra_env: &str) -> Tmux {
    for dir in ["home", "config", "data", "cache", "state", "work"] {
        std::fs::create_dir_all(root.join(dir)).expect("mkdir");
    }
    let tmux = Tmux {
        socket: root.join("tmux.sock"),
    };
    let shell_env = format!(
        "env -i PATH=/usr/bin:/bin TERM=xterm-256color LANG=C.UTF-8 HOME={0}/home XDG_CONFIG_HOME={0}/config \
         XDG_DATA_HOME={0}/data XDG_CACHE_HOME={0}/cache XDG_STATE_HOME={0}/state {extra_env} PS1='E2E$ ' sh",
        root.display()
    );
    let out = tmux.cmd(&[
        "-f",
        "/dev/null",
        "new-session",
        "-d",
        "-s",
        "e2e",
        "-x",
        "100",
        "-y",
        "30",
        &shell_env,
    ]);
    assert!(
        out.status.success(),
        "tmux new-session: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    tmux.wait_for("E2E$", Duration::from_secs(5));
    tmux
}

#[test]
fn dashboard_generates_saves_and_restores_the_terminal() {
    if !tmux_available() {
        return;
    }
    let tmp = tempfile::tempdir().expect("temp dir");
    let root = tmp.path();
    let bin = env!("CARGO_BIN_EXE_zimage-tui");
    let session = root.join("work/session.toml");
    let tmux = open_terminal(root, "");

    let command = format!(
        "cd {work} && {bin} --session {session} --image-protocol auto; echo EXIT=$?",
        work = root.join("work").display(),
        session = session.display(),
    );
    tmux.literal(&command);
    tmux.keys(&["Enter"]);
    tmux.wait_for("demo model", Duration::from_secs(20));
    assert!(
        tmux.alternate_screen_on(),
        "the dashboard runs on the alternate screen"
    );

    // Small and fast: 256×256, 2 steps (Prompt pane is focused at start).
    tmux.keys(&["j", "Enter", "C-u"]);
    tmux.literal("256x256");
    tmux.keys(&["Enter", "j", "Enter", "C-u"]);
    tmux.literal("2");
    tmux.keys(&["Enter"]);
    tmux.keys(&["i"]);
    tmux.literal("a tiny red fox");
    // A bare Esc followed at once by a key reads as Alt+key (as in every terminal app): pause.
    tmux.keys(&["Escape"]);
    std::thread::sleep(Duration::from_millis(150));
    tmux.keys(&["a"]);
    tmux.wait_for("Queued job #1", Duration::from_secs(5));
    tmux.wait_for("done in", Duration::from_secs(20));

    // A soak of 3 images at 64×64, 2 steps, in the Stress view (rows: mode, size, steps, runs,
    // sweep, soak). `m` cycles all → runs → sweep → soak.
    tmux.keys(&["b"]);
    tmux.wait_for("Stress test", Duration::from_secs(5));
    tmux.keys(&["m", "m", "m"]);
    tmux.wait_for("soak (m cycles)", Duration::from_secs(5));
    tmux.keys(&["j", "Enter", "C-u"]);
    tmux.literal("64x64");
    tmux.keys(&["Enter", "j", "Enter", "C-u"]);
    tmux.literal("2");
    tmux.keys(&["Enter", "j", "j", "j", "Enter", "C-u"]);
    tmux.literal("3");
    tmux.keys(&["Enter"]);
    tmux.wait_for("3 images", Duration::from_secs(5));
    tmux.keys(&["s"]);
    let screen = tmux.wait_for("Stress run finished", Duration::from_secs(60));
    assert!(screen.contains("images 3/3"), "three images measured:\n{screen}");
    assert!(
        screen.contains("RSS slope"),
        "the summary shows the slope:\n{screen}"
    );
    assert!(screen.contains("time drift"), "and the drift:\n{screen}");
    tmux.keys(&["b"]);
    tmux.wait_for("Queue", Duration::from_secs(5));

    tmux.keys(&["S"]);
    tmux.wait_for("Save session to", Duration::from_secs(5));
    tmux.keys(&["Enter"]);
    tmux.wait_for("Session saved", Duration::from_secs(5));
    tmux.keys(&["q"]);
    let screen = tmux.wait_for_line("EXIT=", Duration::from_secs(10));
    assert!(
        screen.lines().any(|l| l.starts_with("EXIT=0")),
        "clean exit; screen:\n{screen}"
    );
    assert!(!tmux.alternate_screen_on(), "the alternate screen was left");
    assert!(screen.contains("E2E$"), "the shell is visible again:\n{screen}");
    assert!(
        !screen.contains("Queue"),
        "no dashboard remnants on the normal screen:\n{screen}"
    );

    // The image.
    let mut pngs = Vec::new();
    find_pngs(root, &mut pngs);
    assert_eq!(pngs.len(), 1, "one PNG written: {pngs:?}");
    let decoder = png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(&pngs[0]).expect("open png"),
    ));
    let mut reader = decoder.read_info().expect("PNG header");
    let mut pixels = vec![0; reader.output_buffer_size().expect("buffer size")];
    let frame = reader.next_frame(&mut pixels).expect("PNG decodes");
    assert_eq!((frame.width, frame.height), (256, 256));

    // The soak's report, written by the same writer as `zimage-tui bench`.
    let mut reports = Vec::new();
    find_files(root, &|p| p.ends_with("report.md"), &mut reports);
    assert_eq!(reports.len(), 1, "one report: {reports:?}");
    assert!(reports[0].with_file_name("report.json").exists());
    let md = std::fs::read_to_string(&reports[0]).expect("report.md");
    assert!(
        md.contains("## Soak — 3 images at 64×64, 2 steps") && md.contains("## Summary"),
        "{md}"
    );

    // The session.
    let text = std::fs::read_to_string(&session).expect("session written");
    let toml: toml::Table = toml::from_str(&text).expect("session is TOML");
    let jobs = toml.get("jobs").and_then(|j| j.as_array()).expect("jobs array");
    assert_eq!(jobs.len(), 1, "{text}");
    let job = jobs[0].as_table().expect("job table");
    assert_eq!(job.get("status").and_then(|s| s.as_str()), Some("done"), "{text}");
    assert_eq!(job.get("prompt").and_then(|s| s.as_str()), Some("a tiny red fox"));
}

#[test]
fn the_model_picker_loads_a_found_checkpoint_and_verifies_it_in_the_queue() {
    if !tmux_available() {
        return;
    }
    let tmp = tempfile::tempdir().expect("temp dir");
    let root = tmp.path();
    // The tiny parity checkpoint (real diffusers layout), found through $ZIMAGE_MODEL.
    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tiny");
    let tmux = open_terminal(root, &format!("ZIMAGE_MODEL={fixture}"));
    let command = format!(
        "cd {work} && {bin} --no-autosave --image-protocol halfblocks; echo EXIT=$?",
        work = root.join("work").display(),
        bin = env!("CARGO_BIN_EXE_zimage-tui"),
    );
    tmux.literal(&command);
    tmux.keys(&["Enter"]);
    tmux.wait_for("demo model", Duration::from_secs(20));

    // m: discovery runs off the UI thread and lists the checkpoint above the demo model.
    tmux.keys(&["m"]);
    let screen = tmux.wait_for("fixtures/tiny", Duration::from_secs(10));
    assert!(screen.contains("complete"), "{screen}");
    // Up to it, Enter: the worker loads it.
    tmux.keys(&["k", "Enter"]);
    tmux.wait_for("Loaded Z-Image-Turbo", Duration::from_secs(20));

    // m, v: a verification job runs in the queue pane and reports.
    tmux.keys(&["m"]);
    tmux.wait_for("fixtures/tiny", Duration::from_secs(10));
    tmux.keys(&["v"]);
    let screen = tmux.wait_for("V1 verified", Duration::from_secs(20));
    assert!(
        screen.contains("V1 done"),
        "the job row shows the outcome:\n{screen}"
    );

    tmux.keys(&["q"]);
    let screen = tmux.wait_for_line("EXIT=", Duration::from_secs(10));
    assert!(
        screen.lines().any(|l| l.starts_with("EXIT=0")),
        "clean exit; screen:\n{screen}"
    );
}
