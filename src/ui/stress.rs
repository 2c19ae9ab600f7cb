//! The Stress view (full screen): the run's form and live figures on the left; charts of the
//! time per image and the memory per image on the right, filled as images complete; the
//! summary (memory slope after warm-up, time drift, failures) and the report's path at the end.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Axis, Block, BorderType, Chart, Dataset, GraphType, Paragraph, Wrap};
use ratatui::Frame;

use super::format::{secs, truncate};
use super::Palette;
use crate::app::state::{AppState, Mode};
use crate::app::stress::{StressEnd, StressField, StressRun};
use crate::bench::report::Report;
use crate::bench::Section;

const MIB: f64 = (1u64 << 20) as f64;

pub fn draw(frame: &mut Frame, area: Rect, state: &AppState, palette: &Palette) {
    let left_width = if area.width >= 120 { 52 } else { 38 };
    let [left, right] = Layout::horizontal([Constraint::Length(left_width), Constraint::Min(0)]).areas(area);
    let form_height = StressField::ALL.len() as u16 + 3;
    let [form, status] = Layout::vertical([Constraint::Length(form_height), Constraint::Min(0)]).areas(left);
    let [time_chart, memory_chart] =
        Layout::vertical([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(right);
    draw_form(frame, form, state, palette);
    draw_status(frame, status, state, palette);
    let run = state.stress.run.as_ref();
    draw_time_chart(frame, time_chart, run, palette);
    draw_memory_chart(frame, memory_chart, run, palette);
}

fn block<'a>(title: String, focused: bool, palette: &Palette) -> Block<'a> {
    let style = if focused {
        Style::default().fg(palette.accent).add_modifier(Modifier::BOLD)
    } else {
        Style::default().fg(palette.border)
    };
    Block::bordered()
        .border_type(if focused {
            BorderType::Thick
        } else {
            BorderType::Plain
        })
        .border_style(style)
        .title(format!(" {title} "))
        .title_style(style)
}

fn draw_form(frame: &mut Frame, area: Rect, state: &AppState, palette: &Palette) {
    let view = &state.stress;
    let block = block("Stress test".into(), state.mode == Mode::Normal, palette);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let label_width = 12;
    let value_width = (inner.width as usize).saturating_sub(label_width + 1);
    let mut lines: Vec<Line> = StressField::ALL
        .iter()
        .map(|&field| {
            let applies = field.applies_to(view.settings.mode);
            let selected = field == view.field;
            let value = field_display(field, &view.settings);
            let value_style = match (selected, applies) {
                (true, _) => Style::default().fg(palette.selection_fg).bg(palette.selection_bg),
                (false, true) => Style::default().fg(palette.text),
                (false, false) => Style::default().fg(palette.dim),
            };
            let label_style = if applies {
                Style::default().fg(palette.accent)
            } else {
                Style::default().fg(palette.dim)
            };
            Line::from(vec![
                Span::styled(format!("{:<label_width$} ", field.label()), label_style),
                Span::styled(truncate(&value, value_width), value_style),
            ])
        })
        .collect();
    // Where the running run writes, or where the next one will.
    let next_dir = match view.run.as_ref().filter(|r| r.active()) {
        Some(run) => run.out_dir.clone(),
        None => state.settings.output_dir.join(format!(
            "{}-stress-{}",
            state.settings.output_prefix,
            view.started + 1
        )),
    };
    lines.push(Line::from(vec![
        Span::styled(
            format!("{:<label_width$} ", "Report to"),
            Style::default().fg(palette.dim),
        ),
        Span::styled(
            tail(&format!("{}/", next_dir.display()), value_width),
            Style::default().fg(palette.dim),
        ),
    ]));
    frame.render_widget(Paragraph::new(lines), inner);
}

/// The end of `text` in at most `width` columns ("…stress-2/"): a folder's last part is the
/// part that tells runs apart.
fn tail(text: &str, width: usize) -> String {
    use unicode_width::UnicodeWidthChar;
    if truncate(text, width) == text || width == 0 {
        return truncate(text, width);
    }
    let mut kept = Vec::new();
    let mut used = 1; // the "…"
    for c in text.chars().rev() {
        let w = c.width().unwrap_or(0);
        if used + w > width {
            break;
        }
        used += w;
        kept.push(c);
    }
    std::iter::once('…').chain(kept.into_iter().rev()).collect()
}

/// The form's value with units, e.g. "50 images", "0 s between images".
fn field_display(field: StressField, settings: &crate::bench::PlanSettings) -> String {
    let plural = |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    match field {
        StressField::Mode => format!("{} (m cycles)", settings.mode.label()),
        StressField::Size => size_label(settings.size),
        StressField::Steps => settings.steps.to_string(),
        StressField::Runs => plural(settings.runs, "image", "images"),
        StressField::Sweep => settings
            .sweep_sizes
            .iter()
            .map(|&s| size_label(s))
            .collect::<Vec<_>>()
            .join(", "),
        StressField::Soak => plural(settings.soak_images, "image", "images"),
        StressField::Interval => format!("{} s between images", settings.interval.as_secs_f64()),
        StressField::Warmup => format!("{} per series (excluded)", settings.warmup),
    }
}

fn size_label((w, h): (u32, u32)) -> String {
    if w == h {
        format!("{w}²")
    } else {
        format!("{w}×{h}")
    }
}

fn draw_status(frame: &mut Frame, area: Rect, state: &AppState, palette: &Palette) {
    let block = block("Run".into(), false, palette);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let dim = Style::default().fg(palette.dim);
    let Some(run) = state.stress.run.as_ref() else {
        let text = vec![
            Line::styled("No run yet.", Style::default().fg(palette.text)),
            Line::styled(
                "s starts one on the loaded model; queued jobs wait until it ends.",
                dim,
            ),
        ];
        frame.render_widget(Paragraph::new(text).wrap(Wrap { trim: true }), inner);
        return;
    };
    let stats = run.stats();
    let mut lines = Vec::new();
    let headline = match &run.end {
        None if run.cancel_requested => Line::styled("Cancelling…", Style::default().fg(palette.warn)),
        None => Line::styled(
            format!("Running {}", run.mode.label()),
            Style::default().fg(palette.accent).add_modifier(Modifier::BOLD),
        ),
        Some(StressEnd::Finished { stopped: true, .. }) => {
            Line::styled("Stopped (partial report)", Style::default().fg(palette.warn))
        }
        Some(StressEnd::Finished { .. }) => Line::styled(
            "Finished",
            Style::default().fg(palette.ok).add_modifier(Modifier::BOLD),
        ),
        Some(StressEnd::Failed { message }) => {
            Line::styled(format!("Failed: {message}"), Style::default().fg(palette.error))
        }
    };
    lines.push(headline);
    lines.push(Line::from(vec![
        Span::styled("images ", dim),
        Span::raw(format!("{}/{}", stats.done, stats.planned)),
        Span::styled(format!("  (+{} warm-up)", stats.warmups), dim),
    ]));
    if let Some(job) = &run.current {
        let what = if job.warmup { " warm-up" } else { "" };
        lines.push(Line::from(vec![
            Span::styled("now ", dim),
            Span::raw(format!(
                "{} {}{what} step {}/{}",
                section_name(job.section),
                size_label((job.width, job.height)),
                job.step,
                job.steps
            )),
        ]));
    }
    if let Some((since, interval)) = run.waiting.filter(|_| run.active()) {
        let left = interval.saturating_sub(state.now.saturating_sub(since));
        lines.push(Line::from(vec![
            Span::styled("next image in ", dim),
            Span::raw(secs(left.as_secs_f64())),
        ]));
    }
    let opt = |v: Option<f64>| v.map_or("–".to_string(), secs);
    lines.push(Line::from(vec![
        Span::styled("mean ", dim),
        Span::raw(opt(stats.mean_s)),
        Span::styled("  last ", dim),
        Span::raw(opt(stats.last_s)),
    ]));
    let bad = |n: usize| {
        if n > 0 {
            Style::default().fg(palette.error)
        } else {
            Style::default()
        }
    };
    lines.push(Line::from(vec![
        Span::styled("failures ", dim),
        Span::styled(stats.failures.to_string(), bad(stats.failures)),
        Span::styled("  OOM ", dim),
        Span::styled(stats.oom.to_string(), bad(stats.oom)),
    ]));
    if let Some(StressEnd::Finished { report, written, .. }) = &run.end {
        lines.extend(summary(report, inner.width >= 48, palette));
        match written {
            Ok(w) => lines.push(Line::from(vec![
                Span::styled("report ", dim),
                Span::raw(w.markdown.display().to_string()),
                Span::styled(" (+ .json)", dim),
            ])),
            Err(err) => lines.push(Line::styled(
                format!("report not written: {err}"),
                Style::default().fg(palette.error),
            )),
        }
    }
    // Room left: the latest images, newest first.
    let room = (inner.height as usize).saturating_sub(lines.len() + 1);
    if room >= 2 && !run.records.is_empty() {
        lines.push(Line::styled(
            format!("latest images (time, peak {})", run.memory_label()),
            dim,
        ));
        for record in run.records.iter().rev().take(room) {
            lines.push(record_line(record, palette));
        }
    }
    frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), inner);
}

