//! The model picker overlay (`m`): every checkpoint discovery found (path, where from, size,
//! complete or not, dtypes, which one is current) plus the built-in demo model, the selected
//! entry's details, and where a download would go. Also the text of model-job rows in the queue.

use ratatui::layout::{Constraint, Layout, Margin, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, BorderType, Cell, Clear, Paragraph, Row, Table, TableState, Wrap};
use ratatui::Frame;

use super::format::{bytes, secs, truncate};
use super::Palette;
use crate::app::models::{other_source, source_name, ModelCandidate, ModelJob, ModelJobKind, ModelJobStatus};
use crate::app::state::{AppState, ModelStatus};
use crate::fetch::inspect::format_params;

pub fn draw(frame: &mut Frame, screen: Rect, state: &AppState, palette: &Palette) {
    let area = screen.inner(Margin {
        horizontal: 2,
        vertical: 1,
    });
    // Leave the footer (messages, key hints) visible.
    let area = Rect {
        height: area.height.saturating_sub(1),
        ..area
    };
    let picker = &state.models.picker;
    let title = if picker.scanning {
        " Models · scanning… "
    } else {
        " Models "
    };
    let block = Block::bordered()
        .border_type(BorderType::Double)
        .border_style(Style::default().fg(palette.accent))
        .title(title);
    let inner = block.inner(area);
    frame.render_widget(Clear, area);
    frame.render_widget(block, area);
    // The list as tall as its entries (header included), the details right below it.
    let list_height = (picker.candidates.len() as u16 + 1).max(2);
    let [current, list, _, details] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Max(list_height),
        Constraint::Length(1),
        Constraint::Min(0),
    ])
    .areas(inner);
    frame.render_widget(Paragraph::new(current_line(state, palette)), current);
    draw_list(frame, list, state, palette);
    frame.render_widget(
        Paragraph::new(detail_lines(state, palette)).wrap(Wrap { trim: true }),
        details,
    );
}

fn current_line(state: &AppState, palette: &Palette) -> Line<'static> {
    let (text, style) = match &state.model {
        ModelStatus::Ready { info, .. } => (
            format!("Current: {} · {} {}", info.label, info.device, info.dtype),
            Style::default().fg(palette.ok),
        ),
        ModelStatus::Loading { part, .. } => {
            (format!("Loading ({part})…"), Style::default().fg(palette.warn))
        }
        ModelStatus::Failed { .. } => (
            "No model loaded: Enter loads the selected one".to_string(),
            Style::default().fg(palette.error),
        ),
    };
    Line::styled(text, style)
}

fn draw_list(frame: &mut Frame, area: Rect, state: &AppState, palette: &Palette) {
    let picker = &state.models.picker;
    if picker.candidates.is_empty() {
        let text = if picker.scanning {
            "Looking in --model, $ZIMAGE_MODEL, the Hugging Face cache and the ModelScope cache…"
        } else {
            "Nothing found (r rescans)"
        };
        frame.render_widget(
            Paragraph::new(Line::styled(text, Style::default().fg(palette.dim))).wrap(Wrap { trim: true }),
            area,
        );
        return;
    }
    let wide = area.width >= 100;
    let mut header = vec!["", "from", "size", "state"];
    if wide {
        header.push("dtype");
    }
    header.push("path");
    let fixed: u16 = if wide {
        1 + 13 + 9 + 10 + 9 + 5
    } else {
        1 + 13 + 9 + 10 + 4
    };
    let path_width = area.width.saturating_sub(fixed) as usize;
    let rows = picker.candidates.iter().map(|c| {
        let current = state.models.requested.as_ref() == Some(&c.spec);
        let (marker, colour) = match &state.model {
            _ if !current => (" ", palette.ok),
            ModelStatus::Ready { .. } => ("●", palette.ok),
            ModelStatus::Loading { .. } => ("◌", palette.warn),
            ModelStatus::Failed { .. } => (" ", palette.ok),
        };
        let mut cells = vec![
            Cell::from(marker).style(Style::default().fg(colour)),
            Cell::from(c.origin.label()),
            Cell::from(c.bytes.map(bytes).unwrap_or_else(|| "—".into())),
            Cell::from(state_text(c)).style(state_style(c, palette)),
        ];
        if wide {
            cells.push(Cell::from(c.dtype_short()));
        }
        cells.push(Cell::from(truncate_start(&c.title(), path_width)));
        Row::new(cells)
    });
    let mut widths = vec![
        Constraint::Length(1),
        Constraint::Length(13),
        Constraint::Length(9),
        Constraint::Length(10),
    ];
    if wide {
        widths.push(Constraint::Length(9));
    }
    widths.push(Constraint::Min(10));
    let table = Table::new(rows, widths)
        .header(Row::new(header).style(Style::default().fg(palette.dim)))
        .column_spacing(1)
        .row_highlight_style(Style::default().fg(palette.selection_fg).bg(palette.selection_bg));
    let mut table_state = TableState::default().with_selected(Some(picker.selected));
    frame.render_stateful_widget(table, area, &mut table_state);
}

