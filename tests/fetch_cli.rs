//! The `fetch` and `models` commands end to end: the real binary against the fake hub, with the
//! environment variables users set.

mod fetch_support;

use std::process::Command;

use fetch_support::*;

fn zimage() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_zimage-tui"));
    // Only what each test sets: no real caches, no real endpoint, no real token.
    for var in [
        "HF_HOME",
        "HF_HUB_CACHE",
        "HF_ENDPOINT",
        "HF_TOKEN",
        "MODELSCOPE_CACHE",
        "ZIMAGE_MODEL",
        "XDG_CACHE_HOME",
    ] {
        command.env_remove(var);
    }
    command
}

/// Runs `command` to the end and asserts it succeeded (its stderr is the failure message).
fn run_ok(command: &mut Command) -> std::process::Output {
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

#[test]
fn fetch_then_models_verify_finds_a_bad_file() {
    let files = fake_checkpoint();
    let hub = FakeHub::start(files.clone());
    hub.with(|s| s.token = Some("hf_cli".into()));
    let home = tempfile::tempdir().unwrap();

    let output = zimage()
        .args(["fetch", "--retries", "2"])
        .env("HOME", home.path())
        .env("HF_HOME", home.path().join("hf"))
        .env("HF_ENDPOINT", hub.url())
        .env("HF_TOKEN", "hf_cli")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let snapshot = home.path().join(format!(
        "hf/hub/models--Tongyi-MAI--Z-Image-Turbo/snapshots/{COMMIT}"
    ));
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        snapshot.display().to_string()
    );
    assert_checkpoint_files(&snapshot, &files);
    assert!(hub
        .log()
        .iter()
        .all(|l| l.authorization.as_deref() == Some("Bearer hf_cli")));

    // `models` finds it in the HF cache, complete and default, with its dtypes.
    let models = |extra: &[&str]| {
        zimage()
            .arg("models")
            .args(extra)
            .env("HOME", home.path())
            .env("HF_HOME", home.path().join("hf"))
            .output()
            .unwrap()
    };
    let output = models(&[]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success());
    assert!(
        stdout.contains("Hugging Face cache") && stdout.contains("[default]") && stdout.contains("complete"),
        "{stdout}"
    );
    assert!(stdout.contains("F32"), "{stdout}");

    let output = models(&["--verify"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );

    // Corrupt one blob in place: same size, different bytes.
    let blob = snapshot
        .join("vae/diffusion_pytorch_model.safetensors")
        .canonicalize()
        .unwrap();
    let mut bytes = std::fs::read(&blob).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x55;
    std::fs::write(&blob, bytes).unwrap();
    let output = models(&["--verify", "--json"]);
    assert_eq!(output.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let bad = json[0]["verify"]["first_bad"].as_str().unwrap();
    assert!(bad.contains("vae/diffusion_pytorch_model.safetensors"), "{bad}");
}

#[test]
fn refused_connection_and_bad_arguments_are_clear() {
    let dir = tempfile::tempdir().unwrap();
    let output = zimage()
        .args([
            "fetch",
            "--retries",
            "1",
            "--endpoint",
            &format!("http://127.0.0.1:{}", closed_port()),
        ])
        .arg("--dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("error: cannot reach http://127.0.0.1:"),
        "{stderr}"
    );

    let output = zimage().args(["fetch", "--source", "gitlab"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let output = zimage()
        .args(["models", "--model"])
        .arg(dir.path().join("nope"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("not a directory"));
}

#[test]
fn models_convert_writes_a_cache_that_is_then_listed() {
    let files = fake_checkpoint();
    let hub = FakeHub::start(files);
    let dir = tempfile::tempdir().unwrap();
    run_ok(
        zimage()
            .args(["fetch", "--endpoint", &hub.url(), "--dir"])
            .arg(dir.path())
            .env("HOME", dir.path()),
    );
    let output = run_ok(
        zimage()
            .args(["models", "--convert", "bf16", "--json", "--model"])
            .arg(dir.path())
            .env("HOME", dir.path()),
    );
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let components = json[0]["components"].as_array().unwrap();
    for name in ["text_encoder", "transformer", "vae"] {
        let component = components.iter().find(|c| c["name"] == name).unwrap();
        assert_eq!(component["converted"], "bf16", "{name}");
    }
    assert!(dir
        .path()
        .join(".zimage-cache/transformer-bf16/provenance.json")
        .is_file());
    assert!(json[0]["complete"].as_bool().unwrap());
}

/// Ctrl-C during a transfer: the command stops with 130, nothing half-written under a final name,
/// and the same command run again completes.
#[cfg(unix)]
#[test]
fn ctrl_c_keeps_partial_files_and_the_rerun_completes() {
    const SHARD: &str = "transformer/diffusion_pytorch_model-00001-of-00002.safetensors";
    let files = fake_checkpoint();
    let hub = FakeHub::start(files.clone());
    hub.with(|s| {
        s.stall_once.insert(SHARD.to_string(), 4000);
        s.stall = std::time::Duration::from_secs(2);
    });
    let dir = tempfile::tempdir().unwrap();
    let fetch = || {
        let mut command = zimage();
        command
            .args(["fetch", "--endpoint", &hub.url(), "--dir"])
            .arg(dir.path())
            .env("HOME", dir.path());
        command
    };
    let child = fetch()
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let part = dir.path().join(format!("{SHARD}.part"));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !part.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the shard download never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    assert!(part.exists(), "the partial file is kept");
    assert!(!dir.path().join(SHARD).exists());

    run_ok(&mut fetch());
    assert_checkpoint_files(dir.path(), &files);
    assert!(!part.exists());
}
