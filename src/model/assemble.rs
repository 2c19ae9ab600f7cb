//! Building a `ZImagePipeline` from configs and weight sources: a checkpoint directory, or
//! random weights for a named architecture preset (the demo model, `--random-weights`).

use std::path::Path;
use std::sync::Arc;

use candle_core::{DType, Device};
use candle_nn::VarBuilder;

use super::demo;
use super::loader::{parse_device, validate_dir, ComponentFiles, LoadOptions, LoadProgress, ModelLayout};
use super::pipeline::{ModelInfo, ZImagePipeline};
use super::scheduler::{FlowMatchEuler, SchedulerConfig};
use super::text_encoder::{PromptEncoder, Qwen3Config, TextEncoder};
use super::tokenizer::PromptTokenizer;
use super::transformer::{ZImageTransformer, ZImageTransformerConfig};
use super::vae::{DecodeMode, TileOptions, VaeConfig, VaeDecoder};
use super::weights::{dtype_name, ProgressFn, RandomWeights, SafetensorsWeights, WeightStats};
use super::{ModelError, Result};

/// The architecture of every component.
#[derive(Debug, Clone)]
pub struct ModelConfigs {
    pub text_encoder: Qwen3Config,
    pub transformer: ZImageTransformerConfig,
    pub vae: VaeConfig,
    pub scheduler: SchedulerConfig,
}

impl ModelConfigs {
    /// Z-Image-Turbo at full size (Qwen3-4B, 6B DiT, Flux VAE).
    pub fn turbo() -> Self {
        let text_encoder = Qwen3Config::qwen3_4b();
        let transformer = ZImageTransformerConfig::turbo();
        Self {
            text_encoder,
            transformer,
            vae: VaeConfig::z_image(),
            scheduler: SchedulerConfig::turbo(),
        }
    }

    /// The same architecture with tiny dims (the demo model), over the demo vocabulary.
    pub fn demo() -> Self {
        let text_encoder = Qwen3Config::tiny(demo::DEMO_VOCAB_SIZE);
        let transformer = ZImageTransformerConfig::tiny(text_encoder.hidden_size);
        Self {
            text_encoder,
            transformer,
            vae: VaeConfig::tiny(),
            scheduler: SchedulerConfig::turbo(),
        }
    }

    /// A named preset: "turbo" or "demo".
    pub fn preset(name: &str) -> Result<Self> {
        match name {
            "turbo" => Ok(Self::turbo()),
            "demo" => Ok(Self::demo()),
            other => Err(ModelError::BadInput(format!(
                "unknown preset {other:?} (expected turbo or demo)"
            ))),
        }
    }
}

/// Where one component's weights come from.
enum Source<'a> {
    Files(&'a ComponentFiles),
    Random { seed: u64 },
}

/// Builds one component, preferring the weight backend's own problem report (which names the
/// file and the tensor) over the bare candle error the constructor returns.
fn component<T>(
    part: &str,
    source: Source<'_>,
    dtype: DType,
    device: &Device,
    progress: &Option<ProgressFn>,
    build: impl FnOnce(VarBuilder<'static>) -> Result<T>,
) -> Result<(T, u64)> {
    let mut checkpoint_bytes = None;
    let (vb, stats): (VarBuilder<'static>, Arc<WeightStats>) = match source {
        Source::Files(files) => {
            // bf16 loads read the converted cache (`models --convert bf16`) while it is valid
            let weights = SafetensorsWeights::open(part, &files.weights_for(dtype), progress.clone())?;
            checkpoint_bytes = Some(weights.total_bytes());
            weights.into_var_builder(dtype, device)
        }
        Source::Random { seed } => {
            RandomWeights::new(part, seed, progress.clone()).into_var_builder(dtype, device)
        }
    };
    let built = build(vb).map_err(|err| stats.take_problem().unwrap_or(err))?;
    // A model may skip tensors (the text encoder's unused last layer): report the part as
    // complete once it is built.
    if let Some(progress) = progress {
        let total = checkpoint_bytes.unwrap_or_else(|| stats.bytes());
        progress(LoadProgress {
            part: part.to_string(),
            done: total,
            total,
        });
    }
    Ok((built, stats.parameters()))
}

/// Where and how the components are built.
struct Target<'a> {
    device: Device,
    dtype: DType,
    low_vram: bool,
    progress: &'a Option<ProgressFn>,
}

impl<'a> Target<'a> {
    fn new(options: &LoadOptions, progress: &'a Option<ProgressFn>) -> Result<Self> {
        let device = parse_device(&options.device)?;
        let dtype = super::weights::target_dtype(&device, options.dtype.as_deref())?;
        Ok(Self {
            device,
            dtype,
            low_vram: options.low_vram,
            progress,
        })
    }
}