/// "#12 512²  1.50 s  1337 MiB ok" (warm-ups marked "w"); fits the narrow column.
fn record_line(record: &crate::bench::JobRecord, palette: &Palette) -> Line<'static> {
    let dim = Style::default().fg(palette.dim);
    let number = if record.warmup {
        "w".to_string()
    } else {
        format!("#{}", record.index)
    };
    let time = record.total_s.map_or("–".to_string(), secs);
    let peak = record
        .memory
        .peak_bytes
        .map_or("–".to_string(), |b| format!("{:.0} MiB", b as f64 / MIB));
    let outcome_style = if record.outcome.is_ok() {
        Style::default().fg(palette.ok)
    } else {
        Style::default().fg(palette.error)
    };
    Line::from(vec![
        Span::styled(format!("{number:>4} "), dim),
        Span::raw(format!(
            "{:<9} {time:>7} {peak:>9} ",
            size_label((record.request.width, record.request.height))
        )),
        Span::styled(record.outcome.label(), outcome_style),
    ])
}

fn section_name(section: Section) -> &'static str {
    match section {
        Section::Runs => "run",
        Section::Sweep => "sweep",
        Section::Soak => "soak",
    }
}

/// The end-of-run figures: the soak's memory slope and time drift, the runs' mean, sweep OOMs.
fn summary(report: &Report, wide: bool, palette: &Palette) -> Vec<Line<'static>> {
    let dim = Style::default().fg(palette.dim);
    let label = report.header.device.memory_source.short();
    let mut lines = Vec::new();
    if let Some(runs) = &report.runs {
        lines.push(Line::from(vec![
            Span::styled("runs ", dim),
            Span::raw(format!(
                "{} ok, mean {}",
                runs.stats.ok,
                runs.stats.total_s.as_ref().map_or("–".into(), |s| secs(s.mean))
            )),
        ]));
    }
    if let Some(sweep) = &report.sweep {
        let oom: Vec<String> = sweep
            .jobs
            .iter()
            .filter(|j| j.outcome.is_memory_limit())
            .map(|j| j.size_label())
            .collect();
        let text = if oom.is_empty() {
            format!("{} sizes, none out of memory", sweep.jobs.len())
        } else {
            format!("OOM at {}", oom.join(", "))
        };
        lines.push(Line::from(vec![Span::styled("sweep ", dim), Span::raw(text)]));
    }
    if let Some(soak) = &report.soak {
        let s = &soak.stats;
        // Memory in use after each image, fitted over the measured images (warm-ups excluded).
        let slope = s
            .used_after_slope_mib_per_image
            .map_or("–".into(), |v| format!("{v:+.2} MiB/img"));
        let note = |text: &'static str| Span::styled(if wide { text } else { "" }, dim);
        lines.push(Line::from(vec![
            Span::styled(format!("{label} slope "), dim),
            Span::styled(slope, Style::default().add_modifier(Modifier::BOLD)),
            note(" after warm-up (linear fit)"),
        ]));
        let drift = s.time_drift_percent.map_or("–".into(), |v| format!("{v:+.1} %"));
        lines.push(Line::from(vec![
            Span::styled("time drift ", dim),
            Span::styled(drift, Style::default().add_modifier(Modifier::BOLD)),
            note(" last tenth vs first tenth"),
        ]));
    }
    lines
}

