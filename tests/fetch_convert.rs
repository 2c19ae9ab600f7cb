//! The bf16 fast-load cache: exact round trip against candle's own cast, provenance checks.

mod fetch_support;

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use half::bf16;
use zimage_tui::fetch::convert::{cache_dir_for, convert_component, converted_cache_for, PROVENANCE_FILE};

/// F32 values that exercise the cast: ties, subnormals, infinities, NaN, signed zero.
fn tricky_values() -> Vec<f32> {
    let mut values = vec![
        0.0,
        -0.0,
        1.0,
        -1.5,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        f32::MIN_POSITIVE,
        f32::from_bits(1),           // smallest subnormal
        f32::from_bits(0x3f80_8000), // exactly halfway between two bf16 values (ties to even)
        f32::from_bits(0x3f81_8000), // halfway, rounds the other way
        f32::MAX,
        3.0e38,
    ];
    values.extend(
        fetch_support::noise(5, 243)
            .iter()
            .map(|b| (*b as f32 - 100.0) * 0.0137),
    );
    values
}

fn write_component(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let values = tricky_values();
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    let ids: Vec<u8> = [3i64, -7, 1 << 40].iter().flat_map(|v| v.to_le_bytes()).collect();
    let half_values: Vec<u8> = [1.5f32, -2.25]
        .iter()
        .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
        .collect();
    use safetensors::tensor::TensorView;
    use safetensors::Dtype;
    let shard1 = vec![
        (
            "w.weight",
            TensorView::new(Dtype::F32, vec![16, 16], &bytes).unwrap(),
        ),
        ("w.ids", TensorView::new(Dtype::I64, vec![3], &ids).unwrap()),
        (
            "w.half",
            TensorView::new(Dtype::F16, vec![2], &half_values).unwrap(),
        ),
    ];
    let mut metadata = std::collections::HashMap::new();
    metadata.insert("format".to_string(), "pt".to_string());
    safetensors::tensor::serialize_to_file(
        shard1,
        Some(metadata),
        &dir.join("model-00001-of-00002.safetensors"),
    )
    .unwrap();
    let shard2 = fetch_support::safetensors_f32(&[("v.weight", vec![8, 3])], 11);
    std::fs::write(dir.join("model-00002-of-00002.safetensors"), shard2).unwrap();
    std::fs::write(dir.join("config.json"), br#"{"dim": 16}"#).unwrap();
    std::fs::write(
        dir.join("model.safetensors.index.json"),
        br#"{"weight_map":{"w.weight":"model-00001-of-00002.safetensors","w.ids":"model-00001-of-00002.safetensors","w.half":"model-00001-of-00002.safetensors","v.weight":"model-00002-of-00002.safetensors"}}"#,
    )
    .unwrap();
}

#[test]
fn converted_cache_equals_the_cast_of_the_source() {
    let root = tempfile::tempdir().unwrap();
    let component = root.path().join("transformer");
    write_component(&component);
    assert_eq!(
        converted_cache_for(&component, "bf16"),
        None,
        "nothing converted yet"
    );

    let cache = convert_component(&component, &mut |_, _, _| {}).unwrap();
    assert_eq!(cache.dir, cache_dir_for(&component, "bf16"));
    assert_eq!(cache.dir, root.path().join(".zimage-cache/transformer-bf16"));
    for name in ["config.json", "model.safetensors.index.json"] {
        assert_eq!(
            std::fs::read(component.join(name)).unwrap(),
            std::fs::read(cache.dir.join(name)).unwrap()
        );
    }

    for shard in [
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
    ] {
        let source = candle_core::safetensors::load(component.join(shard), &Device::Cpu).unwrap();
        let converted = candle_core::safetensors::load(cache.dir.join(shard), &Device::Cpu).unwrap();
        assert_eq!(source.len(), converted.len());
        for (name, original) in &source {
            let copy = &converted[name];
            assert_eq!(original.dims(), copy.dims(), "{name}");
            match original.dtype() {
                DType::F32 => {
                    assert_eq!(copy.dtype(), DType::BF16, "{name}");
                    let expected = bf16_bits(&original.to_dtype(DType::BF16).unwrap());
                    assert_eq!(
                        bf16_bits(copy),
                        expected,
                        "{name}: bits differ from candle's cast"
                    );
                }
                other => {
                    assert_eq!(copy.dtype(), other, "{name} keeps its dtype");
                    assert_eq!(f64_values(original), f64_values(copy), "{name}");
                }
            }
        }
    }
    // Spot-check the rounding itself, independently of candle.
    let raw = std::fs::read(cache.dir.join("model-00001-of-00002.safetensors")).unwrap();
    let parsed = safetensors::SafeTensors::deserialize(&raw).unwrap();
    let (_, header) = safetensors::SafeTensors::read_metadata(&raw).unwrap();
    assert_eq!(header.metadata().as_ref().unwrap()["format"], "pt");
    let weight = parsed.tensor("w.weight").unwrap();
    let bits: Vec<u16> = weight
        .data()
        .chunks_exact(2)
        .map(|b| u16::from_le_bytes([b[0], b[1]]))
        .collect();
    assert_eq!(bits[9], 0x3f80, "tie rounds to even (down)");
    assert_eq!(bits[10], 0x3f82, "tie rounds to even (up)");
    assert!(bf16::from_bits(bits[6]).is_nan());
    assert_eq!(bits[1], 0x8000, "negative zero kept");

    // Half the bytes for an all-fp32 shard.
    let data_len = |p: &Path| {
        let bytes = std::fs::read(p).unwrap();
        let (header_len, _) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
        bytes.len() - 8 - header_len
    };
    let shard2 = "model-00002-of-00002.safetensors";
    assert_eq!(
        data_len(&cache.dir.join(shard2)) * 2,
        data_len(&component.join(shard2))
    );

    // Found again through the hook; the provenance says where it came from.
    let found = converted_cache_for(&component, "bf16").expect("valid cache");
    assert_eq!(found.provenance.sources.len(), 4);
    assert_eq!(found.provenance.component, "transformer");
    assert_eq!(converted_cache_for(&component, "f16"), None);
}

#[test]
fn a_changed_source_or_damaged_cache_is_not_used() {
    let root = tempfile::tempdir().unwrap();
    let component = root.path().join("vae");
    write_component(&component);
    let cache = convert_component(&component, &mut |_, _, _| {}).unwrap();
    assert!(converted_cache_for(&component, "bf16").is_some());

    // A source file replaced after conversion (new size and time).
    let shard = component.join("model-00002-of-00002.safetensors");
    std::fs::write(
        &shard,
        fetch_support::safetensors_f32(&[("v.weight", vec![8, 4])], 12),
    )
    .unwrap();
    assert_eq!(converted_cache_for(&component, "bf16"), None);

    // Re-converting makes it valid again; a truncated output invalidates it.
    let cache2 = convert_component(&component, &mut |_, _, _| {}).unwrap();
    assert_eq!(cache2.dir, cache.dir);
    assert!(converted_cache_for(&component, "bf16").is_some());
    let out = cache.dir.join("model-00001-of-00002.safetensors");
    let len = std::fs::metadata(&out).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&out)
        .unwrap()
        .set_len(len - 2)
        .unwrap();
    assert_eq!(converted_cache_for(&component, "bf16"), None);

    // A cache without provenance (an interrupted conversion) is never used.
    convert_component(&component, &mut |_, _, _| {}).unwrap();
    std::fs::remove_file(cache.dir.join(PROVENANCE_FILE)).unwrap();
    assert_eq!(converted_cache_for(&component, "bf16"), None);
}

