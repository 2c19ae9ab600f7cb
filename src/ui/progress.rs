//! The progress pane: model loading, the running job's step gauge, it/s, ETA, stage timings and
//! peak memory; after a job, the last job's timings. A model that failed to load shows here.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Gauge, Paragraph, Wrap};
use ratatui::Frame;

use super::format::{bytes, secs};
use super::{pane_block, Palette};
use crate::app::state::{AppState, FinishedRun, ModelStatus, Pane, RunProgress};
use crate::model::Stage;

pub fn draw(frame: &mut Frame, area: Rect, state: &AppState, palette: &Palette) {
    let block = pane_block(state, Pane::Progress, palette);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    match &state.model {
        ModelStatus::Failed { message } => {
            let text = vec![
                Line::styled(
                    "Model failed to load",
                    Style::default().fg(palette.error).add_modifier(Modifier::BOLD),
                ),
                Line::from(message.clone()),
                Line::styled(
                    "No model is loaded; jobs stay queued. m opens the model picker.",
                    Style::default().fg(palette.dim),
                ),
            ];
            frame.render_widget(Paragraph::new(text).wrap(Wrap { trim: true }), inner);
            return;
        }
        ModelStatus::Loading { part, done, total } => {
            let [label, gauge] =
                Layout::vertical([Constraint::Length(1), Constraint::Length(1)]).areas(inner);
            frame.render_widget(Paragraph::new(format!("Loading model: {part}")), label);
            let ratio = if *total > 0 {
                (*done as f64 / *total as f64).clamp(0.0, 1.0)
            } else {
                0.0
            };
            frame.render_widget(
                Gauge::default()
                    .ratio(ratio)
                    .label(format!("{done}/{total}"))
                    .gauge_style(Style::default().fg(palette.gauge)),
                gauge,
            );
            return;
        }
        ModelStatus::Ready { .. } => {}
    }
    if let Some(run) = &state.running {
        draw_running(frame, inner, state, run, palette);
    } else if let Some(last) = &state.last_run {
        draw_finished(frame, inner, state, last, palette);
    } else {
        let text = Line::styled("Idle. Queue a prompt to start.", Style::default().fg(palette.dim));
        frame.render_widget(Paragraph::new(text), inner);
    }
}

fn stage_name(stage: Option<Stage>) -> &'static str {
    match stage {
        None => "starting",
        Some(Stage::Encode) => "encoding prompt",
        Some(Stage::Denoise) => "denoising",
        Some(Stage::Decode) => "decoding + saving",
    }
}

fn load_secs(state: &AppState) -> Option<f64> {
    match &state.model {
        ModelStatus::Ready { load_secs, .. } => Some(*load_secs),
        _ => None,
    }
}

fn timing_lines(
    load: Option<f64>,
    encode: Option<f64>,
    steps: &[f64],
    decode: Option<f64>,
    save: Option<f64>,
    palette: &Palette,
) -> Vec<Line<'static>> {
    let label = |s: &str| Span::styled(format!("{s:<8}"), Style::default().fg(palette.dim));
    let value = |v: Option<f64>| Span::raw(v.map_or("…".to_string(), secs));
    let mut step_text: Vec<String> = steps.iter().map(|s| format!("{s:.2}")).collect();
    if step_text.is_empty() {
        step_text.push("…".into());
    }
    vec![
        Line::from(vec![
            label("load"),
            value(load),
            Span::raw("   "),
            label("encode"),
            value(encode),
        ]),
        Line::from(vec![label("steps"), Span::raw(step_text.join(" "))]),
        Line::from(vec![
            label("decode"),
            value(decode),
            Span::raw("   "),
            label("save"),
            value(save),
        ]),
    ]
}

fn draw_running(frame: &mut Frame, area: Rect, state: &AppState, run: &RunProgress, palette: &Palette) {
    let [title, gauge, rest] =
        Layout::vertical([Constraint::Length(1), Constraint::Length(1), Constraint::Min(0)]).areas(area);
    let cancel = if run.cancel_requested {
        " · cancelling…"
    } else {
        ""
    };
    frame.render_widget(
        Paragraph::new(Line::from(vec![
            Span::styled(
                format!("Job #{} ", run.job),
                Style::default().add_modifier(Modifier::BOLD),
            ),
            Span::raw(format!("{}{cancel}", stage_name(run.stage))),
        ])),
        title,
    );
    let ratio = if run.total > 0 {
        (run.step as f64 / run.total as f64).clamp(0.0, 1.0)
    } else {
        0.0
    };
    let rate = run
        .iterations_per_sec()
        .map_or("– it/s".into(), |r| format!("{r:.2} it/s"));
    let decode_estimate = state
        .last_run
        .as_ref()
        .map(|l| l.timings.decode.as_secs_f64() + l.save_secs.unwrap_or(0.0));
    let eta = run
        .eta_secs(decode_estimate)
        .map_or("ETA –".into(), |e| format!("ETA {}", secs(e)));
    frame.render_widget(
        Gauge::default()
            .ratio(ratio)
            .label(format!("step {}/{} · {rate} · {eta}", run.step, run.total))
            .gauge_style(Style::default().fg(palette.gauge)),
        gauge,
    );
    let elapsed = state.now.saturating_sub(run.started_at).as_secs_f64();
    let mut lines = timing_lines(
        load_secs(state),
        run.encode_secs,
        &run.step_secs,
        None,
        None,
        palette,
    );
    lines.push(Line::from(vec![
        Span::styled(format!("{:<8}", "elapsed"), Style::default().fg(palette.dim)),
        Span::raw(secs(elapsed)),
        Span::raw("   "),
        Span::styled("peak mem ", Style::default().fg(palette.dim)),
        Span::raw(run.peak_memory_bytes.map_or("–".into(), bytes)),
    ]));
    frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), rest);
}

fn draw_finished(frame: &mut Frame, area: Rect, state: &AppState, last: &FinishedRun, palette: &Palette) {
    let steps: Vec<f64> = last.timings.steps.iter().map(|d| d.as_secs_f64()).collect();
    let mean = if steps.is_empty() {
        0.0
    } else {
        steps.iter().sum::<f64>() / steps.len() as f64
    };
    let mut lines = vec![Line::from(vec![
        Span::styled(
            format!("Job #{} ", last.job),
            Style::default().add_modifier(Modifier::BOLD),
        ),
        Span::styled(
            format!("done in {}", secs(last.total_secs)),
            Style::default().fg(palette.ok),
        ),
        Span::raw(if mean > 0.0 {
            format!(" · {:.2} it/s", 1.0 / mean)
        } else {
            String::new()
        }),
    ])];
    lines.extend(timing_lines(
        load_secs(state),
        Some(last.timings.encode.as_secs_f64()),
        &steps,
        Some(last.timings.decode.as_secs_f64()),
        last.save_secs,
        palette,
    ));
    lines.push(Line::from(vec![
        Span::styled(format!("{:<8}", "peak"), Style::default().fg(palette.dim)),
        Span::raw(match (last.peak_vram_bytes, last.peak_memory_sampled) {
            (Some(vram), _) => format!("{} VRAM", bytes(vram)),
            (None, Some(sampled)) => format!("{} (sampled)", bytes(sampled)),
            (None, None) => "– (no memory report)".into(),
        }),
    ]));
    frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), area);
}
