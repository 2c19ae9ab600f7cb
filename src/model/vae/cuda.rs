//! The decoder's channels-last fast path on CUDA (bf16): cuDNN graph convolutions with the bias and
//! residual adds fused (kernels/cudnn_conv.cpp), and GroupNorm (+ SiLU) and the 2x upsample as
//! single kernels (kernels/vae_nhwc.cu). Every tensor here is `[n, h, w, c]`, contiguous.

use std::ffi::c_void;

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{DevicePtr, DevicePtrMut, LaunchConfig, PushKernelArg};
use candle_core::cuda_backend::{CudaDevice, CudaStorage, WrapErr};
use candle_core::{bail, CustomOp1, CustomOp2, CustomOp3, DType, Layout, Result, Shape, Tensor};
use half::bf16;

use crate::model::fused::cuda_support::{contiguous_rows, cuda_only_cpu_fwd};

const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/vae_nhwc.ptx"));
const MODULE: &str = "zimage_vae_nhwc";
const THREADS: u32 = 256;

fn elementwise_config(total: u64) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (total.div_ceil(THREADS as u64).clamp(1, 132 * 32) as u32, 1, 1),
        block_dim: (THREADS, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// `[n, h, w, c]` of a channels-last layout, checking what every kernel here needs.
fn nhwc(layout: &Layout, what: &str) -> Result<(usize, usize, usize, usize)> {
    let (n, h, w, c) = layout.shape().dims4()?;
    if c % 8 != 0 || c / 8 > THREADS as usize {
        bail!(
            "{what}: {c} channels (must be a multiple of 8, at most {})",
            8 * THREADS
        );
    }
    Ok((n, h, w, c))
}

/// A convolution in channels-last bf16 with its weights as `[k, side, side, c]` followed by the
/// bias `[k]` in one buffer. Output channels are padded to a multiple of 8 at load (conv_out has
/// 3); `forward` returns all `k_padded` of them, the caller narrows.
pub(super) struct ChannelsLastConv {
    weights_and_bias: Tensor,
    out_channels: usize,
    in_channels: usize,
    side: usize,
}

impl ChannelsLastConv {
    /// From candle's `[k, c, side, side]` weight and `[k]` bias.
    pub fn new(weight: &Tensor, bias: Option<&Tensor>) -> Result<Self> {
        let (k, c, side, side_w) = weight.dims4()?;
        if side != side_w || side % 2 == 0 {
            bail!("channels-last conv: kernel {side}x{side_w} must be square and odd");
        }
        if c % 8 != 0 {
            bail!("channels-last conv: {c} input channels (must be a multiple of 8)");
        }
        let padded = k.div_ceil(8) * 8;
        let krsc = weight.to_dtype(DType::BF16)?.permute((0, 2, 3, 1))?;
        let krsc = krsc.pad_with_zeros(0, 0, padded - k)?.flatten_all()?;
        let bias = match bias {
            Some(b) => b.to_dtype(DType::BF16)?,
            None => Tensor::zeros(k, DType::BF16, weight.device())?,
        };
        let bias = bias.pad_with_zeros(0, 0, padded - k)?;
        Ok(Self {
            weights_and_bias: Tensor::cat(&[krsc, bias], 0)?.contiguous()?,
            out_channels: padded,
            in_channels: c,
            side,
        })
    }

    /// Channels this convolution writes (its output channels rounded up to a multiple of 8).
    pub fn out_channels(&self) -> usize {
        self.out_channels
    }

    /// `conv(xs) + bias [+ residual]`, `xs` `[n, h, w, c]` → `[n, h, w, k_padded]`.
    pub fn forward(&self, xs: &Tensor, residual: Option<&Tensor>) -> Result<Tensor> {
        let (n, h, w, c) = xs.dims4()?;
        if c != self.in_channels {
            bail!(
                "channels-last conv: input has {c} channels, weights {}",
                self.in_channels
            );
        }
        let dims = [n, c, h, w, self.out_channels, self.side, self.side / 2].map(|d| d as i64);
        let wanted = if residual.is_some() {
            FUSED_BIAS_RESIDUAL
        } else {
            FUSED_BIAS
        };
        let op = ConvOp::prepare(dims, wanted)?;
        let fused = op.fused;
        let xs = xs.contiguous()?;
        let mut out = match residual {
            Some(r) if fused == FUSED_BIAS_RESIDUAL => {
                xs.apply_op3_no_bwd(&self.weights_and_bias, &r.contiguous()?, &op)?
            }
            _ => xs.apply_op2_no_bwd(&self.weights_and_bias, &op)?,
        };
        // What cuDNN cannot fuse for a shape is added here (it fuses both for every decoder
        // shape on sm90; this keeps other cards correct).
        if fused < FUSED_BIAS {
            let weight_len = self.weights_and_bias.dim(0)? - self.out_channels;
            let bias = self.weights_and_bias.narrow(0, weight_len, self.out_channels)?;
            out = out.broadcast_add(&bias)?;
        }
        if let (Some(r), true) = (residual, fused < FUSED_BIAS_RESIDUAL) {
            out = (out + r)?;
        }
        Ok(out)
    }
}

mod ffi {
    use std::ffi::c_void;

    extern "C" {
        #[allow(clippy::too_many_arguments)]
        pub fn zimage_conv_prepare(
            n: i64,
            c: i64,
            h: i64,
            w: i64,
            k: i64,
            side: i64,
            pad: i64,
            wanted: i32,
            workspace: *mut i64,
        ) -> i32;
        #[allow(clippy::too_many_arguments)]
        pub fn zimage_conv_run(
            stream: *mut c_void,
            x: *const c_void,
            w: *const c_void,
            bias: *const c_void,
            residual: *const c_void,
            y: *mut c_void,
            workspace: *mut c_void,
            n: i64,
            c: i64,
            h: i64,
            wd: i64,
            k: i64,
            side: i64,
            pad: i64,
            wanted: i32,
        ) -> i32;
        pub fn zimage_conv_last_error() -> *const std::os::raw::c_char;
    }
}

fn conv_error(what: &str) -> candle_core::Error {
    // SAFETY: the shim returns a pointer to its own NUL-terminated static buffer.
    let detail = unsafe { std::ffi::CStr::from_ptr(ffi::zimage_conv_last_error()) };
    candle_core::Error::Msg(format!("cuDNN convolution {what}: {}", detail.to_string_lossy()))
}

/// One convolution call; `dims` = n, c, h, w, k, side, padding as the shim takes them. `fused`
/// and `workspace` are what the shape's cuDNN graph does and needs (asked once per call).
struct ConvOp {
    dims: [i64; 7],
    wanted: i32,
    fused: i32,
    workspace: usize,
}

const FUSED_BIAS: i32 = 1;
const FUSED_BIAS_RESIDUAL: i32 = 2;

impl ConvOp {
    /// Builds (once per shape, cached by the shim) the cuDNN graph and records what it fuses
    /// and its workspace bytes.
    fn prepare(dims: [i64; 7], wanted: i32) -> Result<Self> {
        let [n, c, h, w, k, side, pad] = dims;
        let mut workspace = 0i64;
        // SAFETY: plain values and an out-pointer to a live local.
        let fused = unsafe { ffi::zimage_conv_prepare(n, c, h, w, k, side, pad, wanted, &mut workspace) };
        if fused < 0 {
            return Err(conv_error("graph"));
        }
        Ok(Self {
            dims,
            wanted,
            fused,
            workspace: workspace.max(0) as usize,
        })
    }

    fn run(
        &self,
        x: &CudaStorage,
        xl: &Layout,
        wb: &CudaStorage,
        wl: &Layout,
        residual: Option<(&CudaStorage, &Layout)>,
    ) -> Result<(CudaStorage, Shape)> {
        let dev: CudaDevice = x.device().clone();
        let [n, c, h, w, k, side, pad] = self.dims;
        let (x0, x1) = contiguous_rows(xl, "conv input")?;
        let (w0, w1) = contiguous_rows(wl, "conv weights")?;
        let weight_len = (k * side * side * c) as usize;
        if x1 - x0 != (n * h * w * c) as usize || w1 - w0 != weight_len + k as usize {
            bail!(
                "conv: input {:?} or weights {:?} do not match {:?}",
                xl.shape(),
                wl.shape(),
                self.dims
            );
        }
        let r0 = match residual {
            Some((_, rl)) => {
                let (r0, r1) = contiguous_rows(rl, "conv residual")?;
                if r1 - r0 != (n * h * w * k) as usize {
                    bail!("conv residual {:?} does not match the output", rl.shape());
                }
                r0
            }
            None => 0,
        };
        let workspace = unsafe { dev.alloc::<u8>(self.workspace.max(1))? };
        let mut out = unsafe { dev.alloc::<bf16>((n * h * w * k) as usize)? };
        let stream = dev.cuda_stream();
        let elem = std::mem::size_of::<bf16>() as u64;
        // the pointer guards record stream events on drop: keep them inside this block so they
        // are gone before `out` moves into the result
        let status = {
            let (xp, _gx) = x.as_cuda_slice::<bf16>()?.device_ptr(&stream);
            let (wp, _gw) = wb.as_cuda_slice::<bf16>()?.device_ptr(&stream);
            let (wsp, _gws) = workspace.device_ptr(&stream);
            let (op, _go) = out.device_ptr_mut(&stream);
            let residual_slice = match residual {
                Some((r, _)) => Some(r.as_cuda_slice::<bf16>()?),
                None => None,
            };
            let residual_ptr = residual_slice.map(|r| r.device_ptr(&stream));
            let residual_addr = match &residual_ptr {
                Some((rp, _)) => (rp + r0 as u64 * elem) as *const c_void,
                None => std::ptr::null(),
            };
            let weights = wp + w0 as u64 * elem;
            // SAFETY: every pointer is a live device buffer of the size checked above, on `stream`.
            unsafe {
                ffi::zimage_conv_run(
                    stream.cu_stream() as *mut c_void,
                    (xp + x0 as u64 * elem) as *const c_void,
                    weights as *const c_void,
                    (weights + weight_len as u64 * elem) as *const c_void,
                    residual_addr,
                    op as *mut c_void,
                    wsp as *mut c_void,
                    n,
                    c,
                    h,
                    w,
                    k,
                    side,
                    pad,
                    self.wanted,
                )
            }
        };
        if status != 0 {
            return Err(conv_error("run"));
        }
        let shape = Shape::from_dims(&[n as usize, h as usize, w as usize, k as usize]);
        Ok((CudaStorage::wrap_cuda_slice(out, dev), shape))
    }
}

impl CustomOp2 for ConvOp {
    fn name(&self) -> &'static str {
        "zi-cudnn-conv-nhwc"
    }
    cuda_only_cpu_fwd!(CustomOp2);
    fn cuda_fwd(
        &self,
        x: &CudaStorage,
        xl: &Layout,
        wb: &CudaStorage,
        wl: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        self.run(x, xl, wb, wl, None)
    }
}

