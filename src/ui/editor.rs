//! The prompt pane: the multi-line prompt (ratatui-textarea: soft wrap, wide characters) and the
//! job's size, steps and seed.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

use super::{pane_block, Palette};
use crate::app::editor::DraftField;
use crate::app::state::{AppState, Mode, Pane};

pub fn draw(frame: &mut Frame, area: Rect, state: &AppState, palette: &Palette) {
    let mut block = pane_block(state, Pane::Editor, palette);
    if let Some(id) = state.draft.editing {
        block = block.title_bottom(Line::from(format!(" editing job #{id} ")).right_aligned());
    } else if state.mode == Mode::InsertPrompt {
        block = block.title_bottom(Line::from(" typing · Esc done ").right_aligned());
    }
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let [prompt_area, fields_area] =
        Layout::vertical([Constraint::Min(1), Constraint::Length(1)]).areas(inner);

    let typing = state.mode == Mode::InsertPrompt;
    let focused = state.focus == Pane::Editor && state.mode == Mode::Normal;
    let selected = |field: DraftField| focused && state.draft.field == field;

    // The widget draws its own cursor; show it only while typing.
    let mut prompt = state.draft.prompt.clone();
    prompt.set_cursor_style(if typing {
        Style::default().add_modifier(Modifier::REVERSED)
    } else {
        Style::default()
    });
    if selected(DraftField::Prompt) {
        prompt.set_style(Style::default().add_modifier(Modifier::BOLD));
    }
    frame.render_widget(&prompt, prompt_area);

    let draft = &state.draft;
    let field = |label: &str, value: String, which: DraftField| -> Vec<Span<'static>> {
        let value_style = if selected(which) {
            Style::default().fg(palette.selection_fg).bg(palette.selection_bg)
        } else {
            Style::default().fg(palette.accent)
        };
        vec![
            Span::styled(format!("{label} "), Style::default().fg(palette.dim)),
            Span::styled(value, value_style),
            Span::raw("  "),
        ]
    };
    let mut spans = Vec::new();
    spans.extend(field(
        "size",
        format!("{}×{}", draft.width, draft.height),
        DraftField::Size,
    ));
    spans.extend(field("steps", draft.steps.to_string(), DraftField::Steps));
    spans.extend(field("seed", draft.seed.to_string(), DraftField::Seed));
    frame.render_widget(Paragraph::new(Line::from(spans)), fields_area);
}
