//! The transformer block's hot element-wise work and attention, each with two paths:
//! - a reference path in plain candle ops (CPU, or any dtype), written to match diffusers' math;
//! - with the `cuda` feature and bf16 tensors on a CUDA device, fused kernels from
//!   kernels/fused.cu, and with `cudnn` cuDNN's flash attention (kernels/cudnn_sdpa.cpp).
//!
//! Callers never branch on the device: they call these functions and get the fastest path.

use candle_core::{DType, Device, Result, Tensor, D};

/// Per-token rotary tables: for token t and pair i, rotate (x[2i], x[2i+1]) by angle θ(t, i).
/// `cos`/`sin` are f32 `[tokens, head_dim / 2]`; `packed` interleaves them `[tokens, head_dim/2, 2]`
/// for the fused kernel.
#[derive(Debug, Clone)]
pub struct Rope {
    pub cos: Tensor,
    pub sin: Tensor,
    /// Only the CUDA path reads it.
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    packed: Option<Tensor>,
}

impl Rope {
    pub fn new(cos: Tensor, sin: Tensor) -> Result<Self> {
        let packed = if uses_fused_kernels(cos.device(), DType::BF16) {
            Some(Tensor::stack(&[&cos, &sin], D::Minus1)?.contiguous()?)
        } else {
            None
        };
        Ok(Self { cos, sin, packed })
    }

    pub fn tokens(&self) -> Result<usize> {
        self.cos.dim(0)
    }
}

/// The row kernels (norms) keep a row in one warp's registers: up to 4096 values, 8 at a time.
#[cfg(feature = "cuda")]
fn fits_row_kernels(x: &Tensor) -> Result<bool> {
    let dim = x.dim(D::Minus1)?;
    Ok(dim % 8 == 0 && dim <= 4096)
}

/// True when the fused CUDA kernels serve tensors of `dtype` on `device`.
pub fn uses_fused_kernels(device: &Device, dtype: DType) -> bool {
    cfg!(feature = "cuda") && device.is_cuda() && dtype == DType::BF16
}

/// `rmsnorm(x) * weight` over the last dim, rounded to the input dtype after the norm and again
/// after the weight, as diffusers' and transformers' RMSNorms do in half precision.
pub fn rms_norm(x: &Tensor, weight: &Tensor, eps: f64) -> Result<Tensor> {
    rms_norm_modulated(x, weight, None, eps)
}

/// The reference path's RMSNorm: the norm, then the weight, each rounded to `x`'s dtype.
fn rms_norm_reference(x: &Tensor, weight: &Tensor, eps: f64) -> Result<Tensor> {
    let unit = Tensor::ones(x.dim(D::Minus1)?, x.dtype(), x.device())?;
    candle_nn::ops::rms_norm(x, &unit, eps as f32)?.broadcast_mul(&weight.to_dtype(x.dtype())?)
}

/// `rmsnorm(x) * weight * modulation` over the last dim; `modulation` is `1 + adaLN scale`
/// (shape `[dim]` or broadcastable), `None` for blocks without adaLN.
pub fn rms_norm_modulated(
    x: &Tensor,
    weight: &Tensor,
    modulation: Option<&Tensor>,
    eps: f64,
) -> Result<Tensor> {
    #[cfg(feature = "cuda")]
    if uses_fused_kernels(x.device(), x.dtype()) && fits_row_kernels(x)? {
        let factor = modulation
            .map(|m| m.to_dtype(DType::BF16)?.flatten_all()?.contiguous())
            .transpose()?;
        return cuda::rms_norm_scale(x, &weight.to_dtype(DType::F32)?, factor.as_ref(), eps as f32);
    }
    let normed = rms_norm_reference(x, weight, eps)?;
    match modulation {
        Some(m) => normed.broadcast_mul(&m.to_dtype(x.dtype())?),
        None => Ok(normed),
    }
}

/// `x + gate * (rmsnorm(branch) * weight)` over the last dim; `gate` is `tanh(adaLN gate)`,
/// `None` for blocks without adaLN. The sandwich norm plus gated residual of every block.
pub fn gated_residual_norm(
    x: &Tensor,
    branch: &Tensor,
    weight: &Tensor,
    gate: Option<&Tensor>,
    eps: f64,
) -> Result<Tensor> {
    #[cfg(feature = "cuda")]
    if uses_fused_kernels(x.device(), x.dtype()) && fits_row_kernels(x)? {
        let gate = gate
            .map(|g| g.to_dtype(DType::BF16)?.flatten_all()?.contiguous())
            .transpose()?;
        return cuda::gated_residual_norm(x, branch, &weight.to_dtype(DType::F32)?, gate, eps as f32);
    }
    let normed = rms_norm_reference(branch, weight, eps)?;
    let gated = match gate {
        Some(g) => normed.broadcast_mul(&g.to_dtype(x.dtype())?)?,
        None => normed,
    };
    x + gated
}