impl CustomOp3 for ConvOp {
    fn name(&self) -> &'static str {
        "zi-cudnn-conv-nhwc-residual"
    }
    cuda_only_cpu_fwd!(CustomOp3);
    fn cuda_fwd(
        &self,
        x: &CudaStorage,
        xl: &Layout,
        wb: &CudaStorage,
        wl: &Layout,
        r: &CudaStorage,
        rl: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        self.run(x, xl, wb, wl, Some((r, rl)))
    }
}

/// Per-image, per-group mean and (biased) variance of a channels-last tensor, f32 `[2, n, groups]`
/// (means, then variances).
pub(super) fn group_moments(xs: &Tensor, groups: usize) -> Result<Tensor> {
    xs.contiguous()?.apply_op1_no_bwd(&GroupMoments { groups })
}

struct GroupMoments {
    groups: usize,
}

impl CustomOp1 for GroupMoments {
    fn name(&self) -> &'static str {
        "zi-group-moments-nhwc"
    }
    cuda_only_cpu_fwd!(CustomOp1);
    fn cuda_fwd(&self, x: &CudaStorage, xl: &Layout) -> Result<(CudaStorage, Shape)> {
        let dev = x.device().clone();
        let (n, h, w, c) = nhwc(xl, "group norm input")?;
        let groups = self.groups;
        if groups == 0 || c % groups != 0 {
            bail!("group norm: {groups} groups do not divide {c} channels");
        }
        let (x0, x1) = contiguous_rows(xl, "group norm input")?;
        let xs = x.as_cuda_slice::<bf16>()?.slice(x0..x1);
        let pixels = (h * w) as i64;
        let pixel_lanes = THREADS as usize / (c / 8);
        // ~128 pixels per thread: f32 sums stay short, enough blocks to fill the GPU
        let pixels_per_block = (pixel_lanes * 128) as i64;
        let blocks = (pixels as u64).div_ceil(pixels_per_block as u64).max(1) as u32;
        let partials = unsafe { dev.alloc::<f64>(2 * n * blocks as usize * groups)? };
        let func = dev.get_or_load_custom_func("zi_group_partials_nhwc_bf16", MODULE, PTX)?;
        let mut b = func.builder();
        let (c_i, g_i) = (c as i32, groups as i32);
        b.arg(&xs)
            .arg(&partials)
            .arg(&pixels)
            .arg(&c_i)
            .arg(&g_i)
            .arg(&pixels_per_block);
        let cfg = LaunchConfig {
            grid_dim: (blocks, n as u32, 1),
            block_dim: (THREADS, 1, 1),
            shared_mem_bytes: (2 * c * std::mem::size_of::<f32>()) as u32,
        };
        unsafe { b.launch(cfg) }.w()?;

        let out = unsafe { dev.alloc::<f32>(2 * n * groups)? };
        let (mean, var) = (out.slice(0..n * groups), out.slice(n * groups..2 * n * groups));
        let func = dev.get_or_load_custom_func("zi_group_finish", MODULE, PTX)?;
        let mut b = func.builder();
        let (n_i, blocks_i, count) = (n as i32, blocks as i32, (pixels as usize * (c / groups)) as f64);
        b.arg(&partials)
            .arg(&mean)
            .arg(&var)
            .arg(&n_i)
            .arg(&g_i)
            .arg(&blocks_i)
            .arg(&count);
        unsafe { b.launch(elementwise_config((n * groups) as u64)) }.w()?;
        Ok((
            CudaStorage::wrap_cuda_slice(out, dev),
            Shape::from_dims(&[2, n, groups]),
        ))
    }
}

