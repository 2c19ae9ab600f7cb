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

/// `(max|a - b|, max|a - b| / max|b|)` for f32 tensors of the same shape.
pub fn max_abs_and_rel(ours: &Tensor, reference: &Tensor) -> (f32, f32) {
    assert_eq!(ours.dims(), reference.dims());
    let max_abs = |t: &Tensor| t.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
    let diff = max_abs(&(ours - reference).unwrap());
    (diff, diff / max_abs(reference))
}
