//! The GPU pane: memory gauge, a memory sparkline over the last minutes, utilisation,
//! temperature and power; without telemetry, a clear notice and this process's memory.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Gauge, Paragraph, Sparkline};
use ratatui::Frame;

use super::format::bytes;
use super::{pane_block, Palette};
use crate::app::state::{AppState, Pane};

pub fn draw(frame: &mut Frame, area: Rect, state: &AppState, palette: &Palette) {
    let block = pane_block(state, Pane::Gpu, palette);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let gpu = &state.gpu;
    let dim = Style::default().fg(palette.dim);
    let [first, second, third, spark] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Min(0),
    ])
    .areas(inner);
    // The newest samples that fit, right-aligned like a scrolling chart.
    let visible = spark.width as usize;
    let history: Vec<u64> = gpu
        .history
        .iter()
        .skip(gpu.history.len().saturating_sub(visible))
        .copied()
        .collect();

    if let Some(reading) = &gpu.reading {
        frame.render_widget(
            Paragraph::new(Line::styled(
                reading.name.clone(),
                Style::default().add_modifier(Modifier::BOLD),
            )),
            first,
        );
        let ratio = if reading.total_bytes > 0 {
            (reading.used_bytes as f64 / reading.total_bytes as f64).clamp(0.0, 1.0)
        } else {
            0.0
        };
        frame.render_widget(
            Gauge::default()
                .ratio(ratio)
                .label(format!(
                    "{} / {}",
                    bytes(reading.used_bytes),
                    bytes(reading.total_bytes)
                ))
                .gauge_style(Style::default().fg(palette.gauge)),
            second,
        );
        let opt = |v: Option<String>| v.unwrap_or_else(|| "–".into());
        let power = match (reading.power_watts, reading.power_limit_watts) {
            (Some(p), Some(l)) => Some(format!("{p:.0}/{l:.0} W")),
            (Some(p), None) => Some(format!("{p:.0} W")),
            _ => None,
        };
        frame.render_widget(
            Paragraph::new(Line::from(vec![
                Span::styled("util ", dim),
                Span::raw(opt(reading.utilization_percent.map(|u| format!("{u}%")))),
                Span::styled("  temp ", dim),
                Span::raw(opt(reading.temperature_c.map(|t| format!("{t}°C")))),
                Span::styled("  power ", dim),
                Span::raw(opt(power)),
            ])),
            third,
        );
        frame.render_widget(
            Sparkline::default()
                .data(&history)
                .max(reading.total_bytes.max(1))
                .style(Style::default().fg(palette.sparkline)),
            spark,
        );
    } else {
        let reason = gpu
            .unavailable
            .clone()
            .unwrap_or_else(|| "waiting for the first sample".into());
        frame.render_widget(
            Paragraph::new(Line::styled(
                "No GPU telemetry",
                Style::default().fg(palette.warn).add_modifier(Modifier::BOLD),
            )),
            first,
        );
        frame.render_widget(Paragraph::new(Line::styled(reason, dim)), second);
        frame.render_widget(
            Paragraph::new(Line::from(vec![
                Span::styled("process memory ", dim),
                Span::raw(gpu.process_rss_bytes.map_or("–".into(), bytes)),
                Span::styled(
                    gpu.memory_total_bytes
                        .map_or(String::new(), |t| format!(" of {} RAM", bytes(t))),
                    dim,
                ),
            ])),
            third,
        );
        let mut sparkline = Sparkline::default()
            .data(&history)
            .style(Style::default().fg(palette.sparkline));
        if let Some(total) = gpu.memory_total_bytes {
            sparkline = sparkline.max(total.max(1));
        }
        frame.render_widget(sparkline, spark);
    }
}
