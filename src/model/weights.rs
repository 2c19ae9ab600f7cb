//! Weight sources for `candle_nn::VarBuilder`:
//! - [`SafetensorsWeights`]: memory-mapped safetensors over all shards of one component, tensors
//!   cast at load to the requested dtype, shape errors that name the file, progress per tensor.
//! - [`RandomWeights`]: deterministic random tensors (demo model, `--random-weights`), each seeded
//!   from its name and a global seed, so the same name always gets the same values.
//!
//! Both record what they produced in a shared [`WeightStats`] (parameter count, bytes, the first
//! problem met) because a `VarBuilder` hides its backend once built.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::VarBuilder;

use super::loader::LoadProgress;
use super::{ModelError, Result};

/// Called with the progress of one component while its weights are read.
pub type ProgressFn = Arc<dyn Fn(LoadProgress) + Send + Sync>;

/// The dtype to compute in: the override if given, else f32 on CPU and bf16 on CUDA.
pub fn target_dtype(device: &Device, requested: Option<&str>) -> Result<DType> {
    match requested {
        None => Ok(if device.is_cuda() { DType::BF16 } else { DType::F32 }),
        Some(name) => parse_dtype(name),
    }
}

/// "f32" | "bf16" | "f16" (also "fp32", "float32", ...).
pub fn parse_dtype(name: &str) -> Result<DType> {
    match name.trim().to_ascii_lowercase().as_str() {
        "f32" | "fp32" | "float32" => Ok(DType::F32),
        "bf16" | "bfloat16" => Ok(DType::BF16),
        "f16" | "fp16" | "float16" | "half" => Ok(DType::F16),
        other => Err(ModelError::BadInput(format!(
            "unknown dtype {other:?} (expected f32, bf16 or f16)"
        ))),
    }
}

/// The name of a dtype as users write it.
pub fn dtype_name(dtype: DType) -> &'static str {
    match dtype {
        DType::F32 => "f32",
        DType::BF16 => "bf16",
        DType::F16 => "f16",
        DType::F64 => "f64",
        DType::U8 => "u8",
        DType::U32 => "u32",
        DType::I64 => "i64",
        _ => "other",
    }
}

/// What a weight backend has produced so far; shared with whoever built the `VarBuilder`.
#[derive(Debug, Default)]
pub struct WeightStats {
    parameters: AtomicU64,
    bytes: AtomicU64,
    problem: Mutex<Option<(PathBuf, String)>>,
}

impl WeightStats {
    /// Number of tensor elements handed out.
    pub fn parameters(&self) -> u64 {
        self.parameters.load(Ordering::Relaxed)
    }

    /// Checkpoint bytes read (safetensors) or generated (random, at the target dtype).
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// The first problem met (file, what was wrong) as a `ModelError::Load`, if any. Model
    /// constructors only see a candle error; the loader prefers this one, which names the file.
    pub fn take_problem(&self) -> Option<ModelError> {
        let mut slot = self
            .problem
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        slot.take().map(|(file, problem)| ModelError::load(file, problem))
    }

    fn record_problem(&self, file: &Path, problem: &str) {
        let mut slot = self
            .problem
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if slot.is_none() {
            *slot = Some((file.to_path_buf(), problem.to_string()));
        }
    }

    fn count(&self, tensor: &Tensor) -> u64 {
        let elements = tensor.elem_count() as u64;
        self.parameters.fetch_add(elements, Ordering::Relaxed);
        let bytes = elements * tensor.dtype().size_in_bytes() as u64;
        self.bytes.fetch_add(bytes, Ordering::Relaxed) + bytes
    }
}

// ---------------------------------------------------------------------------------------------
// safetensors headers (validation without touching tensor data)

/// One tensor's entry in a safetensors header.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct TensorEntry {
    pub dtype: String,
    pub shape: Vec<usize>,
    pub data_offsets: (u64, u64),
}

/// The parsed header of one safetensors file.
#[derive(Debug, Clone)]
pub struct SafetensorsHeader {
    pub path: PathBuf,
    pub tensors: BTreeMap<String, TensorEntry>,
    /// Bytes of tensor data the header promises (after the 8-byte length and the JSON).
    pub data_len: u64,
}

