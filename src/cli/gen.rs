//! `zimage-tui gen`: one image, headless, through the same worker as the dashboard.
//! Progress on stderr (a bar on a terminal), the result on stdout (a line, or JSON with --json).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::{EXIT_FAILURE, EXIT_USAGE};
use crate::model::loader::{self, LoadOptions, ModelSpec, SearchPaths};
use crate::model::pipeline::ModelInfo;
use crate::model::{weights, GenerationRequest};
use crate::worker::{self, Event, FailureKind, Job, JobOutput};

/// Z-Image-Turbo's recommendation: 8 transformer forwards. In diffusers ≥ 0.39 (0.42.1 here)
/// `num_inference_steps=8` is 8 forwards; older diffusers needed "9 steps" for the same 8.
pub const DEFAULT_STEPS: usize = 8;
pub const DEFAULT_SIZE: u32 = 1024;
/// The demo model is random noise; a smaller default keeps `gen` quick on any CPU.
pub const DEMO_DEFAULT_SIZE: u32 = 256;

#[derive(Debug, Clone, Args)]
pub struct GenArgs {
    /// What to draw.
    #[arg(long)]
    pub prompt: String,
    /// A Z-Image-Turbo directory in the diffusers layout (default: $ZIMAGE_MODEL, the Hugging
    /// Face cache, the ModelScope cache, else the built-in demo model).
    #[arg(long, value_name = "DIR")]
    pub model: Option<PathBuf>,
    /// Image width in pixels, a multiple of 16 up to 4096 [default: 1024; 256 on the demo model].
    #[arg(long, short = 'W')]
    pub width: Option<u32>,
    /// Image height in pixels, a multiple of 16 up to 4096 [default: 1024; 256 on the demo model].
    #[arg(long, short = 'H')]
    pub height: Option<u32>,
    /// Denoising steps (transformer forwards), 1..=100.
    #[arg(long, default_value_t = DEFAULT_STEPS)]
    pub steps: usize,
    /// Seed for the initial noise [default: random, printed].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Where to write the PNG [default: zimage-SEED.png].
    #[arg(long, short = 'o', value_name = "FILE.png")]
    pub out: Option<PathBuf>,
    /// Print one JSON object with the result and its metadata instead of text.
    #[arg(long)]
    pub json: bool,
    /// cpu, cuda or cuda:N [default: cuda when built with it and present, else cpu].
    #[arg(long)]
    pub device: Option<String>,
    /// f32, bf16 or f16 [default: f32 on CPU, bf16 on CUDA].
    #[arg(long)]
    pub dtype: Option<String>,
    /// Text encoder off the GPU after encoding, tiled VAE decode.
    #[arg(long)]
    pub low_vram: bool,
    /// Use random weights instead of a checkpoint (for speed and memory tests).
    #[arg(long)]
    pub random_weights: bool,
    /// Architecture for --random-weights: turbo (full size) or demo (tiny).
    #[arg(long, default_value = "turbo", requires = "random_weights")]
    pub preset: String,
}

/// What `gen` prints with --json (also the fields of the PNG metadata).
#[derive(Debug, serde::Serialize)]
struct JsonReport<'a> {
    path: &'a std::path::Path,
    prompt: &'a str,
    seed: u64,
    steps: usize,
    width: u32,
    height: u32,
    model: &'a str,
    random_weights: bool,
    device: &'a str,
    dtype: &'a str,
    version: &'a str,
    load_secs: f64,
    timings: &'a crate::model::StageTimings,
    denoise_secs: f64,
    total_secs: f64,
    save_secs: f64,
    peak_vram_bytes: Option<u64>,
    warnings: &'a [String],
}

pub fn run(args: GenArgs) -> ExitCode {
    match prepare(&args) {
        Ok(plan) => execute(&args, plan),
        Err(Failure { code, message }) => {
            eprintln!("error: {message}");
            ExitCode::from(code)
        }
    }
}

struct Failure {
    code: u8,
    message: String,
}

