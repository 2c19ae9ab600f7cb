//! The opt-in fast-load cache: a component's fp32 safetensors rewritten as bf16 (the transformer:
//! 24.6 GB → 12.3 GB), in `<checkpoint>/.zimage-cache/<component>-bf16/`, loadable exactly like
//! the component directory (same config, same index, same shard names).
//!
//! The cache is used only when its `provenance.json` still matches the sources (sizes and
//! modification times), and only for a bf16 load: the values are the round-to-nearest-even cast
//! the loader would do anyway, so using it changes load time, never results.

use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use half::slice::HalfFloatSliceExt;
use serde::{Deserialize, Serialize};

use super::error::{FetchError, Result};
use super::manifest::write_atomically;

pub const CACHE_DIR: &str = ".zimage-cache";
pub const PROVENANCE_FILE: &str = "provenance.json";
const PROVENANCE_VERSION: u32 = 1;

/// A valid converted copy of one component.
#[derive(Debug, Clone, PartialEq)]
pub struct ConvertedCache {
    /// Load the component from here instead of the original directory.
    pub dir: PathBuf,
    pub dtype: String,
    pub provenance: Provenance,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileStamp {
    pub file: String,
    pub size: u64,
    /// Modification time, nanoseconds since the Unix epoch.
    pub modified_ns: u64,
    /// The hub's sha256 where the download manifest knows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    pub version: u32,
    pub tool: String,
    pub component: String,
    /// Target dtype of the floating-point tensors ("bf16").
    pub dtype: String,
    /// The component directory it was made from.
    pub source_dir: PathBuf,
    pub sources: Vec<FileStamp>,
    pub outputs: Vec<FileStamp>,
    pub created_unix: u64,
}

/// `<checkpoint>/.zimage-cache/<component>-<dtype>`.
pub fn cache_dir_for(component_dir: &Path, dtype: &str) -> PathBuf {
    let name = component_dir
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let checkpoint = component_dir.parent().unwrap_or(Path::new("."));
    checkpoint.join(CACHE_DIR).join(format!("{name}-{dtype}"))
}

fn stamp(dir: &Path, file: &str) -> std::io::Result<FileStamp> {
    let meta = std::fs::metadata(dir.join(file))?;
    let modified_ns = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    Ok(FileStamp {
        file: file.to_string(),
        size: meta.len(),
        modified_ns,
        sha256: None,
    })
}

/// The converted cache of `component_dir` for loading in `dtype`, if one exists and still
/// matches its sources. This is the loader's hook; it costs a few `stat` calls.
pub fn converted_cache_for(component_dir: &Path, dtype: &str) -> Option<ConvertedCache> {
    let dir = cache_dir_for(component_dir, dtype);
    let text = std::fs::read_to_string(dir.join(PROVENANCE_FILE)).ok()?;
    let provenance: Provenance = serde_json::from_str(&text).ok()?;
    let fresh = |recorded: &FileStamp, base: &Path| {
        stamp(base, &recorded.file)
            .is_ok_and(|now| now.size == recorded.size && now.modified_ns == recorded.modified_ns)
    };
    let valid = provenance.version == PROVENANCE_VERSION
        && provenance.dtype == dtype
        && provenance.sources.iter().all(|s| fresh(s, component_dir))
        && provenance.outputs.iter().all(|o| fresh(o, &dir));
    valid.then(|| ConvertedCache {
        dir,
        dtype: dtype.to_string(),
        provenance,
    })
}

/// The files of a component: (weights to convert, other files to copy as they are).
fn component_files(component_dir: &Path) -> Result<(Vec<String>, Vec<String>)> {
    let entries = std::fs::read_dir(component_dir).map_err(|e| FetchError::io(component_dir, e))?;
    let mut weights = Vec::new();
    let mut others = Vec::new();
    for entry in entries.flatten() {
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if !std::fs::metadata(entry.path()).is_ok_and(|m| m.is_file()) {
            continue;
        }
        if name.ends_with(".safetensors") {
            weights.push(name);
        } else if name.ends_with(".json") {
            others.push(name);
        }
    }
    weights.sort();
    others.sort();
    if weights.is_empty() {
        return Err(FetchError::Invalid(format!(
            "{}: no .safetensors files to convert",
            component_dir.display()
        )));
    }
    Ok((weights, others))
}

/// Writes the bf16 cache of `component_dir`, reporting (file, bytes read, file size).
pub fn convert_component(component_dir: &Path, on: &mut dyn FnMut(&str, u64, u64)) -> Result<ConvertedCache> {
    let dtype = "bf16";
    let out_dir = cache_dir_for(component_dir, dtype);
    std::fs::create_dir_all(&out_dir).map_err(|e| FetchError::io(&out_dir, e))?;
    // Invalidate first: a cache is only valid once its provenance is written, last.
    super::http::remove_if_exists(&out_dir.join(PROVENANCE_FILE))?;

    let known_hashes = super::manifest::Manifest::read(component_dir.parent().unwrap_or(Path::new(".")))
        .ok()
        .flatten()
        .map(|m| m.listing.files)
        .unwrap_or_default();
    let component = component_dir
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let (weights, others) = component_files(component_dir)?;
    let mut sources = Vec::new();
    let mut outputs = Vec::new();
    for name in weights.iter().chain(&others) {
        let mut source =
            stamp(component_dir, name).map_err(|e| FetchError::io(component_dir.join(name), e))?;
        let repo_path = format!("{component}/{name}");
        source.sha256 = known_hashes
            .iter()
            .find(|f| f.path == repo_path)
            .and_then(|f| f.sha256.clone());
        let target = out_dir.join(name);
        let mut part = target.clone().into_os_string();
        part.push(".part");
        let part = PathBuf::from(part);
        if weights.contains(name) {
            convert_safetensors(&component_dir.join(name), &part, &mut |done| {
                on(name, done, source.size)
            })?;
        } else {
            std::fs::copy(component_dir.join(name), &part).map_err(|e| FetchError::io(&part, e))?;
        }
        std::fs::rename(&part, &target).map_err(|e| FetchError::io(&target, e))?;
        outputs.push(stamp(&out_dir, name).map_err(|e| FetchError::io(&target, e))?);
        sources.push(source);
    }
    let provenance = Provenance {
        version: PROVENANCE_VERSION,
        tool: format!("zimage-tui {}", crate::VERSION),
        component,
        dtype: dtype.to_string(),
        source_dir: component_dir.to_path_buf(),
        sources,
        outputs,
        created_unix: std::time::SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    };
    let text = serde_json::to_vec_pretty(&provenance).map_err(|e| FetchError::Invalid(e.to_string()))?;
    write_atomically(&out_dir.join(PROVENANCE_FILE), &text)?;
    Ok(ConvertedCache {
        dir: out_dir,
        dtype: dtype.to_string(),
        provenance,
    })
}

/// One tensor of the source file and where its bytes are.
struct TensorEntry {
    name: String,
    dtype: String,
    shape: Vec<u64>,
    begin: u64,
    end: u64,
}

/// Rewrites one safetensors file with every F32 tensor as BF16 (round to nearest even, NaN kept
/// NaN), other dtypes unchanged, tensor by tensor (memory: one tensor).
pub fn convert_safetensors(source: &Path, target: &Path, on_bytes: &mut dyn FnMut(u64)) -> Result<()> {
    let io_in = |e| FetchError::io(source, e);
    let io_out = |e| FetchError::io(target, e);
    let mut input = std::fs::File::open(source).map_err(io_in)?;
    let mut len_bytes = [0u8; 8];
    input.read_exact(&mut len_bytes).map_err(io_in)?;
    let header_len = u64::from_le_bytes(len_bytes);
    if header_len > 100 << 20 {
        return Err(FetchError::Invalid(format!(
            "{}: not a safetensors file",
            source.display()
        )));
    }
    let mut header = vec![0u8; header_len as usize];
    input.read_exact(&mut header).map_err(io_in)?;
    let json: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&header)
        .map_err(|e| FetchError::Invalid(format!("{}: bad safetensors header: {e}", source.display())))?;
    let data_start = 8 + header_len;

