//! Command line: no subcommand starts the dashboard; `gen`, `bench`, `models`, `fetch` are
//! headless. Each subcommand's arguments live in its own file, owned with its feature.

pub mod fetch;
pub mod models;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "zimage-tui",
    version,
    about = "Z-Image-Turbo text-to-image: terminal dashboard and headless tools"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Commands>,
}

#[derive(Debug, Subcommand)]
pub enum Commands {
    /// Generate one image headlessly.
    Gen,
    /// List Z-Image-Turbo checkpoints found; verify them; write the bf16 fast-load cache.
    Models(models::ModelsArgs),
    /// Download the checkpoint (resumable, verified) from Hugging Face or ModelScope.
    Fetch(fetch::FetchArgs),
}

pub fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Some(Commands::Models(args)) => models::run(args),
        Some(Commands::Fetch(args)) => fetch::run(args),
        _ => ExitCode::SUCCESS,
    }
}