/// Keeps the end of a path (the snapshot, the repository), which tells entries apart.
fn truncate_start(text: &str, width: usize) -> String {
    let chars: Vec<char> = text.chars().collect();
    if chars.len() <= width {
        return text.to_string();
    }
    if width == 0 {
        return String::new();
    }
    let tail: String = chars[chars.len() - (width - 1)..].iter().collect();
    format!("…{tail}")
}

fn state_text(c: &ModelCandidate) -> String {
    let base = match (&c.spec, c.complete) {
        (_, false) => "incomplete",
        (crate::model::loader::ModelSpec::Dir(_), true) => "complete",
        _ => "available",
    };
    if c.default {
        format!("{base}*")
    } else {
        base.into()
    }
}

fn state_style(c: &ModelCandidate, palette: &Palette) -> Style {
    if c.complete {
        Style::default().fg(palette.ok)
    } else {
        Style::default().fg(palette.error)
    }
}

/// The selected entry's dtypes and problems, a finished download's offer, the download target.
fn detail_lines(state: &AppState, palette: &Palette) -> Vec<Line<'static>> {
    let picker = &state.models.picker;
    let dim = Style::default().fg(palette.dim);
    let mut lines = Vec::new();
    if let Some(c) = picker.selected_candidate() {
        let mut first = if c.dtypes.is_empty() {
            match c.dir() {
                Some(_) => "no weights read".to_string(),
                None => "built in: needs no files".to_string(),
            }
        } else {
            c.dtypes
                .iter()
                .map(|(name, counts)| {
                    let counts: Vec<String> = counts
                        .iter()
                        .map(|(dtype, n)| format!("{dtype} {}", format_params(*n)))
                        .collect();
                    format!("{name} {}", counts.join(", "))
                })
                .collect::<Vec<_>>()
                .join(" · ")
        };
        if c.bf16_cache {
            first.push_str(" · bf16 cache");
        }
        lines.push(Line::styled(first, dim));
        let offered = picker.offer.as_deref().is_some_and(|o| c.dir() == Some(o));
        if offered {
            lines.push(Line::styled(
                "Just downloaded: Enter loads it",
                Style::default().fg(palette.ok).add_modifier(Modifier::BOLD),
            ));
        } else if let Some(problem) = &c.problem {
            let mut text = format!("problem: {problem}");
            if c.partial_files > 0 {
                text.push_str(&format!(" ({} partial file(s): f resumes)", c.partial_files));
            }
            lines.push(Line::styled(text, Style::default().fg(palette.error)));
        } else if c.partial_files > 0 {
            lines.push(Line::styled(
                format!("{} partial download(s): f resumes them", c.partial_files),
                Style::default().fg(palette.warn),
            ));
        }
    }
    let source = picker.source;
    let other = other_source(source);
    let target = picker
        .target(source)
        .map(|p| format!(" into {}", p.display()))
        .unwrap_or_default();
    lines.push(Line::styled(
        "● current  * what `gen` picks by default  Enter loads, v verifies",
        dim,
    ));
    lines.push(Line::from(vec![
        Span::styled("f downloads from ", dim),
        Span::styled(source_name(source), Style::default().fg(palette.accent)),
        Span::styled(format!("{target} (s: {})", source_name(other)), dim),
    ]));
    lines
}

