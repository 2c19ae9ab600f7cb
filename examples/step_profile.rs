//! Where a generation's time goes, per kernel class: a full-size random-weight Z-Image-Turbo on
//! the GPU, one warm-up generation per size, one unprofiled timed generation, then one with
//! `model::profile` on (each class synchronised and timed). A measurement program, not a test:
//!   cargo build --release --features cudnn --example step_profile
//!   step_profile [--sizes 1024x1024,2048x2048] [--steps 8] [--json out.json]
//! The profiled run waits for the device around every timed call, so its total is larger than
//! the unprofiled one; the difference is launch latency exposed by the waits.

use std::time::Instant;

use anyhow::{bail, Result};
use clap::Parser;
use serde::Serialize;
use zimage_tui::model::assemble::{random_pipeline, ModelConfigs};
use zimage_tui::model::loader::LoadOptions;
use zimage_tui::model::{profile, GenerationRequest, NoProgress};

#[derive(Parser)]
struct Args {
    /// WIDTHxHEIGHT list.
    #[arg(long, value_delimiter = ',', default_values_t = ["1024x1024".to_string(), "2048x2048".to_string()])]
    sizes: Vec<String>,
    #[arg(long, default_value_t = 8)]
    steps: usize,
    #[arg(long, default_value = "cuda")]
    device: String,
    #[arg(long)]
    low_vram: bool,
    #[arg(long)]
    json: Option<std::path::PathBuf>,
}

#[derive(Serialize)]
struct ClassRow {
    class: &'static str,
    calls: u64,
    total_ms: f64,
    per_step_ms: f64,
    max_used_mib: Option<f64>,
}

#[derive(Serialize)]
struct SizeReport {
    width: u32,
    height: u32,
    steps: usize,
    unprofiled_total_s: f64,
    unprofiled_step_ms: Vec<f64>,
    unprofiled_decode_s: f64,
    profiled_total_s: f64,
    classes: Vec<ClassRow>,
}

fn parse_size(text: &str) -> Result<(u32, u32)> {
    let Some((w, h)) = text.split_once('x') else {
        bail!("size {text:?} is not WIDTHxHEIGHT");
    };
    Ok((w.parse()?, h.parse()?))
}

fn main() -> Result<()> {
    let args = Args::parse();
    let options = LoadOptions {
        device: args.device.clone(),
        dtype: None,
        low_vram: args.low_vram,
    };
    let started = Instant::now();
    let pipeline = random_pipeline("profile".into(), &ModelConfigs::turbo(), 1, &options, &None)?;
    println!(
        "built full-size random weights in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let mut reports = Vec::new();
    for size in &args.sizes {
        let (width, height) = parse_size(size)?;
        let request = GenerationRequest {
            prompt: "A futuristic city at night, neon lights reflecting on wet streets".into(),
            width,
            height,
            steps: args.steps,
            seed: 42,
        };
        pipeline.generate(&request, &mut NoProgress)?; // warm-up: graphs, autotuning, allocations
        let t = Instant::now();
        let plain = pipeline.generate(&request, &mut NoProgress)?;
        let unprofiled = t.elapsed().as_secs_f64();
        profile::take();
        profile::set_enabled(true);
        let t = Instant::now();
        pipeline.generate(&request, &mut NoProgress)?;
        let profiled = t.elapsed().as_secs_f64();
        profile::set_enabled(false);
        let classes: Vec<ClassRow> = profile::take()
            .into_iter()
            .map(|(class, time)| ClassRow {
                class,
                calls: time.calls,
                total_ms: time.total.as_secs_f64() * 1e3,
                per_step_ms: time.total.as_secs_f64() * 1e3 / args.steps as f64,
                max_used_mib: time.max_used_bytes.map(|b| b as f64 / (1u64 << 20) as f64),
            })
            .collect();
        let step_ms: Vec<f64> = plain
            .timings
            .steps
            .iter()
            .map(|d| d.as_secs_f64() * 1e3)
            .collect();
        println!(
            "== {width}x{height}, {} steps: unprofiled {unprofiled:.3} s (steps {:.1} ms each on average, decode {:.1} ms); profiled {profiled:.3} s",
            args.steps,
            step_ms.iter().sum::<f64>() / step_ms.len().max(1) as f64,
            plain.timings.decode.as_secs_f64() * 1e3
        );
        println!(
            "  {:<38} {:>6} {:>10} {:>12} {:>16}",
            "class", "calls", "total ms", "ms per step", "max MiB in use"
        );
        let sum: f64 = classes.iter().map(|c| c.total_ms).sum();
        for c in &classes {
            let used = c.max_used_mib.map_or("-".to_string(), |m| format!("{m:.0}"));
            println!(
                "  {:<38} {:>6} {:>10.2} {:>12.2} {used:>16}",
                c.class, c.calls, c.total_ms, c.per_step_ms
            );
        }
        println!("  {:<38} {:>6} {:>10.2}", "sum of classes", "", sum);
        reports.push(SizeReport {
            width,
            height,
            steps: args.steps,
            unprofiled_total_s: unprofiled,
            unprofiled_step_ms: step_ms,
            unprofiled_decode_s: plain.timings.decode.as_secs_f64(),
            profiled_total_s: profiled,
            classes,
        });
    }
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&reports)?)?;
    }
    Ok(())
}
