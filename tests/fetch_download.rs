//! Downloads from a fake hub on loopback: both layouts, resume, corruption, errors, tokens.

mod fetch_support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use fetch_support::*;
use zimage_tui::fetch::inspect::{inspect_dir, verify_dir, VerifyBasis};
use zimage_tui::fetch::{
    fetch, FetchError, FetchEvent, FetchOptions, HttpClient, RetryPolicy, Source, TransferEvent,
};

const SHARD: &str = "transformer/diffusion_pytorch_model-00001-of-00002.safetensors";

fn quick_retries() -> RetryPolicy {
    RetryPolicy {
        attempts: 3,
        first_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(20),
    }
}

fn client(token: Option<&str>) -> HttpClient {
    HttpClient::new(token.map(str::to_string), quick_retries())
}

fn hf_options(hub: &FakeHub) -> FetchOptions {
    let mut options = FetchOptions::new(Source::HuggingFace);
    options.endpoint = Some(hub.url());
    options
}

fn plain_options(hub: &FakeHub, dir: &Path) -> FetchOptions {
    let mut options = hf_options(hub);
    options.dir = Some(dir.to_path_buf());
    options
}

fn run(
    options: &FetchOptions,
    client: &HttpClient,
    env: &dyn Fn(&str) -> Option<String>,
) -> (Result<PathBuf, FetchError>, Vec<FetchEvent>) {
    let mut events = Vec::new();
    let result = fetch(options, client, env, &mut |e| events.push(e)).map(|s| s.model_dir);
    (result, events)
}

fn no_env(_: &str) -> Option<String> {
    None
}

#[test]
fn downloads_into_the_huggingface_cache_layout() {
    let files = fake_checkpoint();
    let hub = FakeHub::start(files.clone());
    let cache = tempfile::tempdir().unwrap();
    let env = env_with(&[("HF_HUB_CACHE", cache.path().display().to_string())]);
    let (result, events) = run(&hf_options(&hub), &client(None), &env);
    let snapshot = result.unwrap();

    let repo_root = cache.path().join("models--Tongyi-MAI--Z-Image-Turbo");
    assert_eq!(snapshot, repo_root.join("snapshots").join(COMMIT));
    assert_checkpoint_files(&snapshot, &files);
    assert_eq!(
        std::fs::read_to_string(repo_root.join("refs/main")).unwrap(),
        COMMIT
    );
    // Snapshot entries are relative symlinks to blobs named by sha256 (LFS) or git blob id.
    let link = std::fs::read_link(snapshot.join(SHARD)).unwrap();
    assert!(link.starts_with("../../../blobs"), "{link:?}");
    let blob_name = link.file_name().unwrap().to_str().unwrap().to_string();
    assert_eq!(blob_name.len(), 64);
    assert_eq!(blob_name, zimage_tui::fetch::http::sha256_hex(&files[SHARD]));
    let config_blob = std::fs::read_link(snapshot.join("vae/config.json")).unwrap();
    assert_eq!(config_blob.file_name().unwrap().len(), 40);
    // Nothing half-written is left behind, the manifest is saved, the checkpoint is complete.
    let leftovers: Vec<_> = std::fs::read_dir(repo_root.join("blobs"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".incomplete"))
        .collect();
    assert!(leftovers.is_empty());
    let report = inspect_dir(&snapshot);
    assert!(report.complete(), "{:?}", report.problems);
    assert!(report.manifest);
    assert_eq!(
        report
            .components
            .iter()
            .find(|c| c.name == "transformer")
            .unwrap()
            .dtypes["F32"],
        64 * 64 + 64 + 96 * 64
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(e, FetchEvent::Planned { missing: 11, .. })),
        "{events:?}"
    );

    // The hub's redirects were followed: LFS files to the CDN, small files to resolve-cache.
    let log = hub.log();
    assert!(log.iter().any(|l| l.path.starts_with("/cdn/")));
    assert!(log.iter().any(|l| l.path.starts_with("/api/resolve-cache/")));

    // A second run downloads nothing.
    let before = hub.log().len();
    let (again, events) = run(&hf_options(&hub), &client(None), &env);
    assert_eq!(again.unwrap(), snapshot);
    assert!(events
        .iter()
        .any(|e| matches!(e, FetchEvent::Planned { missing: 0, .. })));
    assert_eq!(
        hub.log().len(),
        before + 1,
        "only the file list is requested again"
    );

    // Verification from the manifest and, without it, from the blob names.
    let outcome = verify_dir(&snapshot, &mut |_, _, _| {}).unwrap();
    assert_eq!(outcome.basis, VerifyBasis::Manifest);
    assert_eq!(outcome.first_bad, None);
    std::fs::remove_file(snapshot.join(zimage_tui::fetch::manifest::MANIFEST_FILE)).unwrap();
    let outcome = verify_dir(&snapshot, &mut |_, _, _| {}).unwrap();
    assert_eq!(outcome.basis, VerifyBasis::HfBlobNames);
    assert_eq!(outcome.first_bad, None);
    assert_eq!(outcome.checked, 11);
}

