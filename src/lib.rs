//! zimage-tui: Z-Image-Turbo text-to-image on candle, with a terminal dashboard and headless tools.
//!
//! Layers (one-way): `model` (no UI, no tokio) ← `worker` (thread owning the model) ← faces:
//! `cli` (headless `gen`, `bench`, `models`, `fetch`) and `app` + `ui` (the dashboard).

pub mod app;
pub mod bench;
pub mod cli;
pub mod config;
pub mod fetch;
pub mod gpu;
pub mod logging;
pub mod model;
pub mod output;
pub mod session;
pub mod terminal;
pub mod theme;
pub mod ui;
pub mod worker;

#[cfg(test)]
mod test_fixtures;

/// The version written into PNG metadata, reports and sessions.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