/// `silu(h[.., :n]) * h[.., n:]` for the merged W1|W3 projection output `h = [.., 2n]`.
pub fn swiglu(h: &Tensor) -> Result<Tensor> {
    #[cfg(feature = "cuda")]
    if uses_fused_kernels(h.device(), h.dtype()) {
        return cuda::swiglu(h);
    }
    let n = h.dim(D::Minus1)? / 2;
    let a = h.narrow(D::Minus1, 0, n)?;
    let b = h.narrow(D::Minus1, n, n)?;
    candle_nn::ops::silu(&a)? * b
}

/// The per-head RMSNorm weights of q and k; for the fused kernel also packed once as f32 `[2, d]`
/// (q then k), so no step converts them again.
#[derive(Debug, Clone)]
pub struct QkNorms {
    pub q: Tensor,
    pub k: Tensor,
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    packed: Option<Tensor>,
}

impl QkNorms {
    pub fn new(q: Tensor, k: Tensor) -> Result<Self> {
        let packed = if uses_fused_kernels(q.device(), DType::BF16) {
            Some(Tensor::cat(
                &[
                    q.to_dtype(DType::F32)?.flatten_all()?,
                    k.to_dtype(DType::F32)?.flatten_all()?,
                ],
                0,
            )?)
        } else {
            None
        };
        Ok(Self { q, k, packed })
    }
}

/// Self-attention core of a block, between the merged QKV projection and the output projection:
/// per-head RMSNorm of q and k, RoPE, then unmasked softmax attention over all tokens.
/// `qkv` is `[1, tokens, 3 * heads * head_dim]`; returns `[1, tokens, heads * head_dim]`.
pub fn self_attention(qkv: &Tensor, heads: usize, norms: &QkNorms, rope: &Rope, eps: f64) -> Result<Tensor> {
    let (batch, tokens, width) = qkv.dims3()?;
    let dim = width / 3;
    let head_dim = dim / heads;
    #[cfg(feature = "cuda")]
    if uses_fused_kernels(qkv.device(), qkv.dtype()) && batch == 1 && head_dim == 128 {
        if let (Some(packed), Some(norms)) = (&rope.packed, &norms.packed) {
            return cuda::self_attention(qkv, heads, norms, packed, eps as f32);
        }
    }
    let split = |i: usize| -> Result<Tensor> {
        qkv.narrow(D::Minus1, i * dim, dim)?
            .reshape((batch, tokens, heads, head_dim))
    };
    let q = apply_rope(&rms_norm_reference(&split(0)?, &norms.q, eps)?, rope)?;
    let k = apply_rope(&rms_norm_reference(&split(1)?, &norms.k, eps)?, rope)?;
    let v = split(2)?;
    let out = attention(&q, &k, &v)?;
    out.reshape((batch, tokens, dim))
}

/// Interleaved complex rotation in f32, cast back, as diffusers' `apply_rotary_emb`.
/// `x` is `[batch, tokens, heads, head_dim]`.
pub fn apply_rope(x: &Tensor, rope: &Rope) -> Result<Tensor> {
    let (batch, tokens, heads, head_dim) = x.dims4()?;
    let pairs = x
        .to_dtype(DType::F32)?
        .reshape((batch, tokens, heads, head_dim / 2, 2))?;
    let re = pairs.narrow(D::Minus1, 0, 1)?.squeeze(D::Minus1)?;
    let im = pairs.narrow(D::Minus1, 1, 1)?.squeeze(D::Minus1)?;
    let cos = rope.cos.reshape((1, tokens, 1, head_dim / 2))?;
    let sin = rope.sin.reshape((1, tokens, 1, head_dim / 2))?;
    let out_re = (re.broadcast_mul(&cos)? - im.broadcast_mul(&sin)?)?;
    let out_im = (re.broadcast_mul(&sin)? + im.broadcast_mul(&cos)?)?;
    Tensor::stack(&[out_re, out_im], D::Minus1)?
        .reshape((batch, tokens, heads, head_dim))?
        .to_dtype(x.dtype())
}

