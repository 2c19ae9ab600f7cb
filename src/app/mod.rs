//! The dashboard's state machine: `AppState`, the `Action`s that change it, the reducer
//! (`update`) that applies them and returns `Effect`s for the event loop, and the one keymap that
//! turns keys into `Intent`s (and generates the key hints and help). No I/O, no terminal.

pub mod action;
pub mod editor;
pub mod keymap;
pub mod models;
pub mod persist;
pub mod reducer;
pub mod state;
pub mod stress;

pub use action::{Action, Effect, Intent, LoadedSession};
pub use reducer::update;
pub use state::AppState;