/// GroupNorm with the given moments (`[2, n, groups]` f32 from [`group_moments`] or whole-image
/// statistics), affine `[2, c]` f32 (weight, then bias), optionally followed by SiLU.
pub(super) fn group_norm(
    xs: &Tensor,
    moments: &Tensor,
    affine: &Tensor,
    eps: f32,
    silu: bool,
) -> Result<Tensor> {
    xs.contiguous()?
        .apply_op3_no_bwd(&moments.contiguous()?, affine, &GroupNormApply { eps, silu })
}

struct GroupNormApply {
    eps: f32,
    silu: bool,
}

impl CustomOp3 for GroupNormApply {
    fn name(&self) -> &'static str {
        "zi-group-norm-nhwc"
    }
    cuda_only_cpu_fwd!(CustomOp3);
    fn cuda_fwd(
        &self,
        x: &CudaStorage,
        xl: &Layout,
        m: &CudaStorage,
        ml: &Layout,
        a: &CudaStorage,
        al: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        let dev = x.device().clone();
        let (n, h, w, c) = nhwc(xl, "group norm input")?;
        let (x0, x1) = contiguous_rows(xl, "group norm input")?;
        let (m0, m1) = contiguous_rows(ml, "group norm moments")?;
        let (a0, a1) = contiguous_rows(al, "group norm affine")?;
        let stats = (m1 - m0) / 2;
        if (m1 - m0) % 2 != 0 || stats % n.max(1) != 0 || a1 - a0 != 2 * c {
            bail!(
                "group norm: moments {:?} / affine {:?} do not fit {:?}",
                ml.shape(),
                al.shape(),
                xl.shape()
            );
        }
        let groups = stats / n.max(1);
        if groups == 0 || c % groups != 0 {
            bail!("group norm: {groups} groups do not divide {c} channels");
        }
        let xs = x.as_cuda_slice::<bf16>()?.slice(x0..x1);
        let ms = m.as_cuda_slice::<f32>()?;
        let (mean, var) = (ms.slice(m0..m0 + stats), ms.slice(m0 + stats..m1));
        let aff = a.as_cuda_slice::<f32>()?;
        let (weight, bias) = (aff.slice(a0..a0 + c), aff.slice(a0 + c..a1));
        let out = unsafe { dev.alloc::<bf16>(x1 - x0)? };
        let func = dev.get_or_load_custom_func("zi_group_norm_nhwc_bf16", MODULE, PTX)?;
        let mut b = func.builder();
        let pixels = (h * w) as i64;
        let (c_i, g_i, eps, silu) = (c as i32, groups as i32, self.eps, self.silu as i32);
        let total_vecs = ((x1 - x0) / 8) as i64;
        b.arg(&xs)
            .arg(&mean)
            .arg(&var)
            .arg(&weight)
            .arg(&bias)
            .arg(&out)
            .arg(&pixels)
            .arg(&c_i)
            .arg(&g_i)
            .arg(&eps)
            .arg(&silu)
            .arg(&total_vecs);
        unsafe { b.launch(elementwise_config(total_vecs as u64)) }.w()?;
        Ok((CudaStorage::wrap_cuda_slice(out, dev), xl.shape().clone()))
    }
}

