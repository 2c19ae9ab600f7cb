//! Parity of our Z-Image against diffusers' reference outputs, stage by stage, on any device and
//! dtype. A measurement program, not a test: it reads a fixture directory written by
//! `scripts/make_fixtures.py` (the tiny f32 one in tests/fixtures/, or a full-size bf16 one made
//! on the GPU machine with `--full-size --dtype bf16 --device cuda --out DIR`), loads OUR model
//! from the model directory it names, and compares text-encoder embeddings (`te.*`), one
//! transformer forward (`dit.*`), a VAE decode (`vae.*`) and the whole pipeline from diffusers'
//! initial latents (`pipe.*`). Prints a table, optionally writes JSON, exits 1 when a threshold
//! is violated (rel. error = ‖ours − ref‖₂ / ‖ref‖₂; max-abs/max is reported alongside).
//!
//!   cargo run --example gpu_parity -- tests/fixtures                      # CPU, f32, tol 1e-4
//!   gpu_parity /tmp/zfull --device cuda --dtype bf16 --json parity.json  # tol 2e-2, PSNR ≥ 30

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use clap::Parser;
use serde::Serialize;
use zimage_tui::model::loader::{parse_device, validate_dir, ComponentFiles};
use zimage_tui::model::pipeline::{LatentDecoder, ModelInfo, PromptEmbedder, ZImagePipeline};
use zimage_tui::model::scheduler::{FlowMatchEuler, SchedulerConfig};
use zimage_tui::model::text_encoder::{PromptEncoder, Qwen3Config, TextEncoder};
use zimage_tui::model::tokenizer::PromptTokenizer;
use zimage_tui::model::transformer::{ZImageTransformer, ZImageTransformerConfig};
use zimage_tui::model::vae::{image_to_rgb8, DecodeMode, VaeConfig, VaeDecoder};
use zimage_tui::model::weights::{dtype_name, target_dtype, SafetensorsWeights};
use zimage_tui::model::{GenerationRequest, Progress, RgbImage, Stage};

#[derive(Parser)]
#[command(about = "Stage-by-stage parity of our Z-Image against diffusers' reference outputs")]
struct Args {
    /// Fixture directory: reference.{safetensors,json} and the model dir reference.json names.
    fixture: PathBuf,
    /// cpu | cuda | cuda:N
    #[arg(long, default_value = "cpu")]
    device: String,
    /// f32 | bf16 | f16 (default: f32 on CPU, bf16 on CUDA)
    #[arg(long)]
    dtype: Option<String>,
    /// Largest allowed relative error (L2) per stage (default: 1e-4 in f32, 2e-2 otherwise).
    #[arg(long)]
    rel_tol: Option<f64>,
    /// Smallest allowed PSNR of the pipeline's RGB8 image against diffusers', in dB.
    #[arg(long, default_value_t = 30.0)]
    min_psnr: f64,
    /// Write the results as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Prompts of the text-encoder stage (default: every te.*.embeds in the reference).
    #[arg(long, value_delimiter = ',')]
    prompts: Vec<String>,
}

/// One compared tensor.
#[derive(Serialize)]
struct Row {
    stage: String,
    shape: Vec<usize>,
    rel_l2: f64,
    rel_max: f64,
    max_abs: f64,
    seconds: f64,
    /// PSNR in dB of the RGB8 image (image stages only; null when identical).
    psnr_db: Option<f64>,
    checked: bool,
    pass: bool,
}

#[derive(Serialize)]
struct Report {
    fixture: String,
    generator: String,
    reference_dtype: String,
    reference_device: String,
    device: String,
    dtype: String,
    rel_tol: f64,
    min_psnr_db: f64,
    load_s: f64,
    rows: Vec<Row>,
    pipeline_psnr_db: Option<f64>,
    pass: bool,
    /// Stages with a float32 result: ours and diffusers' bf16 errors against it.
    noise_floor: Vec<NoiseFloor>,
}

/// How far each bf16 implementation is from the float32 result of the same stage. Two bf16
/// implementations each this far from float32 can differ by up to about √2 times as much, so
/// the strict check against diffusers can fail at the noise floor; this says whether ours is
/// as accurate as the reference (ratio ≤ NOISE_FLOOR_RATIO).
#[derive(Serialize)]
struct NoiseFloor {
    stage: String,
    ours_vs_f32: f64,
    diffusers_vs_f32: f64,
    ratio: f64,
    as_accurate: bool,
}

