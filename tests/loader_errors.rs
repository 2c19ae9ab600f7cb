//! Model directory validation and discovery: every broken layout is refused with an error that
//! names the file; discovery finds checkpoints in explicit paths and in both caches.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use zimage_tui::model::loader::{discover, resolve, validate_dir, ModelSource, ModelSpec, SearchPaths};

fn write_tensors(path: &Path, tensors: &[(&str, usize)]) {
    let map: HashMap<String, Tensor> = tensors
        .iter()
        .map(|(name, len)| {
            (
                name.to_string(),
                Tensor::zeros(*len, DType::F32, &Device::Cpu).unwrap(),
            )
        })
        .collect();
    candle_core::safetensors::save(&map, path).unwrap();
}

/// A structurally complete diffusers layout with tiny placeholder tensors: the transformer
/// sharded in two with an index, the others single-file.
fn fake_model(root: &Path) {
    for dir in ["scheduler", "tokenizer", "text_encoder", "transformer", "vae"] {
        fs::create_dir_all(root.join(dir)).unwrap();
    }
    fs::write(
        root.join("model_index.json"),
        r#"{"_class_name": "ZImagePipeline"}"#,
    )
    .unwrap();
    fs::write(root.join("scheduler/scheduler_config.json"), r#"{"shift": 3.0}"#).unwrap();
    fs::write(root.join("tokenizer/tokenizer.json"), r#"{"model": {}}"#).unwrap();
    for part in ["text_encoder", "transformer", "vae"] {
        fs::write(root.join(part).join("config.json"), "{}").unwrap();
    }
    write_tensors(
        &root.join("text_encoder/model.safetensors"),
        &[("embed.weight", 8)],
    );
    write_tensors(
        &root.join("vae/diffusion_pytorch_model.safetensors"),
        &[("decoder.conv_in.bias", 4)],
    );
    let t = root.join("transformer");
    write_tensors(
        &t.join("diffusion_pytorch_model-00001-of-00002.safetensors"),
        &[("a.weight", 16)],
    );
    write_tensors(
        &t.join("diffusion_pytorch_model-00002-of-00002.safetensors"),
        &[("b.weight", 16)],
    );
    fs::write(
        t.join("diffusion_pytorch_model.safetensors.index.json"),
        r#"{"metadata": {"total_size": 128}, "weight_map": {
            "a.weight": "diffusion_pytorch_model-00001-of-00002.safetensors",
            "b.weight": "diffusion_pytorch_model-00002-of-00002.safetensors"}}"#,
    )
    .unwrap();
}

fn error_of(root: &Path) -> String {
    validate_dir(root)
        .expect_err("layout must be refused")
        .to_string()
}

/// The refusal of a fake model after `damage` (given the model's root) broke it.
fn error_after(damage: impl FnOnce(&Path)) -> String {
    let dir = tempfile::tempdir().unwrap();
    fake_model(dir.path());
    damage(dir.path());
    error_of(dir.path())
}

#[test]
fn a_complete_layout_validates() {
    let dir = tempfile::tempdir().unwrap();
    fake_model(dir.path());
    let layout = validate_dir(dir.path()).unwrap();
    assert_eq!(layout.transformer.weights.len(), 2);
    assert!(layout.transformer.index.is_some());
    assert_eq!(layout.transformer.bytes, 128);
    assert_eq!(layout.vae.weights.len(), 1);
}

#[test]
fn empty_directory_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let err = error_of(dir.path());
    assert!(
        err.contains(&dir.path().display().to_string()) && err.contains("empty"),
        "{err}"
    );
}

#[test]
fn missing_directory_is_named() {
    let err = error_of(Path::new("/definitely/not/here"));
    assert!(
        err.contains("/definitely/not/here") && err.contains("not found"),
        "{err}"
    );
}

#[test]
fn missing_shard_is_named() {
    let err = error_after(|root| {
        fs::remove_file(root.join("transformer/diffusion_pytorch_model-00002-of-00002.safetensors")).unwrap()
    });
    assert!(
        err.contains("diffusion_pytorch_model-00002-of-00002.safetensors") && err.contains("missing shard"),
        "{err}"
    );
}

#[test]
fn truncated_safetensors_is_named() {
    let err = error_after(|root| {
        let path = root.join("vae/diffusion_pytorch_model.safetensors");
        let bytes = fs::read(&path).unwrap();
        fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
    });
    assert!(
        err.contains("vae/diffusion_pytorch_model.safetensors") && err.contains("truncated"),
        "{err}"
    );
}

#[test]
fn shard_lacking_an_indexed_tensor_is_named() {
    let err = error_after(|root| {
        let shard = root.join("transformer/diffusion_pytorch_model-00001-of-00002.safetensors");
        write_tensors(&shard, &[("other.weight", 16)]);
    });
    assert!(
        err.contains("00001-of-00002.safetensors") && err.contains("tensor a.weight missing"),
        "{err}"
    );
}

