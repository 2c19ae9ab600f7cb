//! report.md: the hand-made review's tables (timed runs, resolution sweep, soak, summary), filled
//! by the machine.

use std::fmt::Write;

use super::estimate::{GIB, MIB};
use super::record::JobRecord;
use super::report::{Report, RunsSection, SoakSection, SweepSection};
use super::stats::Spread;

const DASH: &str = "—";

pub fn render(report: &Report) -> String {
    let mut md = String::new();
    header(&mut md, report);
    if let Some(runs) = &report.runs {
        runs_table(&mut md, runs, report.header.device.memory_source.short());
    }
    if let Some(sweep) = &report.sweep {
        sweep_table(&mut md, sweep, report.header.device.memory_source.short());
    }
    if let Some(soak) = &report.soak {
        soak_tables(&mut md, soak, report.header.device.memory_source.short());
    }
    summary(&mut md, report);
    md
}

fn header(md: &mut String, r: &Report) {
    let h = &r.header;
    let _ = writeln!(md, "# zimage-tui benchmark report\n");
    if h.model.random_weights {
        let _ = writeln!(
            md,
            "> **⚠ RANDOM WEIGHTS** — this model is not the real checkpoint. Speed and memory are \
             representative of the architecture; the images are noise.\n"
        );
    }
    let device = &h.device;
    let rows: Vec<(&str, String)> = vec![
        (
            "Card",
            device.card.clone().unwrap_or_else(|| h.model.device.clone()),
        ),
        ("Driver", device.driver.clone().unwrap_or_else(|| DASH.into())),
        ("Device", h.model.device.clone()),
        (
            "Model",
            if h.model.random_weights {
                format!("**RANDOM WEIGHTS** — {}", h.model.label)
            } else {
                h.model.label.clone()
            },
        ),
        ("Parameters", parameters(&h.model.parameters)),
        ("dtype", h.model.dtype.clone()),
        (
            "Model load",
            h.model_load_s
                .map_or_else(|| DASH.into(), |s| format!("{s:.2} s")),
        ),
        ("Memory figures", device.memory_source.describe()),
        (
            "Device memory total",
            device.total_bytes.map_or_else(|| DASH.into(), gib),
        ),
        (
            "Memory budget",
            h.max_vram_bytes.map_or_else(|| "none".into(), gib),
        ),
        (
            "Warm-up",
            format!(
                "{} generation(s) before each measured series, excluded from every statistic",
                h.warmup_per_series
            ),
        ),
        ("Version", h.tool.clone()),
        ("Commit", h.git_commit.clone().unwrap_or_else(|| DASH.into())),
        ("Date (UTC)", h.date_utc.clone()),
    ];
    key_value_table(md, "Item", rows);
    md.push('\n');
}

fn runs_table(md: &mut String, s: &RunsSection, mem: &str) {
    let _ = writeln!(
        md,
        "## Timed runs — {} × {}×{}, {} steps, seed {}\n",
        s.jobs.len(),
        s.width,
        s.height,
        s.steps,
        s.seed
    );
    let _ = writeln!(
        md,
        "Prompt: “{}”. Warm-up runs: {} (not in the table).\n",
        cell(&s.prompt),
        s.warmup.len()
    );
    table_head(
        md,
        &[
            "Run",
            "Result",
            "Total (s)",
            "Encode (s)",
            "Per step (ms)",
            "Decode (s)",
            &format!("Peak {mem} (MiB)"),
            &format!("{mem} after (MiB)"),
        ],
    );
    for j in &s.jobs {
        table_row(
            md,
            &[
                j.index.to_string(),
                j.outcome.label(),
                opt_s(j.total_s),
                opt_s(j.encode_s),
                opt_ms(j.mean_step_s()),
                opt_s(j.decode_s),
                opt_mib(j.memory.peak_bytes),
                opt_mib(j.memory.used_after_bytes),
            ],
        );
    }
    let st = &s.stats;
    let mean = |sp: &Option<Spread>| sp.map(|x| x.mean);
    table_row(
        md,
        &[
            "**Mean**".into(),
            format!("{}/{} ok", st.ok, st.ok + st.failed),
            opt_s(mean(&st.total_s)),
            opt_s(mean(&st.encode_s)),
            opt_ms(mean(&st.step_s)),
            opt_s(mean(&st.decode_s)),
            opt_mib(mean(&st.peak_bytes).map(|b| b as u64)),
            String::new(),
        ],
    );
    if let Some(t) = st.total_s {
        let _ = writeln!(
            md,
            "\nTotal time: median {} s, min {} s, max {} s, std dev {}.",
            significant(t.median),
            significant(t.min),
            significant(t.max),
            t.std_dev
                .map_or_else(|| DASH.into(), |d| format!("{} s", significant(d)))
        );
    }
    md.push('\n');
}

