//! ZImageTransformer vs diffusers' ZImageTransformer2DModel on the tiny fixture model:
//! positions, RoPE tables, the caption path and one whole forward, f32 on the CPU.

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use zimage_tui::model::transformer::{ZImageTransformer, ZImageTransformerConfig};

mod common;
use common::{fixtures, max_abs_and_rel, reference, shard_files};

fn load_tiny() -> ZImageTransformer {
    load_tiny_as(DType::F32)
}

fn load_tiny_as(dtype: DType) -> ZImageTransformer {
    let dir = fixtures().join("tiny/transformer");
    let config = ZImageTransformerConfig::from_file(&dir.join("config.json")).unwrap();
    // SAFETY: the fixture files are not modified while the test runs.
    let vb = unsafe { VarBuilder::from_mmaped_safetensors(&shard_files(&dir), dtype, &Device::Cpu).unwrap() };
    ZImageTransformer::load(&config, vb).unwrap()
}

fn check(stage: &str, ours: &Tensor, reference: &Tensor, tolerance: f32) {
    let (abs, rel) = max_abs_and_rel(ours, reference);
    eprintln!("{stage}: max abs {abs:.3e}, rel {rel:.3e}");
    assert!(
        rel < tolerance,
        "{stage}: relative error {rel:.3e} ≥ {tolerance:.0e}"
    );
}

fn positions(rows: &[[u32; 3]]) -> Vec<Vec<i64>> {
    rows.iter()
        .map(|p| p.iter().map(|&v| i64::from(v)).collect())
        .collect()
}

#[test]
fn positions_and_rope_tables_match_diffusers() {
    let reference = reference();
    let model = load_tiny();
    let caption_len = reference["dit.cap_feats"].dim(0).unwrap();
    let layout = model.layout(caption_len, 10, 14).unwrap();
    assert_eq!(
        positions(&layout.image_positions),
        reference["dit.x_pos_ids"].to_vec2::<i64>().unwrap()
    );
    assert_eq!(
        positions(&layout.caption_positions),
        reference["dit.cap_pos_ids"].to_vec2::<i64>().unwrap()
    );
    let (cos, sin) = layout.unified_rope();
    check("rope cos", cos, &reference["dit.freqs_cos"], 1e-6);
    check("rope sin", sin, &reference["dit.freqs_sin"], 1e-6);
}

#[test]
fn transformer_forward_matches_diffusers() {
    let reference = reference();
    let model = load_tiny();
    let caption = &reference["dit.cap_feats"];
    let latents = reference["dit.x"].squeeze(1).unwrap().unsqueeze(0).unwrap();
    let layout = model.layout(caption.dim(0).unwrap(), 10, 14).unwrap();

    let refined = model.embed_caption(caption, &layout).unwrap();
    check("caption refined", &refined, &reference["dit.cap_refined"], 1e-4);

    let out = model
        .forward_with_caption(&latents, &reference["dit.t"], &refined, &layout)
        .unwrap();
    let expected = reference["dit.out"].squeeze(1).unwrap().unsqueeze(0).unwrap();
    check("transformer forward", &out, &expected, 1e-4);

    // The one-call form gives the same result.
    let direct = model.forward(&latents, &reference["dit.t"], caption).unwrap();
    check("forward (one call)", &direct, &expected, 1e-4);
}

/// The CUDA path runs in bf16: the same code with bf16 weights must stay close to the f32
/// reference and return the model dtype (the pipeline casts back to f32 for the scheduler).
#[test]
fn bf16_forward_stays_close_to_the_f32_reference() {
    let reference = reference();
    let model = load_tiny_as(DType::BF16);
    let latents = reference["dit.x"].squeeze(1).unwrap().unsqueeze(0).unwrap();
    let out = model
        .forward(&latents, &reference["dit.t"], &reference["dit.cap_feats"])
        .unwrap();
    assert_eq!(out.dtype(), DType::BF16);
    let expected = reference["dit.out"].squeeze(1).unwrap().unsqueeze(0).unwrap();
    check(
        "transformer forward bf16",
        &out.to_dtype(DType::F32).unwrap(),
        &expected,
        3e-2,
    );
}

#[test]
fn parameter_count_matches_the_checkpoint() {
    let dir = fixtures().join("tiny/transformer");
    let config = ZImageTransformerConfig::from_file(&dir.join("config.json")).unwrap();
    let mut total = 0u64;
    for file in shard_files(&dir) {
        for (_, tensor) in candle_core::safetensors::load(file, &Device::Cpu).unwrap() {
            total += tensor.elem_count() as u64;
        }
    }
    assert_eq!(config.parameter_count(), total);
}