/// Everything but the weights' source is the same for checkpoints and random weights.
fn assemble(
    (label, random_weights): (String, bool),
    configs: &ModelConfigs,
    tokenizer: PromptTokenizer,
    sources: [Source<'_>; 3],
    target: &Target<'_>,
) -> Result<ZImagePipeline> {
    let Target {
        device,
        dtype,
        low_vram,
        progress,
    } = target;
    let (device, dtype, low_vram) = (device, *dtype, *low_vram);
    let [text_source, transformer_source, vae_source] = sources;
    // Low-VRAM: the text encoder (8 GB in bf16) never takes device memory; it runs on the CPU in
    // f32 (encoding is once per prompt: seconds, not per step) and only its output is uploaded.
    let (text_device, text_dtype) = if low_vram && device.is_cuda() {
        (Device::Cpu, DType::F32)
    } else {
        (device.clone(), dtype)
    };
    let (encoder, text_params) = component(
        "text_encoder",
        text_source,
        text_dtype,
        &text_device,
        progress,
        |vb| TextEncoder::new(vb, &configs.text_encoder),
    )?;
    let (transformer, transformer_params) =
        component("transformer", transformer_source, dtype, device, progress, |vb| {
            ZImageTransformer::load(&configs.transformer, vb)
        })?;
    let (vae, vae_params) = component("vae", vae_source, dtype, device, progress, |vb| {
        let vae = VaeDecoder::new(vb, &configs.vae)?;
        // Low-VRAM: always tiled; otherwise the decoder's default (tiled only for big images).
        Ok(if low_vram {
            vae.with_mode(DecodeMode::Tiled(TileOptions::default()))
        } else {
            vae
        })
    })?;
    let scheduler = FlowMatchEuler::new(configs.scheduler.clone())?;
    let info = ModelInfo {
        label,
        random_weights,
        dtype: dtype_name(dtype).to_string(),
        device: device_label(device),
        parameters: vec![
            ("text_encoder".into(), text_params),
            ("transformer".into(), transformer_params),
            ("vae".into(), vae_params),
        ],
    };
    let prompt_encoder = PromptEncoder::new(tokenizer, encoder);
    Ok(ZImagePipeline::new(
        info,
        Box::new(prompt_encoder),
        transformer,
        scheduler,
        Box::new(vae),
    ))
}

/// Random weights for a preset, built on `device` (fast on CUDA: drawn on the device).
pub fn random_pipeline(
    label: String,
    configs: &ModelConfigs,
    seed: u64,
    options: &LoadOptions,
    progress: &Option<ProgressFn>,
) -> Result<ZImagePipeline> {
    let target = Target::new(options, progress)?;
    let tokenizer = PromptTokenizer::new(demo::demo_tokenizer()?);
    let sources = [
        Source::Random { seed },
        Source::Random { seed },
        Source::Random { seed },
    ];
    assemble((label, true), configs, tokenizer, sources, &target)
}

/// A checkpoint directory: validated first, configs read from it, then the weights.
pub fn load_dir(root: &Path, options: &LoadOptions, progress: &Option<ProgressFn>) -> Result<ZImagePipeline> {
    let layout: ModelLayout = validate_dir(root)?;
    let target = Target::new(options, progress)?;
    let configs = ModelConfigs {
        text_encoder: Qwen3Config::from_file(&layout.text_encoder.config)?,
        transformer: ZImageTransformerConfig::from_file(&layout.transformer.config)?,
        vae: VaeConfig::from_file(&layout.vae.config)?,
        scheduler: SchedulerConfig::from_file(&layout.scheduler_config)?,
    };
    if configs.transformer.cap_feat_dim != configs.text_encoder.hidden_size {
        return Err(ModelError::load(
            &layout.transformer.config,
            format!(
                "cap_feat_dim is {}, but the text encoder's hidden_size is {} ({})",
                configs.transformer.cap_feat_dim,
                configs.text_encoder.hidden_size,
                layout.text_encoder.config.display()
            ),
        ));
    }
    let tokenizer = PromptTokenizer::from_file(&layout.tokenizer)?;
    let label = format!("Z-Image-Turbo ({})", root.display());
    let sources = [
        Source::Files(&layout.text_encoder),
        Source::Files(&layout.transformer),
        Source::Files(&layout.vae),
    ];
    assemble((label, false), &configs, tokenizer, sources, &target)
}

fn device_label(device: &Device) -> String {
    match device.location() {
        candle_core::DeviceLocation::Cpu => "cpu".into(),
        candle_core::DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
        candle_core::DeviceLocation::Metal { gpu_id } => format!("metal:{gpu_id}"),
    }
}
