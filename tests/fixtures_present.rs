//! The diffusers parity fixtures (tests/fixtures, made by scripts/make_fixtures.py) are present
//! and self-consistent, so a missing or truncated fixture fails loudly instead of silently
//! skipping the parity tests that read them.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;
use sha2::{Digest, Sha256};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn read_json(path: &Path) -> Value {
    let text = fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e} (run scripts/make_fixtures.py)", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: not JSON: {e}", path.display()))
}

fn reference_json() -> Value {
    read_json(&fixtures().join("reference.json"))
}

#[test]
fn tiny_model_has_the_hugging_face_layout() {
    let tiny = fixtures().join("tiny");
    for file in [
        "model_index.json",
        "scheduler/scheduler_config.json",
        "text_encoder/config.json",
        "tokenizer/tokenizer.json",
        "tokenizer/tokenizer_config.json",
        "transformer/config.json",
        "vae/config.json",
        "vae/diffusion_pytorch_model.safetensors",
    ] {
        assert!(tiny.join(file).is_file(), "missing tests/fixtures/tiny/{file}");
    }
    let index = read_json(&tiny.join("transformer/diffusion_pytorch_model.safetensors.index.json"));
    let weight_map = index["weight_map"]
        .as_object()
        .expect("transformer index has a weight_map");
    let mut shards: Vec<&str> = weight_map.values().filter_map(Value::as_str).collect();
    shards.sort_unstable();
    shards.dedup();
    assert!(shards.len() >= 2, "transformer should be sharded, got {shards:?}");
    for shard in shards {
        let bytes = fs::read(tiny.join("transformer").join(shard)).expect("shard readable");
        let st = safetensors::SafeTensors::deserialize(&bytes)
            .unwrap_or_else(|e| panic!("{shard}: bad safetensors: {e}"));
        let names: Vec<String> = st.names().into_iter().map(String::from).collect();
        for (name, file) in weight_map {
            if file.as_str() == Some(shard) {
                assert!(names.contains(name), "{name} not in {shard}");
            }
        }
    }
}

#[test]
fn reference_tensors_match_their_index() {
    let meta = reference_json();
    let bytes = fs::read(fixtures().join("reference.safetensors")).expect("reference.safetensors");
    let st = safetensors::SafeTensors::deserialize(&bytes).expect("reference.safetensors parses");
    let index = meta["tensors"]
        .as_object()
        .expect("reference.json has a tensors index");
    assert!(index.len() >= 60, "only {} tensors indexed", index.len());
    for (name, entry) in index {
        let view = st
            .tensor(name)
            .unwrap_or_else(|e| panic!("{name} missing from reference.safetensors: {e}"));
        let shape: Vec<usize> = entry["shape"]
            .as_array()
            .expect("shape")
            .iter()
            .map(|d| d.as_u64().expect("dim") as usize)
            .collect();
        assert_eq!(view.shape(), shape.as_slice(), "{name} shape");
        let dtype = match entry["dtype"].as_str() {
            Some("float32") => safetensors::Dtype::F32,
            Some("int64") => safetensors::Dtype::I64,
            Some("uint8") => safetensors::Dtype::U8,
            other => panic!("{name}: unexpected dtype {other:?}"),
        };
        assert_eq!(view.dtype(), dtype, "{name} dtype");
    }
    for stage in [
        "te.en.embeds",
        "sched.s8.h1024w1024.sigmas",
        "dit.out",
        "vae.decoded",
        "pipe.image_u8",
    ] {
        assert!(index.contains_key(stage), "{stage} not recorded");
    }
}

#[test]
fn reference_json_holds_prompts_ids_and_schedules() {
    let meta = reference_json();
    for key in ["en", "zh", "long"] {
        let ids = meta["qwen3_ids"][key]
            .as_array()
            .unwrap_or_else(|| panic!("qwen3_ids.{key}"));
        assert!(!ids.is_empty() && ids.len() <= 512, "qwen3_ids.{key}");
        let templated = meta["templated"][key].as_str().expect("templated prompt");
        assert!(templated.starts_with("<|im_start|>user\n"));
    }
    assert_eq!(meta["qwen3_ids"]["long"].as_array().map(Vec::len), Some(512));
    let sigmas = meta["scheduler"]["s9.h1024w1024"]["sigmas"]
        .as_array()
        .expect("9-step sigmas");
    assert_eq!(sigmas.len(), 10);
    assert_eq!(sigmas.last().and_then(Value::as_f64), Some(0.0));
}

#[test]
fn real_qwen3_tokenizer_is_the_recorded_one() {
    let meta = reference_json();
    let bytes = fs::read(fixtures().join("qwen3-tokenizer/tokenizer.json"))
        .expect("tests/fixtures/qwen3-tokenizer/tokenizer.json");
    let digest: String = Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(Some(digest.as_str()), meta["real_tokenizer_sha256"].as_str());
}

/// Both tokenizer.json files load in the Rust `tokenizers` crate and reproduce diffusers' ids for
/// the templated prompts (the first 512), so the parity tests stand on a usable tokenizer.
#[test]
fn tokenizer_files_reproduce_the_recorded_ids() {
    let meta = reference_json();
    for (file, ids_key) in [
        ("qwen3-tokenizer/tokenizer.json", "qwen3_ids"),
        ("tiny/tokenizer/tokenizer.json", "tiny_ids"),
    ] {
        let tokenizer =
            tokenizers::Tokenizer::from_file(fixtures().join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        for key in ["en", "zh", "long"] {
            let text = meta["templated"][key].as_str().expect("templated prompt");
            let encoding = tokenizer
                .encode(text, true)
                .unwrap_or_else(|e| panic!("{file} cannot encode {key}: {e}"));
            let got: Vec<u64> = encoding
                .get_ids()
                .iter()
                .take(512)
                .map(|&id| u64::from(id))
                .collect();
            let want: Vec<u64> = meta[ids_key][key]
                .as_array()
                .expect("recorded ids")
                .iter()
                .map(|v| v.as_u64().expect("id"))
                .collect();
            assert_eq!(got, want, "{file}, prompt {key}");
        }
    }
}