/// Ours may be at most this much further from float32 than diffusers' own bf16 result.
const NOISE_FLOOR_RATIO: f64 = 1.25;

fn noise_floor(rows: &[Row]) -> Vec<NoiseFloor> {
    let find = |stage: &str| rows.iter().find(|r| r.stage == stage).map(|r| r.rel_l2);
    rows.iter()
        .filter_map(|row| {
            let stage = row.stage.strip_suffix(" ours vs f32")?;
            let ours = row.rel_l2;
            let diffusers = find(&format!("{stage} diffusers vs f32"))?;
            let ratio = ours / diffusers.max(1e-30);
            Some(NoiseFloor {
                stage: stage.to_string(),
                ours_vs_f32: ours,
                diffusers_vs_f32: diffusers,
                ratio,
                as_accurate: ratio <= NOISE_FLOOR_RATIO,
            })
        })
        .collect()
}

/// ‖a − b‖/‖b‖, max|a − b|/max|b| and max|a − b|, in f64 on the host.
fn errors(ours: &Tensor, reference: &Tensor) -> Result<(f64, f64, f64)> {
    let ours: Vec<f64> = ours
        .to_device(&Device::Cpu)?
        .to_dtype(DType::F64)?
        .flatten_all()?
        .to_vec1()?;
    let reference: Vec<f64> = reference.to_dtype(DType::F64)?.flatten_all()?.to_vec1()?;
    if ours.len() != reference.len() {
        bail!(
            "{} values against {} in the reference",
            ours.len(),
            reference.len()
        );
    }
    let (mut diff2, mut ref2, mut max_diff, mut max_ref) = (0f64, 0f64, 0f64, 0f64);
    for (a, b) in ours.iter().zip(&reference) {
        let d = a - b;
        diff2 += d * d;
        ref2 += b * b;
        // NaN in ours must not hide behind max(): it makes the error NaN, which fails every check.
        max_diff = if d.is_nan() {
            f64::NAN
        } else {
            max_diff.max(d.abs())
        };
        max_ref = max_ref.max(b.abs());
    }
    Ok((
        diff2.sqrt() / ref2.sqrt().max(1e-30),
        max_diff / max_ref.max(1e-30),
        max_diff,
    ))
}

/// PSNR of two RGB8 images in dB; None when they are identical.
fn psnr(ours: &[u8], reference: &[u8]) -> Option<f64> {
    let mse = ours
        .iter()
        .zip(reference)
        .map(|(&a, &b)| (f64::from(a) - f64::from(b)).powi(2))
        .sum::<f64>()
        / reference.len().max(1) as f64;
    (mse > 0.0).then(|| 10.0 * (255.0f64 * 255.0 / mse).log10())
}

fn u8_values(tensor: &Tensor) -> Result<Vec<u8>> {
    Ok(tensor.flatten_all()?.to_vec1::<u8>()?)
}

/// Our components, built from the fixture's model directory exactly as the loader does.
struct Model {
    prompt_encoder: Arc<PromptEncoder>,
    transformer: ZImageTransformer,
    vae: Arc<VaeDecoder>,
    scheduler: FlowMatchEuler,
}

fn var_builder(files: &ComponentFiles, dtype: DType, device: &Device) -> Result<VarBuilder<'static>> {
    let weights = SafetensorsWeights::open(&files.name, &files.weights, None)?;
    Ok(weights.into_var_builder(dtype, device).0)
}

fn load_model(dir: &Path, dtype: DType, device: &Device) -> Result<Model> {
    let layout = validate_dir(dir)?;
    let te_config = Qwen3Config::from_file(&layout.text_encoder.config)?;
    let encoder = TextEncoder::new(var_builder(&layout.text_encoder, dtype, device)?, &te_config)
        .context("building the text encoder")?;
    let tokenizer = PromptTokenizer::from_file(&layout.tokenizer)?;
    let dit_config = ZImageTransformerConfig::from_file(&layout.transformer.config)?;
    let transformer = ZImageTransformer::load(&dit_config, var_builder(&layout.transformer, dtype, device)?)
        .context("building the transformer")?;
    let vae_config = VaeConfig::from_file(&layout.vae.config)?;
    // Untiled, as diffusers decodes.
    let vae = VaeDecoder::new(var_builder(&layout.vae, dtype, device)?, &vae_config)
        .context("building the VAE")?
        .with_mode(DecodeMode::Full);
    let scheduler = FlowMatchEuler::new(SchedulerConfig::from_file(&layout.scheduler_config)?)?;
    Ok(Model {
        prompt_encoder: Arc::new(PromptEncoder::new(tokenizer, encoder)),
        transformer,
        vae: Arc::new(vae),
        scheduler,
    })
}