#[test]
fn missing_tokenizer_is_named() {
    let err = error_after(|root| fs::remove_file(root.join("tokenizer/tokenizer.json")).unwrap());
    assert!(
        err.contains("tokenizer/tokenizer.json") && err.contains("missing"),
        "{err}"
    );
}

#[test]
fn missing_or_broken_configs_are_named() {
    let dir = tempfile::tempdir().unwrap();
    fake_model(dir.path());
    fs::write(dir.path().join("vae/config.json"), "{ not json").unwrap();
    let err = error_of(dir.path());
    assert!(
        err.contains("vae/config.json") && err.contains("invalid JSON"),
        "{err}"
    );
    fs::remove_file(dir.path().join("scheduler/scheduler_config.json")).unwrap();
    let err = error_of(dir.path());
    assert!(err.contains("scheduler/scheduler_config.json"), "{err}");
}

#[test]
fn missing_weights_are_named() {
    let err = error_after(|root| fs::remove_file(root.join("text_encoder/model.safetensors")).unwrap());
    assert!(
        err.contains("text_encoder/model.safetensors.index.json") && err.contains("model.safetensors"),
        "{err}"
    );
}

// ---------------------------------------------------------------------------------------------
// discovery

fn hf_snapshot(hub: &Path, revision: &str) -> PathBuf {
    let repo = hub.join("models--Tongyi-MAI--Z-Image-Turbo");
    let snapshot = repo.join("snapshots").join(revision);
    fs::create_dir_all(&snapshot).unwrap();
    snapshot
}

#[test]
fn nothing_found_means_the_demo_model() {
    let dir = tempfile::tempdir().unwrap();
    let paths = SearchPaths {
        hf_hub: Some(dir.path().join("hf")),
        modelscope: Some(dir.path().join("ms")),
        ..Default::default()
    };
    assert!(discover(&paths).is_empty());
    assert_eq!(resolve(&paths), ModelSpec::Demo);
}

#[test]
fn hugging_face_cache_prefers_refs_main_and_skips_incomplete_snapshots() {
    let dir = tempfile::tempdir().unwrap();
    let hub = dir.path().join("hub");
    let old = hf_snapshot(&hub, "aaaa");
    let main = hf_snapshot(&hub, "bbbb");
    let partial = hf_snapshot(&hub, "cccc");
    fake_model(&old);
    fake_model(&main);
    fs::write(partial.join("model_index.json"), "{}").unwrap();
    let refs = hub.join("models--Tongyi-MAI--Z-Image-Turbo/refs");
    fs::create_dir_all(&refs).unwrap();
    fs::write(refs.join("main"), "bbbb\n").unwrap();
    let paths = SearchPaths {
        hf_hub: Some(hub),
        ..Default::default()
    };
    let found = discover(&paths);
    assert_eq!(found.len(), 3);
    assert_eq!(found[0].path, main);
    assert!(found[0].default && found[0].valid);
    assert!(found.iter().all(|m| m.source == ModelSource::HuggingFaceCache));
    let broken = found.iter().find(|m| m.path == partial).unwrap();
    assert!(!broken.valid && !broken.default && broken.problem.is_some());
    assert_eq!(resolve(&paths), ModelSpec::Dir(main));
}

#[test]
fn modelscope_cache_layouts_are_found() {
    for sub in [
        "models/Tongyi-MAI/Z-Image-Turbo",
        "Tongyi-MAI/Z-Image-Turbo",
        "hub/models/Tongyi-MAI/Z-Image-Turbo",
    ] {
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join(sub);
        fs::create_dir_all(&model).unwrap();
        fake_model(&model);
        let paths = SearchPaths {
            modelscope: Some(dir.path().to_path_buf()),
            ..Default::default()
        };
        let found = discover(&paths);
        assert_eq!(found.len(), 1, "{sub}");
        assert_eq!(found[0].source, ModelSource::ModelScopeCache);
        assert_eq!(resolve(&paths), ModelSpec::Dir(model));
    }
}

#[test]
fn explicit_paths_come_first_even_when_broken() {
    let dir = tempfile::tempdir().unwrap();
    let cached = dir.path().join("ms/models/Tongyi-MAI/Z-Image-Turbo");
    fs::create_dir_all(&cached).unwrap();
    fake_model(&cached);
    let env_model = dir.path().join("env-model");
    fs::create_dir_all(&env_model).unwrap();
    let paths = SearchPaths {
        env: Some(env_model.clone()),
        modelscope: Some(dir.path().join("ms")),
        ..Default::default()
    };
    let found = discover(&paths);
    assert_eq!(found[0].source, ModelSource::Env);
    assert!(found[0].default && !found[0].valid);
    assert!(found[1].valid && !found[1].default);
    assert_eq!(resolve(&paths), ModelSpec::Dir(env_model));
    let flag = dir.path().join("flag-model");
    let with_flag = SearchPaths {
        flag: Some(flag.clone()),
        ..paths
    };
    assert_eq!(resolve(&with_flag), ModelSpec::Dir(flag));
}