#[test]
fn downloads_into_the_modelscope_cache_layout() {
    let files = fake_checkpoint();
    let hub = FakeHub::start(files.clone());
    let cache = tempfile::tempdir().unwrap();
    let env = env_with(&[("MODELSCOPE_CACHE", cache.path().display().to_string())]);
    let mut options = FetchOptions::new(Source::ModelScope);
    options.endpoint = Some(hub.url());
    let (result, _) = run(&options, &client(None), &env);
    let dir = result.unwrap();
    assert_eq!(dir, cache.path().join("models/Tongyi-MAI/Z-Image-Turbo"));
    assert_checkpoint_files(&dir, &files);
    assert!(hub
        .log()
        .iter()
        .any(|l| l.path.contains("/repo/files?Revision=master&Recursive=true")));
    assert!(hub
        .log()
        .iter()
        .any(|l| l.path.contains("/repo?Revision=master&FilePath=transformer%2F")));
    assert!(
        hub.log().iter().all(|l| l.authorization.is_none()),
        "no HF token goes to ModelScope"
    );
    assert!(inspect_dir(&dir).complete());
}

#[test]
fn a_cut_transfer_resumes_with_a_range_request() {
    let files = fake_checkpoint();
    let hub = FakeHub::start(files.clone());
    hub.with(|s| s.cut_once.insert(SHARD.to_string(), 5000));
    let dir = tempfile::tempdir().unwrap();
    let (result, events) = run(&plain_options(&hub, dir.path()), &client(None), &no_env);
    result.unwrap();
    assert_checkpoint_files(dir.path(), &files);
    let requests = hub.file_requests(SHARD);
    assert_eq!(requests.len(), 2, "{requests:?}");
    assert_eq!(requests[0].range, None);
    assert_eq!(requests[1].range.as_deref(), Some("bytes=5000-"));
    assert!(events.iter().any(|e| matches!(
        e,
        FetchEvent::Transfer {
            event: TransferEvent::Retrying { .. },
            ..
        }
    )));
}

#[test]
fn an_interrupted_run_resumes_from_the_partial_file() {
    let files = fake_checkpoint();
    let hub = FakeHub::start(files.clone());
    let dir = tempfile::tempdir().unwrap();
    // What a killed run leaves: the first part of the file under `.part`, nothing final.
    let shard = &files[SHARD];
    std::fs::create_dir_all(dir.path().join("transformer")).unwrap();
    let part = dir.path().join(format!("{SHARD}.part"));
    std::fs::write(&part, &shard[..7000]).unwrap();
    let (result, _) = run(&plain_options(&hub, dir.path()), &client(None), &no_env);
    result.unwrap();
    assert_checkpoint_files(dir.path(), &files);
    assert!(!part.exists());
    let requests = hub.file_requests(SHARD);
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].range.as_deref(), Some("bytes=7000-"));
}

#[test]
fn a_corrupt_partial_file_is_detected_and_fetched_again() {
    let files = fake_checkpoint();
    let hub = FakeHub::start(files.clone());
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("transformer")).unwrap();
    std::fs::write(dir.path().join(format!("{SHARD}.part")), noise(7, 3000)).unwrap();
    let (result, events) = run(&plain_options(&hub, dir.path()), &client(None), &no_env);
    result.unwrap();
    assert_checkpoint_files(dir.path(), &files);
    assert!(events.iter().any(|e| matches!(
        e,
        FetchEvent::Transfer {
            event: TransferEvent::Discarded { .. },
            ..
        }
    )));
    let requests = hub.file_requests(SHARD);
    assert_eq!(
        requests.iter().map(|r| r.range.clone()).collect::<Vec<_>>(),
        [Some("bytes=3000-".into()), None]
    );
}