/// The pipeline takes owned parts; these share ours so the stage checks can use them too.
struct SharedEncoder(Arc<PromptEncoder>);

impl PromptEmbedder for SharedEncoder {
    fn encode(&self, prompt: &str) -> zimage_tui::model::Result<(Tensor, Vec<String>)> {
        self.0.encode(prompt)
    }
}

struct SharedVae(Arc<VaeDecoder>);

impl LatentDecoder for SharedVae {
    fn decode(&self, latents: &Tensor) -> zimage_tui::model::Result<RgbImage> {
        self.0.decode_to_rgb(latents, self.0.mode())
    }
    fn spatial_scale(&self) -> usize {
        self.0.config().scale_factor()
    }
}

/// Keeps every step's latents.
#[derive(Default)]
struct StepLatents(Vec<Tensor>);

impl Progress for StepLatents {
    fn stage(&mut self, _stage: Stage) {}
    fn step(&mut self, _step: usize, _total: usize, _elapsed: Duration, latents: &Tensor) {
        self.0.push(latents.clone());
    }
    fn cancelled(&self) -> bool {
        false
    }
}

struct Checker {
    rel_tol: f64,
    rows: Vec<Row>,
}

impl Checker {
    /// Where the fixture holds a float32 result of the same stage (`NAME_f32`, full size on a
    /// GPU): info rows for ours and for diffusers' bf16 against it, the comparison's noise floor.
    fn against_f32(
        &mut self,
        reference: &HashMap<String, Tensor>,
        stage: &str,
        ours: &Tensor,
        diffusers: &Tensor,
        started: Instant,
    ) -> Result<()> {
        let Some(f32_result) = reference.get(&format!("{stage}_f32")) else {
            return Ok(());
        };
        self.tensor(&format!("{stage} ours vs f32"), ours, f32_result, started, false)?;
        self.tensor(
            &format!("{stage} diffusers vs f32"),
            diffusers,
            f32_result,
            started,
            false,
        )
    }

    fn tensor(
        &mut self,
        stage: &str,
        ours: &Tensor,
        reference: &Tensor,
        started: Instant,
        checked: bool,
    ) -> Result<()> {
        let (rel_l2, rel_max, max_abs) =
            errors(ours, reference).with_context(|| format!("comparing {stage}"))?;
        self.rows.push(Row {
            stage: stage.to_string(),
            shape: reference.dims().to_vec(),
            rel_l2,
            rel_max,
            max_abs,
            seconds: started.elapsed().as_secs_f64(),
            psnr_db: None,
            checked,
            // `<=` is false for NaN.
            pass: !checked || rel_l2 <= self.rel_tol,
        });
        Ok(())
    }
}

fn reference_json(fixture: &Path) -> Result<serde_json::Value> {
    let path = fixture.join("reference.json");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

fn get<'a>(reference: &'a HashMap<String, Tensor>, name: &str) -> Result<&'a Tensor> {
    reference
        .get(name)
        .with_context(|| format!("reference.safetensors has no tensor {name}"))
}

