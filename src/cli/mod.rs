//! Command line: no subcommand starts the dashboard; `gen`, `bench`, `models`, `fetch` are
//! headless. Each subcommand's arguments and code live in its own file, owned with its feature;
//! this file only dispatches (one line per subcommand).

pub mod bench;
pub mod fetch;
pub mod gen;
pub mod model_tasks;
pub mod models;
pub mod tui;
mod tui_seams;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "zimage-tui",
    version,
    about = "Z-Image-Turbo text-to-image: terminal dashboard and headless tools"
)]
pub struct Cli {
    // Config layering flags (`--config`, `--theme`, `--set KEY=VALUE`, ...): see src/config.rs.
    #[command(flatten)]
    pub config: crate::config::ConfigArgs,
    #[command(subcommand)]
    pub command: Option<Commands>,
}

#[derive(Debug, Subcommand)]
pub enum Commands {
    /// Generate one image headlessly.
    Gen(gen::GenArgs),
    /// List Z-Image-Turbo checkpoints found; verify them; write the bf16 fast-load cache.
    Models(models::ModelsArgs),
    /// Download the checkpoint (resumable, verified) from Hugging Face or ModelScope.
    Fetch(fetch::FetchArgs),
    /// Timed runs, resolution sweep and soak; writes report.md and report.json.
    Bench(bench::BenchArgs),
}

pub fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Some(Commands::Gen(args)) => gen::run(args),
        Some(Commands::Models(args)) => models::run(args),
        Some(Commands::Fetch(args)) => fetch::run(args),
        Some(Commands::Bench(args)) => bench::run(args),
        None => tui::run(cli.config),
    }
}

/// Exit code for usage errors and invalid requests (as clap uses).
pub const EXIT_USAGE: u8 = 2;
/// Exit code for failures at run time (model load, I/O, out of memory).
pub const EXIT_FAILURE: u8 = 1;