fn usage(message: impl Into<String>) -> Failure {
    Failure {
        code: EXIT_USAGE,
        message: message.into(),
    }
}

struct Plan {
    spec: ModelSpec,
    options: LoadOptions,
    request: GenerationRequest,
    out: PathBuf,
}

/// Everything checked before any compute: arguments, model choice, output path.
fn prepare(args: &GenArgs) -> Result<Plan, Failure> {
    let spec = if args.random_weights {
        if !loader::PRESETS.contains(&args.preset.as_str()) {
            return Err(usage(format!(
                "unknown preset {:?} (expected one of: {})",
                args.preset,
                loader::PRESETS.join(", ")
            )));
        }
        ModelSpec::RandomWeights {
            preset: args.preset.clone(),
        }
    } else {
        loader::resolve(&SearchPaths::from_env(args.model.clone()))
    };
    let is_demo = matches!(&spec, ModelSpec::Demo)
        || matches!(&spec, ModelSpec::RandomWeights { preset } if preset == "demo");
    let default_size = if is_demo { DEMO_DEFAULT_SIZE } else { DEFAULT_SIZE };
    let seed = args.seed.unwrap_or_else(random_seed);
    let request = GenerationRequest {
        prompt: args.prompt.clone(),
        width: args.width.unwrap_or(default_size),
        height: args.height.unwrap_or(default_size),
        steps: args.steps,
        seed,
    };
    request.validate().map_err(|err| usage(err.to_string()))?;
    let device = args.device.clone().unwrap_or_else(default_device);
    loader::check_device_name(&device).map_err(|err| usage(err.to_string()))?;
    if let Some(dtype) = &args.dtype {
        weights::parse_dtype(dtype).map_err(|err| usage(err.to_string()))?;
    }
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("zimage-{seed}.png")));
    crate::output::check_writable(&out).map_err(|err| Failure {
        code: EXIT_FAILURE,
        message: err.to_string(),
    })?;
    let options = LoadOptions {
        device,
        dtype: args.dtype.clone(),
        low_vram: args.low_vram,
    };
    Ok(Plan {
        spec,
        options,
        request,
        out,
    })
}

