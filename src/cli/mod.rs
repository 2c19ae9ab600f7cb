//! Command line: no subcommand starts the dashboard; `gen`, `bench`, `models`, `fetch` are
//! headless. Each subcommand's arguments live in its own file, owned with its feature.

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
}

pub fn run(cli: Cli) -> ExitCode {
    let _ = cli;
    ExitCode::SUCCESS
}