/// The loader's hook: a bf16 load of the fixture checkpoint reads the cache, an f32 load the
/// original shards, and both give the same bf16 values.
#[test]
fn the_loader_reads_the_cache_for_bf16_loads_only() {
    use zimage_tui::model::loader::validate_dir;
    let root = tiny_checkpoint_copy();
    let layout = validate_dir(root.path()).unwrap();
    assert_eq!(
        layout.transformer.weights_for(DType::BF16),
        layout.transformer.weights,
        "no cache yet"
    );

    let cache = convert_component(&layout.transformer.dir, &mut |_, _, _| {}).unwrap();
    let layout = validate_dir(root.path()).unwrap();
    let bf16_files = layout.transformer.weights_for(DType::BF16);
    assert_eq!(bf16_files.len(), 3);
    assert!(
        bf16_files.iter().all(|f| f.starts_with(&cache.dir)),
        "{bf16_files:?}"
    );
    assert_eq!(
        layout.transformer.weights_for(DType::F32),
        layout.transformer.weights
    );
    assert_eq!(
        layout.vae.weights_for(DType::BF16),
        layout.vae.weights,
        "vae was not converted"
    );

    for (original, cached) in layout.transformer.weights.iter().zip(&bf16_files) {
        let original = candle_core::safetensors::load(original, &Device::Cpu).unwrap();
        let cached = candle_core::safetensors::load(cached, &Device::Cpu).unwrap();
        for (name, tensor) in original {
            let want = bf16_bits(&tensor.to_dtype(DType::BF16).unwrap());
            assert_eq!(bf16_bits(&cached[&name]), want, "{name}");
        }
    }
}