/// Largest JSON header we accept (safetensors itself caps it at 100 MB).
const MAX_HEADER_LEN: u64 = 100_000_000;

/// Reads and checks a safetensors header: readable, well-formed, offsets consistent, and the file
/// long enough for the data the header promises (a truncated download fails here).
pub fn read_safetensors_header(path: &Path) -> Result<SafetensorsHeader> {
    let fail = |problem: String| ModelError::load(path, problem);
    let mut file = File::open(path).map_err(|err| fail(format!("cannot open: {err}")))?;
    let file_len = file
        .metadata()
        .map_err(|err| fail(format!("cannot stat: {err}")))?
        .len();
    if file_len < 8 {
        return Err(fail(format!(
            "truncated safetensors file: {file_len} bytes, shorter than the 8-byte header length"
        )));
    }
    let mut len_bytes = [0u8; 8];
    file.read_exact(&mut len_bytes)
        .map_err(|err| fail(format!("cannot read: {err}")))?;
    let header_len = u64::from_le_bytes(len_bytes);
    if header_len > MAX_HEADER_LEN {
        return Err(fail(format!(
            "not a safetensors file: header length {header_len} is implausible"
        )));
    }
    if 8 + header_len > file_len {
        return Err(fail(format!(
            "truncated safetensors file: the header needs {} bytes, the file has {file_len}",
            8 + header_len
        )));
    }
    let mut json = vec![0u8; header_len as usize];
    file.read_exact(&mut json)
        .map_err(|err| fail(format!("cannot read header: {err}")))?;
    let raw: BTreeMap<String, serde_json::Value> = serde_json::from_slice(&json).map_err(|err| {
        fail(format!(
            "not a safetensors file: header is not valid JSON ({err})"
        ))
    })?;
    let mut tensors = BTreeMap::new();
    let mut data_len = 0u64;
    for (name, value) in raw {
        if name == "__metadata__" {
            continue;
        }
        let entry: TensorEntry = serde_json::from_value(value)
            .map_err(|err| fail(format!("bad header entry for tensor {name}: {err}")))?;
        let (start, end) = entry.data_offsets;
        let elements: u64 = entry.shape.iter().map(|&d| d as u64).product();
        let expected = elements * dtype_size(&entry.dtype).unwrap_or(0);
        if end < start || (dtype_size(&entry.dtype).is_some() && end - start != expected) {
            return Err(fail(format!(
                "corrupt header: tensor {name} ({} {:?}) has data offsets {start}..{end}",
                entry.dtype, entry.shape
            )));
        }
        data_len = data_len.max(end);
        tensors.insert(name, entry);
    }
    let needed = 8 + header_len + data_len;
    if file_len < needed {
        return Err(fail(format!(
            "truncated safetensors file: the header promises {needed} bytes, the file has {file_len}"
        )));
    }
    Ok(SafetensorsHeader {
        path: path.to_path_buf(),
        tensors,
        data_len,
    })
}

fn dtype_size(name: &str) -> Option<u64> {
    Some(match name {
        "F64" | "I64" | "U64" => 8,
        "F32" | "I32" | "U32" => 4,
        "F16" | "BF16" | "I16" | "U16" => 2,
        "U8" | "I8" | "BOOL" | "F8_E4M3" | "F8_E5M2" => 1,
        _ => return None,
    })
}

// ---------------------------------------------------------------------------------------------
// memory-mapped safetensors

/// Where one tensor lives and what its header says.
#[derive(Debug, Clone)]
struct IndexedTensor {
    file: PathBuf,
    shape: Vec<usize>,
    /// Size in the checkpoint (its stored dtype), for progress.
    bytes: u64,
}

/// All safetensors shards of one component, memory-mapped, behind a `VarBuilder`.
pub struct SafetensorsWeights {
    part: String,
    mmaps: MmapedSafetensors,
    index: HashMap<String, IndexedTensor>,
    files: Vec<PathBuf>,
    total_bytes: u64,
    /// Checkpoint bytes read so far, for progress.
    read_bytes: AtomicU64,
    stats: Arc<WeightStats>,
    progress: Option<ProgressFn>,
}