/// (image number, value) for each measured job that has the value.
fn points(run: &StressRun, value: impl Fn(&crate::bench::JobRecord) -> Option<f64>) -> Vec<(f64, f64)> {
    run.measured()
        .enumerate()
        .filter_map(|(i, r)| value(r).map(|v| ((i + 1) as f64, v)))
        .collect()
}

/// Axis bounds with a little room, never empty.
/// The data's range with a little room (not from zero: a slow creep must be visible; the axis
/// labels say where it starts).
fn y_bounds(series: &[&[(f64, f64)]]) -> [f64; 2] {
    let values = series.iter().flat_map(|s| s.iter().map(|p| p.1));
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    if !lo.is_finite() || !hi.is_finite() {
        return [0.0, 1.0];
    }
    let pad = ((hi - lo) * 0.1).max(hi.abs() * 0.01).max(1e-3);
    [(lo - pad).max(0.0), hi + pad]
}

/// A line chart of one value per image; x runs over the measured images so far.
fn chart<'a>(
    title: String,
    data: &'a [(f64, f64)],
    count: usize,
    y: [f64; 2],
    y_label: impl Fn(f64) -> String,
    colour: ratatui::style::Color,
    palette: &Palette,
) -> Chart<'a> {
    let x_max = count.max(2) as f64;
    let dim = Style::default().fg(palette.dim);
    let dataset = Dataset::default()
        .marker(Marker::Braille)
        .graph_type(GraphType::Line)
        .style(Style::default().fg(colour))
        .data(data);
    Chart::new(vec![dataset])
        .block(block(title, false, palette))
        .x_axis(
            Axis::default()
                .bounds([1.0, x_max])
                .labels(vec![
                    Span::styled("1", dim),
                    Span::styled(format!("{}", count.max(2)), dim),
                ])
                .style(dim),
        )
        .y_axis(
            Axis::default()
                .bounds(y)
                .labels(vec![
                    Span::styled(y_label(y[0]), dim),
                    Span::styled(y_label(y[1]), dim),
                ])
                .style(dim),
        )
}

