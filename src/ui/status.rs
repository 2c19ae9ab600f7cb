//! The header line (model, queue, session) and the footer: the last message or the one-line
//! input, then key hints generated from the keymap for the current mode and pane.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, BorderType, Clear, Paragraph, Wrap};
use ratatui::Frame;

use super::format::truncate;
use super::Palette;
use crate::app::keymap;
use crate::app::state::{AppState, JobStatus, LogLevel, Mode, ModelStatus};

pub fn draw_header(frame: &mut Frame, area: Rect, state: &AppState, palette: &Palette) {
    let dim = Style::default().fg(palette.dim);
    let model = match &state.model {
        ModelStatus::Loading { part, .. } => {
            Span::styled(format!("loading {part}…"), Style::default().fg(palette.warn))
        }
        ModelStatus::Ready { info, .. } => {
            let style = if info.random_weights {
                Style::default().fg(palette.warn)
            } else {
                Style::default().fg(palette.ok)
            };
            Span::styled(format!("{} · {} {}", info.label, info.device, info.dtype), style)
        }
        ModelStatus::Failed { .. } => Span::styled(
            "no model loaded (m picks one)",
            Style::default().fg(palette.error),
        ),
    };
    let queued = state
        .queue
        .iter()
        .filter(|j| j.status == JobStatus::Queued)
        .count();
    let done = state
        .queue
        .iter()
        .filter(|j| matches!(j.status, JobStatus::Done { .. }))
        .count();
    let mut spans = vec![
        Span::styled(
            " zimage-tui ",
            Style::default()
                .fg(palette.selection_fg)
                .bg(palette.accent)
                .add_modifier(Modifier::BOLD),
        ),
        Span::raw(" "),
    ];
    // First, so that a narrow header still shows it.
    if let Some(note) = super::stress::header_note(state) {
        spans.push(Span::styled(
            format!("{note} │ "),
            Style::default().fg(palette.accent).add_modifier(Modifier::BOLD),
        ));
    }
    spans.extend([
        model,
        Span::styled(format!(" │ {queued} queued, {done} done"), dim),
    ]);
    if let Some(note) = super::models::header_note(state) {
        spans.push(Span::styled(
            format!(" │ {note}"),
            Style::default().fg(palette.accent),
        ));
    }
    if state.paused {
        spans.push(Span::styled(
            " │ PAUSED",
            Style::default().fg(palette.warn).add_modifier(Modifier::BOLD),
        ));
    }
    let session = state
        .session_path
        .as_ref()
        .map_or("session: not saved".to_string(), |p| {
            format!("session: {}", p.display())
        });
    let used: usize = spans.iter().map(|s| s.width()).sum();
    let room = (area.width as usize).saturating_sub(used + 3);
    if room > 10 {
        spans.push(Span::styled(format!(" │ {}", truncate(&session, room)), dim));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

pub fn draw_footer(frame: &mut Frame, area: Rect, state: &AppState, palette: &Palette) {
    let [message_area, hints_area] =
        Layout::vertical([Constraint::Length(1), Constraint::Length(1)]).areas(area);
    if let Mode::LineInput(purpose) = state.mode {
        let label = format!("{}: ", purpose.label());
        let [label_area, input_area] = Layout::horizontal([
            Constraint::Length(label.chars().count() as u16),
            Constraint::Min(1),
        ])
        .areas(message_area);
        frame.render_widget(
            Paragraph::new(Span::styled(label, Style::default().fg(palette.accent))),
            label_area,
        );
        let mut input = state.draft.line.clone();
        input.set_cursor_style(Style::default().add_modifier(Modifier::REVERSED));
        frame.render_widget(&input, input_area);
    } else if let Some(message) = &state.message {
        let style = match message.level {
            LogLevel::Info => Style::default(),
            LogLevel::Warn => Style::default().fg(palette.warn),
            LogLevel::Error => Style::default().fg(palette.error),
        };
        frame.render_widget(
            Paragraph::new(Span::styled(truncate(&message.text, area.width as usize), style)),
            message_area,
        );
    }
    frame.render_widget(
        Paragraph::new(hint_line(state, area.width as usize, palette)),
        hints_area,
    );
}

/// "key description" pairs from the keymap, as many as fit.
fn hint_line(state: &AppState, width: usize, palette: &Palette) -> Line<'static> {
    let mut spans = Vec::new();
    let mut used = 0;
    for (keys, description) in keymap::hints(state) {
        let len = keys.chars().count() + 1 + description.chars().count() + 2;
        if used + len > width {
            break;
        }
        used += len;
        spans.push(Span::styled(
            keys,
            Style::default().fg(palette.selection_fg).bg(palette.border),
        ));
        spans.push(Span::raw(format!(" {description}  ")));
    }
    Line::from(spans)
}

pub fn draw_confirm_quit(frame: &mut Frame, screen: Rect, state: &AppState, palette: &Palette) {
    let job = match state.running_job() {
        Some(id) => format!("Job #{id} is running.\n"),
        None if state.stress.active() => "A stress run is going.\n".into(),
        _ => match crate::app::models::running_jobs(state).next() {
            Some(job) => format!(
                "{} {} is running (a download keeps its partial files).\n",
                job.tag(),
                job.kind_label()
            ),
            None => String::new(),
        },
    };
    let options: Vec<String> = state
        .keymap
        .bindings()
        .iter()
        .filter(|b| b.context == keymap::Context::ConfirmQuit && b.hint)
        .map(|b| format!("{}: {}", b.keys_label(), b.description))
        .collect();
    let text = format!("{job}Quit and cancel it?\n\n{}", options.join("    "));
    let width = 60.min(screen.width);
    let height = 7.min(screen.height);
    let area = Rect {
        x: screen.x + (screen.width - width) / 2,
        y: screen.y + (screen.height - height) / 2,
        width,
        height,
    };
    frame.render_widget(Clear, area);
    frame.render_widget(
        Paragraph::new(text).centered().wrap(Wrap { trim: true }).block(
            Block::bordered()
                .border_type(BorderType::Double)
                .border_style(Style::default().fg(palette.warn))
                .title(" Quit? "),
        ),
        area,
    );
}