impl SafetensorsWeights {
    /// Validates every header (see [`read_safetensors_header`]), then maps the files.
    /// `part` names the component in progress reports ("transformer", ...).
    pub fn open(part: &str, files: &[PathBuf], progress: Option<ProgressFn>) -> Result<Self> {
        let Some(first) = files.first() else {
            return Err(ModelError::Compute(format!("{part}: no weight files given")));
        };
        let mut index: HashMap<String, IndexedTensor> = HashMap::new();
        let mut total_bytes = 0;
        for path in files {
            let header = read_safetensors_header(path)?;
            total_bytes += header.data_len;
            for (name, entry) in header.tensors {
                if let Some(other) = index.get(&name) {
                    return Err(ModelError::load(
                        path,
                        format!("tensor {name} is also in {}", other.file.display()),
                    ));
                }
                let bytes = entry.data_offsets.1 - entry.data_offsets.0;
                index.insert(
                    name,
                    IndexedTensor {
                        file: path.clone(),
                        shape: entry.shape,
                        bytes,
                    },
                );
            }
        }
        // SAFETY: the files are mapped read-only; like every mmap loader we rely on nobody
        // truncating a checkpoint while it is loaded (headers and lengths were checked above).
        let mmaps = unsafe { MmapedSafetensors::multi(files) }
            .map_err(|err| ModelError::load(first, format!("cannot memory-map the weights: {err}")))?;
        Ok(Self {
            part: part.to_string(),
            mmaps,
            index,
            files: files.to_vec(),
            total_bytes,
            read_bytes: AtomicU64::new(0),
            stats: Arc::new(WeightStats::default()),
            progress,
        })
    }

    /// Checkpoint bytes over all shards.
    pub fn total_bytes(&self) -> u64 {
        self.total_bytes
    }

    /// Tensor names and shapes as the headers declare them.
    pub fn shapes(&self) -> impl Iterator<Item = (&str, &[usize])> {
        self.index
            .iter()
            .map(|(name, t)| (name.as_str(), t.shape.as_slice()))
    }

    pub fn stats(&self) -> Arc<WeightStats> {
        self.stats.clone()
    }

    /// A `VarBuilder` over these weights in `dtype` on `device`, and the stats it fills.
    pub fn into_var_builder(self, dtype: DType, device: &Device) -> (VarBuilder<'static>, Arc<WeightStats>) {
        let stats = self.stats.clone();
        (
            VarBuilder::from_backend(Box::new(self), dtype, device.clone()),
            stats,
        )
    }

    fn load(
        &self,
        name: &str,
        expected: Option<&Shape>,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let fail = |file: &Path, problem: String| {
            self.stats.record_problem(file, &problem);
            candle_core::Error::Msg(format!("{}: {problem}", file.display()))
        };
        let Some(entry) = self.index.get(name) else {
            let dir = self.files[0].parent().unwrap_or(Path::new("."));
            return Err(fail(
                dir,
                format!(
                    "tensor {name} not found in the {} weights ({} tensors in {} file(s))",
                    self.part,
                    self.index.len(),
                    self.files.len()
                ),
            ));
        };
        if let Some(expected) = expected {
            if expected.dims() != entry.shape.as_slice() {
                return Err(fail(
                    &entry.file,
                    format!(
                        "tensor {name} has shape {:?}, the config expects {:?}",
                        entry.shape,
                        expected.dims()
                    ),
                ));
            }
        }
        let tensor = self
            .mmaps
            .load(name, dev)
            .and_then(|t| t.to_dtype(dtype))
            .map_err(|err| fail(&entry.file, format!("tensor {name}: {err}")))?;
        self.stats.count(&tensor);
        let done = self.read_bytes.fetch_add(entry.bytes, Ordering::Relaxed) + entry.bytes;
        if let Some(progress) = &self.progress {
            progress(LoadProgress {
                part: self.part.clone(),
                done,
                total: self.total_bytes,
            });
        }
        Ok(tensor)
    }
}