/// Nearest-neighbour 2x upsample of a channels-last tensor.
pub(super) fn upsample2x(xs: &Tensor) -> Result<Tensor> {
    xs.contiguous()?.apply_op1_no_bwd(&Upsample2x)
}

struct Upsample2x;

impl CustomOp1 for Upsample2x {
    fn name(&self) -> &'static str {
        "zi-upsample2x-nhwc"
    }
    cuda_only_cpu_fwd!(CustomOp1);
    fn cuda_fwd(&self, x: &CudaStorage, xl: &Layout) -> Result<(CudaStorage, Shape)> {
        let dev = x.device().clone();
        let (n, h, w, c) = nhwc(xl, "upsample input")?;
        let (x0, x1) = contiguous_rows(xl, "upsample input")?;
        let xs = x.as_cuda_slice::<bf16>()?.slice(x0..x1);
        let out = unsafe { dev.alloc::<bf16>(4 * (x1 - x0))? };
        let func = dev.get_or_load_custom_func("zi_upsample2x_nhwc_bf16", MODULE, PTX)?;
        let mut b = func.builder();
        let (h_i, w_i, c_i) = (h as i32, w as i32, c as i32);
        let total_vecs = (4 * (x1 - x0) / 8) as i64;
        b.arg(&xs)
            .arg(&out)
            .arg(&h_i)
            .arg(&w_i)
            .arg(&c_i)
            .arg(&total_vecs);
        unsafe { b.launch(elementwise_config(total_vecs as u64)) }.w()?;
        Ok((
            CudaStorage::wrap_cuda_slice(out, dev),
            Shape::from_dims(&[n, 2 * h, 2 * w, c]),
        ))
    }
}