fn main() -> Result<()> {
    let args = Args::parse();
    let meta = reference_json(&args.fixture)?;
    let reference_path = args.fixture.join("reference.safetensors");
    let reference = candle_core::safetensors::load(&reference_path, &Device::Cpu)
        .with_context(|| format!("reading {}", reference_path.display()))?;
    let model_dir = args.fixture.join(meta["model_dir"].as_str().unwrap_or("tiny"));
    let device = parse_device(&args.device)?;
    let dtype = target_dtype(&device, args.dtype.as_deref())?;
    let rel_tol = args
        .rel_tol
        .unwrap_or(if dtype == DType::F32 { 1e-4 } else { 2e-2 });
    let text = |key: &str| meta[key].as_str().unwrap_or("?").to_string();

    let started = Instant::now();
    let model =
        load_model(&model_dir, dtype, &device).with_context(|| format!("loading {}", model_dir.display()))?;
    device.synchronize()?;
    let load_s = started.elapsed().as_secs_f64();
    eprintln!(
        "loaded {} in {load_s:.1} s ({}, {})",
        model_dir.display(),
        args.device,
        dtype_name(dtype)
    );
    let mut check = Checker {
        rel_tol,
        rows: Vec::new(),
    };

    // Text encoder: each prompt through our tokenizer + encoder.
    let mut prompts: Vec<String> = if args.prompts.is_empty() {
        let mut keys: Vec<String> = reference
            .keys()
            .filter_map(|k| k.strip_prefix("te.")?.strip_suffix(".embeds").map(String::from))
            .collect();
        keys.sort();
        keys
    } else {
        args.prompts.clone()
    };
    prompts.dedup();
    for key in &prompts {
        let Some(prompt) = meta["prompts"][key].as_str() else {
            bail!("reference.json has no prompt {key:?}");
        };
        let started = Instant::now();
        let (embeds, _) = model.prompt_encoder.encode(prompt)?;
        device.synchronize()?;
        let want = get(&reference, &format!("te.{key}.embeds"))?;
        check.tensor(&format!("te.{key}.embeds"), &embeds, want, started, true)?;
        check.against_f32(&reference, &format!("te.{key}.embeds"), &embeds, want, started)?;
    }

    // One transformer forward: diffusers' [C, 1, h, w] list element ↔ our [1, C, h, w].
    let x = get(&reference, "dit.x")?
        .squeeze(1)?
        .unsqueeze(0)?
        .to_device(&device)?;
    let t = get(&reference, "dit.t")?.to_device(&device)?;
    let cap = get(&reference, "dit.cap_feats")?
        .to_dtype(dtype)?
        .to_device(&device)?;
    let started = Instant::now();
    let out = model.transformer.forward(&x, &t, &cap)?;
    device.synchronize()?;
    let want = get(&reference, "dit.out")?;
    let out = out.reshape(want.dims())?;
    check.tensor("dit.out", &out, want, started, true)?;
    check.against_f32(&reference, "dit.out", &out, want, started)?;

    // VAE decode of diffusers' latents, float output and RGB8.
    let latents = get(&reference, "vae.latents")?.to_device(&device)?;
    let started = Instant::now();
    let decoded = model.vae.decode(&latents, DecodeMode::Full)?;
    device.synchronize()?;
    check.tensor(
        "vae.decoded",
        &decoded,
        get(&reference, "vae.decoded")?,
        started,
        true,
    )?;
    let image = image_to_rgb8(&decoded.to_device(&Device::Cpu)?)?;
    let vae_psnr = psnr(&image.pixels, &u8_values(get(&reference, "vae.image_u8")?)?);

    // The whole pipeline from diffusers' initial latents, through our text encoder.
    let pipe_meta = &meta["pipeline"];
    let request = GenerationRequest {
        prompt: meta["prompts"][pipe_meta["prompt"].as_str().unwrap_or("en")]
            .as_str()
            .context("reference.json: the pipeline prompt")?
            .to_string(),
        width: pipe_meta["width"]
            .as_u64()
            .context("reference.json: pipeline.width")? as u32,
        height: pipe_meta["height"]
            .as_u64()
            .context("reference.json: pipeline.height")? as u32,
        steps: pipe_meta["steps"]
            .as_u64()
            .context("reference.json: pipeline.steps")? as usize,
        seed: 0,
    };
    let info = ModelInfo {
        label: format!("parity {}", model_dir.display()),
        random_weights: true,
        dtype: dtype_name(dtype).into(),
        device: args.device.clone(),
        parameters: Vec::new(),
    };
    let pipeline = ZImagePipeline::new(
        info,
        Box::new(SharedEncoder(model.prompt_encoder.clone())),
        model.transformer,
        model.scheduler,
        Box::new(SharedVae(model.vae.clone())),
    );
    let mut steps = StepLatents::default();
    let started = Instant::now();
    let generated = pipeline.generate_from_latents(
        &request,
        get(&reference, "pipe.latents_init")?.clone(),
        &mut steps,
    )?;
    let pipe_s = started.elapsed().as_secs_f64();
    if steps.0.len() != request.steps {
        bail!(
            "the pipeline ran {} steps, expected {}",
            steps.0.len(),
            request.steps
        );
    }
    for (i, latents) in steps.0.iter().enumerate() {
        let last = i + 1 == steps.0.len();
        // Only the final latents are checked; the steps in between show where drift starts.
        let stage = format!("pipe.latents.{i}");
        check.tensor(&stage, latents, get(&reference, &stage)?, started, last)?;
        if let Some(row) = check.rows.last_mut() {
            row.seconds = if last { pipe_s } else { 0.0 };
        }
    }
    let final_latents = steps.0.last().context("no steps")?;
    let started = Instant::now();
    let decoded = model.vae.decode(final_latents, DecodeMode::Full)?;
    check.tensor(
        "pipe.decoded",
        &decoded,
        get(&reference, "pipe.decoded")?,
        started,
        false,
    )?;
    let pipe_psnr = psnr(
        &generated.image.pixels,
        &u8_values(get(&reference, "pipe.image_u8")?)?,
    );

    let image_row = |stage: &str, psnr_db: Option<f64>, checked: bool| Row {
        stage: stage.into(),
        shape: vec![],
        rel_l2: f64::NAN,
        rel_max: f64::NAN,
        max_abs: f64::NAN,
        seconds: 0.0,
        psnr_db,
        checked,
        pass: !checked || psnr_db.is_none_or(|db| db >= args.min_psnr),
    };
    check.rows.push(image_row("vae.image_u8", vae_psnr, false));
    check.rows.push(image_row("pipe.image_u8", pipe_psnr, true));

    let pass = check.rows.iter().all(|r| r.pass);
    let report = Report {
        fixture: args.fixture.display().to_string(),
        generator: text("generator"),
        reference_dtype: text("dtype"),
        reference_device: text("device"),
        device: args.device.clone(),
        dtype: dtype_name(dtype).into(),
        rel_tol,
        min_psnr_db: args.min_psnr,
        load_s,
        noise_floor: noise_floor(&check.rows),
        rows: check.rows,
        pipeline_psnr_db: pipe_psnr,
        pass,
    };
    print_table(&report);
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if !pass {
        eprintln!(
            "FAIL: a checked stage is over rel. error {rel_tol:e} or under {} dB",
            args.min_psnr
        );
        std::process::exit(1);
    }
    Ok(())
}

