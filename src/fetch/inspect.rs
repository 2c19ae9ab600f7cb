//! What a checkpoint directory holds, read cheaply (safetensors headers, file sizes): per
//! component the files, bytes and tensor dtypes; what is missing or truncated; partial downloads.
//! And the slow check: every file against the recorded sizes and hashes.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::error::{FetchError, Result};
use super::hub::RemoteFile;
use super::manifest::Manifest;

/// The components of the diffusers layout, in pipeline order.
pub const COMPONENTS: [&str; 5] = ["tokenizer", "text_encoder", "transformer", "vae", "scheduler"];

/// Files each component must have besides its weights.
fn required_files(component: &str) -> &'static [&'static str] {
    match component {
        "tokenizer" => &["tokenizer.json"],
        "scheduler" => &["scheduler_config.json"],
        _ => &["config.json"],
    }
}

fn has_weights(component: &str) -> bool {
    matches!(component, "text_encoder" | "transformer" | "vae")
}

#[derive(Debug, Clone, Serialize)]
pub struct ComponentReport {
    pub name: String,
    pub files: usize,
    pub bytes: u64,
    /// Parameter count per tensor dtype ("BF16", "F32", ...), from the safetensors headers.
    pub dtypes: BTreeMap<String, u64>,
    /// A valid converted cache for this component, e.g. "bf16".
    pub converted: Option<String>,
}

