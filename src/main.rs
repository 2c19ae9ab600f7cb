use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = zimage_tui::cli::Cli::parse();
    zimage_tui::cli::run(cli)
}