impl SimpleBackend for SafetensorsWeights {
    fn get(
        &self,
        s: Shape,
        name: &str,
        _: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        self.load(name, Some(&s), dtype, dev)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        self.load(name, None, dtype, dev)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }
}

// ---------------------------------------------------------------------------------------------
// deterministic random weights

/// Random weights for a model without a checkpoint. Each tensor is seeded from a hash of its full
/// name and the global seed: the same model built twice (or on another thread count) is equal.
/// On CUDA the tensors are drawn on the device (seeded `randn`), so the full 6B model takes
/// seconds; CUDA values differ from CPU values.
pub struct RandomWeights {
    part: String,
    seed: u64,
    stats: Arc<WeightStats>,
    progress: Option<ProgressFn>,
}

impl RandomWeights {
    /// `part` also enters the seed, so components with equal tensor names differ.
    pub fn new(part: &str, seed: u64, progress: Option<ProgressFn>) -> Self {
        Self {
            part: part.to_string(),
            seed: tensor_seed(seed, part),
            stats: Arc::new(WeightStats::default()),
            progress,
        }
    }

    /// A `VarBuilder` drawing from this backend, and the stats it fills.
    pub fn into_var_builder(self, dtype: DType, device: &Device) -> (VarBuilder<'static>, Arc<WeightStats>) {
        let stats = self.stats.clone();
        (
            VarBuilder::from_backend(Box::new(self), dtype, device.clone()),
            stats,
        )
    }

    fn make(
        &self,
        shape: &Shape,
        name: &str,
        hint: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let kind = ValueKind::for_tensor(name, shape, hint);
        let seed = tensor_seed(self.seed, name);
        let tensor = match kind {
            ValueKind::Constant(value) => Tensor::full(value as f32, shape, dev)?,
            ValueKind::Normal { mean, std } if dev.is_cpu() => {
                let values = normal_values(seed, shape.elem_count(), mean, std);
                Tensor::from_vec(values, shape, dev)?
            }
            ValueKind::Normal { mean, std } => {
                dev.set_seed(seed)?;
                Tensor::randn(mean as f32, std as f32, shape, dev)?
            }
        }
        .to_dtype(dtype)?;
        let done = self.stats.count(&tensor);
        if let Some(progress) = &self.progress {
            // The total is unknown before the model asked for every tensor: 0 means unknown.
            progress(LoadProgress {
                part: self.part.clone(),
                done,
                total: 0,
            });
        }
        Ok(tensor)
    }
}

impl SimpleBackend for RandomWeights {
    fn get(
        &self,
        s: Shape,
        name: &str,
        hint: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        self.make(&s, name, hint, dtype, dev)
    }

    fn get_unchecked(&self, name: &str, _dtype: DType, _dev: &Device) -> candle_core::Result<Tensor> {
        Err(candle_core::Error::Msg(format!(
            "random weights need a shape for tensor {name} (the model asked without one)"
        )))
    }

    fn contains_tensor(&self, _name: &str) -> bool {
        true
    }
}

/// How one random tensor is filled.
#[derive(Debug, Clone, Copy, PartialEq)]
enum ValueKind {
    Constant(f64),
    Normal { mean: f64, std: f64 },
}

impl ValueKind {
    /// Norm weights near 1, norm biases 0, other biases small, matrices with std 1/sqrt(fan_in)
    /// so activations keep their scale through the layers.
    fn for_tensor(name: &str, shape: &Shape, hint: candle_nn::Init) -> Self {
        let (stem, leaf) = name.rsplit_once('.').unwrap_or(("", name));
        let module = stem.rsplit('.').next().unwrap_or(stem).to_ascii_lowercase();
        let is_norm = module.contains("norm") || module.contains("ln_");
        match (leaf, shape.rank()) {
            ("weight" | "scale" | "gamma", 1) if is_norm => Self::Normal { mean: 1.0, std: 0.02 },
            ("bias" | "beta", _) if is_norm => Self::Constant(0.0),
            ("bias", _) => Self::Normal { mean: 0.0, std: 0.02 },
            _ => match hint {
                // Explicit non-zero constants from candle_nn helpers (e.g. group_norm weight = 1).
                candle_nn::Init::Const(value) if value != 0.0 => Self::Constant(value),
                _ => {
                    let dims = shape.dims();
                    let fan_in = if dims.len() >= 2 {
                        dims[1..].iter().product::<usize>()
                    } else {
                        0
                    };
                    let std = if fan_in > 0 {
                        1.0 / (fan_in as f64).sqrt()
                    } else {
                        0.02
                    };
                    Self::Normal { mean: 0.0, std }
                }
            },
        }
    }
}

