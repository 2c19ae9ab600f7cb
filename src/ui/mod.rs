//! Drawing: `draw(frame, state, palette)` is a pure function of the app state — one file per
//! pane, no I/O, no clock — so every screen can be snapshot-tested in a `TestBackend`.

pub mod editor;
pub mod format;
pub mod gpu;
pub mod help;
pub mod layout;
pub mod log;
pub mod models;
pub mod preview;
pub mod progress;
pub mod queue;
pub mod status;
pub mod stress;
pub mod theme;

use ratatui::layout::{Alignment, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::widgets::{Block, BorderType, Paragraph, Wrap};
use ratatui::Frame;

use crate::app::state::{AppState, Mode, Pane};
pub use layout::{PaneAreas, MIN_HEIGHT, MIN_WIDTH};
pub use theme::Palette;

/// Where things were drawn, for the event loop (graphics-protocol images are placed after).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Drawn {
    /// Inner area of the preview pane, where the image goes; `None` when hidden or too small.
    pub preview_image: Option<Rect>,
}

/// Draws the whole screen.
pub fn draw(frame: &mut Frame, state: &AppState, palette: &Palette) -> Drawn {
    let area = frame.area();
    if state.stress.open {
        return draw_stress_view(frame, area, state, palette);
    }
    let Some(areas) = layout::split(area) else {
        too_small(frame, area, palette);
        return Drawn::default();
    };
    status::draw_header(frame, areas.header, state, palette);
    queue::draw(frame, areas.queue, state, palette);
    editor::draw(frame, areas.editor, state, palette);
    progress::draw(frame, areas.progress, state, palette);
    gpu::draw(frame, areas.gpu, state, palette);
    let preview_image = preview::draw(frame, areas.preview, state, palette);
    log::draw(frame, areas.log, state, palette);
    status::draw_footer(frame, areas.footer, state, palette);
    match state.mode {
        Mode::Help => help::draw(frame, area, &state.keymap, palette),
        Mode::ConfirmQuit => status::draw_confirm_quit(frame, area, state, palette),
        Mode::Models => models::draw(frame, area, state, palette),
        _ => {}
    }
    Drawn {
        preview_image: if matches!(state.mode, Mode::Help | Mode::Models) {
            None
        } else {
            preview_image
        },
    }
}

/// The Stress view covers the panes; header, footer and overlays stay.
fn draw_stress_view(frame: &mut Frame, area: Rect, state: &AppState, palette: &Palette) -> Drawn {
    let Some([header, body, footer]) = layout::frame_parts(area) else {
        too_small(frame, area, palette);
        return Drawn::default();
    };
    status::draw_header(frame, header, state, palette);
    stress::draw(frame, body, state, palette);
    status::draw_footer(frame, footer, state, palette);
    match state.mode {
        Mode::Help => help::draw(frame, area, &state.keymap, palette),
        Mode::ConfirmQuit => status::draw_confirm_quit(frame, area, state, palette),
        _ => {}
    }
    Drawn::default()
}

/// A bordered block for a pane; the focused pane's border stands out.
pub fn pane_block<'a>(state: &AppState, pane: Pane, palette: &Palette) -> Block<'a> {
    let focused = state.focus == pane && state.mode == Mode::Normal
        || pane == Pane::Editor && matches!(state.mode, Mode::InsertPrompt);
    let (border_style, border_type) = if focused {
        (
            Style::default().fg(palette.accent).add_modifier(Modifier::BOLD),
            BorderType::Thick,
        )
    } else {
        (Style::default().fg(palette.border), BorderType::Plain)
    };
    Block::bordered()
        .border_type(border_type)
        .border_style(border_style)
        .title(format!(" {} ", pane.title()))
        .title_style(border_style)
}

fn too_small(frame: &mut Frame, area: Rect, palette: &Palette) {
    let text = format!(
        "Terminal too small: {}×{}\nzimage-tui needs at least {MIN_WIDTH}×{MIN_HEIGHT}.\nEnlarge the window (q quits).",
        area.width, area.height
    );
    let y = area.height.saturating_sub(3) / 2;
    let rect = Rect {
        x: area.x,
        y: area.y + y,
        width: area.width,
        height: area.height.saturating_sub(y).min(3),
    };
    frame.render_widget(
        Paragraph::new(text)
            .alignment(Alignment::Center)
            .wrap(Wrap { trim: true })
            .style(Style::default().fg(palette.warn)),
        rect,
    );
}