#[test]
fn a_corrupt_transfer_is_fetched_again() {
    let files = fake_checkpoint();
    let hub = FakeHub::start(files.clone());
    hub.with(|s| s.corrupt_once.push(SHARD.to_string()));
    let dir = tempfile::tempdir().unwrap();
    let (result, _) = run(&plain_options(&hub, dir.path()), &client(None), &no_env);
    result.unwrap();
    assert_checkpoint_files(dir.path(), &files);
    assert_eq!(hub.file_requests(SHARD).len(), 2);
}

#[test]
fn content_that_never_matches_is_reported_and_never_installed() {
    let files = fake_checkpoint();
    let hub = FakeHub::start(files.clone());
    hub.with(|s| s.corrupt.push(SHARD.to_string()));
    let dir = tempfile::tempdir().unwrap();
    let (result, _) = run(&plain_options(&hub, dir.path()), &client(None), &no_env);
    let err = result.unwrap_err();
    assert!(
        matches!(err, FetchError::Mismatch { what: "sha256", .. }),
        "{err}"
    );
    assert!(err.to_string().contains(SHARD), "{err}");
    assert!(
        !dir.path().join(SHARD).exists(),
        "a bad file must not get its final name"
    );
}

#[test]
fn not_found_is_reported_clearly() {
    let hub = FakeHub::start(fake_checkpoint());
    let dir = tempfile::tempdir().unwrap();
    let mut options = plain_options(&hub, dir.path());
    options.repo = "Tongyi-MAI/No-Such-Model".into();
    let err = run(&options, &client(None), &no_env).0.unwrap_err();
    assert!(matches!(err, FetchError::Status { status: 404, .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("No-Such-Model") && text.contains("not found"),
        "{text}"
    );

    // A file the list promises but the server does not have.
    hub.with(|s| s.missing.push("vae/config.json".into()));
    let err = run(&plain_options(&hub, dir.path()), &client(None), &no_env)
        .0
        .unwrap_err();
    assert!(
        err.to_string().contains("vae/config.json") && err.to_string().contains("404"),
        "{err}"
    );
}

#[test]
fn a_refused_connection_is_reported_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = FetchOptions::new(Source::HuggingFace);
    options.endpoint = Some(format!("http://127.0.0.1:{}", closed_port()));
    options.dir = Some(dir.path().to_path_buf());
    let (result, events) = run(&options, &client(None), &no_env);
    let err = result.unwrap_err();
    assert!(matches!(err, FetchError::Unreachable { .. }), "{err}");
    assert!(
        err.to_string().contains("cannot reach http://127.0.0.1:"),
        "{err}"
    );
    let retries = events
        .iter()
        .filter(|e| matches!(e, FetchEvent::ListingRetry { .. }))
        .count();
    assert_eq!(retries, 2, "three attempts, two waits");
}

#[test]
fn hf_endpoint_and_token_come_from_the_environment() {
    let files = fake_checkpoint();
    let hub = FakeHub::start(files.clone());
    hub.with(|s| s.token = Some("hf_secret".into()));
    let cache = tempfile::tempdir().unwrap();
    let options = FetchOptions::new(Source::HuggingFace);

    // Without the token: 401, explained.
    let env = env_with(&[
        ("HF_ENDPOINT", hub.url()),
        ("HF_HUB_CACHE", cache.path().display().to_string()),
    ]);
    let err = run(&options, &client(options.token(&env).as_deref()), &env)
        .0
        .unwrap_err();
    assert!(matches!(err, FetchError::Status { status: 401, .. }), "{err}");
    assert!(err.to_string().contains("HF_TOKEN"), "{err}");

    let env = env_with(&[
        ("HF_ENDPOINT", hub.url()),
        ("HF_TOKEN", "hf_secret".into()),
        ("HF_HOME", cache.path().display().to_string()),
    ]);
    let dir = run(&options, &client(options.token(&env).as_deref()), &env)
        .0
        .unwrap();
    assert!(dir.starts_with(cache.path().join("hub/models--Tongyi-MAI--Z-Image-Turbo")));
    assert_checkpoint_files(&dir, &files);
    let log = hub.log();
    assert!(log
        .iter()
        .skip(1)
        .all(|l| l.authorization.as_deref() == Some("Bearer hf_secret")));
}

#[test]
fn verify_finds_a_bad_file() {
    let files = fake_checkpoint();
    let hub = FakeHub::start(files);
    let dir = tempfile::tempdir().unwrap();
    run(&plain_options(&hub, dir.path()), &client(None), &no_env)
        .0
        .unwrap();
    assert_eq!(verify_dir(dir.path(), &mut |_, _, _| {}).unwrap().first_bad, None);

    // Same size, one byte changed: only the hash can tell.
    let path = dir
        .path()
        .join("transformer/diffusion_pytorch_model-00002-of-00002.safetensors");
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&path, bytes).unwrap();
    let outcome = verify_dir(dir.path(), &mut |_, _, _| {}).unwrap();
    let bad = outcome.first_bad.expect("the changed file is found");
    assert!(bad.contains("00002-of-00002") && bad.contains("sha256"), "{bad}");

    // A truncated file is caught by the cheap listing too.
    let text = dir.path().join("text_encoder/model.safetensors");
    let len = std::fs::metadata(&text).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&text)
        .unwrap()
        .set_len(len - 10)
        .unwrap();
    let report = inspect_dir(dir.path());
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.contains("text_encoder/model.safetensors")),
        "{:?}",
        report.problems
    );
}