fn draw_time_chart(frame: &mut Frame, area: Rect, run: Option<&StressRun>, palette: &Palette) {
    let data = run.map(|r| points(r, |j| j.total_s)).unwrap_or_default();
    let count = run.map_or(0, |r| r.measured().count());
    let y = y_bounds(&[&data]);
    let title = match run.and_then(|r| r.stats().last_s) {
        Some(last) => format!("Time per image (s) · last {}", secs(last)),
        None => "Time per image (s)".into(),
    };
    if data.is_empty() {
        return no_images_yet(frame, area, title, palette);
    }
    frame.render_widget(
        chart(
            title,
            &data,
            count,
            y,
            |v| format!("{v:.2}"),
            palette.accent,
            palette,
        ),
        area,
    );
}

fn no_images_yet(frame: &mut Frame, area: Rect, title: String, palette: &Palette) {
    frame.render_widget(
        Paragraph::new(Line::styled(
            "no measured image yet",
            Style::default().fg(palette.dim),
        ))
        .block(block(title, false, palette)),
        area,
    );
}

fn draw_memory_chart(frame: &mut Frame, area: Rect, run: Option<&StressRun>, palette: &Palette) {
    let mib = |b: Option<u64>| b.map(|b| b as f64 / MIB);
    let peak = run
        .map(|r| points(r, |j| mib(j.memory.peak_bytes)))
        .unwrap_or_default();
    let y = y_bounds(&[&peak]);
    let label = run.map_or("memory", StressRun::memory_label);
    let title = match label {
        "RSS" => "Peak RSS per image (MiB) · CPU: process memory".to_string(),
        other => format!("Peak {other} per image (MiB)"),
    };
    let count = run.map_or(0, |r| r.measured().count());
    if peak.is_empty() {
        return no_images_yet(frame, area, title, palette);
    }
    frame.render_widget(
        chart(
            title,
            &peak,
            count,
            y,
            |v| format!("{v:.0}"),
            palette.warn,
            palette,
        ),
        area,
    );
}

/// For the header: "stress 12/50" while a run goes.
pub fn header_note(state: &AppState) -> Option<String> {
    let run = state.stress.run.as_ref().filter(|r| r.active())?;
    let stats = run.stats();
    Some(format!("STRESS {}/{}", stats.done, stats.planned))
}