#[test]
fn search_paths_follow_the_environment_variables() {
    // Only reads the environment; the variables are set by nobody else in this test binary.
    let paths = SearchPaths::from_env(Some(PathBuf::from("/x")));
    assert_eq!(paths.flag, Some(PathBuf::from("/x")));
    if std::env::var_os("HF_HUB_CACHE").is_none() && std::env::var_os("HUGGINGFACE_HUB_CACHE").is_none() {
        if let Some(home) = std::env::var_os("HF_HOME") {
            assert_eq!(paths.hf_hub, Some(PathBuf::from(home).join("hub")));
        } else {
            assert!(paths.hf_hub.unwrap().ends_with("huggingface/hub"));
        }
    }
}

#[test]
fn the_parity_fixture_model_validates() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny");
    let layout = validate_dir(&root).unwrap();
    assert_eq!(layout.transformer.weights.len(), 3);
    assert!(layout.text_encoder.bytes > 0 && layout.vae.bytes > 0);
}

// ---------------------------------------------------------------------------------------------
// loading the fixture checkpoint

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).unwrap();
        }
    }
}

fn fixture_copy() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("tiny");
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny"),
        &root,
    );
    (dir, root)
}

fn load(root: &Path) -> zimage_tui::model::Result<zimage_tui::model::pipeline::ZImagePipeline> {
    let spec = ModelSpec::Dir(root.to_path_buf());
    zimage_tui::model::loader::load(&spec, &zimage_tui::model::loader::LoadOptions::default(), None)
}

#[test]
fn the_fixture_checkpoint_loads_with_progress_per_component() {
    let (_dir, root) = fixture_copy();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = seen.clone();
    let progress: zimage_tui::model::weights::ProgressFn =
        std::sync::Arc::new(move |p| sink.lock().unwrap().push(p));
    let spec = ModelSpec::Dir(root.clone());
    let pipeline =
        zimage_tui::model::loader::load(&spec, &Default::default(), Some(progress)).expect("fixture loads");
    let info = pipeline.info();
    assert!(!info.random_weights && info.label.contains("tiny"));
    assert!(
        info.parameters.iter().all(|(_, n)| *n > 0),
        "{:?}",
        info.parameters
    );
    let seen = seen.lock().unwrap();
    for part in ["text_encoder", "transformer", "vae"] {
        let last = seen
            .iter()
            .rev()
            .find(|p| p.part == part)
            .expect("progress for each part");
        assert_eq!(last.done, last.total, "{part} fully read");
    }
}

#[test]
fn wrong_shape_names_the_file_and_tensor() {
    let (_dir, root) = fixture_copy();
    let path = root.join("vae/diffusion_pytorch_model.safetensors");
    let mut tensors = candle_core::safetensors::load(&path, &Device::Cpu).unwrap();
    let name = "decoder.conv_in.bias".to_string();
    let bias = tensors
        .get(&name)
        .expect("the VAE has decoder.conv_in.bias")
        .clone();
    let doubled = Tensor::cat(&[&bias, &bias], 0).unwrap();
    tensors.insert(name, doubled);
    candle_core::safetensors::save(&tensors, &path).unwrap();
    let err = load(&root)
        .err()
        .expect("mis-shaped tensor is refused")
        .to_string();
    assert!(
        err.contains("vae/diffusion_pytorch_model.safetensors") && err.contains("decoder.conv_in.bias"),
        "{err}"
    );
    assert!(err.contains("the config expects"), "{err}");
}

#[test]
fn config_mismatch_between_components_names_the_config() {
    let (_dir, root) = fixture_copy();
    let path = root.join("transformer/config.json");
    let mut config: serde_json::Value = serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
    config["cap_feat_dim"] = serde_json::json!(12345);
    fs::write(&path, config.to_string()).unwrap();
    let err = load(&root).err().expect("refused").to_string();
    assert!(
        err.contains("transformer/config.json") && err.contains("cap_feat_dim"),
        "{err}"
    );
}

#[test]
fn missing_tokenizer_fails_the_load_naming_it() {
    let (_dir, root) = fixture_copy();
    fs::remove_file(root.join("tokenizer/tokenizer.json")).unwrap();
    let err = load(&root).err().expect("refused").to_string();
    assert!(err.contains("tokenizer/tokenizer.json"), "{err}");
}
