//! encode → denoise loop (progress, cancel) → decode, as diffusers' `ZImagePipeline.__call__`
//! with `guidance_scale = 0` (Turbo: no classifier-free guidance, one forward per step).
//! Contract used by the worker: `ZImagePipeline::generate` / `generate_from_latents`, `info()`.
//!
//! The text encoder and the VAE decoder plug in through two narrow traits (`PromptEmbedder`,
//! `LatentDecoder`), implemented by `text_encoder.rs` and `vae.rs`.

use std::time::Instant;

use candle_core::{DType, Device, Tensor};

use super::profile::scope;
use super::scheduler::FlowMatchEuler;
use super::transformer::ZImageTransformer;
use super::{GenerationRequest, ModelError, Progress, Result, RgbImage, Stage, StageTimings};

/// What was loaded, for display in every face (status bar, PNG metadata, reports).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ModelInfo {
    /// e.g. "Z-Image-Turbo (/path/to/dir)" or "demo model (random weights)".
    pub label: String,
    /// True for the demo model and `--random-weights`: outputs say so prominently.
    pub random_weights: bool,
    pub dtype: String,
    pub device: String,
    /// Parameter count per component (name, count).
    pub parameters: Vec<(String, u64)>,
}

/// The finished image with what it cost.
#[derive(Debug, Clone)]
pub struct Generated {
    pub image: RgbImage,
    pub timings: StageTimings,
    /// Non-fatal notes for the user, e.g. prompt truncated at 512 tokens.
    pub warnings: Vec<String>,
}

/// Prompt → caption features (the Qwen3 text encoder with its tokenizer and chat template).
pub trait PromptEmbedder: Send {
    /// `[tokens, hidden]` features of the real (unpadded) tokens — hidden_states[-2] — plus
    /// non-fatal warnings such as truncation at 512 tokens.
    fn encode(&self, prompt: &str) -> Result<(Tensor, Vec<String>)>;
}

/// Final latents → pixels (the VAE decoder).
pub trait LatentDecoder: Send {
    /// `latents`: the scheduler's f32 `[1, C, h/s, w/s]` as they are; the decoder applies its own
    /// `latents / scaling_factor + shift_factor` and dtype.
    fn decode(&self, latents: &Tensor) -> Result<RgbImage>;
    /// Pixels per latent cell, `2^(len(block_out_channels) − 1)` (8 for Z-Image).
    fn spatial_scale(&self) -> usize;
}

pub struct ZImagePipeline {
    pub(crate) info: ModelInfo,
    text_encoder: Box<dyn PromptEmbedder>,
    transformer: ZImageTransformer,
    scheduler: FlowMatchEuler,
    vae: Box<dyn LatentDecoder>,
}

impl ZImagePipeline {
    pub fn new(
        info: ModelInfo,
        text_encoder: Box<dyn PromptEmbedder>,
        transformer: ZImageTransformer,
        scheduler: FlowMatchEuler,
        vae: Box<dyn LatentDecoder>,
    ) -> Self {
        Self {
            info,
            text_encoder,
            transformer,
            scheduler,
            vae,
        }
    }

    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    pub fn transformer(&self) -> &ZImageTransformer {
        &self.transformer
    }

    pub fn scheduler(&self) -> &FlowMatchEuler {
        &self.scheduler
    }

    fn device(&self) -> &Device {
        self.transformer.device()
    }

    /// Latent shape `[1, C, h/s, w/s]` for a request.
    pub fn latent_shape(&self, request: &GenerationRequest) -> Result<(usize, usize, usize, usize)> {
        let scale = self.vae.spatial_scale().max(1);
        // diffusers: 2 · (size // (2 · scale)); the pipeline's sizes are multiples of 2 · scale.
        let side = |pixels: u32| 2 * (pixels as usize / (2 * scale));
        let (h, w) = (side(request.height), side(request.width));
        if h == 0 || w == 0 || h * scale != request.height as usize || w * scale != request.width as usize {
            return Err(ModelError::BadInput(format!(
                "size {}×{} is not a multiple of {} for this model",
                request.width,
                request.height,
                2 * scale
            )));
        }
        Ok((1, self.transformer.config().in_channels, h, w))
    }

    /// Full generation; initial latents drawn from `request.seed` by `initial_latents`.
    pub fn generate(&self, request: &GenerationRequest, progress: &mut dyn Progress) -> Result<Generated> {
        request.validate()?;
        let shape = self.latent_shape(request)?;
        let latents = initial_latents(request.seed, shape, self.device())?;
        self.generate_from_latents(request, latents, progress)
    }

