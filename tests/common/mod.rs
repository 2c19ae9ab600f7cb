//! Helpers shared by the parity tests: where the diffusers fixtures are and how to read them.
#![allow(dead_code)] // each test binary uses a different subset

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Every tensor of `reference.safetensors`.
pub fn reference() -> HashMap<String, Tensor> {
    candle_core::safetensors::load(fixtures().join("reference.safetensors"), &Device::Cpu)
        .expect("reference.safetensors loads")
}

/// The shard files named by `diffusion_pytorch_model.safetensors.index.json`.
pub fn shard_files(dir: &Path) -> Vec<PathBuf> {
    let index: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("diffusion_pytorch_model.safetensors.index.json")).unwrap(),
    )
    .unwrap();
    let mut files: Vec<PathBuf> = index["weight_map"]
        .as_object()
        .unwrap()
        .values()
        .map(|file| dir.join(file.as_str().unwrap()))
        .collect();
    files.sort();
    files.dedup();
    files
}

/// `max|a - b| / max|b|`, the fixtures' error measure.
pub fn rel_err(ours: &Tensor, reference: &Tensor) -> f32 {
    assert_eq!(ours.dims(), reference.dims(), "shapes differ");
    let ours = ours.to_dtype(DType::F32).expect("cast");
    let diff = (ours - reference)
        .and_then(|d| d.abs())
        .and_then(|d| d.max_all())
        .expect("diff");
    let scale = reference.abs().and_then(|r| r.max_all()).expect("scale");
    diff.to_scalar::<f32>().expect("scalar") / scale.to_scalar::<f32>().expect("scalar")
}

/// A reference image as diffusers' pipeline gives it: `{name}_u8` (what PIL saves) and `{name}`
/// (the float values in [0, 1] it was rounded from), both flattened.
pub fn reference_image(tensors: &HashMap<String, Tensor>, name: &str) -> (Vec<u8>, Vec<f32>) {
    let u8_values = tensors[&format!("{name}_u8")]
        .flatten_all()
        .and_then(|t| t.to_vec1::<u8>())
        .expect("u8 image");
    let unit = tensors[name]
        .flatten_all()
        .and_then(|t| t.to_vec1::<f32>())
        .expect("f32 image");
    (u8_values, unit)
}

/// Every value equal, or 1 off where diffusers' float value sits within 0.01 of a .5 rounding
/// boundary (our decoder output differs from torch's in the last float bits). Returns the count.
pub fn assert_u8_matches(ours: &[u8], reference_u8: &[u8], reference_unit: &[f32]) -> usize {
    assert_eq!(ours.len(), reference_u8.len());
    let mut off_by_one = 0;
    for (i, (&a, &b)) in ours.iter().zip(reference_u8).enumerate() {
        if a == b {
            continue;
        }
        let scaled = reference_unit[i] * 255.0;
        let distance_to_half = (scaled - scaled.floor() - 0.5).abs();
        assert!(
            a.abs_diff(b) == 1 && distance_to_half < 1e-2,
            "value {i}: ours {a}, diffusers {b} ({scaled})"
        );
        off_by_one += 1;
    }
    off_by_one
}

/// `(max|a - b|, max|a - b| / max|b|)` for f32 tensors of the same shape.
pub fn max_abs_and_rel(ours: &Tensor, reference: &Tensor) -> (f32, f32) {
    assert_eq!(ours.dims(), reference.dims());
    let max_abs = |t: &Tensor| t.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
    let diff = max_abs(&(ours - reference).unwrap());
    (diff, diff / max_abs(reference))
}