/// The bit patterns of a bf16 tensor, flattened (NaN compares equal to itself this way).
fn bf16_bits(tensor: &Tensor) -> Vec<u16> {
    let values = tensor.flatten_all().unwrap().to_vec1::<bf16>().unwrap();
    values.iter().map(|v| v.to_bits()).collect()
}

fn f64_values(tensor: &Tensor) -> Vec<f64> {
    let values = tensor.to_dtype(DType::F64).unwrap();
    values.flatten_all().unwrap().to_vec1::<f64>().unwrap()
}

fn total_len(files: &[PathBuf]) -> u64 {
    files.iter().map(|f| std::fs::metadata(f).unwrap().len()).sum()
}

/// A scratch copy of the tiny fixture checkpoint (conversion writes next to the source).
fn tiny_checkpoint_copy() -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny");
    copy_tree(&fixture, root.path());
    root
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// `load` itself goes through the hook: with a valid cache a bf16 load reads the converted
/// shards (its transformer byte total fits the cache's files, half the f32 source's size).
#[test]
fn a_bf16_load_reads_the_converted_cache() {
    use std::sync::{Arc, Mutex};
    use zimage_tui::model::loader::{load, validate_dir, LoadOptions, LoadProgress, ModelSpec};
    let root = tiny_checkpoint_copy();
    let layout = validate_dir(root.path()).unwrap();
    let cache = convert_component(&layout.transformer.dir, &mut |_, _, _| {}).unwrap();
    let cache_bytes = total_len(&layout.transformer.weights_for(DType::BF16));
    let source_bytes = total_len(&layout.transformer.weights);
    assert!(cache_bytes < source_bytes, "{:?}", cache.dir);

    let transformer_total = Arc::new(Mutex::new(0u64));
    let seen = transformer_total.clone();
    let options = LoadOptions {
        dtype: Some("bf16".into()),
        ..LoadOptions::default()
    };
    load(
        &ModelSpec::Dir(root.path().to_path_buf()),
        &options,
        Some(Arc::new(move |p: LoadProgress| {
            if p.part == "transformer" {
                *seen.lock().unwrap() = p.total;
            }
        })),
    )
    .unwrap();
    // tensor payload of the files read: within the cache's file sizes (headers excluded), far
    // below the f32 source's
    let total = *transformer_total.lock().unwrap();
    assert!(
        total > 0 && total <= cache_bytes,
        "read {total} bytes, cache files {cache_bytes}"
    );
}