/// Unmasked scaled-dot-product attention; q, k, v `[batch, tokens, heads, head_dim]` →
/// `[batch, tokens, heads, head_dim]`. Reference path: per-head chunks so the score matrix of
/// only a few heads exists at once.
pub fn attention(q: &Tensor, k: &Tensor, v: &Tensor) -> Result<Tensor> {
    let (batch, q_len, heads, head_dim) = q.dims4()?;
    let kv_len = k.dim(1)?;
    let dtype = q.dtype();
    let scale = 1.0 / (head_dim as f64).sqrt();
    // scores and softmax in f32, as torch's fused SDPA kernels keep them
    let per_head = |t: &Tensor| t.transpose(1, 2)?.to_dtype(DType::F32)?.contiguous();
    let (q, k, v) = (per_head(q)?, per_head(k)?, per_head(v)?);
    // one block of queries for one head at a time keeps the f32 score matrix under 256 MiB
    // (2048² in one go would need ~34 GiB)
    let q_block = (SCORE_BUDGET_BYTES / (4 * kv_len * batch).max(1)).clamp(1, q_len);
    let mut heads_out = Vec::with_capacity(heads);
    for head in 0..heads {
        let (qh, kh, vh) = (
            q.narrow(1, head, 1)?,
            k.narrow(1, head, 1)?,
            v.narrow(1, head, 1)?,
        );
        let kt = kh.t()?;
        let mut blocks = Vec::with_capacity(q_len.div_ceil(q_block));
        for start in (0..q_len).step_by(q_block) {
            let rows = q_block.min(q_len - start);
            let scores = (qh.narrow(2, start, rows)?.matmul(&kt)? * scale)?;
            blocks.push(candle_nn::ops::softmax_last_dim(&scores)?.matmul(&vh)?);
        }
        heads_out.push(Tensor::cat(&blocks, 2)?);
    }
    Tensor::cat(&heads_out, 1)?
        .transpose(1, 2)?
        .to_dtype(dtype)?
        .contiguous()
}

/// Upper bound for one block of f32 attention scores in the reference path.
const SCORE_BUDGET_BYTES: usize = 256 << 20;

/// Checks shared by the CUDA launchers here and in the VAE's channels-last path.
#[cfg(feature = "cuda")]
pub(crate) mod cuda_support {
    use candle_core::{bail, Layout, Result};

    /// Start and end offsets of a contiguous layout, or an error naming the tensor.
    pub(crate) fn contiguous_rows(layout: &Layout, what: &str) -> Result<(usize, usize)> {
        match layout.contiguous_offsets() {
            Some((start, end)) => Ok((start, end)),
            None => bail!("{what} must be contiguous"),
        }
    }

    /// What the CPU half of a CUDA-only custom op answers.
    pub(crate) fn cpu_unsupported<T>(name: &str) -> Result<T> {
        bail!("{name} is a CUDA-only kernel")
    }

    /// The `cpu_fwd` of a CUDA-only custom op (`CustomOp1`, `CustomOp2` or `CustomOp3`): an
    /// error naming the op.
    macro_rules! cuda_only_cpu_fwd {
        (CustomOp1) => {
            fn cpu_fwd(
                &self,
                _: &candle_core::CpuStorage,
                _: &candle_core::Layout,
            ) -> candle_core::Result<(candle_core::CpuStorage, candle_core::Shape)> {
                $crate::model::fused::cuda_support::cpu_unsupported(candle_core::CustomOp1::name(self))
            }
        };
        (CustomOp2) => {
            fn cpu_fwd(
                &self,
                _: &candle_core::CpuStorage,
                _: &candle_core::Layout,
                _: &candle_core::CpuStorage,
                _: &candle_core::Layout,
            ) -> candle_core::Result<(candle_core::CpuStorage, candle_core::Shape)> {
                $crate::model::fused::cuda_support::cpu_unsupported(candle_core::CustomOp2::name(self))
            }
        };
        (CustomOp3) => {
            fn cpu_fwd(
                &self,
                _: &candle_core::CpuStorage,
                _: &candle_core::Layout,
                _: &candle_core::CpuStorage,
                _: &candle_core::Layout,
                _: &candle_core::CpuStorage,
                _: &candle_core::Layout,
            ) -> candle_core::Result<(candle_core::CpuStorage, candle_core::Shape)> {
                $crate::model::fused::cuda_support::cpu_unsupported(candle_core::CustomOp3::name(self))
            }
        };
    }
    pub(crate) use cuda_only_cpu_fwd;
}

