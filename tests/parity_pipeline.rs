//! ZImagePipeline vs diffusers' `ZImagePipeline` (guidance 0, 8 steps, 64×96, fixed initial
//! latents) on the tiny fixture model: from the prompt text through the real tokenizer, text
//! encoder, transformer, scheduler and VAE to the RGB8 image, checking every step's latents.

use std::collections::HashMap;
use std::time::Duration;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use zimage_tui::model::pipeline::{LatentDecoder, ModelInfo, PromptEmbedder, ZImagePipeline};
use zimage_tui::model::scheduler::{FlowMatchEuler, SchedulerConfig};
use zimage_tui::model::text_encoder::{PromptEncoder, Qwen3Config, TextEncoder};
use zimage_tui::model::tokenizer::PromptTokenizer;
use zimage_tui::model::transformer::{ZImageTransformer, ZImageTransformerConfig};
use zimage_tui::model::vae::{DecodeMode, VaeConfig, VaeDecoder};
use zimage_tui::model::{GenerationRequest, ModelError, Progress, Result, RgbImage, Stage};

mod common;
use common::{assert_u8_matches, fixtures, max_abs_and_rel, reference, reference_image, shard_files};

fn transformer() -> ZImageTransformer {
    let dir = fixtures().join("tiny/transformer");
    let config = ZImageTransformerConfig::from_file(&dir.join("config.json")).unwrap();
    // SAFETY: the fixture files are not modified while the test runs.
    let vb =
        unsafe { VarBuilder::from_mmaped_safetensors(&shard_files(&dir), DType::F32, &Device::Cpu).unwrap() };
    ZImageTransformer::load(&config, vb).unwrap()
}

// SAFETY (all mmaps here): the fixture files are not modified while the tests run.
fn prompt_encoder() -> PromptEncoder {
    let dir = fixtures().join("tiny");
    let tokenizer = PromptTokenizer::from_file(&dir.join("tokenizer/tokenizer.json")).unwrap();
    let config = Qwen3Config::from_file(&dir.join("text_encoder/config.json")).unwrap();
    let weights = [dir.join("text_encoder/model.safetensors")];
    let vb = unsafe { VarBuilder::from_mmaped_safetensors(&weights, DType::F32, &Device::Cpu).unwrap() };
    PromptEncoder::new(tokenizer, TextEncoder::new(vb, &config).unwrap())
}

fn vae() -> VaeDecoder {
    let dir = fixtures().join("tiny/vae");
    let config = VaeConfig::from_file(&dir.join("config.json")).unwrap();
    let weights = [dir.join("diffusion_pytorch_model.safetensors")];
    let vb = unsafe { VarBuilder::from_mmaped_safetensors(&weights, DType::F32, &Device::Cpu).unwrap() };
    VaeDecoder::new(vb, &config).unwrap().with_mode(DecodeMode::Full)
}

fn info() -> ModelInfo {
    ModelInfo {
        label: "tiny fixture".into(),
        random_weights: true,
        dtype: "f32".into(),
        device: "cpu".into(),
        parameters: Vec::new(),
    }
}

fn scheduler() -> FlowMatchEuler {
    let path = fixtures().join("tiny/scheduler/scheduler_config.json");
    FlowMatchEuler::new(SchedulerConfig::from_file(&path).unwrap()).unwrap()
}

/// The whole tiny model, as the loader assembles it.
fn full_pipeline() -> ZImagePipeline {
    ZImagePipeline::new(
        info(),
        Box::new(prompt_encoder()),
        transformer(),
        scheduler(),
        Box::new(vae()),
    )
}

/// The prompt embeddings diffusers computed (the text encoder has its own parity test).
struct RecordedEmbeddings(Tensor);

impl PromptEmbedder for RecordedEmbeddings {
    fn encode(&self, _prompt: &str) -> Result<(Tensor, Vec<String>)> {
        Ok((self.0.clone(), Vec::new()))
    }
}

/// A black image of the right size: this test checks the latents (the VAE has its own test).
struct BlankDecoder;

impl LatentDecoder for BlankDecoder {
    fn decode(&self, latents: &Tensor) -> Result<RgbImage> {
        let (_, _, h, w) = latents.dims4()?;
        Ok(RgbImage {
            width: (w * 8) as u32,
            height: (h * 8) as u32,
            pixels: vec![0; h * w * 64 * 3],
        })
    }
    fn spatial_scale(&self) -> usize {
        8
    }
}

#[derive(Default)]
struct Recorder {
    stages: Vec<Stage>,
    latents: Vec<Tensor>,
    cancel_after: Option<usize>,
}

impl Progress for Recorder {
    fn stage(&mut self, stage: Stage) {
        self.stages.push(stage);
    }
    fn step(&mut self, step: usize, total: usize, _elapsed: Duration, latents: &Tensor) {
        assert_eq!(step, self.latents.len() + 1);
        assert_eq!(total, 8);
        self.latents.push(latents.clone());
    }
    fn cancelled(&self) -> bool {
        self.cancel_after.is_some_and(|n| self.latents.len() >= n)
    }
}