    let bad = |name: &str| {
        FetchError::Invalid(format!(
            "{}: tensor {name} has a bad header entry",
            source.display()
        ))
    };
    let mut metadata = None;
    let mut tensors = Vec::new();
    for (name, info) in &json {
        if name == "__metadata__" {
            metadata = Some(info.clone());
            continue;
        }
        let dtype = info["dtype"].as_str().ok_or_else(|| bad(name))?.to_string();
        let shape = info["shape"]
            .as_array()
            .ok_or_else(|| bad(name))?
            .iter()
            .map(|d| d.as_u64().ok_or_else(|| bad(name)))
            .collect::<Result<Vec<_>>>()?;
        let begin = info["data_offsets"][0].as_u64().ok_or_else(|| bad(name))?;
        let end = info["data_offsets"][1].as_u64().ok_or_else(|| bad(name))?;
        if end < begin {
            return Err(bad(name));
        }
        tensors.push(TensorEntry {
            name: name.clone(),
            dtype,
            shape,
            begin,
            end,
        });
    }
    // Keep the source's data order (it is the order the bytes are read in, sequentially).
    tensors.sort_by_key(|t| t.begin);

    let mut out_header = serde_json::Map::new();
    if let Some(metadata) = metadata {
        out_header.insert("__metadata__".into(), metadata);
    }
    let mut offset = 0u64;
    for tensor in &tensors {
        let converts = tensor.dtype == "F32";
        let len = if converts {
            (tensor.end - tensor.begin) / 2
        } else {
            tensor.end - tensor.begin
        };
        out_header.insert(
            tensor.name.clone(),
            serde_json::json!({
                "dtype": if converts { "BF16" } else { tensor.dtype.as_str() },
                "shape": tensor.shape,
                "data_offsets": [offset, offset + len],
            }),
        );
        offset += len;
    }
    let mut header_bytes = serde_json::to_vec(&out_header).map_err(|e| FetchError::Invalid(e.to_string()))?;
    // The data section starts 8-byte aligned, padded with spaces (as the reference writer does).
    while header_bytes.len() % 8 != 0 {
        header_bytes.push(b' ');
    }

