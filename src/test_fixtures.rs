//! Fixtures and reducer drivers shared by the unit tests of several modules.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use crate::app::{update, Action, AppState, Effect, Intent};
use crate::model::pipeline::ModelInfo;
use crate::model::GenerationRequest;

/// What the demo model reports once loaded.
pub fn demo_model_info() -> ModelInfo {
    ModelInfo {
        label: "demo model (random weights)".into(),
        random_weights: true,
        dtype: "f32".into(),
        device: "cpu".into(),
        parameters: vec![],
    }
}

/// A request small enough for any fixture: "p", 64×64, 2 steps, seed 1.
pub fn tiny_request() -> GenerationRequest {
    GenerationRequest {
        prompt: "p".into(),
        width: 64,
        height: 64,
        steps: 2,
        seed: 1,
    }
}

pub fn intent(state: &mut AppState, intent: Intent) -> Vec<Effect> {
    update(state, Action::Intent(intent))
}

/// Types `text` key by key into whatever input is open.
pub fn type_text(state: &mut AppState, text: &str) {
    for c in text.chars() {
        update(
            state,
            Action::TextKey(KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE)),
        );
    }
}
