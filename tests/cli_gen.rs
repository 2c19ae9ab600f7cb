//! `zimage-tui gen` as a user runs it: argument errors exit 2 with a message, an unwritable
//! output fails before any compute, and the demo model writes a PNG with its metadata.

use std::path::Path;
use std::process::{Command, Output};

/// Runs `zimage-tui gen ARGS` with empty model caches, so the demo model is the default.
fn gen(args: &[&str], caches: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_zimage-tui"))
        .arg("gen")
        .args(args)
        .env_remove("ZIMAGE_MODEL")
        .env_remove("HF_HUB_CACHE")
        .env_remove("HUGGINGFACE_HUB_CACHE")
        .env("HF_HOME", caches.join("hf"))
        .env("MODELSCOPE_CACHE", caches.join("ms"))
        .current_dir(caches)
        .output()
        .expect("run zimage-tui")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn bad_arguments_exit_2_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&[&str], &str)] = &[
        (&["--prompt", "x", "--width", "100"], "not a multiple of 16"),
        (&["--prompt", "x", "--height", "0"], "out of range"),
        (&["--prompt", "x", "--width", "4112"], "out of range"),
        (&["--prompt", "x", "--steps", "0"], "steps 0"),
        (&["--prompt", "x", "--steps", "101"], "steps 101"),
        (&["--prompt", "   "], "prompt is empty"),
        (&["--prompt", "x", "--dtype", "int4"], "unknown dtype"),
        (&["--prompt", "x", "--device", "tpu"], "unknown device"),
        (
            &["--prompt", "x", "--random-weights", "--preset", "huge"],
            "unknown preset",
        ),
        (&["--prompt", "x", "--width", "-16"], "error"),
        (&["--width", "64"], "--prompt"),
    ];
    for (args, expected) in cases {
        let output = gen(args, dir.path());
        let message = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {message}");
        assert!(
            message.contains(expected),
            "{args:?}: expected {expected:?} in {message}"
        );
        assert!(!message.contains("panicked"), "{args:?}: {message}");
    }
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "nothing may be written"
    );
}

#[test]
fn unwritable_output_is_reported_before_any_compute() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("a-file");
    std::fs::write(&blocker, b"not a directory").unwrap();
    let out = blocker.join("sub/out.png");
    let started = std::time::Instant::now();
    let output = gen(&["--prompt", "x", "--out", out.to_str().unwrap()], dir.path());
    let message = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{message}");
    assert!(
        message.contains("cannot write") && message.contains("a-file"),
        "{message}"
    );
    assert!(!message.contains("model:"), "no model may be loaded: {message}");
    assert!(started.elapsed().as_secs() < 10);
}

#[test]
fn demo_model_writes_a_png_with_metadata_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("nested/dir/cat.png");
    let args = [
        "--prompt",
        "a cat",
        "--width",
        "64",
        "--height",
        "48",
        "--steps",
        "2",
        "--seed",
        "7",
        "--json",
        "--out",
        out.to_str().unwrap(),
    ];
    let output = gen(&args, dir.path());
    assert!(output.status.success(), "{}", stderr(&output));
    let report: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("one JSON object on stdout");
    assert_eq!(report["model"], "demo model (random weights)");
    assert_eq!(report["random_weights"], true);
    assert_eq!(
        (report["seed"].as_u64(), report["steps"].as_u64()),
        (Some(7), Some(2))
    );
    assert_eq!(
        (report["width"].as_u64(), report["height"].as_u64()),
        (Some(64), Some(48))
    );
    assert_eq!(report["timings"]["steps"].as_array().map(Vec::len), Some(2));
    assert!(report["total_secs"].as_f64().is_some_and(|t| t > 0.0));

    let png = zimage_tui::output::read_png_text(&out).expect("a valid PNG");
    assert_eq!((png.width, png.height), (64, 48));
    assert_eq!(png.get("prompt"), Some("a cat"));
    assert_eq!(png.get("seed"), Some("7"));
    assert_eq!(png.get("steps"), Some("2"));
    assert_eq!(png.get("size"), Some("64x48"));
    assert_eq!(png.get("model"), Some("demo model (random weights)"));
    assert_eq!(
        png.get("Software"),
        Some(format!("zimage-tui {}", zimage_tui::VERSION).as_str())
    );
    let timings: serde_json::Value = serde_json::from_str(png.get("timings").unwrap()).unwrap();
    assert_eq!(timings["steps"].as_array().map(Vec::len), Some(2));
    // Only the PNG was written: no temp files next to it.
    assert_eq!(std::fs::read_dir(out.parent().unwrap()).unwrap().count(), 1);

    // Same seed, same image.
    let again = dir.path().join("again.png");
    let mut args2 = args.to_vec();
    let last = args2.len() - 1;
    args2[last] = again.to_str().unwrap();
    assert!(gen(&args2, dir.path()).status.success());
    // (The files differ in their timings chunk; the pixels must not.)
    let pixels = |path: &Path| image::open(path).expect("decodes").to_rgb8().into_raw();
    assert_eq!(pixels(&out), pixels(&again));
}

#[test]
fn text_mode_names_the_demo_model_and_the_seed() {
    let dir = tempfile::tempdir().unwrap();
    let output = gen(
        &[
            "--prompt", "hi", "--width", "32", "--height", "32", "--steps", "1",
        ],
        dir.path(),
    );
    let message = stderr(&output);
    assert!(output.status.success(), "{message}");
    assert!(
        message.contains("seed: ") && message.contains("demo model (random weights)"),
        "{message}"
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("demo model (random weights)") && stdout.contains("zimage-"),
        "{stdout}"
    );
    let written: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .collect();
    assert_eq!(
        written.len(),
        1,
        "the default output zimage-SEED.png in the working directory"
    );
}