/// A seed for one tensor: FNV-1a of the name (stable across platforms and Rust versions),
/// mixed with the global seed.
fn tensor_seed(global: u64, name: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in name.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    splitmix64(hash ^ splitmix64(global))
}

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Elements per independently seeded chunk: the result does not depend on the thread count.
const CHUNK: usize = 1 << 18;

/// `count` normal values, generated in parallel chunks for big tensors.
fn normal_values(seed: u64, count: usize, mean: f64, std: f64) -> Vec<f32> {
    let mut values = vec![0f32; count];
    let chunks: Vec<(usize, &mut [f32])> = values.chunks_mut(CHUNK).enumerate().collect();
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(chunks.len());
    if threads <= 1 {
        for (index, chunk) in chunks {
            fill_normal(splitmix64(seed ^ index as u64), chunk, mean, std);
        }
    } else {
        let mut lanes: Vec<Vec<(usize, &mut [f32])>> = (0..threads).map(|_| Vec::new()).collect();
        for (i, chunk) in chunks.into_iter().enumerate() {
            lanes[i % threads].push(chunk);
        }
        std::thread::scope(|scope| {
            for lane in lanes {
                scope.spawn(move || {
                    for (index, chunk) in lane {
                        fill_normal(splitmix64(seed ^ index as u64), chunk, mean, std);
                    }
                });
            }
        });
    }
    values
}

