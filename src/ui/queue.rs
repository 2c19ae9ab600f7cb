//! The queue pane: one row per job with its state, and the selected job's details below.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, Table, TableState};
use ratatui::Frame;

use super::format::{one_line, secs, truncate};
use super::{models, pane_block, Palette};
use crate::app::models::{ModelJob, ModelJobStatus};
use crate::app::state::{AppState, JobStatus, Pane, QueueEntry};
use crate::worker::FailureKind;

pub fn status_text(status: &JobStatus) -> String {
    match status {
        JobStatus::Queued => "queued".into(),
        JobStatus::Running { step, total } => format!("running {step}/{total}"),
        JobStatus::Done { secs: s } => format!("done in {}", secs(*s)),
        JobStatus::Failed { kind, reason } => format!("failed: {}", short_reason(*kind, reason)),
        JobStatus::Cancelled => "cancelled".into(),
    }
}

fn short_reason(kind: FailureKind, reason: &str) -> String {
    match kind {
        FailureKind::OutOfMemory => "out of memory".into(),
        _ => reason.to_string(),
    }
}

fn status_style(status: &JobStatus, palette: &Palette) -> Style {
    match status {
        JobStatus::Queued => Style::default().fg(palette.dim),
        JobStatus::Running { .. } => Style::default().fg(palette.accent).add_modifier(Modifier::BOLD),
        JobStatus::Done { .. } => Style::default().fg(palette.ok),
        JobStatus::Failed { .. } => Style::default().fg(palette.error),
        JobStatus::Cancelled => Style::default().fg(palette.warn),
    }
}

fn model_job_style(job: &ModelJob, palette: &Palette) -> Style {
    match job.status {
        ModelJobStatus::Running => Style::default().fg(palette.accent).add_modifier(Modifier::BOLD),
        ModelJobStatus::Done => Style::default().fg(palette.ok),
        ModelJobStatus::Failed { .. } => Style::default().fg(palette.error),
        ModelJobStatus::Cancelled => Style::default().fg(palette.warn),
    }
}

pub fn draw(frame: &mut Frame, area: Rect, state: &AppState, palette: &Palette) {
    let block = pane_block(state, Pane::Queue, palette);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let model_jobs = &state.models.jobs;
    if state.queue.is_empty() && model_jobs.is_empty() {
        let text = vec![
            Line::from("No jobs yet."),
            Line::styled("i types a prompt, a queues it.", Style::default().fg(palette.dim)),
        ];
        frame.render_widget(Paragraph::new(text), inner);
        return;
    }
    let details_height = if inner.height >= 8 { 2 } else { 0 };
    let [list, details_area] =
        Layout::vertical([Constraint::Min(1), Constraint::Length(details_height)]).areas(inner);
    let wide = list.width >= 60;
    let status_width: u16 = if wide { 22 } else { 16 };
    let rows = state.queue.iter().map(|entry| {
        let mut cells = vec![
            Cell::from(format!("{:>3}", entry.id)),
            Cell::from(truncate(&status_text(&entry.status), status_width as usize))
                .style(status_style(&entry.status, palette)),
        ];
        if wide {
            cells.push(Cell::from(format!("{}×{}", entry.width, entry.height)));
            cells.push(Cell::from(format!("{:>3}", entry.steps)));
        }
        cells.push(Cell::from(one_line(&entry.prompt)));
        Row::new(cells)
    });
    // Downloads and verifications share the queue, after the image jobs.
    let model_rows = model_jobs.iter().map(|job| {
        let status = models::job_status_text(job, status_width as usize);
        let mut cells = vec![
            Cell::from(format!("{:>3}", job.tag())),
            Cell::from(truncate(&status, status_width as usize)).style(model_job_style(job, palette)),
        ];
        if wide {
            cells.push(Cell::from(job.kind_label()));
            cells.push(Cell::from(""));
        }
        cells.push(Cell::from(models::job_row_text(job, state.now)));
        Row::new(cells)
    });
    let rows = rows.chain(model_rows);
    let mut widths = vec![Constraint::Length(3), Constraint::Length(status_width)];
    if wide {
        widths.push(Constraint::Length(9));
        widths.push(Constraint::Length(3));
    }
    widths.push(Constraint::Min(4));
    let selected_style = if state.focus == Pane::Queue {
        Style::default().fg(palette.selection_fg).bg(palette.selection_bg)
    } else {
        Style::default().add_modifier(Modifier::REVERSED)
    };
    let table = Table::new(rows, widths)
        .column_spacing(1)
        .row_highlight_style(selected_style);
    let total = state.queue.len() + model_jobs.len();
    let mut table_state = TableState::default().with_selected(Some(state.selected.min(total - 1)));
    frame.render_stateful_widget(table, list, &mut table_state);
    if details_height > 0 {
        if let Some(job) = crate::app::models::selected_job(state) {
            frame.render_widget(
                Paragraph::new(models::job_details(job, palette, details_area.width as usize)),
                details_area,
            );
        } else if let Some(entry) = state.selected_entry() {
            frame.render_widget(
                Paragraph::new(details(entry, palette, details_area.width as usize)),
                details_area,
            );
        }
    }
}

/// Two lines about the selected job: its settings, then where its image went (or why not).
fn details<'a>(entry: &QueueEntry, palette: &Palette, width: usize) -> Vec<Line<'a>> {
    let seed = match entry.used_seed {
        Some(seed) => seed.to_string(),
        None => entry.seed.to_string(),
    };
    let first = format!(
        "#{} {}×{} · {} steps · seed {seed}",
        entry.id, entry.width, entry.height, entry.steps
    );
    let (second, style) = match (&entry.status, &entry.output) {
        (JobStatus::Failed { reason, .. }, _) => {
            (format!("failed: {reason}"), Style::default().fg(palette.error))
        }
        (JobStatus::Done { .. }, Some(path)) => {
            (format!("→ {}", path.display()), Style::default().fg(palette.ok))
        }
        _ => (String::new(), Style::default()),
    };
    let dim = Style::default().fg(palette.dim);
    vec![
        Line::from(Span::styled(truncate(&first, width), dim)),
        Line::from(Span::styled(truncate(&second, width), style)),
    ]
}