#[test]
fn cancelling_keeps_the_partial_file_and_a_rerun_resumes() {
    let files = fake_checkpoint();
    let hub = FakeHub::start(files.clone());
    let dir = tempfile::tempdir().unwrap();
    let options = plain_options(&hub, dir.path());
    let client = client(None);
    let cancel = client.cancel_flag();
    // Cancel as soon as the shard's first bytes are on disk (what Ctrl-C does in the CLI).
    let result = fetch(&options, &client, &no_env, &mut |event| {
        if let FetchEvent::Transfer {
            path,
            event: TransferEvent::Progress { done, .. },
        } = event
        {
            if path == SHARD && done > 0 {
                cancel.store(true, std::sync::atomic::Ordering::Relaxed);
            }
        }
    });
    assert!(matches!(result, Err(FetchError::Cancelled)), "{result:?}");
    assert!(
        !dir.path().join(SHARD).exists(),
        "never a partial file under the final name"
    );
    let part = dir.path().join(format!("{SHARD}.part"));
    let kept = std::fs::metadata(&part).expect("partial file kept").len();
    assert!(kept > 0);

    let (result, _) = run(&options, &self::client(None), &no_env);
    result.unwrap();
    assert_checkpoint_files(dir.path(), &files);
    let requests = hub.file_requests(SHARD);
    if kept < files[SHARD].len() as u64 {
        assert_eq!(requests.last().unwrap().range, Some(format!("bytes={kept}-")));
    } else {
        assert_eq!(
            requests.len(),
            1,
            "a complete partial file is verified, not fetched again"
        );
    }
}

#[test]
fn a_fetch_job_reports_on_a_channel() {
    use zimage_tui::fetch::job::{FetchJob, FetchJobEvent};
    let files = fake_checkpoint();
    let hub = FakeHub::start(files.clone());
    let dir = tempfile::tempdir().unwrap();
    let job = FetchJob::spawn_with(
        plain_options(&hub, dir.path()),
        std::sync::Arc::new(no_env),
        quick_retries(),
    );
    let mut done = 0;
    let summary = loop {
        match job
            .events
            .recv_timeout(Duration::from_secs(30))
            .expect("job events")
        {
            FetchJobEvent::Progress(FetchEvent::FileDone { .. }) => done += 1,
            FetchJobEvent::Progress(_) => {}
            FetchJobEvent::Finished(result) => break result.unwrap(),
        }
    };
    job.join();
    assert_eq!((done, summary.fetched), (11, 11));
    assert_checkpoint_files(dir.path(), &files);

    // A job against a dead address ends with a clear error, not silence.
    let mut options = plain_options(&hub, dir.path());
    options.endpoint = Some(format!("http://127.0.0.1:{}", closed_port()));
    let job = FetchJob::spawn_with(options, std::sync::Arc::new(no_env), quick_retries());
    let last = job.events.iter().last().expect("a final event");
    assert!(
        matches!(last, FetchJobEvent::Finished(Err(FetchError::Unreachable { .. }))),
        "{last:?}"
    );
}