/// Running downloads and verifications for the header: "D1 42%", "V2 3/12 files".
pub fn header_note(state: &AppState) -> Option<String> {
    let notes: Vec<String> = crate::app::models::running_jobs(state)
        .map(|job| match (&job.kind, job.fraction()) {
            (ModelJobKind::Verify { .. }, _) if job.files_total > 0 => {
                format!("{} {}/{} files", job.tag(), job.files_done, job.files_total)
            }
            (_, Some(f)) => format!("{} {} {:.0}%", job.tag(), job.kind_label(), f * 100.0),
            (_, None) => format!("{} {}", job.tag(), job.kind_label()),
        })
        .collect();
    (!notes.is_empty()).then(|| notes.join(", "))
}

/// Bytes with a unit that suits small files too.
fn size(n: u64) -> String {
    if n < 1 << 20 {
        format!("{:.0} KiB", n as f64 / 1024.0)
    } else {
        bytes(n)
    }
}

/// Seconds to hours, as a 33 GB download may take: "12m34s", "2h05m".
fn long_secs(s: f64) -> String {
    if s >= 3600.0 {
        let minutes = (s / 60.0) as u64;
        format!("{}h{:02}m", minutes / 60, minutes % 60)
    } else {
        secs(s)
    }
}

/// A text progress bar `width` cells wide.
fn bar(fraction: f64, width: usize) -> String {
    let filled = (fraction.clamp(0.0, 1.0) * width as f64).round() as usize;
    format!("{}{}", "█".repeat(filled), "░".repeat(width - filled))
}

/// The status cell of a model job's queue row: a small gauge while it runs.
pub fn job_status_text(job: &ModelJob, width: usize) -> String {
    match &job.status {
        ModelJobStatus::Running if job.cancel_requested => "cancelling…".into(),
        ModelJobStatus::Running => match job.fraction() {
            Some(f) => {
                let percent = format!(" {:>3.0}%", f * 100.0);
                bar(f, width.saturating_sub(percent.len()).min(10)) + &percent
            }
            None => "starting…".into(),
        },
        ModelJobStatus::Done => "done".into(),
        ModelJobStatus::Failed { reason } => format!("failed: {reason}"),
        ModelJobStatus::Cancelled => "cancelled".into(),
    }
}

/// The rest of a model job's row: rate, ETA or outcome, then what it works on.
pub fn job_row_text(job: &ModelJob, now: std::time::Duration) -> String {
    let mut parts = Vec::new();
    if job.is_running() {
        if let ModelJobKind::Verify { .. } = job.kind {
            if job.files_total > 0 {
                parts.push(format!("{}/{} files", job.files_done, job.files_total));
            }
        }
        if let Some(rate) = job.rate() {
            parts.push(format!("{}/s", size(rate as u64)));
        }
        if let Some(eta) = job.eta_secs() {
            parts.push(format!("ETA {}", long_secs(eta)));
        }
    } else if let (ModelJobStatus::Done, Some(summary)) = (&job.status, &job.summary) {
        parts.push(format!("{summary} in {}", secs(job.elapsed_secs(now))));
    } else {
        parts.push(format!(
            "{} after {}",
            job.kind_label(),
            secs(job.elapsed_secs(now))
        ));
    }
    parts.push(job.target_label());
    parts.join(" · ")
}

/// Two lines about the selected model job: amounts, then the current file or the outcome.
pub fn job_details(job: &ModelJob, palette: &Palette, width: usize) -> Vec<Line<'static>> {
    let dim = Style::default().fg(palette.dim);
    let mut first = format!("{} {}", job.tag(), job.kind_label());
    if job.bytes_total > 0 {
        first.push_str(&format!(
            " · {} / {}",
            size(job.bytes_done()),
            size(job.bytes_total)
        ));
    }
    if job.files_total > 0 {
        first.push_str(&format!(" · {}/{} files", job.files_done, job.files_total));
    }
    let (second, style) = match (&job.status, &job.current_file, &job.summary) {
        (ModelJobStatus::Running, Some(file), _) => (file.clone(), dim),
        (ModelJobStatus::Failed { .. }, _, Some(summary)) => {
            (summary.clone(), Style::default().fg(palette.error))
        }
        (ModelJobStatus::Done, _, Some(summary)) => (summary.clone(), Style::default().fg(palette.ok)),
        (_, _, Some(summary)) => (summary.clone(), dim),
        _ => (String::new(), dim),
    };
    vec![
        Line::styled(truncate(&first, width), dim),
        Line::styled(truncate(&second, width), style),
    ]
}
