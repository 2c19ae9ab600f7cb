//! The log pane: app messages and worker log lines, newest at the bottom, scrollable.

use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::Line;
use ratatui::widgets::Paragraph;
use ratatui::Frame;

use super::format::truncate;
use super::{pane_block, Palette};
use crate::app::state::{AppState, LogLevel, Pane};

pub fn draw(frame: &mut Frame, area: Rect, state: &AppState, palette: &Palette) {
    let mut block = pane_block(state, Pane::Log, palette);
    if state.log_scroll > 0 {
        block = block.title_bottom(Line::from(format!(" ↑{} ", state.log_scroll)).right_aligned());
    }
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let height = inner.height as usize;
    let end = state.log.len().saturating_sub(state.log_scroll);
    let start = end.saturating_sub(height);
    let lines: Vec<Line> = state
        .log
        .range(start..end)
        .map(|line| {
            let style = match line.level {
                LogLevel::Info => Style::default(),
                LogLevel::Warn => Style::default().fg(palette.warn),
                LogLevel::Error => Style::default().fg(palette.error),
            };
            Line::styled(truncate(&line.text, inner.width as usize), style)
        })
        .collect();
    frame.render_widget(Paragraph::new(lines), inner);
}