/// The online-softmax steps of the VAE attention (kernels/vae_nhwc.cu, see there). `scores` is
/// `[1, n, len]` bf16; the statistics `[3, n]` f32 hold the new row max, the block's row sum of
/// exponentials and the factor for what was accumulated before.
pub(super) fn softmax_stats(scores: &Tensor, old_max: Option<&Tensor>, scale: f32) -> Result<Tensor> {
    let op = SoftmaxStats {
        scale,
        has_old: old_max.is_some(),
    };
    let scores = scores.contiguous()?;
    match old_max {
        Some(max) => scores.apply_op2_no_bwd(&max.contiguous()?, &op),
        None => scores.apply_op1_no_bwd(&op),
    }
}

/// `exp(scores·scale − new max)` in bf16, `[1, n, len]`.
pub(super) fn softmax_probs(scores: &Tensor, stats: &Tensor, scale: f32) -> Result<Tensor> {
    scores
        .contiguous()?
        .apply_op2_no_bwd(&stats.contiguous()?, &SoftmaxProbs { scale })
}

/// `acc · factor + pv` in f32 (`acc` None for the first block), `[1, n, c]`.
pub(super) fn softmax_accumulate(acc: Option<&Tensor>, pv: &Tensor, stats: &Tensor) -> Result<Tensor> {
    let pv = pv.contiguous()?;
    let stats = stats.contiguous()?;
    match acc {
        Some(acc) => acc
            .contiguous()?
            .apply_op3_no_bwd(&pv, &stats, &SoftmaxAccumulate),
        None => pv.apply_op2_no_bwd(&stats, &SoftmaxAccumulate),
    }
}