#[cfg(feature = "cuda")]
mod cuda {
    //! Launchers for kernels/fused.cu and the cuDNN attention shim.

    use super::cuda_support::{contiguous_rows, cuda_only_cpu_fwd};

    use candle_core::backend::BackendStorage;
    use candle_core::cuda_backend::cudarc::driver::CudaView;
    #[cfg(feature = "cudnn")]
    use candle_core::cuda_backend::cudarc::driver::{DevicePtr, DevicePtrMut};
    use candle_core::cuda_backend::cudarc::driver::{LaunchConfig, PushKernelArg};
    use candle_core::cuda_backend::{CudaStorage, WrapErr};
    use candle_core::{
        bail, CustomOp1, CustomOp2, CustomOp3, Layout, Result, Shape, Storage, StorageRef, Tensor,
    };
    use half::bf16;

    const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/fused.ptx"));
    const MODULE: &str = "zimage_fused";

    fn last_dim(layout: &Layout) -> usize {
        *layout.shape().dims().last().unwrap_or(&1)
    }

    /// The bf16 vector an op carries beside its inputs (the adaLN factor or gate), checked to hold
    /// `dim` values, as a device view; `None` when the op has none.
    fn carried_vector<'a>(
        carried: Option<&'a (StorageRef<'a>, &'a Layout)>,
        dim: usize,
        what: &str,
    ) -> Result<Option<CudaView<'a, bf16>>> {
        let Some((storage, layout)) = carried else {
            return Ok(None);
        };
        let Storage::Cuda(storage) = &**storage else {
            bail!("{what} must be on the GPU");
        };
        let (start, end) = contiguous_rows(layout, what)?;
        if end - start != dim {
            bail!("{what} holds {} values, expected {dim}", end - start);
        }
        Ok(Some(storage.as_cuda_slice::<bf16>()?.slice(start..end)))
    }

    /// The norm weight (f32 `[dim]`) beside rows of `dim` values.
    fn weight_view<'a>(w: &'a CudaStorage, wl: &Layout, dim: usize) -> Result<CudaView<'a, f32>> {
        let (w0, w1) = contiguous_rows(wl, "norm weight")?;
        if dim % 8 != 0 || dim > 4096 || w1 - w0 != dim {
            bail!(
                "row kernels: dim {dim} must be a multiple of 8 up to 4096, the weight {}",
                w1 - w0
            );
        }
        Ok(w.as_cuda_slice::<f32>()?.slice(w0..w1))
    }

    struct RmsNormScale {
        eps: f32,
        /// bf16 `[dim]`: 1 + adaLN scale.
        factor: Option<Tensor>,
    }

    impl CustomOp2 for RmsNormScale {
        fn name(&self) -> &'static str {
            "zi-rms-norm-scale"
        }
        cuda_only_cpu_fwd!(CustomOp2);
        fn cuda_fwd(
            &self,
            x: &CudaStorage,
            xl: &Layout,
            w: &CudaStorage,
            wl: &Layout,
        ) -> Result<(CudaStorage, Shape)> {
            let dev = x.device().clone();
            let dim = last_dim(xl);
            let (x0, x1) = contiguous_rows(xl, "x")?;
            let weight = weight_view(w, wl, dim)?;
            let carried = self.factor.as_ref().map(|t| t.storage_and_layout());
            let factor = carried_vector(carried.as_ref(), dim, "adaLN factor")?;
            let rows = (x1 - x0) / dim;
            let xs = x.as_cuda_slice::<bf16>()?.slice(x0..x1);
            let out = unsafe { dev.alloc::<bf16>(rows * dim)? };
            let func = dev.get_or_load_custom_func("zi_rms_norm_scale_bf16", MODULE, PTX)?;
            let mut b = func.builder();
            let (dim_i, stride, eps, rows_i, null) = (dim as i32, dim as i64, self.eps, rows as i64, 0u64);
            b.arg(&xs).arg(&weight);
            match &factor {
                Some(f) => b.arg(f),
                None => b.arg(&null),
            };
            b.arg(&out).arg(&dim_i).arg(&stride).arg(&eps).arg(&rows_i);
            unsafe { b.launch(row_config(rows)) }.w()?;
            Ok((CudaStorage::wrap_cuda_slice(out, dev), xl.shape().clone()))
        }
    }

    /// Row kernels: one warp per row, `ROWS_PER_BLOCK` rows a block (kernels/fused.cu).
    fn row_config(rows: usize) -> LaunchConfig {
        const ROWS_PER_BLOCK: usize = 8;
        LaunchConfig {
            grid_dim: (rows.div_ceil(ROWS_PER_BLOCK).max(1) as u32, 1, 1),
            block_dim: (32 * ROWS_PER_BLOCK as u32, 1, 1),
            shared_mem_bytes: 0,
        }
    }

    /// `weight` f32 `[dim]`; `factor` bf16 `[dim]`.
    pub fn rms_norm_scale(x: &Tensor, weight: &Tensor, factor: Option<&Tensor>, eps: f32) -> Result<Tensor> {
        let op = RmsNormScale {
            eps,
            factor: factor.cloned(),
        };
        x.contiguous()?.apply_op2_no_bwd(&weight.contiguous()?, &op)
    }

    struct GatedResidualNorm {
        eps: f32,
        /// bf16 `[dim]`: tanh(adaLN gate).
        gate: Option<Tensor>,
    }

    impl CustomOp3 for GatedResidualNorm {
        fn name(&self) -> &'static str {
            "zi-gated-residual-norm"
        }
        cuda_only_cpu_fwd!(CustomOp3);
        fn cuda_fwd(
            &self,
            x: &CudaStorage,
            xl: &Layout,
            br: &CudaStorage,
            bl: &Layout,
            w: &CudaStorage,
            wl: &Layout,
        ) -> Result<(CudaStorage, Shape)> {
            let dev = x.device().clone();
            let dim = last_dim(xl);
            let (x0, x1) = contiguous_rows(xl, "x")?;
            let (b0, b1) = contiguous_rows(bl, "branch")?;
            if x1 - x0 != b1 - b0 {
                bail!("gated_residual_norm: shapes {:?} {:?}", xl.shape(), bl.shape());
            }
            let weight = weight_view(w, wl, dim)?;
            let carried = self.gate.as_ref().map(|t| t.storage_and_layout());
            let gate = carried_vector(carried.as_ref(), dim, "adaLN gate")?;
            let rows = (x1 - x0) / dim;
            let xs = x.as_cuda_slice::<bf16>()?.slice(x0..x1);
            let bs = br.as_cuda_slice::<bf16>()?.slice(b0..b1);
            let out = unsafe { dev.alloc::<bf16>(rows * dim)? };
            let func = dev.get_or_load_custom_func("zi_gated_residual_norm_bf16", MODULE, PTX)?;
            let mut b = func.builder();
            let (dim_i, eps, rows_i, null) = (dim as i32, self.eps, rows as i64, 0u64);
            b.arg(&xs).arg(&bs).arg(&weight);
            match &gate {
                Some(g) => b.arg(g),
                None => b.arg(&null),
            };
            b.arg(&out).arg(&dim_i).arg(&eps).arg(&rows_i);
            unsafe { b.launch(row_config(rows)) }.w()?;
            Ok((CudaStorage::wrap_cuda_slice(out, dev), xl.shape().clone()))
        }
    }

    /// `weight` f32 `[dim]`; `gate` bf16 `[dim]`.
    pub fn gated_residual_norm(
        x: &Tensor,
        branch: &Tensor,
        weight: &Tensor,
        gate: Option<Tensor>,
        eps: f32,
    ) -> Result<Tensor> {
        x.contiguous()?.apply_op3_no_bwd(
            &branch.contiguous()?,
            &weight.contiguous()?,
            &GatedResidualNorm { eps, gate },
        )
    }

    struct Swiglu;

    impl CustomOp1 for Swiglu {
        fn name(&self) -> &'static str {
            "zi-swiglu"
        }
        cuda_only_cpu_fwd!(CustomOp1);
        fn cuda_fwd(&self, h: &CudaStorage, hl: &Layout) -> Result<(CudaStorage, Shape)> {
            let dev = h.device().clone();
            let width = last_dim(hl);
            let hidden = width / 2;
            let (h0, h1) = contiguous_rows(hl, "h")?;
            if hidden % 8 != 0 {
                bail!("swiglu: hidden {hidden} must be a multiple of 8");
            }
            let rows = (h1 - h0) / width;
            let hs = h.as_cuda_slice::<bf16>()?.slice(h0..h1);
            let out = unsafe { dev.alloc::<bf16>(rows * hidden)? };
            let func = dev.get_or_load_custom_func("zi_swiglu_bf16", MODULE, PTX)?;
            let mut b = func.builder();
            let hidden_i = hidden as i32;
            b.arg(&hs).arg(&out).arg(&hidden_i);
            let cfg = LaunchConfig {
                grid_dim: (rows.max(1) as u32, (hidden / 8).div_ceil(256) as u32, 1),
                block_dim: (256, 1, 1),
                shared_mem_bytes: 0,
            };
            unsafe { b.launch(cfg) }.w()?;
            let mut dims = hl.shape().dims().to_vec();
            if let Some(last) = dims.last_mut() {
                *last = hidden;
            }
            Ok((CudaStorage::wrap_cuda_slice(out, dev), Shape::from_dims(&dims)))
        }
    }

    pub fn swiglu(h: &Tensor) -> Result<Tensor> {
        h.contiguous()?.apply_op1_no_bwd(&Swiglu)
    }

    struct QkNormRope {
        heads: usize,
        eps: f32,
    }

    impl CustomOp3 for QkNormRope {
        fn name(&self) -> &'static str {
            "zi-qk-norm-rope"
        }
        cuda_only_cpu_fwd!(CustomOp3);
        fn cuda_fwd(
            &self,
            qkv: &CudaStorage,
            ql: &Layout,
            w: &CudaStorage,
            wl: &Layout,
            rope: &CudaStorage,
            rl: &Layout,
        ) -> Result<(CudaStorage, Shape)> {
            let dev = qkv.device().clone();
            let (q0, q1) = contiguous_rows(ql, "qkv")?;
            let (w0, w1) = contiguous_rows(wl, "norm weights")?;
            let (r0, r1) = contiguous_rows(rl, "rope")?;
            let dim = self.heads * 128;
            let tokens = (q1 - q0) / (3 * dim);
            if w1 - w0 != 256 || r1 - r0 != tokens * 128 {
                bail!(
                    "qk_norm_rope: unexpected shapes {:?} {:?} {:?}",
                    ql.shape(),
                    wl.shape(),
                    rl.shape()
                );
            }
            let qs = qkv.as_cuda_slice::<bf16>()?.slice(q0..q1);
            let ws = w.as_cuda_slice::<f32>()?.slice(w0..w1);
            let rs = rope.as_cuda_slice::<f32>()?.slice(r0..r1);
            let out = unsafe { dev.alloc::<bf16>(2 * tokens * dim)? };
            let func = dev.get_or_load_custom_func("zi_qk_norm_rope_bf16", MODULE, PTX)?;
            let mut b = func.builder();
            let (tokens_i, heads_i, eps) = (tokens as i32, self.heads as i32, self.eps);
            b.arg(&qs)
                .arg(&ws)
                .arg(&rs)
                .arg(&out)
                .arg(&tokens_i)
                .arg(&heads_i)
                .arg(&eps);
            let warps = (2 * tokens * self.heads) as u64;
            let cfg = LaunchConfig {
                grid_dim: (warps.div_ceil(8) as u32, 1, 1),
                block_dim: (256, 1, 1),
                shared_mem_bytes: 0,
            };
            unsafe { b.launch(cfg) }.w()?;
            Ok((
                CudaStorage::wrap_cuda_slice(out, dev),
                Shape::from_dims(&[2, tokens, self.heads, 128]),
            ))
        }
    }

    /// `norms`: f32 `[2·128]`, the q then k RMSNorm weights.
    pub fn self_attention(
        qkv: &Tensor,
        heads: usize,
        norms: &Tensor,
        rope_packed: &Tensor,
        eps: f32,
    ) -> Result<Tensor> {
        let (_, tokens, width) = qkv.dims3()?;
        let dim = width / 3;
        let qkv = qkv.contiguous()?;
        let qk = qkv.apply_op3_no_bwd(norms, rope_packed, &QkNormRope { heads, eps })?;
        let q = qk.get(0)?;
        let k = qk.get(1)?;
        let v = qkv.narrow(2, 2 * dim, dim)?;
        sdpa(&q, &k, &v, heads, tokens)?.reshape((1, tokens, dim))
    }

    #[cfg(feature = "cudnn")]
    fn sdpa(q: &Tensor, k: &Tensor, v: &Tensor, heads: usize, tokens: usize) -> Result<Tensor> {
        q.apply_op3_no_bwd(k, v, &CudnnSdpa { heads, tokens })
    }

    /// Without cuDNN: the chunked reference attention (correct, not fast).
    #[cfg(not(feature = "cudnn"))]
    fn sdpa(q: &Tensor, k: &Tensor, v: &Tensor, heads: usize, tokens: usize) -> Result<Tensor> {
        let shape = (1, tokens, heads, 128);
        super::attention(
            &q.reshape(shape)?,
            &k.reshape(shape)?,
            &v.contiguous()?.reshape(shape)?,
        )
    }

    #[cfg(feature = "cudnn")]
    extern "C" {
        fn zimage_sdpa_workspace(
            b: i64,
            h: i64,
            s_q: i64,
            s_kv: i64,
            d: i64,
            qo_stride: i64,
            v_stride: i64,
            scale: f32,
        ) -> i64;
        #[allow(clippy::too_many_arguments)]
        fn zimage_sdpa_run(
            stream: *mut std::ffi::c_void,
            q: *const std::ffi::c_void,
            k: *const std::ffi::c_void,
            v: *const std::ffi::c_void,
            o: *mut std::ffi::c_void,
            workspace: *mut std::ffi::c_void,
            b: i64,
            h: i64,
            s_q: i64,
            s_kv: i64,
            d: i64,
            qo_stride: i64,
            v_stride: i64,
            scale: f32,
        ) -> i32;
        fn zimage_sdpa_last_error() -> *const std::os::raw::c_char;
    }

    #[cfg(feature = "cudnn")]
    struct CudnnSdpa {
        heads: usize,
        tokens: usize,
    }

    #[cfg(feature = "cudnn")]
    fn cudnn_error(what: &str) -> candle_core::Error {
        // SAFETY: the shim returns a pointer to its own NUL-terminated static buffer.
        let detail = unsafe { std::ffi::CStr::from_ptr(zimage_sdpa_last_error()) };
        candle_core::Error::Msg(format!("cuDNN attention {what}: {}", detail.to_string_lossy()))
    }

    #[cfg(feature = "cudnn")]
    impl CustomOp3 for CudnnSdpa {
        fn name(&self) -> &'static str {
            "zi-cudnn-sdpa"
        }
        cuda_only_cpu_fwd!(CustomOp3);
        fn cuda_fwd(
            &self,
            q: &CudaStorage,
            ql: &Layout,
            k: &CudaStorage,
            kl: &Layout,
            v: &CudaStorage,
            vl: &Layout,
        ) -> Result<(CudaStorage, Shape)> {
            let dev = q.device().clone();
            let (h, s, d) = (self.heads as i64, self.tokens as i64, 128i64);
            let (q0, _) = contiguous_rows(ql, "q")?;
            let (k0, _) = contiguous_rows(kl, "k")?;
            // v is a [1, tokens, dim] column window of the merged qkv buffer: rows 3*dim apart
            let v_dims = vl.dims().len();
            if v_dims < 2 || vl.stride()[v_dims - 1] != 1 {
                bail!(
                    "cuDNN attention: v must be a row window, got strides {:?}",
                    vl.stride()
                );
            }
            let v_stride = vl.stride()[v_dims - 2] as i64;
            let v0 = vl.start_offset();
            let scale = 1.0 / (d as f32).sqrt();
            let qo_stride = h * d;
            let bytes = unsafe { zimage_sdpa_workspace(1, h, s, s, d, qo_stride, v_stride, scale) };
            if bytes < 0 {
                return Err(cudnn_error("graph"));
            }
            let workspace = unsafe { dev.alloc::<u8>((bytes as usize).max(1))? };
            let mut out = unsafe { dev.alloc::<bf16>((s * h * d) as usize)? };
            let stream = dev.cuda_stream();
            // the pointer guards record stream events on drop: keep them inside this block so
            // they are gone before `out` moves into the result
            let status = {
                let qs = q.as_cuda_slice::<bf16>()?;
                let ks = k.as_cuda_slice::<bf16>()?;
                let vs = v.as_cuda_slice::<bf16>()?;
                let (qp, _gq) = qs.device_ptr(&stream);
                let (kp, _gk) = ks.device_ptr(&stream);
                let (vp, _gv) = vs.device_ptr(&stream);
                let (wp, _gw) = workspace.device_ptr(&stream);
                let (op, _go) = out.device_ptr_mut(&stream);
                let elem = std::mem::size_of::<bf16>() as u64;
                unsafe {
                    zimage_sdpa_run(
                        stream.cu_stream() as *mut _,
                        (qp + q0 as u64 * elem) as *const _,
                        (kp + k0 as u64 * elem) as *const _,
                        (vp + v0 as u64 * elem) as *const _,
                        op as *mut _,
                        wp as *mut _,
                        1,
                        h,
                        s,
                        s,
                        d,
                        qo_stride,
                        v_stride,
                        scale,
                    )
                }
            };
            if status != 0 {
                return Err(cudnn_error("run"));
            }
            Ok((
                CudaStorage::wrap_cuda_slice(out, dev),
                Shape::from_dims(&[1, self.tokens, self.heads, 128]),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn randn(shape: &[usize], seed: u64) -> Tensor {
        // deterministic pseudo-random values in [-2, 2)
        let n: usize = shape.iter().product();
        let mut state = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let data: Vec<f32> = (0..n)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((state >> 40) as f32 / (1u64 << 24) as f32) * 4.0 - 2.0
            })
            .collect();
        Tensor::from_vec(data, shape, &Device::Cpu).unwrap()
    }

    fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    }

    #[test]
    fn chunked_attention_equals_plain_softmax_attention() {
        let (q, k, v) = (
            randn(&[1, 5, 11, 4], 1),
            randn(&[1, 5, 11, 4], 2),
            randn(&[1, 5, 11, 4], 3),
        );
        let got = attention(&q, &k, &v).unwrap();
        let (qt, kt, vt) = (
            q.transpose(1, 2).unwrap(),
            k.transpose(1, 2).unwrap(),
            v.transpose(1, 2).unwrap(),
        );
        let scores = (qt
            .contiguous()
            .unwrap()
            .matmul(&kt.contiguous().unwrap().t().unwrap())
            .unwrap()
            * 0.5)
            .unwrap();
        let probs = candle_nn::ops::softmax_last_dim(&scores).unwrap();
        let want = probs
            .matmul(&vt.contiguous().unwrap())
            .unwrap()
            .transpose(1, 2)
            .unwrap();
        assert!(max_abs_diff(&got, &want) < 1e-5);
    }

    #[test]
    fn swiglu_is_silu_of_first_half_times_second() {
        let h = randn(&[3, 8], 4);
        let got = swiglu(&h).unwrap();
        let a = h.narrow(1, 0, 4).unwrap();
        let b = h.narrow(1, 4, 4).unwrap();
        let silu = (&a * candle_nn::ops::sigmoid(&a).unwrap()).unwrap();
        assert!(max_abs_diff(&got, &(silu * b).unwrap()) < 1e-6);
    }

    #[test]
    fn rope_rotates_pairs_by_angle() {
        let x = randn(&[1, 2, 1, 4], 5);
        let angles = Tensor::new(&[[0.0f32, 0.5], [1.0, -2.0]], &Device::Cpu).unwrap();
        let rope = Rope::new(angles.cos().unwrap(), angles.sin().unwrap()).unwrap();
        let got = apply_rope(&x, &rope)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let xs = x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let theta = [0.0f32, 0.5, 1.0, -2.0];
        for (pair, t) in theta.iter().enumerate() {
            let (a, b) = (xs[2 * pair], xs[2 * pair + 1]);
            assert!((got[2 * pair] - (a * t.cos() - b * t.sin())).abs() < 1e-6);
            assert!((got[2 * pair + 1] - (a * t.sin() + b * t.cos())).abs() < 1e-6);
        }
    }

    #[test]
    fn gated_residual_adds_gated_normed_branch() {
        let x = randn(&[2, 8], 6);
        let branch = randn(&[2, 8], 7);
        let w = randn(&[8], 8);
        let gate = randn(&[8], 9);
        let got = gated_residual_norm(&x, &branch, &w, Some(&gate), 1e-6).unwrap();
        let normed = candle_nn::ops::rms_norm_slow(&branch, &w, 1e-6).unwrap();
        let want = (&x + normed.broadcast_mul(&gate).unwrap()).unwrap();
        assert!(max_abs_diff(&got, &want) < 1e-5);
    }
}
