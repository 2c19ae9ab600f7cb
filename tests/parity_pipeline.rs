//! ZImagePipeline vs diffusers' `ZImagePipeline` (guidance 0, 8 steps, 64×96, fixed initial
//! latents): every step's latents, through the real transformer and scheduler.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use zimage_tui::model::pipeline::{LatentDecoder, ModelInfo, PromptEmbedder, ZImagePipeline};
use zimage_tui::model::scheduler::{FlowMatchEuler, SchedulerConfig};
use zimage_tui::model::transformer::{ZImageTransformer, ZImageTransformerConfig};
use zimage_tui::model::{GenerationRequest, ModelError, Progress, Result, RgbImage, Stage};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn reference() -> HashMap<String, Tensor> {
    candle_core::safetensors::load(fixtures().join("reference.safetensors"), &Device::Cpu).unwrap()
}

fn shard_files(dir: &Path) -> Vec<PathBuf> {
    let index: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("diffusion_pytorch_model.safetensors.index.json")).unwrap(),
    )
    .unwrap();
    let mut files: Vec<PathBuf> = index["weight_map"]
        .as_object()
        .unwrap()
        .values()
        .map(|f| dir.join(f.as_str().unwrap()))
        .collect();
    files.sort();
    files.dedup();
    files
}

fn transformer() -> ZImageTransformer {
    let dir = fixtures().join("tiny/transformer");
    let config = ZImageTransformerConfig::from_file(&dir.join("config.json")).unwrap();
    // SAFETY: the fixture files are not modified while the test runs.
    let vb =
        unsafe { VarBuilder::from_mmaped_safetensors(&shard_files(&dir), DType::F32, &Device::Cpu).unwrap() };
    ZImageTransformer::load(&config, vb).unwrap()
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

fn pipeline(reference: &HashMap<String, Tensor>) -> ZImagePipeline {
    let scheduler = FlowMatchEuler::new(
        SchedulerConfig::from_file(&fixtures().join("tiny/scheduler/scheduler_config.json")).unwrap(),
    )
    .unwrap();
    let info = ModelInfo {
        label: "tiny fixture".into(),
        random_weights: true,
        dtype: "f32".into(),
        device: "cpu".into(),
        parameters: Vec::new(),
    };
    ZImagePipeline::new(
        info,
        Box::new(RecordedEmbeddings(reference["pipe.prompt_embeds"].clone())),
        transformer(),
        scheduler,
        Box::new(BlankDecoder),
    )
}

fn request() -> GenerationRequest {
    GenerationRequest {
        prompt: "fixture prompt".into(),
        width: 96,
        height: 64,
        steps: 8,
        seed: 0,
    }
}

#[test]
fn denoising_loop_matches_diffusers_step_by_step() {
    let reference = reference();
    let pipeline = pipeline(&reference);
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
        let diff = (latents - expected)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        let scale = expected
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(diff / scale < 1e-4, "step {i}: relative error {}", diff / scale);
        worst = (worst.0.max(diff), worst.1.max(diff / scale));
    }
    eprintln!(
        "pipeline latents (8 steps): max abs {:.3e}, rel {:.3e}",
        worst.0, worst.1
    );
}

#[test]
fn cancellation_stops_between_steps() {
    let reference = reference();
    let pipeline = pipeline(&reference);
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
    let pipeline = pipeline(&reference);
    let latents = Tensor::zeros((1, 16, 8, 8), DType::F32, &Device::Cpu).unwrap();
    let err = pipeline
        .generate_from_latents(&request(), latents, &mut Recorder::default())
        .unwrap_err();
    assert!(matches!(err, ModelError::BadInput(_)), "{err}");
}

#[test]
fn seeded_generation_is_deterministic() {
    let reference = reference();
    let pipeline = pipeline(&reference);
    let mut first = Recorder::default();
    let mut second = Recorder::default();
    pipeline.generate(&request(), &mut first).unwrap();
    pipeline.generate(&request(), &mut second).unwrap();
    let a: Vec<f32> = first.latents[7].flatten_all().unwrap().to_vec1().unwrap();
    let b: Vec<f32> = second.latents[7].flatten_all().unwrap().to_vec1().unwrap();
    assert_eq!(a, b);
}