impl ComponentReport {
    /// Parameters per dtype, e.g. "F32 6.15B, BF16 1.2M".
    pub fn dtype_summary(&self) -> String {
        self.dtypes
            .iter()
            .map(|(dtype, count)| format!("{dtype} {}", format_params(*count)))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// A parameter count the way model cards write it: "6.15B", "83.8M".
pub fn format_params(count: u64) -> String {
    match count {
        c if c >= 1_000_000_000 => format!("{:.2}B", c as f64 / 1e9),
        c if c >= 1_000_000 => format!("{:.1}M", c as f64 / 1e6),
        c => format!("{c}"),
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct CheckpointReport {
    pub dir: PathBuf,
    pub bytes: u64,
    pub components: Vec<ComponentReport>,
    /// Missing, truncated or unreadable files; empty when the checkpoint is complete.
    pub problems: Vec<String>,
    /// A `.zimage-manifest.json` from `zimage-tui fetch` is present.
    pub manifest: bool,
    /// Unfinished downloads (`.part`, `.incomplete`) — a `fetch` re-run resumes them.
    pub partial_files: Vec<String>,
}

impl CheckpointReport {
    pub fn complete(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Tensor name → (dtype, shape), as a safetensors header lists them.
pub type TensorShapes = BTreeMap<String, (String, Vec<u64>)>;

/// Reads a safetensors header: tensor name → (dtype, shape), and the byte length the file must
/// have for its offsets to be valid.
pub fn read_safetensors_header(path: &Path) -> std::result::Result<(TensorShapes, u64), String> {
    let mut file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut len_bytes = [0u8; 8];
    file.read_exact(&mut len_bytes)
        .map_err(|_| "shorter than a safetensors header".to_string())?;
    let header_len = u64::from_le_bytes(len_bytes);
    if header_len > 100 << 20 {
        return Err(format!(
            "header length {header_len} is not plausible (corrupt file?)"
        ));
    }
    let mut header = vec![0u8; header_len as usize];
    file.read_exact(&mut header)
        .map_err(|_| "truncated inside the header".to_string())?;
    let json: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&header).map_err(|e| format!("header is not JSON: {e}"))?;
    let mut tensors = BTreeMap::new();
    let mut data_end = 0u64;
    for (name, info) in json {
        if name == "__metadata__" {
            continue;
        }
        let dtype = info["dtype"]
            .as_str()
            .ok_or_else(|| format!("tensor {name} has no dtype"))?;
        let shape: Vec<u64> = info["shape"]
            .as_array()
            .ok_or_else(|| format!("tensor {name} has no shape"))?
            .iter()
            .map(|d| d.as_u64().ok_or_else(|| format!("tensor {name} has a bad shape")))
            .collect::<std::result::Result<_, _>>()?;
        let end = info["data_offsets"][1]
            .as_u64()
            .ok_or_else(|| format!("tensor {name} has no data_offsets"))?;
        data_end = data_end.max(end);
        tensors.insert(name, (dtype.to_string(), shape));
    }
    Ok((tensors, 8 + header_len + data_end))
}

/// The weight files a component needs: the shards named by its index, else every safetensors.
fn weight_files(component_dir: &Path) -> std::result::Result<Vec<String>, String> {
    let entries = std::fs::read_dir(component_dir).map_err(|e| e.to_string())?;
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    names.sort();
    if let Some(index) = names.iter().find(|n| n.ends_with(".safetensors.index.json")) {
        let text = std::fs::read_to_string(component_dir.join(index)).map_err(|e| format!("{index}: {e}"))?;
        let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| format!("{index}: {e}"))?;
        let shards: BTreeSet<String> = json["weight_map"]
            .as_object()
            .ok_or_else(|| format!("{index}: no weight_map"))?
            .values()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect();
        return Ok(shards.into_iter().collect());
    }
    Ok(names
        .into_iter()
        .filter(|n| n.ends_with(".safetensors"))
        .collect())
}

/// Describes a checkpoint directory without reading any weights.
pub fn inspect_dir(dir: &Path) -> CheckpointReport {
    let mut report = CheckpointReport {
        dir: dir.to_path_buf(),
        bytes: 0,
        components: Vec::new(),
        problems: Vec::new(),
        manifest: dir.join(super::manifest::MANIFEST_FILE).is_file(),
        partial_files: Vec::new(),
    };
    if !dir.join("model_index.json").is_file() {
        report.problems.push("model_index.json: missing".into());
    }
    for name in COMPONENTS {
        let component_dir = dir.join(name);
        let mut component = ComponentReport {
            name: name.to_string(),
            files: 0,
            bytes: 0,
            dtypes: BTreeMap::new(),
            converted: None,
        };
        if !component_dir.is_dir() {
            report.problems.push(format!("{name}/: missing"));
            report.components.push(component);
            continue;
        }
        for required in required_files(name) {
            if !component_dir.join(required).is_file() {
                report.problems.push(format!("{name}/{required}: missing"));
            }
        }
        if has_weights(name) {
            match weight_files(&component_dir) {
                Err(problem) => report.problems.push(format!("{name}/: {problem}")),
                Ok(files) if files.is_empty() => {
                    report.problems.push(format!("{name}/: no .safetensors weights"))
                }
                Ok(files) => {
                    for file in files {
                        check_weight_file(
                            &component_dir.join(&file),
                            &format!("{name}/{file}"),
                            &mut component,
                            &mut report.problems,
                        );
                    }
                }
            }
            component.converted =
                super::convert::converted_cache_for(&component_dir, "bf16").map(|c| c.dtype);
        }
        for entry in walk_files(&component_dir) {
            let Ok(meta) = std::fs::metadata(&entry) else {
                continue;
            };
            let file_name = entry.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            if file_name.ends_with(".part") || file_name.ends_with(".incomplete") {
                report
                    .partial_files
                    .push(entry.strip_prefix(dir).unwrap_or(&entry).display().to_string());
                continue;
            }
            component.files += 1;
            component.bytes += meta.len();
        }
        report.bytes += component.bytes;
        report.components.push(component);
    }
    if let Ok(Some(manifest)) = Manifest::read(dir) {
        for file in &manifest.listing.files {
            let path = repo_path(dir, &file.path);
            match std::fs::metadata(&path) {
                Err(_) => report
                    .problems
                    .push(format!("{}: missing (listed in the manifest)", file.path)),
                Ok(meta) if meta.len() != file.size => report.problems.push(format!(
                    "{}: {} bytes, the hub lists {}",
                    file.path,
                    meta.len(),
                    file.size
                )),
                Ok(_) => {}
            }
        }
    }
    report.problems.dedup();
    report
}

fn check_weight_file(path: &Path, shown: &str, component: &mut ComponentReport, problems: &mut Vec<String>) {
    let actual = match std::fs::metadata(path) {
        Ok(meta) => meta.len(),
        Err(_) => {
            problems.push(format!("{shown}: missing"));
            return;
        }
    };
    match read_safetensors_header(path) {
        Err(problem) => problems.push(format!("{shown}: {problem}")),
        Ok((tensors, expected)) => {
            if actual != expected {
                problems.push(format!(
                    "{shown}: {actual} bytes, its header needs {expected} (truncated?)"
                ));
            }
            for (dtype, shape) in tensors.values() {
                *component.dtypes.entry(dtype.clone()).or_default() += shape.iter().product::<u64>();
            }
        }
    }
}

pub(crate) fn repo_path(dir: &Path, path: &str) -> PathBuf {
    path.split('/')
        .fold(dir.to_path_buf(), |acc, part| acc.join(part))
}

/// Regular files under `dir` (following the HF snapshot's symlinks), sorted.
pub(crate) fn walk_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(current) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&current) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(".zimage-cache"))
            {
                continue;
            }
            match std::fs::metadata(&path) {
                Ok(meta) if meta.is_dir() => stack.push(path),
                Ok(meta) if meta.is_file() => out.push(path),
                _ => {}
            }
        }
    }
    out.sort();
    out
}