/// Box–Muller over a xorshift stream: fast, and plenty for random weights.
fn fill_normal(seed: u64, out: &mut [f32], mean: f64, std: f64) {
    let mut state = seed | 1;
    let mut next_uniform = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        // 53 random bits → (0, 1]
        ((state >> 11) as f64 + 1.0) / (1u64 << 53) as f64
    };
    for pair in out.chunks_mut(2) {
        let radius = (-2.0 * next_uniform().ln()).sqrt() * std;
        let angle = std::f64::consts::TAU * next_uniform();
        pair[0] = (mean + radius * angle.cos()) as f32;
        if let Some(second) = pair.get_mut(1) {
            *second = (mean + radius * angle.sin()) as f32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_safetensors(path: &Path, tensors: &[(&str, Tensor)]) {
        let map: HashMap<String, Tensor> = tensors.iter().map(|(n, t)| (n.to_string(), t.clone())).collect();
        candle_core::safetensors::save(&map, path).expect("save safetensors");
    }

    #[test]
    fn safetensors_shards_load_cast_and_report_progress() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.safetensors");
        let b = dir.path().join("b.safetensors");
        let w = Tensor::arange(0f32, 6., &Device::Cpu)
            .unwrap()
            .reshape((2, 3))
            .unwrap();
        write_safetensors(&a, &[("x.weight", w.to_dtype(DType::BF16).unwrap())]);
        write_safetensors(
            &b,
            &[("y.bias", Tensor::ones(4, DType::F32, &Device::Cpu).unwrap())],
        );
        let reports = Arc::new(Mutex::new(Vec::new()));
        let sink = reports.clone();
        let progress: ProgressFn = Arc::new(move |p| sink.lock().unwrap().push(p));
        let weights = SafetensorsWeights::open("part", &[a, b], Some(progress)).unwrap();
        assert_eq!(weights.total_bytes(), 12 + 16);
        let (vb, stats) = weights.into_var_builder(DType::F32, &Device::Cpu);
        let x = vb.pp("x").get((2, 3), "weight").unwrap();
        assert_eq!(x.dtype(), DType::F32);
        assert_eq!(
            x.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            vec![0., 1., 2., 3., 4., 5.]
        );
        let y = vb.get(4, "y.bias").unwrap();
        assert_eq!(y.dtype(), DType::F32);
        assert_eq!(stats.parameters(), 10);
        let reports = reports.lock().unwrap();
        assert_eq!(reports.last().map(|p| (p.done, p.total)), Some((28, 28)));
    }

    #[test]
    fn wrong_shape_and_missing_tensor_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("shard.safetensors");
        write_safetensors(
            &a,
            &[("w", Tensor::zeros((2, 3), DType::F32, &Device::Cpu).unwrap())],
        );
        let (vb, stats) = SafetensorsWeights::open("vae", std::slice::from_ref(&a), None)
            .unwrap()
            .into_var_builder(DType::F32, &Device::Cpu);
        assert!(vb.get((3, 2), "w").is_err());
        let err = stats.take_problem().expect("problem recorded").to_string();
        assert!(
            err.contains("shard.safetensors") && err.contains("[2, 3]") && err.contains("[3, 2]"),
            "{err}"
        );
        assert!(vb.get(5, "missing").is_err());
        let err = stats.take_problem().expect("problem recorded").to_string();
        assert!(err.contains("tensor missing not found"), "{err}");
    }

    #[test]
    fn truncated_file_is_refused_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cut.safetensors");
        write_safetensors(
            &path,
            &[("w", Tensor::zeros(100, DType::F32, &Device::Cpu).unwrap())],
        );
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 10]).unwrap();
        let err = read_safetensors_header(&path).unwrap_err().to_string();
        assert!(
            err.contains("cut.safetensors") && err.contains("truncated"),
            "{err}"
        );
        std::fs::write(&path, &bytes[..5]).unwrap();
        assert!(read_safetensors_header(&path)
            .unwrap_err()
            .to_string()
            .contains("truncated"));
        std::fs::write(&path, b"\x10\0\0\0\0\0\0\0not json at all!").unwrap();
        assert!(read_safetensors_header(&path)
            .unwrap_err()
            .to_string()
            .contains("not valid JSON"));
    }

    #[test]
    fn random_weights_are_deterministic_per_name_and_seed() {
        let build = |seed| {
            RandomWeights::new("t", seed, None)
                .into_var_builder(DType::F32, &Device::Cpu)
                .0
        };
        let values = |vb: &VarBuilder, name: &str| -> Vec<f32> {
            vb.get((64, 32), name)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap()
        };
        let (one, two, other) = (build(7), build(7), build(8));
        assert_eq!(values(&one, "a.weight"), values(&two, "a.weight"));
        assert_ne!(values(&one, "a.weight"), values(&one, "b.weight"));
        assert_ne!(values(&one, "a.weight"), values(&other, "a.weight"));
        let a = values(&one, "a.weight");
        let mean = a.iter().sum::<f32>() / a.len() as f32;
        let std = (a.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / a.len() as f32).sqrt();
        assert!(
            mean.abs() < 0.02 && (std - 1.0 / 32f32.sqrt()).abs() < 0.02,
            "{mean} {std}"
        );
        let norm: Vec<f32> = one
            .get(32, "layers.0.attention_norm1.weight")
            .unwrap()
            .to_vec1()
            .unwrap();
        assert!(norm.iter().all(|v| (v - 1.0).abs() < 0.2), "{norm:?}");
    }

    #[test]
    fn big_random_tensors_do_not_depend_on_chunking_threads() {
        let n = CHUNK * 3 + 5;
        let a = normal_values(42, n, 0.0, 1.0);
        assert_eq!(a, normal_values(42, n, 0.0, 1.0));
        assert!(a.iter().all(|v| v.is_finite()));
    }

    #[test]
    fn dtype_defaults_and_overrides() {
        assert_eq!(target_dtype(&Device::Cpu, None).unwrap(), DType::F32);
        assert_eq!(target_dtype(&Device::Cpu, Some("bf16")).unwrap(), DType::BF16);
        assert!(parse_dtype("int4").is_err());
    }
}