fn sweep_table(md: &mut String, s: &SweepSection, mem: &str) {
    let _ = writeln!(md, "## Resolution sweep — {} steps, seed {}\n", s.steps, s.seed);
    let _ = writeln!(
        md,
        "One warm-up per size before the measured run (not in the table). A size that runs out of \
         memory, or whose estimated peak exceeds the budget, is recorded as OOM and the sweep goes on.\n"
    );
    table_head(
        md,
        &[
            "Size",
            "Result",
            "Total (s)",
            "Per step (ms)",
            "Decode (s)",
            &format!("Peak {mem} (MiB)"),
            "Estimated peak (MiB)",
        ],
    );
    for j in &s.jobs {
        table_row(
            md,
            &[
                j.size_label(),
                j.outcome.label(),
                opt_s(j.total_s),
                opt_ms(j.mean_step_s()),
                opt_s(j.decode_s),
                opt_mib(j.memory.peak_bytes),
                opt_mib(j.estimate_bytes),
            ],
        );
    }
    md.push('\n');
}

fn soak_tables(md: &mut String, s: &SoakSection, mem: &str) {
    let st = &s.stats;
    let _ = writeln!(
        md,
        "## Soak — {} images at {}×{}, {} steps, interval {:.1} s\n",
        s.jobs.len(),
        s.width,
        s.height,
        s.steps,
        s.interval_s
    );
    let _ = writeln!(
        md,
        "Prompts: {}. Warm-up images: {} (before image 1, excluded from slope and drift).\n",
        s.prompt_source,
        s.warmup.len()
    );
    let range = |sp: &Option<Spread>, f: &dyn Fn(f64) -> String| {
        sp.map_or_else(
            || DASH.into(),
            |x| format!("{} (min {}, max {})", f(x.mean), f(x.min), f(x.max)),
        )
    };
    let mib_f = |b: f64| format!("{:.0} MiB", b / MIB as f64);
    let rows: Vec<(String, String)> = vec![
        (
            "Images ok / measured".into(),
            format!("{} / {}", st.ok, st.images),
        ),
        (
            "Time per image".into(),
            range(&st.total_s, &|x| format!("{} s", significant(x))),
        ),
        (
            format!("{mem} in use after each image"),
            range(&st.used_after_bytes, &mib_f),
        ),
        (format!("Peak {mem} per image"), range(&st.peak_bytes, &mib_f)),
        (
            format!("{mem} slope after warm-up (least squares)"),
            opt_slope(st.used_after_slope_mib_per_image),
        ),
        (
            format!("Peak {mem} slope after warm-up"),
            opt_slope(st.peak_slope_mib_per_image),
        ),
        (
            format!(
                "Time drift (mean of last {0} vs first {0} images)",
                st.drift_tenth_len
            ),
            st.time_drift_percent
                .map_or_else(|| DASH.into(), |d| format!("{d:+.1} %")),
        ),
        ("Failures".into(), failures(s)),
    ];
    key_value_table(md, "Metric", rows);
    md.push('\n');
    table_head(
        md,
        &[
            "Image",
            "Result",
            "Time (s)",
            &format!("Peak {mem} (MiB)"),
            &format!("{mem} after (MiB)"),
            "Prompt",
        ],
    );
    for j in &s.jobs {
        table_row(
            md,
            &[
                j.index.to_string(),
                j.outcome.label(),
                opt_s(j.total_s),
                opt_mib(j.memory.peak_bytes),
                opt_mib(j.memory.used_after_bytes),
                cell(&short(&j.request.prompt, 40)),
            ],
        );
    }
    md.push('\n');
}

fn summary(md: &mut String, r: &Report) {
    let mem = r.header.device.memory_source.short();
    let mut rows: Vec<(String, String)> = Vec::new();
    if let Some(runs) = &r.runs {
        let label = format!(
            "Mean time at {}×{}, {} steps",
            runs.width, runs.height, runs.steps
        );
        rows.push((
            label,
            runs.stats
                .total_s
                .map_or_else(|| DASH.into(), |t| format!("{} s", significant(t.mean))),
        ));
        rows.push((
            format!("Peak {mem} at {}×{}", runs.width, runs.height),
            runs.stats
                .peak_bytes
                .map_or_else(|| DASH.into(), |p| gib(p.max as u64)),
        ));
    }
    if let Some(sweep) = &r.sweep {
        let largest = sweep
            .jobs
            .iter()
            .filter(|j| j.outcome.is_ok())
            .max_by_key(|j| u64::from(j.request.width) * u64::from(j.request.height));
        rows.push((
            "Largest size that ran".into(),
            largest.map_or_else(|| "none".into(), JobRecord::size_label),
        ));
        let oom: Vec<String> = sweep
            .jobs
            .iter()
            .filter(|j| j.outcome.is_memory_limit())
            .map(JobRecord::size_label)
            .collect();
        rows.push((
            "Sizes out of memory".into(),
            if oom.is_empty() {
                "none".into()
            } else {
                oom.join(", ")
            },
        ));
    }
    if let Some(soak) = &r.soak {
        let st = &soak.stats;
        rows.push(("Soak".into(), format!("{}/{} images ok", st.ok, st.images)));
        rows.push((
            format!("Soak {mem} slope"),
            opt_slope(st.used_after_slope_mib_per_image),
        ));
        rows.push((
            "Soak time drift".into(),
            st.time_drift_percent
                .map_or_else(|| DASH.into(), |d| format!("{d:+.1} %")),
        ));
    }
    let _ = writeln!(md, "## Summary\n");
    if r.header.model.random_weights {
        let _ = writeln!(md, "Measured with **random weights**.\n");
    }
    key_value_table(md, "Metric", rows);
    let _ = writeln!(md, "\nEvery raw figure is in `report.json`.");
}

