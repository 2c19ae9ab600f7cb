//! `zimage-tui models`: every Z-Image-Turbo checkpoint found, what it holds, whether it is
//! complete and which one is the default; `--verify` hashes every file; `--convert bf16` writes
//! the fast-load cache of the default checkpoint.

use std::path::PathBuf;
use std::process::ExitCode;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::fetch::human_bytes;
use crate::fetch::convert::convert_component;
use crate::fetch::inspect::{self, CheckpointReport, VerifyBasis};
use crate::model::loader::{self, FoundModel};

#[derive(Debug, clap::Args)]
pub struct ModelsArgs {
    /// A checkpoint directory to consider first (as `gen --model`).
    #[arg(long, value_name = "DIR")]
    pub model: Option<PathBuf>,
    /// Check every file against the sizes and hashes the hub recorded (reads every byte).
    #[arg(long)]
    pub verify: bool,
    /// Write a converted copy of the default checkpoint's fp32 weights for fast loading.
    #[arg(long, value_name = "DTYPE", value_parser = ["bf16"])]
    pub convert: Option<String>,
    /// Print the findings as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(serde::Serialize)]
struct Entry {
    origin: String,
    default: bool,
    complete: bool,
    #[serde(flatten)]
    report: CheckpointReport,
    #[serde(skip_serializing_if = "Option::is_none")]
    verify: Option<inspect::VerifyOutcome>,
}

pub fn run(args: ModelsArgs) -> ExitCode {
    if let Some(dir) = &args.model {
        if !dir.is_dir() {
            eprintln!("error: --model {}: not a directory", dir.display());
            return ExitCode::from(2);
        }
    }
    // The loader's discovery: the same candidates, order and default that `gen` and the
    // dashboard use.
    let found = loader::discover(&loader::SearchPaths::from_env(args.model.clone()));
    let mut entries: Vec<Entry> = found.into_iter().map(describe).collect();
    let mut failed = false;
    if args.verify {
        for entry in &mut entries {
            match verify(&entry.report.dir) {
                Ok(outcome) => {
                    failed |= outcome.first_bad.is_some();
                    entry.verify = Some(outcome);
                }
                Err(err) => {
                    eprintln!("error: {}: {err}", entry.report.dir.display());
                    failed = true;
                }
            }
        }
    }
    if let Some(dtype) = &args.convert {
        match entries.iter().find(|e| e.default && e.complete) {
            None => {
                eprintln!("error: --convert needs a complete checkpoint; none was found");
                failed = true;
            }
            Some(entry) => failed |= !convert(entry, dtype),
        }
        // Show the new cache in the listing below.
        for entry in &mut entries {
            entry.report = inspect::inspect_dir(&entry.report.dir);
        }
    }
    if args.json {
        match serde_json::to_string_pretty(&entries) {
            Ok(text) => println!("{text}"),
            Err(err) => {
                eprintln!("error: {err}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        print_entries(&entries);
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn describe(found: FoundModel) -> Entry {
    let mut report = inspect::inspect_dir(&found.path);
    if let Some(problem) = found.problem {
        if report.problems.is_empty() {
            report.problems.push(problem);
        }
    }
    Entry {
        origin: found.source.to_string(),
        default: found.default,
        complete: found.valid && report.complete(),
        report,
        verify: None,
    }
}

fn byte_bar(total: u64) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template(
            "{msg:30!} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar
}

fn verify(dir: &std::path::Path) -> crate::fetch::Result<inspect::VerifyOutcome> {
    let bar = byte_bar(inspect::inspect_dir(dir).bytes);
    let mut base = 0u64;
    let mut current = (String::new(), 0u64);
    let outcome = inspect::verify_dir(dir, &mut |path, done, size| {
        if current.0 != path {
            base += current.1;
            current = (path.to_string(), size);
            bar.set_message(path.to_string());
        }
        bar.set_position(base + done);
    });
    bar.finish_and_clear();
    outcome
}

fn convert(entry: &Entry, dtype: &str) -> bool {
    let targets: Vec<_> = entry
        .report
        .components
        .iter()
        .filter(|c| c.dtypes.contains_key("F32") && c.converted.as_deref() != Some(dtype))
        .collect();
    if targets.is_empty() {
        eprintln!("nothing to convert: no component has fp32 weights without a valid {dtype} cache");
        return true;
    }
    for component in targets {
        let component_dir = entry.report.dir.join(&component.name);
        let bar = byte_bar(component.bytes);
        let mut base = 0u64;
        let mut current = (String::new(), 0u64);
        let result = convert_component(&component_dir, &mut |file, done, size| {
            if current.0 != file {
                base += current.1;
                current = (file.to_string(), size);
                bar.set_message(format!("{}/{file}", component.name));
            }
            bar.set_position(base + done);
        });
        bar.finish_and_clear();
        match result {
            Ok(cache) => {
                let bytes: u64 = cache.provenance.outputs.iter().map(|o| o.size).sum();
                eprintln!(
                    "{}: {dtype} cache written to {} ({})",
                    component.name,
                    cache.dir.display(),
                    human_bytes(bytes)
                );
            }
            Err(err) => {
                eprintln!("error: converting {}: {err}", component.name);
                return false;
            }
        }
    }
    true
}

fn print_entries(entries: &[Entry]) {
    if entries.is_empty() {
        println!("no Z-Image-Turbo checkpoint found.");
        println!("looked at: --model, $ZIMAGE_MODEL, the Hugging Face cache, the ModelScope cache");
        println!(
            "get one with `zimage-tui fetch` (or `--source modelscope`); until then the demo model is used"
        );
        return;
    }
    for entry in entries {
        let marker = if entry.default { "*" } else { " " };
        let state = if entry.complete { "complete" } else { "INCOMPLETE" };
        println!(
            "{marker} {}  ({}){}",
            entry.report.dir.display(),
            entry.origin,
            if entry.default { "  [default]" } else { "" }
        );
        println!(
            "    {state}, {}{}",
            human_bytes(entry.report.bytes),
            if entry.report.manifest {
                ", hub file list saved"
            } else {
                ""
            }
        );
        for component in &entry.report.components {
            let cache = component
                .converted
                .as_ref()
                .map(|d| format!("  [{d} cache]"))
                .unwrap_or_default();
            println!(
                "    {:<13}{:>3} files {:>9}  {}{cache}",
                component.name,
                component.files,
                human_bytes(component.bytes),
                component.dtype_summary()
            );
        }
        for problem in &entry.report.problems {
            println!("    problem: {problem}");
        }
        if !entry.report.partial_files.is_empty() {
            println!(
                "    {} partial download(s); `zimage-tui fetch` resumes them",
                entry.report.partial_files.len()
            );
        }
        if let Some(outcome) = &entry.verify {
            let basis = match outcome.basis {
                VerifyBasis::Manifest => "against the hub's file list",
                VerifyBasis::HfBlobNames => "against the HF cache's blob hashes",
                VerifyBasis::StructureOnly => "structure only: no hashes recorded here",
            };
            match &outcome.first_bad {
                None => println!(
                    "    verified {} files ({}) {basis}: all good",
                    outcome.checked,
                    human_bytes(outcome.bytes)
                ),
                Some(bad) => println!("    verify FAILED {basis}: {bad}"),
            }
        }
    }
}