fn print_table(report: &Report) {
    println!(
        "parity of {} ({} {} reference) on {} {}: rel. error tol {:e}, PSNR ≥ {} dB",
        report.fixture,
        report.reference_device,
        report.reference_dtype,
        report.device,
        report.dtype,
        report.rel_tol,
        report.min_psnr_db
    );
    println!(
        "{:<34} {:>20} {:>11} {:>11} {:>11} {:>9} {:>8}  result",
        "stage", "shape", "rel_l2", "max/max", "max_abs", "psnr_db", "sec"
    );
    for row in &report.rows {
        let num = |v: f64| {
            if v.is_nan() && row.shape.is_empty() {
                "-".to_string()
            } else {
                format!("{v:.3e}")
            }
        };
        let psnr = match (row.shape.is_empty(), row.psnr_db) {
            (false, _) => "-".to_string(),
            (true, None) => "inf".to_string(),
            (true, Some(db)) => format!("{db:.2}"),
        };
        let result = match (row.checked, row.pass) {
            (false, _) => "info",
            (true, true) => "ok",
            (true, false) => "FAIL",
        };
        println!(
            "{:<34} {:>20} {:>11} {:>11} {:>11} {:>9} {:>8.2}  {}",
            row.stage,
            format!("{:?}", row.shape),
            num(row.rel_l2),
            num(row.rel_max),
            num(row.max_abs),
            psnr,
            row.seconds,
            result
        );
    }
    for n in &report.noise_floor {
        println!(
            "noise floor {:<16} ours vs f32 {:.3e}, diffusers vs f32 {:.3e}: ratio {:.2} ({})",
            n.stage,
            n.ours_vs_f32,
            n.diffusers_vs_f32,
            n.ratio,
            if n.as_accurate {
                "as accurate as the reference"
            } else {
                "LESS ACCURATE than the reference"
            }
        );
    }
    println!(
        "load {:.1} s; overall: {}",
        report.load_s,
        if report.pass { "PASS" } else { "FAIL" }
    );
}
