//! `zimage-tui bench` end to end on the embedded demo model (CPU, tiny sizes): every mode writes
//! a complete report; an injected allocation failure and a budget refusal each cost one job only.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

const SMALL: &[&str] = &[
    "--size", "32x32", "--steps", "2", "--runs", "2", "--soak", "4", "--warmup", "1",
];

fn bench(out: &Path, args: &[&str]) -> Output {
    let output = Command::new(env!("CARGO_BIN_EXE_zimage-tui"))
        .arg("bench")
        .arg("--out")
        .arg(out)
        .args(SMALL)
        .args(args)
        .output()
        .expect("the binary runs");
    assert!(
        output.status.success(),
        "bench {args:?} failed:\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn read_report(dir: &Path) -> (String, Value) {
    let md = std::fs::read_to_string(dir.join("report.md")).expect("report.md written");
    let json = std::fs::read_to_string(dir.join("report.json")).expect("report.json written");
    (md, serde_json::from_str(&json).expect("report.json is JSON"))
}

fn number(v: &Value, what: &str) -> f64 {
    v.as_f64()
        .unwrap_or_else(|| panic!("{what} is not a number: {v}"))
}

/// A successful job has every figure filled.
fn assert_job_complete(job: &Value, steps: usize) {
    assert_eq!(job["outcome"]["kind"], "ok", "{job}");
    for key in ["encode_s", "decode_s", "total_s", "wall_s"] {
        assert!(number(&job[key], key) > 0.0, "{key} in {job}");
    }
    let step_s = job["step_s"].as_array().expect("step_s list");
    assert_eq!(step_s.len(), steps);
    assert!(step_s.iter().all(|s| s.as_f64().is_some_and(|s| s > 0.0)));
    let total = number(&job["total_s"], "total_s");
    let parts = number(&job["encode_s"], "encode_s")
        + number(&job["decode_s"], "decode_s")
        + step_s.iter().filter_map(Value::as_f64).sum::<f64>();
    assert!((total - parts).abs() < 1e-6, "total {total} vs parts {parts}");
    assert!(number(&job["memory"]["peak_bytes"], "peak") > 0.0, "{job}");
    assert!(number(&job["memory"]["used_after_bytes"], "used_after") > 0.0);
    assert!(number(&job["estimate_bytes"], "estimate") > 0.0);
}

fn assert_header(md: &str, json: &Value) {
    let header = &json["header"];
    assert!(header["tool"]
        .as_str()
        .is_some_and(|t| t.starts_with("zimage-tui ")));
    assert!(header["date_utc"].as_str().is_some_and(|d| d.len() >= 20));
    assert_eq!(
        header["model"]["random_weights"], true,
        "the demo model has random weights"
    );
    assert_eq!(header["warmup_per_series"], 1);
    assert!(md.contains("RANDOM WEIGHTS"));
    for row in [
        "| Card |",
        "| Driver |",
        "| Model |",
        "| dtype |",
        "| Version |",
        "| Date (UTC) |",
    ] {
        assert!(md.contains(row), "missing header row {row}");
    }
    assert!(md.contains("## Summary"));
}

#[test]
fn all_modes_write_complete_reports() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("all");
    bench(&out, &["--mode", "all", "--sizes", "32x32,48x32"]);
    let (md, json) = read_report(&out);
    assert_header(&md, &json);
    for heading in ["## Timed runs", "## Resolution sweep", "## Soak"] {
        assert!(md.contains(heading), "missing {heading}");
    }

    let runs = &json["runs"];
    assert_eq!(runs["warmup"].as_array().unwrap().len(), 1);
    assert_eq!(runs["warmup"][0]["warmup"], true);
    let jobs = runs["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 2);
    jobs.iter().for_each(|j| assert_job_complete(j, 2));
    assert_eq!(runs["stats"]["ok"], 2);
    assert!(number(&runs["stats"]["total_s"]["mean"], "mean") > 0.0);

    let sweep = json["sweep"]["jobs"].as_array().unwrap();
    let sizes: Vec<(u64, u64)> = sweep
        .iter()
        .map(|j| {
            (
                j["request"]["width"].as_u64().unwrap(),
                j["request"]["height"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(sizes, vec![(32, 32), (48, 32)]);
    sweep.iter().for_each(|j| assert_job_complete(j, 2));

    let soak = &json["soak"];
    assert_eq!(soak["jobs"].as_array().unwrap().len(), 4);
    soak["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .for_each(|j| assert_job_complete(j, 2));
    let stats = &soak["stats"];
    assert_eq!(stats["ok"], 4);
    number(&stats["used_after_slope_mib_per_image"], "slope");
    number(&stats["time_drift_percent"], "drift");
    assert_eq!(stats["failures"].as_array().unwrap().len(), 0);
    // Soak prompts cycle through the built-in Chinese and English list.
    let prompts: Vec<&str> = soak["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["request"]["prompt"].as_str().unwrap())
        .collect();
    assert!(prompts.iter().any(|p| !p.is_ascii()), "{prompts:?}");
}

#[test]
fn each_single_mode_writes_only_its_section() {
    let dir = tempfile::tempdir().unwrap();
    for (mode, heading, key) in [
        ("runs", "## Timed runs", "runs"),
        ("sweep", "## Resolution sweep", "sweep"),
        ("soak", "## Soak", "soak"),
    ] {
        let out = dir.path().join(mode);
        let printed = bench(&out, &["--mode", mode, "--sizes", "32x32", "--json"]);
        let (md, json) = read_report(&out);
        assert_header(&md, &json);
        assert!(md.contains(heading), "{mode}: {heading}");
        for other in ["runs", "sweep", "soak"].into_iter().filter(|k| *k != key) {
            assert!(json[other].is_null(), "{mode} also wrote {other}");
        }
        // --json prints the same report on stdout.
        let stdout: Value = serde_json::from_slice(&printed.stdout).expect("stdout is the JSON report");
        assert_eq!(stdout, json);
    }
}

#[test]
fn injected_oom_fails_one_job_and_the_sweep_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("oom");
    bench(
        &out,
        &[
            "--mode",
            "sweep",
            "--sizes",
            "32x32,48x48,32x48",
            "--inject-oom-at",
            "48x48",
        ],
    );
    let (md, json) = read_report(&out);
    let jobs = json["sweep"]["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 3);
    assert_job_complete(&jobs[0], 2);
    assert_eq!(jobs[1]["outcome"]["kind"], "out_of_memory", "{}", jobs[1]);
    assert!(jobs[1]["message"].as_str().is_some_and(|m| !m.is_empty()));
    // The model stayed loaded: the next size ran.
    assert_job_complete(&jobs[2], 2);
    assert!(md.contains("| 48×48 | OOM |"), "{md}");
    assert!(md.contains("| Sizes out of memory | 48×48 |"), "{md}");
}

#[test]
fn over_budget_jobs_are_refused_before_compute() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("budget");
    // The demo model at 32² is estimated well under 1 GiB; 1024² is over (VAE decode term).
    bench(
        &out,
        &[
            "--mode",
            "sweep",
            "--sizes",
            "32x32,1024x1024,48x32",
            "--max-vram",
            "1",
        ],
    );
    let (md, json) = read_report(&out);
    assert_eq!(json["header"]["max_vram_bytes"], 1u64 << 30);
    let jobs = json["sweep"]["jobs"].as_array().unwrap();
    assert_job_complete(&jobs[0], 2);
    let refused = &jobs[1];
    assert_eq!(refused["outcome"]["kind"], "over_budget", "{refused}");
    assert!(refused["outcome"]["estimate_bytes"].as_u64().unwrap() > 1u64 << 30);
    // Refused before compute: no timings, no time spent.
    assert!(refused["total_s"].is_null() && refused["step_s"].as_array().unwrap().is_empty());
    assert_eq!(refused["wall_s"], 0.0);
    assert_job_complete(&jobs[2], 2);
    assert!(md.contains("OOM (over budget, not run)"));
}