/// A table's header row and its `|---|` separator.
fn table_head(md: &mut String, columns: &[&str]) {
    let _ = writeln!(md, "| {} |", columns.join(" | "));
    let _ = writeln!(md, "|{}", "---|".repeat(columns.len()));
}

/// One table row; cells are written as given (escape user text with `cell`), an empty one as `| |`.
fn table_row(md: &mut String, cells: &[String]) {
    md.push('|');
    for c in cells {
        if c.is_empty() {
            md.push_str(" |");
        } else {
            let _ = write!(md, " {c} |");
        }
    }
    md.push('\n');
}

/// A two-column table of labelled values; values are escaped, labels are ours.
fn key_value_table(md: &mut String, key_column: &str, rows: Vec<(impl AsRef<str>, String)>) {
    table_head(md, &[key_column, "Value"]);
    for (key, value) in rows {
        table_row(md, &[key.as_ref().to_owned(), cell(&value)]);
    }
}

fn failures(s: &SoakSection) -> String {
    if s.stats.failures.is_empty() {
        return "none".into();
    }
    s.stats
        .failures
        .iter()
        .map(|f| format!("image {}: {}", f.index, f.outcome))
        .collect::<Vec<_>>()
        .join("; ")
}

fn parameters(params: &[(String, u64)]) -> String {
    if params.is_empty() {
        return DASH.into();
    }
    params
        .iter()
        .map(|(name, n)| format!("{name} {}", count(*n)))
        .collect::<Vec<_>>()
        .join(", ")
}

fn count(n: u64) -> String {
    match n {
        n if n >= 1_000_000_000 => format!("{:.2} B", n as f64 / 1e9),
        n if n >= 1_000_000 => format!("{:.1} M", n as f64 / 1e6),
        n if n >= 1_000 => format!("{:.1} k", n as f64 / 1e3),
        n => n.to_string(),
    }
}

/// Seconds with about three significant digits (tiny demo runs stay readable).
fn opt_s(v: Option<f64>) -> String {
    v.map_or_else(|| DASH.into(), significant)
}

/// Milliseconds, same precision rule.
fn opt_ms(v: Option<f64>) -> String {
    v.map_or_else(|| DASH.into(), |s| significant(s * 1000.0))
}

fn significant(x: f64) -> String {
    match x.abs() {
        a if a >= 100.0 => format!("{x:.1}"),
        a if a >= 1.0 || a == 0.0 => format!("{x:.3}"),
        a if a >= 0.001 => format!("{x:.4}"),
        _ => format!("{x:.2e}"),
    }
}

fn opt_mib(v: Option<u64>) -> String {
    v.map_or_else(|| DASH.into(), |b| thousands(b / MIB))
}

fn opt_slope(v: Option<f64>) -> String {
    v.map_or_else(|| DASH.into(), |s| format!("{s:+.3} MiB/image"))
}

fn gib(bytes: u64) -> String {
    format!("{:.2} GiB", bytes as f64 / GIB as f64)
}

/// 18240 → "18,240", as the review writes MiB.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Table cells: no pipes or newlines.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

fn short(text: &str, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        return text.to_owned();
    }
    let mut s: String = text.chars().take(max_chars - 1).collect();
    s.push('…');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn number_formats() {
        assert_eq!(thousands(18240), "18,240");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000_000), "1,000,000");
        assert_eq!(short("abcdef", 4), "abc…");
        assert_eq!(cell("a|b\nc"), "a\\|b c");
        assert_eq!(count(6_154_908_736), "6.15 B");
        assert_eq!(significant(4.6213), "4.621");
        assert_eq!(significant(0.0123), "0.0123");
        assert_eq!(significant(0.00012), "1.20e-4");
        assert_eq!(significant(157.0), "157.0");
    }
}