/// How `verify` knew what the files should be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum VerifyBasis {
    /// The hub's file list saved by `fetch` (sizes and sha256 / git blob ids).
    Manifest,
    /// A Hugging Face cache snapshot: each file's blob is named by its hash.
    HfBlobNames,
    /// Nothing recorded: only completeness and safetensors structure were checked.
    StructureOnly,
}

#[derive(Debug, Clone, Serialize)]
pub struct VerifyOutcome {
    pub basis: VerifyBasis,
    pub checked: usize,
    pub bytes: u64,
    /// The first file that is not what was recorded, and why.
    pub first_bad: Option<String>,
}

/// Progress of a verification: (file, bytes of it hashed, its size).
pub type VerifyProgress<'a> = &'a mut dyn FnMut(&str, u64, u64);

/// Checks every file against what was recorded for it, stopping at the first bad one.
pub fn verify_dir(dir: &Path, on: VerifyProgress) -> Result<VerifyOutcome> {
    verify_dir_until(dir, on, &|| false)
}

/// `verify_dir` that ends with `FetchError::Cancelled` as soon as `stop` says so (the dashboard's
/// cancel key); checked between files and after every chunk read.
pub fn verify_dir_until(dir: &Path, on: VerifyProgress, stop: &dyn Fn() -> bool) -> Result<VerifyOutcome> {
    let (basis, expected) = verify_plan(dir)?;
    let mut outcome = VerifyOutcome {
        basis,
        checked: 0,
        bytes: 0,
        first_bad: None,
    };
    if basis == VerifyBasis::StructureOnly {
        let report = inspect_dir(dir);
        outcome.checked = report.components.iter().map(|c| c.files).sum();
        outcome.bytes = report.bytes;
        outcome.first_bad = report.problems.into_iter().next();
        return Ok(outcome);
    }
    for file in &expected {
        if stop() {
            return Err(FetchError::Cancelled);
        }
        let path = repo_path(dir, &file.path);
        let result =
            super::verify::check_file_until(&path, file, &mut |done| on(&file.path, done, file.size), stop);
        match result {
            Ok(()) => {
                outcome.checked += 1;
                outcome.bytes += file.size;
            }
            Err(FetchError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                outcome.first_bad = Some(format!("{}: missing", file.path));
                break;
            }
            Err(err @ FetchError::Mismatch { .. }) => {
                outcome.first_bad = Some(err.to_string());
                break;
            }
            Err(err) => return Err(err),
        }
    }
    if outcome.first_bad.is_none() {
        // The hashes are right; the loader also needs every file it expects to be there.
        outcome.first_bad = inspect_dir(dir).problems.into_iter().next();
    }
    Ok(outcome)
}

/// What `verify_dir` will check: the recorded files (sizes, hashes) and where they came from;
/// no files for `StructureOnly`.
pub fn verify_plan(dir: &Path) -> Result<(VerifyBasis, Vec<RemoteFile>)> {
    Ok(match Manifest::read(dir)? {
        Some(manifest) => (VerifyBasis::Manifest, manifest.listing.files),
        None => match hf_blob_expectations(dir) {
            Some(files) if !files.is_empty() => (VerifyBasis::HfBlobNames, files),
            _ => (VerifyBasis::StructureOnly, Vec::new()),
        },
    })
}

/// In a HF snapshot, every file is a symlink to `blobs/<sha256>` (LFS) or `blobs/<git blob id>`.
fn hf_blob_expectations(dir: &Path) -> Option<Vec<RemoteFile>> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(current) = stack.pop() {
        for entry in std::fs::read_dir(&current).ok()?.flatten() {
            let path = entry.path();
            let link = std::fs::symlink_metadata(&path).ok()?;
            if link.is_dir() {
                stack.push(path);
                continue;
            }
            if !link.file_type().is_symlink() {
                continue;
            }
            let target = std::fs::read_link(&path).ok()?;
            let blob = target.file_name()?.to_str()?.to_ascii_lowercase();
            let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            let relative = path.strip_prefix(dir).ok()?.to_str()?.replace('\\', "/");
            let is_hex = blob.bytes().all(|b| b.is_ascii_hexdigit());
            let (sha256, git_oid) = match blob.len() {
                64 if is_hex => (Some(blob), None),
                40 if is_hex => (None, Some(blob)),
                _ => continue,
            };
            files.push(RemoteFile {
                path: relative,
                size,
                sha256,
                git_oid,
            });
        }
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Some(files)
}
