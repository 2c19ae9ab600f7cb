//! `zimage-tui fetch`: download the checkpoint into the Hugging Face or ModelScope cache (or a
//! directory) with a progress bar; resumable, verified, safe to interrupt and re-run.

use std::path::PathBuf;
use std::process::ExitCode;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::fetch::env::{process_env, REPO_ID};
use crate::fetch::{
    self, FetchError, FetchEvent, FetchOptions, HttpClient, RetryPolicy, Source, TransferEvent,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SourceArg {
    Huggingface,
    Modelscope,
}

#[derive(Debug, clap::Args)]
pub struct FetchArgs {
    /// Which hub to download from.
    #[arg(long, value_enum, default_value = "huggingface")]
    pub source: SourceArg,
    /// Hub address (default: $HF_ENDPOINT or huggingface.co; $MODELSCOPE_DOMAIN or modelscope.cn).
    #[arg(long, value_name = "URL")]
    pub endpoint: Option<String>,
    /// Download into this directory (plain layout) instead of the hub's cache.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Branch, tag or commit (default: main on Hugging Face, master on ModelScope).
    #[arg(long, value_name = "REV")]
    pub revision: Option<String>,
    /// Repository to fetch.
    #[arg(long, value_name = "OWNER/NAME", default_value = REPO_ID)]
    pub repo: String,
    /// How many times a failing request is tried before giving up.
    #[arg(long, value_name = "N", default_value_t = 6, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub retries: u32,
}

impl FetchArgs {
    pub fn options(&self) -> FetchOptions {
        let source = match self.source {
            SourceArg::Huggingface => Source::HuggingFace,
            SourceArg::Modelscope => Source::ModelScope,
        };
        FetchOptions {
            source,
            endpoint: self.endpoint.clone(),
            dir: self.dir.clone(),
            revision: self.revision.clone(),
            repo: self.repo.clone(),
        }
    }
}

pub fn run(args: FetchArgs) -> ExitCode {
    let options = args.options();
    let env = &process_env;
    let retry = RetryPolicy {
        attempts: args.retries,
        ..RetryPolicy::default()
    };
    let client = HttpClient::new(options.token(env), retry);
    stop_on_ctrl_c(&client);
    let hub = options.hub(env);
    eprintln!(
        "fetching {} ({}) from {}",
        options.repo,
        options.revision(),
        hub.endpoint
    );

    let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template(
            "{msg:30!} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    let mut file_base = 0u64;
    let mut current_file_done = 0u64;
    let mut on_event = |event: FetchEvent| match event {
        FetchEvent::Planned {
            model_dir,
            files,
            bytes,
            missing,
            missing_bytes,
        } => {
            bar.println(format!(
                "{files} files, {} in all; {missing} to download ({}) into {}",
                human_bytes(bytes),
                human_bytes(missing_bytes),
                model_dir.display()
            ));
            bar.set_length(missing_bytes);
            bar.reset_eta();
        }
        FetchEvent::FileStarted { path, .. } => {
            file_base = bar.position();
            current_file_done = 0;
            bar.set_message(path);
        }
        FetchEvent::Transfer {
            event: TransferEvent::Progress { done, .. },
            ..
        } => {
            if current_file_done == 0 && done > 0 {
                // A resumed prefix counts as done but not towards the rate.
                bar.set_position(file_base + done);
                bar.reset_eta();
            } else {
                bar.set_position(file_base + done);
            }
            current_file_done = done;
        }
        FetchEvent::Transfer {
            path,
            event:
                TransferEvent::Retrying {
                    attempt,
                    reason,
                    delay,
                },
        } => {
            bar.println(format!("{path}: {reason}; retry {attempt} in {:.0?}", delay));
        }
        FetchEvent::Transfer {
            path,
            event: TransferEvent::Discarded { reason },
        } => {
            bar.println(format!("{path}: {reason}"));
            bar.set_position(file_base);
            current_file_done = 0;
        }
        FetchEvent::FileDone { path } => bar.println(format!("ok  {path}")),
        FetchEvent::ListingRetry {
            event:
                TransferEvent::Retrying {
                    attempt,
                    reason,
                    delay,
                },
        } => {
            eprintln!("file list: {reason}; retry {attempt} in {:.0?}", delay);
        }
        FetchEvent::ListingRetry { .. } => {}
    };
    let result = fetch::fetch(&options, &client, env, &mut on_event);
    bar.finish_and_clear();
    match result {
        Ok(summary) => {
            if summary.fetched == 0 {
                eprintln!("all {} files already in place", summary.files);
            } else {
                eprintln!(
                    "downloaded {} files ({})",
                    summary.fetched,
                    human_bytes(summary.bytes)
                );
            }
            println!("{}", summary.model_dir.display());
            ExitCode::SUCCESS
        }
        Err(FetchError::Cancelled) => {
            eprintln!("interrupted: partial files are kept; run the same command again to resume");
            ExitCode::from(130)
        }
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}

/// First Ctrl-C: finish the current chunk, keep the partial file, exit. A second one: exit now
/// (the partial file is still safe: it only ever holds received bytes, checked on resume).
fn stop_on_ctrl_c(client: &HttpClient) {
    let flag = client.cancel_flag();
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        let registered = signal_hook::flag::register_conditional_shutdown(signal, 130, flag.clone())
            .and_then(|_| signal_hook::flag::register(signal, flag.clone()));
        if let Err(err) = registered {
            tracing::warn!(
                "cannot handle signal {signal}: {err}; interrupting will still keep partial files"
            );
        }
    }
}

/// 1.5 GB style sizes (decimal units, as the hubs show them).
pub fn human_bytes(bytes: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < units.len() {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", units[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_sizes() {
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(24_600_000_000), "24.6 GB");
    }
}
