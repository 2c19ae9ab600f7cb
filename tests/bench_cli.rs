//! `zimage-tui bench` from the outside: user mistakes are clear errors before any model loads,
//! and a model that cannot load is a clear error, not a panic.

use std::process::Command;

fn bench(dir: &std::path::Path, args: &[&str]) -> (i32, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_zimage-tui"))
        .arg("bench")
        .arg("--out")
        .arg(dir)
        .args(args)
        .output()
        .expect("the binary runs");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    (output.status.code().unwrap_or(-1), stderr)
}

#[test]
fn bad_input_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    for (args, needle) in [
        (vec!["--size", "1000x1000"], "multiple of 16"),
        (vec!["--sizes", "512x512,huge"], "WIDTHxHEIGHT"),
        (vec!["--max-vram", "0"], "--max-vram"),
        (vec!["--runs", "0", "--mode", "runs"], "--runs"),
        (vec!["--interval", "nan"], "--interval"),
        (vec!["--prompts", "/nonexistent/prompts.txt"], "prompt file"),
    ] {
        let (code, stderr) = bench(dir.path(), &args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
    assert!(
        !dir.path().join("report.md").exists(),
        "nothing is written for bad input"
    );
}

#[test]
fn a_model_that_cannot_load_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-model");
    let (code, stderr) = bench(
        &dir.path().join("out"),
        &[
            "--model",
            missing.to_str().unwrap(),
            "--mode",
            "runs",
            "--size",
            "32x32",
        ],
    );
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("loading the model"), "{stderr}");
}