fn execute(args: &GenArgs, plan: Plan) -> ExitCode {
    let quiet = args.json;
    let bar = progress_bar(!quiet && std::io::stderr().is_terminal());
    if !quiet {
        say(&bar, format!("seed: {}", plan.request.seed));
    }
    let (events_tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    let worker = match worker::spawn(events_tx) {
        Ok(worker) => worker,
        Err(err) => {
            eprintln!("error: cannot start the worker thread: {err}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let job = Job {
        output: Some(plan.out.clone()),
        ..Job::new(1, plan.request.clone())
    };
    worker.load_model(plan.spec.clone(), plan.options.clone());
    worker.submit(job);
    let started = Instant::now();
    let mut info: Option<(ModelInfo, f64)> = None;
    let outcome = loop {
        let Some(event) = events.blocking_recv() else {
            break Err((
                FailureKind::Internal,
                "the worker stopped unexpectedly".to_string(),
            ));
        };
        match event {
            Event::Loading { part, done, total } => {
                bar.set_message(loading_message(&part, done, total));
            }
            Event::Loaded { info: loaded, secs } => {
                if !quiet {
                    say(
                        &bar,
                        format!(
                            "model: {} [{} {}] loaded in {secs:.1}s",
                            loaded.label, loaded.device, loaded.dtype
                        ),
                    );
                }
                info = Some((loaded, secs));
            }
            Event::LoadFailed { message } => {
                break Err((FailureKind::Internal, format!("cannot load the model: {message}")));
            }
            Event::Stage { stage, .. } => bar.set_message(format!("{stage:?}").to_lowercase()),
            Event::Step { step, total, .. } => {
                bar.set_length(total as u64);
                bar.set_position(step as u64);
                bar.set_message("denoise");
            }
            Event::Done { output, .. } => break Ok(output),
            Event::Failed { kind, message, .. } => break Err((kind, message)),
            Event::Log { message } if !quiet => say(&bar, message),
            Event::Log { .. } | Event::Started { .. } | Event::Preview { .. } | Event::Stress(_) => {}
        }
    };
    bar.finish_and_clear();
    drop(worker);
    match outcome {
        Ok(output) => {
            let Some((info, load_secs)) = info else {
                eprintln!("error: the job finished without a loaded model");
                return ExitCode::from(EXIT_FAILURE);
            };
            report(args, &plan, &info, load_secs, &output, started.elapsed());
            ExitCode::SUCCESS
        }
        Err((kind, message)) => {
            eprintln!("error: {message}");
            ExitCode::from(if kind == FailureKind::BadInput {
                EXIT_USAGE
            } else {
                EXIT_FAILURE
            })
        }
    }
}

fn report(args: &GenArgs, plan: &Plan, info: &ModelInfo, load_secs: f64, output: &JobOutput, wall: Duration) {
    let request = &plan.request;
    if args.json {
        let report = JsonReport {
            path: &plan.out,
            prompt: &request.prompt,
            seed: request.seed,
            steps: request.steps,
            width: request.width,
            height: request.height,
            model: &info.label,
            random_weights: info.random_weights,
            device: &info.device,
            dtype: &info.dtype,
            version: crate::VERSION,
            load_secs,
            timings: &output.timings,
            denoise_secs: output.timings.denoise().as_secs_f64(),
            total_secs: output.timings.total().as_secs_f64(),
            save_secs: output.save.as_secs_f64(),
            peak_vram_bytes: output.peak_vram_bytes,
            warnings: &output.warnings,
        };
        match serde_json::to_string(&report) {
            Ok(json) => println!("{json}"),
            Err(err) => eprintln!("error: cannot write the JSON report: {err}"),
        }
        return;
    }
    for warning in &output.warnings {
        eprintln!("warning: {warning}");
    }
    let t = &output.timings;
    eprintln!(
        "encode {:.2}s, denoise {:.2}s ({} steps, {:.2}s/step), decode {:.2}s, save {:.2}s, wall {:.1}s",
        t.encode.as_secs_f64(),
        t.denoise().as_secs_f64(),
        t.steps.len(),
        t.denoise().as_secs_f64() / t.steps.len().max(1) as f64,
        t.decode.as_secs_f64(),
        output.save.as_secs_f64(),
        wall.as_secs_f64()
    );
    println!(
        "wrote {} ({}x{}, {} steps, seed {}) — {}",
        plan.out.display(),
        request.width,
        request.height,
        request.steps,
        request.seed,
        info.label
    );
}

/// A line on stderr, above the bar when there is one.
fn say(bar: &ProgressBar, line: impl AsRef<str>) {
    if bar.is_hidden() {
        eprintln!("{}", line.as_ref());
    } else {
        bar.println(line);
    }
}

fn progress_bar(visible: bool) -> ProgressBar {
    if !visible {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(1), ProgressDrawTarget::stderr());
    if let Ok(style) =
        ProgressStyle::with_template("{spinner} {msg:>10} [{bar:30}] {pos}/{len} {elapsed_precise}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

fn loading_message(part: &str, done: u64, total: u64) -> String {
    const MIB: f64 = 1024.0 * 1024.0;
    if total > 0 {
        format!(
            "loading {part} {:.0}/{:.0} MiB",
            done as f64 / MIB,
            total as f64 / MIB
        )
    } else {
        format!("building {part} {:.0} MiB", done as f64 / MIB)
    }
}

fn default_device() -> String {
    if candle_core::utils::cuda_is_available() {
        "cuda".into()
    } else {
        "cpu".into()
    }
}

/// A seed from the OS-seeded hasher and the clock (no extra dependency needed for one number).
fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    // Seeds users can read and retype.
    hasher.finish() % 1_000_000_000
}
