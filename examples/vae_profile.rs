//! The VAE decoder on the GPU: channels-last fast path (cuDNN graph convolutions, fused GroupNorm)
//! against the channels-first reference path (candle's ops), on full-size random weights. Prints
//! time per kernel class (model::profile), whole-decode timings, their agreement, and tiled-vs-full
//! PSNR. A measurement program, not a test:
//!   cargo build --release --features cudnn --example vae_profile
//!   vae_profile [--sizes 512,1024,2048] [--json out.json]

use std::time::Instant;

use anyhow::{Context, Result};
use candle_core::{DType, Device, Tensor};
use clap::Parser;
use serde::Serialize;
use zimage_tui::model::loader::parse_device;
use zimage_tui::model::profile;
use zimage_tui::model::vae::{image_to_rgb8, ActivationLayout, DecodeMode, VaeConfig, VaeDecoder};
use zimage_tui::model::weights::RandomWeights;

#[derive(Parser)]
struct Args {
    /// Image sides to decode (square), in pixels.
    #[arg(long, value_delimiter = ',', default_values_t = [512usize, 1024, 2048])]
    sizes: Vec<usize>,
    #[arg(long, default_value = "cuda")]
    device: String,
    /// Timed repetitions per measurement (median reported).
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// Largest side the channels-first reference decodes untiled (it is slow and memory-hungry).
    #[arg(long, default_value_t = 1024)]
    reference_max: usize,
    #[arg(long)]
    json: Option<std::path::PathBuf>,
}

#[derive(Serialize)]
struct Row {
    size: usize,
    layout: &'static str,
    mode: &'static str,
    median_s: f64,
    parts: Vec<(String, f64)>,
}

#[derive(Serialize, Default)]
struct ReportJson {
    rows: Vec<Row>,
    agreement: Vec<(usize, f64, f64)>,
    tiled_psnr_db: Vec<(usize, f64)>,
}

fn name(layout: ActivationLayout) -> &'static str {
    match layout {
        ActivationLayout::ChannelsFirst => "channels-first (candle ops)",
        ActivationLayout::ChannelsLast => "channels-last (cuDNN graph + fused)",
    }
}

fn median_s(dev: &Device, reps: usize, mut f: impl FnMut() -> Result<Tensor>) -> Result<f64> {
    f()?;
    dev.synchronize()?;
    let mut times = Vec::new();
    for _ in 0..reps.max(1) {
        let start = Instant::now();
        f()?;
        dev.synchronize()?;
        times.push(start.elapsed().as_secs_f64());
    }
    times.sort_by(|a, b| a.total_cmp(b));
    Ok(times[times.len() / 2])
}

fn rel_err(got: &Tensor, want: &Tensor) -> Result<(f64, f64)> {
    let diff = (got - want)?;
    let l2 = diff.sqr()?.sum_all()?.to_scalar::<f32>()? as f64;
    let norm = want.sqr()?.sum_all()?.to_scalar::<f32>()? as f64;
    let max_abs = diff.abs()?.max_all()?.to_scalar::<f32>()? as f64;
    Ok(((l2 / norm.max(1e-30)).sqrt(), max_abs))
}

fn psnr(a: &[u8], b: &[u8]) -> f64 {
    let mse = a
        .iter()
        .zip(b)
        .map(|(x, y)| (*x as f64 - *y as f64).powi(2))
        .sum::<f64>()
        / a.len().max(1) as f64;
    if mse == 0.0 {
        f64::INFINITY
    } else {
        10.0 * (255.0f64 * 255.0 / mse).log10()
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    let device = parse_device(&args.device)?;
    let cfg = VaeConfig::z_image();
    let build = |layout| -> Result<VaeDecoder> {
        let (vb, _) = RandomWeights::new("vae", 7, None).into_var_builder(DType::BF16, &device);
        Ok(VaeDecoder::with_layout(vb, &cfg, layout)?)
    };
    let fast = build(ActivationLayout::ChannelsLast).context("channels-last VAE")?;
    let reference = build(ActivationLayout::ChannelsFirst)?;
    let mut report = ReportJson::default();
    for &size in &args.sizes {
        let side = size / 8;
        let latents = Tensor::randn(0f32, 1.0, (1, 16, side, side), &device)?;
        println!("== {size}x{size} (latent {side}x{side})");
        for (vae, mode) in [(&fast, "full"), (&reference, "full")] {
            if vae.layout() == ActivationLayout::ChannelsFirst && size > args.reference_max {
                continue;
            }
            vae.decode(&latents, DecodeMode::Full)?; // warm-up: cuDNN graphs are built on first use
                                                     // time per kernel class of one untiled decode (model::profile)
            profile::take();
            profile::set_enabled(true);
            vae.decode(&latents, DecodeMode::Full)?;
            profile::set_enabled(false);
            let parts: Vec<(String, f64)> = profile::take()
                .into_iter()
                .map(|(class, time)| (class.to_string(), time.total.as_secs_f64()))
                .collect();
            let median = median_s(&device, args.reps, || Ok(vae.decode(&latents, DecodeMode::Full)?))?;
            println!("  {:<38} {mode:<6} {:>8.1} ms", name(vae.layout()), median * 1e3);
            for (part, secs) in &parts {
                println!("      {part:<16} {:>8.1} ms", secs * 1e3);
            }
            report.rows.push(Row {
                size,
                layout: name(vae.layout()),
                mode,
                median_s: median,
                parts,
            });
        }
        let tiled_mode = DecodeMode::default();
        let tiled = median_s(&device, args.reps, || Ok(fast.decode(&latents, tiled_mode)?))?;
        println!(
            "  {:<38} auto   {:>8.1} ms (default mode: tiled above 1024 px)",
            name(fast.layout()),
            tiled * 1e3
        );
        report.rows.push(Row {
            size,
            layout: name(fast.layout()),
            mode: "auto",
            median_s: tiled,
            parts: Vec::new(),
        });
        let full = fast.decode(&latents, DecodeMode::Full)?;
        if size <= args.reference_max {
            let want = reference.decode(&latents, DecodeMode::Full)?;
            let (rel, max_abs) = rel_err(&full, &want)?;
            println!("  channels-last vs reference: rel. error {rel:.2e}, max abs {max_abs:.3e}");
            report.agreement.push((size, rel, max_abs));
        }
        let forced = DecodeMode::Tiled(match DecodeMode::default() {
            DecodeMode::Auto { tiles, .. } => zimage_tui::model::vae::TileOptions { tile: 64, ..tiles },
            _ => Default::default(),
        });
        let tiled_rgb = image_to_rgb8(&fast.decode(&latents, forced)?)?;
        let full_rgb = image_to_rgb8(&full)?;
        let db = psnr(&tiled_rgb.pixels, &full_rgb.pixels);
        println!("  tiled (512-px tiles) vs full, RGB8: PSNR {db:.1} dB");
        report.tiled_psnr_db.push((size, db));
    }
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)?;
    }
    Ok(())
}