/// Rows and row length of a contiguous `[1, n, len]` tensor.
fn rows_of(layout: &Layout, what: &str) -> Result<(usize, usize, usize)> {
    let (b, n, len) = layout.shape().dims3()?;
    if b != 1 {
        bail!("{what}: batch {b} (the fused attention takes one image)");
    }
    let (start, _) = contiguous_rows(layout, what)?;
    Ok((n, len, start))
}

struct SoftmaxStats {
    scale: f32,
    has_old: bool,
}

impl SoftmaxStats {
    fn run(
        &self,
        s: &CudaStorage,
        sl: &Layout,
        old: Option<(&CudaStorage, &Layout)>,
    ) -> Result<(CudaStorage, Shape)> {
        let dev = s.device().clone();
        let (n, len, s0) = rows_of(sl, "attention scores")?;
        let ss = s.as_cuda_slice::<bf16>()?.slice(s0..s0 + n * len);
        let stats = unsafe { dev.alloc::<f32>(3 * n)? };
        let (rows, len_i, has_old) = (n as i32, len as i32, self.has_old as i32);
        let func = dev.get_or_load_custom_func("zi_softmax_stats_bf16", MODULE, PTX)?;
        let cfg = LaunchConfig {
            grid_dim: (n.div_ceil(8).max(1) as u32, 1, 1),
            block_dim: (256, 1, 1),
            shared_mem_bytes: 0,
        };
        match old {
            Some((m, ml)) => {
                let (m0, m1) = contiguous_rows(ml, "running max")?;
                if m1 - m0 != n {
                    bail!("running max holds {} rows, scores {n}", m1 - m0);
                }
                let ms = m.as_cuda_slice::<f32>()?.slice(m0..m1);
                let mut b = func.builder();
                b.arg(&ss)
                    .arg(&ms)
                    .arg(&stats)
                    .arg(&rows)
                    .arg(&len_i)
                    .arg(&self.scale)
                    .arg(&has_old);
                unsafe { b.launch(cfg) }.w()?;
            }
            None => {
                let null = 0u64;
                let mut b = func.builder();
                b.arg(&ss)
                    .arg(&null)
                    .arg(&stats)
                    .arg(&rows)
                    .arg(&len_i)
                    .arg(&self.scale)
                    .arg(&has_old);
                unsafe { b.launch(cfg) }.w()?;
            }
        }
        Ok((
            CudaStorage::wrap_cuda_slice(stats, dev),
            Shape::from_dims(&[3, n]),
        ))
    }
}

impl CustomOp1 for SoftmaxStats {
    fn name(&self) -> &'static str {
        "zi-softmax-stats"
    }
    cuda_only_cpu_fwd!(CustomOp1);
    fn cuda_fwd(&self, s: &CudaStorage, sl: &Layout) -> Result<(CudaStorage, Shape)> {
        self.run(s, sl, None)
    }
}

impl CustomOp2 for SoftmaxStats {
    fn name(&self) -> &'static str {
        "zi-softmax-stats-running"
    }
    cuda_only_cpu_fwd!(CustomOp2);
    fn cuda_fwd(
        &self,
        s: &CudaStorage,
        sl: &Layout,
        m: &CudaStorage,
        ml: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        self.run(s, sl, Some((m, ml)))
    }
}

struct SoftmaxProbs {
    scale: f32,
}

