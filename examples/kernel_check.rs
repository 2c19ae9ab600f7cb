//! GPU check of the fused kernels against the reference path (f32 on the same device), and their
//! timings at Z-Image-Turbo's 1024² shapes. A measurement program, not a test:
//!   cargo build --release --features cudnn --example kernel_check
//!   kernel_check [tokens]            # default 4128 = 64*64 image tokens + 32 caption tokens

use std::time::Instant;

use candle_core::{DType, Device, Result, Tensor};
use zimage_tui::model::fused::{self, Rope};

const DIM: usize = 3840;
const HEADS: usize = 30;
const HIDDEN: usize = 10240;

fn rel_err(got: &Tensor, want: &Tensor) -> Result<f32> {
    let got = got.to_dtype(DType::F32)?;
    let want = want.to_dtype(DType::F32)?;
    let diff = (&got - &want)?.sqr()?.sum_all()?.to_scalar::<f32>()?.sqrt();
    let norm = want.sqr()?.sum_all()?.to_scalar::<f32>()?.sqrt();
    let finite = got.sum_all()?.to_scalar::<f32>()?.is_finite();
    Ok(if finite { diff / norm.max(1e-30) } else { f32::NAN })
}

fn median_ms(dev: &Device, runs: usize, mut f: impl FnMut() -> Result<Tensor>) -> Result<f64> {
    for _ in 0..3 {
        f()?;
    }
    dev.synchronize()?;
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let start = Instant::now();
        f()?;
        dev.synchronize()?;
        times.push(start.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(|a, b| a.total_cmp(b));
    Ok(times[runs / 2])
}

fn row(name: &str, err: f32, ms: f64, ref_ms: f64) {
    println!(
        "{name:<26} rel_err {err:>9.2e}   fused {ms:>8.3} ms   reference {ref_ms:>8.3} ms   x{:.1}",
        ref_ms / ms
    );
}

fn main() -> Result<()> {
    let tokens: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(4128);
    let dev = Device::new_cuda(0)?;
    println!(
        "kernel_check: tokens {tokens}, dim {DIM}, heads {HEADS}, hidden {HIDDEN}, fused kernels: {}",
        fused::uses_fused_kernels(&dev, DType::BF16)
    );
    let bf = |t: Tensor| t.to_dtype(DType::BF16);
    let x32 = Tensor::randn(0f32, 1.0, (1, tokens, DIM), &dev)?;
    let b32 = Tensor::randn(0f32, 3.0, (1, tokens, DIM), &dev)?;
    let w = Tensor::randn(1f32, 0.1, DIM, &dev)?;
    let m = Tensor::randn(1f32, 0.2, DIM, &dev)?;
    let (x, b) = (bf(x32.clone())?, bf(b32.clone())?);

    let want = fused::rms_norm_modulated(&x.to_dtype(DType::F32)?, &w, Some(&m), 1e-5)?;
    let got = fused::rms_norm_modulated(&x, &w, Some(&m), 1e-5)?;
    let t = median_ms(&dev, 20, || fused::rms_norm_modulated(&x, &w, Some(&m), 1e-5))?;
    let tr = median_ms(&dev, 20, || {
        candle_nn::ops::rms_norm(&x, &w.to_dtype(DType::BF16)?, 1e-5)?
            .broadcast_mul(&m.to_dtype(DType::BF16)?)
    })?;
    row("rms_norm_modulated", rel_err(&got, &want)?, t, tr);

    let want = fused::gated_residual_norm(
        &x.to_dtype(DType::F32)?,
        &b.to_dtype(DType::F32)?,
        &w,
        Some(&m),
        1e-5,
    )?;
    let got = fused::gated_residual_norm(&x, &b, &w, Some(&m), 1e-5)?;
    let t = median_ms(&dev, 20, || {
        fused::gated_residual_norm(&x, &b, &w, Some(&m), 1e-5)
    })?;
    let tr = median_ms(&dev, 20, || {
        let n = candle_nn::ops::rms_norm(&b, &w.to_dtype(DType::BF16)?, 1e-5)?;
        &x + n.broadcast_mul(&m.to_dtype(DType::BF16)?)?
    })?;
    row("gated_residual_norm", rel_err(&got, &want)?, t, tr);

    let h = bf(Tensor::randn(0f32, 2.0, (1, tokens, 2 * HIDDEN), &dev)?)?;
    let want = fused::swiglu(&h.to_dtype(DType::F32)?)?;
    let got = fused::swiglu(&h)?;
    let t = median_ms(&dev, 20, || fused::swiglu(&h))?;
    let tr = median_ms(&dev, 20, || {
        let a = h.narrow(2, 0, HIDDEN)?;
        candle_nn::ops::silu(&a)? * h.narrow(2, HIDDEN, HIDDEN)?
    })?;
    row("swiglu", rel_err(&got, &want)?, t, tr);

    let qkv = bf(Tensor::randn(0f32, 1.0, (1, tokens, 3 * DIM), &dev)?)?;
    let qn = Tensor::randn(1f32, 0.1, 128, &dev)?;
    let kn = Tensor::randn(1f32, 0.1, 128, &dev)?;
    let angles = Tensor::randn(0f32, 3.0, (tokens, 64), &dev)?;
    let rope = Rope::new(angles.cos()?, angles.sin()?)?;
    let norms = fused::QkNorms::new(qn.clone(), kn.clone())?;
    let want = fused::self_attention(&qkv.to_dtype(DType::F32)?, HEADS, &norms, &rope, 1e-5)?;
    let got = fused::self_attention(&qkv, HEADS, &norms, &rope, 1e-5)?;
    let t = median_ms(&dev, 10, || {
        fused::self_attention(&qkv, HEADS, &norms, &rope, 1e-5)
    })?;
    let bf_rope = Rope::new(angles.cos()?, angles.sin()?)?;
    let tr = median_ms(&dev, 3, || {
        let q = qkv.narrow(2, 0, DIM)?.reshape((1, tokens, HEADS, 128))?;
        let k = qkv.narrow(2, DIM, DIM)?.reshape((1, tokens, HEADS, 128))?;
        let v = qkv.narrow(2, 2 * DIM, DIM)?.reshape((1, tokens, HEADS, 128))?;
        let q = fused::apply_rope(
            &candle_nn::ops::rms_norm(&q, &qn.to_dtype(DType::BF16)?, 1e-5)?,
            &bf_rope,
        )?;
        let k = fused::apply_rope(
            &candle_nn::ops::rms_norm(&k, &kn.to_dtype(DType::BF16)?, 1e-5)?,
            &bf_rope,
        )?;
        fused::attention(&q, &k, &v)
    })?;
    row("self_attention (qk+rope+sdpa)", rel_err(&got, &want)?, t, tr);
    let flops = 4.0 * (tokens * tokens) as f64 * DIM as f64;
    println!("  attention {:.0} TFLOP/s", flops / (t * 1e-3) / 1e12);

    let wqkv = bf(Tensor::randn(0f32, 0.02, (3 * DIM, DIM), &dev)?)?;
    let x2 = x.reshape((tokens, DIM))?;
    let t = median_ms(&dev, 20, || x2.matmul(&wqkv.t()?))?;
    println!(
        "gemm {tokens}x{DIM}x{}: {t:.3} ms, {:.0} TFLOP/s",
        3 * DIM,
        2.0 * (tokens * DIM * 3 * DIM) as f64 / (t * 1e-3) / 1e12
    );
    Ok(())
}