/// Transformer and scheduler only: recorded embeddings in, latents checked, no decoding.
fn denoise_only_pipeline(reference: &HashMap<String, Tensor>) -> ZImagePipeline {
    let embeddings = RecordedEmbeddings(reference["pipe.prompt_embeds"].clone());
    ZImagePipeline::new(
        info(),
        Box::new(embeddings),
        transformer(),
        scheduler(),
        Box::new(BlankDecoder),
    )
}

fn request() -> GenerationRequest {
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("reference.json")).unwrap()).unwrap();
    let prompt = json["prompts"]["en"].as_str().unwrap().to_string();
    GenerationRequest {
        prompt,
        width: 96,
        height: 64,
        steps: 8,
        seed: 0,
    }
}

#[test]
fn whole_pipeline_from_prompt_text_matches_diffusers() {
    let reference = reference();
    let pipeline = full_pipeline();
    let mut recorder = Recorder::default();
    let generated = pipeline
        .generate_from_latents(&request(), reference["pipe.latents_init"].clone(), &mut recorder)
        .unwrap();
    assert!(generated.warnings.is_empty(), "{:?}", generated.warnings);

    let mut worst = (0f32, 0f32);
    for (i, latents) in recorder.latents.iter().enumerate() {
        let (abs, rel) = max_abs_and_rel(latents, &reference[&format!("pipe.latents.{i}")]);
        assert!(rel < 1e-4, "step {i}: relative error {rel:.3e}");
        worst = (worst.0.max(abs), worst.1.max(rel));
    }
    eprintln!(
        "pipeline latents from text (8 steps): max abs {:.3e}, rel {:.3e}",
        worst.0, worst.1
    );

    // The decoder's float output on our final latents, against diffusers' `pipe.decoded`.
    let decoded = vae().decode(&recorder.latents[7], DecodeMode::Full).unwrap();
    let (abs, rel) = max_abs_and_rel(&decoded, &reference["pipe.decoded"]);
    eprintln!("pipeline decoded image: max abs {abs:.3e}, rel {rel:.3e}");
    assert!(rel < 1e-4, "decoded image: relative error {rel:.3e}");

    // The RGB8 image: equal except ±1 where diffusers' value sits on a rounding boundary.
    let (expected, unit) = reference_image(&reference, "pipe.image");
    assert_eq!((generated.image.width, generated.image.height), (96, 64));
    let off_by_one = assert_u8_matches(&generated.image.pixels, &expected, &unit);
    eprintln!(
        "pipeline RGB8: {off_by_one} of {} values differ by 1 at a .5 boundary",
        expected.len()
    );
}

#[test]
fn denoising_loop_matches_diffusers_step_by_step() {
    let reference = reference();
    let pipeline = denoise_only_pipeline(&reference);
    let mut recorder = Recorder::default();
    let generated = pipeline
        .generate_from_latents(&request(), reference["pipe.latents_init"].clone(), &mut recorder)
        .unwrap();
    assert_eq!(
        recorder.stages,
        vec![Stage::Encode, Stage::Denoise, Stage::Decode]
    );
    assert_eq!(generated.timings.steps.len(), 8);
    assert_eq!((generated.image.width, generated.image.height), (96, 64));
    let mut worst = (0f32, 0f32);
    for (i, latents) in recorder.latents.iter().enumerate() {
        let expected = &reference[&format!("pipe.latents.{i}")];
        assert_eq!(latents.dtype(), DType::F32);
        let (diff, rel) = max_abs_and_rel(latents, expected);
        assert!(rel < 1e-4, "step {i}: relative error {rel}");
        worst = (worst.0.max(diff), worst.1.max(rel));
    }
    eprintln!(
        "pipeline latents (8 steps): max abs {:.3e}, rel {:.3e}",
        worst.0, worst.1
    );
}

#[test]
fn cancellation_stops_between_steps() {
    let reference = reference();
    let pipeline = denoise_only_pipeline(&reference);
    let mut recorder = Recorder {
        cancel_after: Some(2),
        ..Recorder::default()
    };
    let result =
        pipeline.generate_from_latents(&request(), reference["pipe.latents_init"].clone(), &mut recorder);
    assert!(matches!(result, Err(ModelError::Cancelled)));
    assert_eq!(recorder.latents.len(), 2);
    assert!(!recorder.stages.contains(&Stage::Decode));
}

#[test]
fn wrong_latent_shape_is_a_clear_error() {
    let reference = reference();
    let pipeline = denoise_only_pipeline(&reference);
    let latents = Tensor::zeros((1, 16, 8, 8), DType::F32, &Device::Cpu).unwrap();
    let err = pipeline
        .generate_from_latents(&request(), latents, &mut Recorder::default())
        .unwrap_err();
    assert!(matches!(err, ModelError::BadInput(_)), "{err}");
}

#[test]
fn seeded_generation_is_deterministic() {
    let reference = reference();
    let pipeline = denoise_only_pipeline(&reference);
    let mut first = Recorder::default();
    let mut second = Recorder::default();
    pipeline.generate(&request(), &mut first).unwrap();
    pipeline.generate(&request(), &mut second).unwrap();
    let a: Vec<f32> = first.latents[7].flatten_all().unwrap().to_vec1().unwrap();
    let b: Vec<f32> = second.latents[7].flatten_all().unwrap().to_vec1().unwrap();
    assert_eq!(a, b);
}
