//! The help overlay (`?`): every binding of the keymap, grouped by where it applies, flowed
//! into as many columns as the screen needs.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, BorderType, Clear, Paragraph};
use ratatui::Frame;

use super::format::truncate;
use super::Palette;
use crate::app::keymap::Keymap;

pub fn draw(frame: &mut Frame, screen: Rect, keymap: &Keymap, palette: &Palette) {
    let area = screen.inner(ratatui::layout::Margin {
        horizontal: 2,
        vertical: 1,
    });
    let block = Block::bordered()
        .border_type(BorderType::Double)
        .border_style(Style::default().fg(palette.accent))
        .title(" Keys (? or Esc closes) ");
    let inner = block.inner(area);
    frame.render_widget(Clear, area);
    frame.render_widget(block, area);

    let heading = Style::default().fg(palette.accent).add_modifier(Modifier::BOLD);
    let mut entries: Vec<(Option<String>, String)> = Vec::new();
    for (context, bindings) in keymap.sections() {
        if !entries.is_empty() {
            entries.push((None, String::new()));
        }
        entries.push((None, context.title().to_string()));
        for b in bindings {
            entries.push((Some(b.keys_label()), b.description.to_string()));
        }
    }
    let rows = inner.height.max(1) as usize;
    let columns = entries.len().div_ceil(rows).max(1);
    let areas = Layout::horizontal(vec![Constraint::Ratio(1, columns as u32); columns]).split(inner);
    for (chunk, area) in entries.chunks(rows).zip(areas.iter()) {
        let width = area.width.saturating_sub(1) as usize;
        let key_width = (width / 2).min(14);
        let lines: Vec<Line> = chunk
            .iter()
            .map(|(keys, text)| match keys {
                None => Line::styled(truncate(text, width), heading),
                Some(keys) => Line::from(vec![
                    Span::styled(
                        format!("{:<key_width$}", truncate(keys, key_width.saturating_sub(1))),
                        Style::default().fg(palette.warn),
                    ),
                    Span::raw(truncate(text, width.saturating_sub(key_width))),
                ]),
            })
            .collect();
        frame.render_widget(Paragraph::new(lines), *area);
    }
}