impl CustomOp2 for SoftmaxProbs {
    fn name(&self) -> &'static str {
        "zi-softmax-probs"
    }
    cuda_only_cpu_fwd!(CustomOp2);
    fn cuda_fwd(
        &self,
        s: &CudaStorage,
        sl: &Layout,
        st: &CudaStorage,
        stl: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        let dev = s.device().clone();
        let (n, len, s0) = rows_of(sl, "attention scores")?;
        let (t0, t1) = contiguous_rows(stl, "softmax statistics")?;
        if t1 - t0 != 3 * n {
            bail!("softmax statistics hold {} values, expected {}", t1 - t0, 3 * n);
        }
        let ss = s.as_cuda_slice::<bf16>()?.slice(s0..s0 + n * len);
        let stats = st.as_cuda_slice::<f32>()?.slice(t0..t1);
        let p = unsafe { dev.alloc::<bf16>(n * len)? };
        let func = dev.get_or_load_custom_func("zi_softmax_probs_bf16", MODULE, PTX)?;
        let mut b = func.builder();
        let len_i = len as i32;
        b.arg(&ss).arg(&stats).arg(&p).arg(&len_i).arg(&self.scale);
        let cfg = LaunchConfig {
            grid_dim: (n.max(1) as u32, len.div_ceil(THREADS as usize).max(1) as u32, 1),
            block_dim: (THREADS, 1, 1),
            shared_mem_bytes: 0,
        };
        unsafe { b.launch(cfg) }.w()?;
        Ok((CudaStorage::wrap_cuda_slice(p, dev), sl.shape().clone()))
    }
}

struct SoftmaxAccumulate;

impl SoftmaxAccumulate {
    fn run(
        &self,
        acc: Option<(&CudaStorage, &Layout)>,
        pv: &CudaStorage,
        pl: &Layout,
        st: &CudaStorage,
        stl: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        let dev = pv.device().clone();
        let (n, c, p0) = rows_of(pl, "attention block output")?;
        let (t0, t1) = contiguous_rows(stl, "softmax statistics")?;
        if t1 - t0 != 3 * n {
            bail!("softmax statistics hold {} values, expected {}", t1 - t0, 3 * n);
        }
        let pvs = pv.as_cuda_slice::<bf16>()?.slice(p0..p0 + n * c);
        let stats = st.as_cuda_slice::<f32>()?.slice(t0..t1);
        let out = unsafe { dev.alloc::<f32>(n * c)? };
        let func = dev.get_or_load_custom_func("zi_softmax_accumulate", MODULE, PTX)?;
        let (rows, channels) = (n as i32, c as i32);
        let cfg = LaunchConfig {
            grid_dim: (n.max(1) as u32, c.div_ceil(THREADS as usize).max(1) as u32, 1),
            block_dim: (THREADS, 1, 1),
            shared_mem_bytes: 0,
        };
        match acc {
            Some((a, al)) => {
                let (_, _, a0) = rows_of(al, "attention accumulator")?;
                if al.shape().dims() != pl.shape().dims() {
                    bail!("accumulator {:?} does not match {:?}", al.shape(), pl.shape());
                }
                let accs = a.as_cuda_slice::<f32>()?.slice(a0..a0 + n * c);
                let mut b = func.builder();
                b.arg(&accs)
                    .arg(&pvs)
                    .arg(&stats)
                    .arg(&out)
                    .arg(&rows)
                    .arg(&channels);
                unsafe { b.launch(cfg) }.w()?;
            }
            None => {
                let null = 0u64;
                let mut b = func.builder();
                b.arg(&null)
                    .arg(&pvs)
                    .arg(&stats)
                    .arg(&out)
                    .arg(&rows)
                    .arg(&channels);
                unsafe { b.launch(cfg) }.w()?;
            }
        }
        Ok((CudaStorage::wrap_cuda_slice(out, dev), pl.shape().clone()))
    }
}

impl CustomOp2 for SoftmaxAccumulate {
    fn name(&self) -> &'static str {
        "zi-softmax-accumulate-first"
    }
    cuda_only_cpu_fwd!(CustomOp2);
    fn cuda_fwd(
        &self,
        pv: &CudaStorage,
        pl: &Layout,
        st: &CudaStorage,
        stl: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        self.run(None, pv, pl, st, stl)
    }
}

impl CustomOp3 for SoftmaxAccumulate {
    fn name(&self) -> &'static str {
        "zi-softmax-accumulate"
    }
    cuda_only_cpu_fwd!(CustomOp3);
    fn cuda_fwd(
        &self,
        a: &CudaStorage,
        al: &Layout,
        pv: &CudaStorage,
        pl: &Layout,
        st: &CudaStorage,
        stl: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        self.run(Some((a, al)), pv, pl, st, stl)
    }
}