    /// Full generation from given f32 latents `[1, C, h/s, w/s]` (parity tests, reproducibility).
    pub fn generate_from_latents(
        &self,
        request: &GenerationRequest,
        initial_latents: Tensor,
        progress: &mut dyn Progress,
    ) -> Result<Generated> {
        request.validate()?;
        let shape = self.latent_shape(request)?;
        if initial_latents.dims() != [shape.0, shape.1, shape.2, shape.3] {
            return Err(ModelError::BadInput(format!(
                "initial latents are {:?}, expected {:?}",
                initial_latents.dims(),
                [shape.0, shape.1, shape.2, shape.3]
            )));
        }
        let device = self.device().clone();
        let mut timings = StageTimings::default();

        progress.stage(Stage::Encode);
        let started = synchronized_now(&device)?;
        let (caption, warnings) = scope("text encoder", &device, || {
            self.text_encoder.encode(&request.prompt)
        })?;
        let caption = caption.to_device(&device)?;
        timings.encode = synchronized_now(&device)? - started;
        if progress.cancelled() {
            return Err(ModelError::Cancelled);
        }

        progress.stage(Stage::Denoise);
        let mut step_started = synchronized_now(&device)?;
        let (_, _, latent_h, latent_w) = shape;
        let schedule = self
            .scheduler
            .schedule(request.steps, (latent_h / 2) * (latent_w / 2))?;
        let layout = self.transformer.layout(caption.dim(0)?, latent_h, latent_w)?;
        let caption = self.transformer.embed_caption(&caption, &layout)?;
        // One upload for every step's time input: nothing crosses to the host inside the loop.
        let model_times: Vec<f32> = (0..schedule.steps()).map(|i| schedule.model_time(i)).collect();
        let model_times = Tensor::from_vec(model_times, schedule.steps(), &device)?;
        let mut latents = initial_latents.to_device(&device)?.to_dtype(DType::F32)?;
        for i in 0..schedule.steps() {
            let t = model_times.narrow(0, i, 1)?;
            let velocity = self
                .transformer
                .forward_with_caption(&latents, &t, &caption, &layout)?;
            latents = scope("scheduler step", &device, || {
                schedule.step(i, &latents, &velocity)
            })?;
            let now = synchronized_now(&device)?;
            let elapsed = now - step_started;
            timings.steps.push(elapsed);
            progress.step(i + 1, schedule.steps(), elapsed, &latents);
            if progress.cancelled() {
                return Err(ModelError::Cancelled);
            }
            step_started = now;
        }

        progress.stage(Stage::Decode);
        let started = synchronized_now(&device)?;
        // the decoder's kernel classes are timed inside; the RGB8 conversion is the rest
        let image = self.vae.decode(&latents)?;
        timings.decode = synchronized_now(&device)? - started;
        Ok(Generated {
            image,
            timings,
            warnings,
        })
    }
}

/// Waits for queued device work, then reads the clock, so stage times are real.
fn synchronized_now(device: &Device) -> Result<Instant> {
    device.synchronize()?;
    Ok(Instant::now())
}

/// Initial noise for a seed: SplitMix64 (seed as the state) → pairs of uniforms in (0, 1) from
/// the top 53 bits → Box–Muller `(r·cos θ, r·sin θ)` in f64, rounded to f32, filling
/// `[1, C, H, W]` in row-major order. Deterministic across platforms; it does not reproduce
/// torch's generator, so parity tests pass fixed latents to `generate_from_latents`.
pub fn initial_latents(seed: u64, shape: (usize, usize, usize, usize), device: &Device) -> Result<Tensor> {
    let count = shape.0 * shape.1 * shape.2 * shape.3;
    let mut rng = SplitMix64(seed);
    let mut values = Vec::with_capacity(count + 1);
    while values.len() < count {
        let u1 = rng.next_open_unit();
        let u2 = rng.next_open_unit();
        let radius = (-2.0 * u1.ln()).sqrt();
        let angle = std::f64::consts::TAU * u2;
        values.push((radius * angle.cos()) as f32);
        values.push((radius * angle.sin()) as f32);
    }
    values.truncate(count);
    Ok(Tensor::from_vec(values, shape, &Device::Cpu)?.to_device(device)?)
}

/// Steele, Lea & Flood's SplitMix64: tiny, fast, well-distributed, fixed forever.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in the open interval (0, 1): never 0, so `ln` is finite.
    fn next_open_unit(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initial_latents_are_deterministic_standard_normal() {
        let a = initial_latents(42, (1, 16, 32, 32), &Device::Cpu).unwrap();
        let b = initial_latents(42, (1, 16, 32, 32), &Device::Cpu).unwrap();
        let c = initial_latents(43, (1, 16, 32, 32), &Device::Cpu).unwrap();
        let a: Vec<f32> = a.flatten_all().unwrap().to_vec1().unwrap();
        let b: Vec<f32> = b.flatten_all().unwrap().to_vec1().unwrap();
        let c: Vec<f32> = c.flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
        let n = a.len() as f64;
        let mean = a.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
        let var = a.iter().map(|&x| (f64::from(x) - mean).powi(2)).sum::<f64>() / n;
        assert!(mean.abs() < 0.03, "mean {mean}");
        assert!((var - 1.0).abs() < 0.05, "variance {var}");
    }

    #[test]
    fn splitmix_matches_the_published_sequence() {
        // Reference values of SplitMix64 seeded with 1234567 (from the algorithm's C source).
        let mut rng = SplitMix64(1_234_567);
        assert_eq!(rng.next_u64(), 6_457_827_717_110_365_317);
        assert_eq!(rng.next_u64(), 3_203_168_211_198_807_973);
    }
}