    let mut output = BufWriter::with_capacity(1 << 20, std::fs::File::create(target).map_err(io_out)?);
    output
        .write_all(&(header_bytes.len() as u64).to_le_bytes())
        .map_err(io_out)?;
    output.write_all(&header_bytes).map_err(io_out)?;
    let mut buffer = Vec::new();
    let mut floats: Vec<f32> = Vec::new();
    let mut halves: Vec<half::bf16> = Vec::new();
    for tensor in &tensors {
        let len = (tensor.end - tensor.begin) as usize;
        input
            .seek(SeekFrom::Start(data_start + tensor.begin))
            .map_err(io_in)?;
        let cut_short = |e: std::io::Error| {
            FetchError::Invalid(format!(
                "{}: tensor {} is cut short ({e})",
                source.display(),
                tensor.name
            ))
        };
        if tensor.dtype == "F32" {
            if len % 4 != 0 {
                return Err(bad(&tensor.name));
            }
            // Read straight into f32s (aligned), cast in bulk with `half`'s slice conversion.
            floats.resize(len / 4, 0.0);
            input
                .read_exact(bytemuck::cast_slice_mut(&mut floats))
                .map_err(cut_short)?;
            if cfg!(target_endian = "big") {
                floats
                    .iter_mut()
                    .for_each(|f| *f = f32::from_bits(f.to_bits().swap_bytes()));
            }
            halves.resize(floats.len(), half::bf16::ZERO);
            halves.convert_from_f32_slice(&floats);
            if cfg!(target_endian = "big") {
                halves
                    .iter_mut()
                    .for_each(|h| *h = half::bf16::from_bits(h.to_bits().swap_bytes()));
            }
            output.write_all(bytemuck::cast_slice(&halves)).map_err(io_out)?;
        } else {
            buffer.resize(len, 0);
            input.read_exact(&mut buffer).map_err(cut_short)?;
            output.write_all(&buffer).map_err(io_out)?;
        }
        on_bytes(data_start + tensor.end);
    }
    let file = output
        .into_inner()
        .map_err(|e| FetchError::io(target, e.into_error()))?;
    file.sync_all().map_err(io_out)
}
