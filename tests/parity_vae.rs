//! Parity of the VAE decode against diffusers 0.42.1 (tests/fixtures, see its README): latent
//! unscaling, decoder output within relative error 1e-4, the uint8 image equal to the pipeline's
//! PIL output; and tiled vs untiled decode PSNR ≥ 40 dB on the tiny VAE.

use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use zimage_tui::model::pipeline::LatentDecoder;
use zimage_tui::model::vae::{image_to_rgb8, DecodeMode, TileOptions, VaeConfig, VaeDecoder};

mod common;
use common::{assert_u8_matches, fixtures, reference, reference_image, rel_err};

const MAX_REL_ERR: f32 = 1e-4;

fn tiny_vae() -> VaeDecoder {
    let dir = fixtures().join("tiny/vae");
    let cfg = VaeConfig::from_file(&dir.join("config.json")).expect("config parses");
    let weights = dir.join("diffusion_pytorch_model.safetensors");
    // SAFETY: the fixture file is not modified while mapped.
    let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[weights], DType::F32, &Device::Cpu) }
        .expect("weights map");
    VaeDecoder::new(vb, &cfg).expect("decoder builds")
}

#[test]
fn scaling_factors_come_from_the_config() {
    let vae = tiny_vae();
    assert_eq!(vae.config().scaling_factor, 0.3611);
    assert_eq!(vae.config().shift_factor, 0.1159);
    let tensors = reference();
    let z = vae.unscale_latents(&tensors["vae.latents"]).expect("unscales");
    let err = rel_err(&z, &tensors["vae.z"]);
    assert!(err <= 1e-6, "vae.z rel err {err:e}");
}

#[test]
fn decoder_output_matches_diffusers() {
    let vae = tiny_vae();
    let tensors = reference();
    let decoded = vae.decode_raw(&tensors["vae.z"]).expect("decodes");
    let err = rel_err(&decoded, &tensors["vae.decoded"]);
    println!("vae.decoded rel err {err:.3e}");
    assert!(err <= MAX_REL_ERR, "vae.decoded rel err {err:e}");
    // The pipeline-level call (unscale + full decode) gives the same.
    let via_pipeline = vae
        .decode(&tensors["vae.latents"], DecodeMode::Full)
        .expect("decodes");
    assert!(rel_err(&via_pipeline, &tensors["vae.decoded"]) <= MAX_REL_ERR);
}

/// Postprocessing on diffusers' own decoder output must be bit-exact; on ours, a value may round
/// the other way only where the reference sits within float noise of a .5 boundary.
#[test]
fn rgb8_image_matches_the_pipelines_pil_output() {
    let vae = tiny_vae();
    let tensors = reference();
    let (reference_u8, reference_unit) = reference_image(&tensors, "vae.image");

    let exact = image_to_rgb8(&tensors["vae.decoded"]).expect("postprocesses");
    assert_eq!((exact.width, exact.height), (48, 80));
    assert_eq!(
        exact.pixels, reference_u8,
        "postprocess of the reference decoder output"
    );

    let ours = vae
        .decode_to_rgb(&tensors["vae.latents"], DecodeMode::Full)
        .expect("decodes");
    let off_by_one = assert_u8_matches(&ours.pixels, &reference_u8, &reference_unit);
    println!(
        "vae.image_u8: {off_by_one} of {} values differ by 1 at a .5 boundary",
        reference_u8.len()
    );
}

/// The whole pipeline's last latents through our VAE give the pipeline's image, via the trait the
/// pipeline calls.
#[test]
fn pipeline_latents_decode_to_the_pipelines_image() {
    let vae = tiny_vae().with_mode(DecodeMode::Full);
    let tensors = reference();
    let latents = &tensors["pipe.latents.7"];
    let decoded = vae.decode(latents, DecodeMode::Full).expect("decodes");
    let err = rel_err(&decoded, &tensors["pipe.decoded"]);
    println!("pipe.decoded rel err {err:.3e}");
    assert!(err <= MAX_REL_ERR, "pipe.decoded rel err {err:e}");
    let image = LatentDecoder::decode(&vae, latents).expect("decodes");
    assert_eq!(vae.spatial_scale(), 8);
    assert_eq!((image.width, image.height), (96, 64));
    let (reference_u8, reference_unit) = reference_image(&tensors, "pipe.image");
    let off_by_one = assert_u8_matches(&image.pixels, &reference_u8, &reference_unit);
    println!(
        "pipe.image_u8: {off_by_one} of {} values differ by 1 at a .5 boundary",
        reference_u8.len()
    );
}

/// Deterministic standard normal values (xorshift + Box-Muller); candle's CPU randn is not seeded.
fn normal_latents(shape: (usize, usize, usize, usize), seed: u64) -> Tensor {
    let mut state = seed.max(1);
    let mut uniform = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        ((state >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    };
    let count = shape.0 * shape.1 * shape.2 * shape.3;
    let values: Vec<f32> = (0..count)
        .map(|_| {
            let (u, v) = (uniform(), uniform());
            ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
        })
        .collect();
    Tensor::from_vec(values, shape, &Device::Cpu).expect("tensor")
}

/// PSNR in dB of two decoder outputs after the pipeline's `(x/2 + 0.5).clamp(0, 1)`.
fn psnr(a: &Tensor, b: &Tensor) -> f64 {
    let unit = |t: &Tensor| {
        t.affine(0.5, 0.5)
            .and_then(|t| t.clamp(0f32, 1f32))
            .expect("unit")
    };
    let mse = (unit(a) - unit(b))
        .and_then(|d| d.sqr())
        .and_then(|d| d.mean_all())
        .expect("mse");
    let mse = mse.to_scalar::<f32>().expect("scalar") as f64;
    10.0 * (1.0 / mse.max(1e-20)).log10()
}

#[test]
fn tiled_decode_is_close_to_untiled() {
    let vae = tiny_vae();
    // 256×256 px as 3×3 tiles of 16 latent px (128 px) overlapping by 8 latent px.
    let latents = normal_latents((1, 16, 32, 32), 7);
    let full = vae.decode(&latents, DecodeMode::Full).expect("full decode");
    let tiles = TileOptions {
        tile: 16,
        overlap: 8,
        stats_passes: 1,
    };
    let tiled = vae
        .decode(&latents, DecodeMode::Tiled(tiles))
        .expect("tiled decode");
    assert_eq!(tiled.dims(), full.dims());
    let db = psnr(&tiled, &full);
    println!("tiled (tile 16, overlap 8, 1 statistics pass) vs untiled: PSNR {db:.2} dB");
    assert!(db >= 40.0, "PSNR {db:.2} dB");
}

#[test]
fn auto_mode_tiles_only_above_its_threshold() {
    let vae = tiny_vae();
    let latents = normal_latents((1, 16, 12, 10), 11);
    let tiles = TileOptions {
        tile: 8,
        overlap: 2,
        stats_passes: 0,
    };
    let full = vae.decode(&latents, DecodeMode::Full).expect("full decode");
    let tiled = vae
        .decode(&latents, DecodeMode::Tiled(tiles))
        .expect("tiled decode");
    assert!(psnr(&tiled, &full) < 100.0, "these tiles must change the result");
    let auto = vae
        .decode(&latents, DecodeMode::Auto { above: 11, tiles })
        .expect("auto decode");
    assert!(psnr(&auto, &tiled) > 100.0, "above the threshold auto must tile");
    let auto = vae
        .decode(&latents, DecodeMode::Auto { above: 12, tiles })
        .expect("auto decode");
    assert!(psnr(&auto, &full) > 100.0, "at the threshold auto must not tile");
}

/// Tiled vs untiled on the REAL VAE at 1024² (issue 5: PSNR ≥ 40 dB). Needs a checkpoint:
/// `ZIMAGE_MODEL=/path/to/Z-Image-Turbo cargo test --release --test parity_vae -- --ignored`
/// (with `--features cuda` it runs on GPU 0 in bf16).
#[test]
#[ignore = "needs a real checkpoint in $ZIMAGE_MODEL"]
fn tiled_decode_real_vae_1024() {
    let Some(dir) = std::env::var_os("ZIMAGE_MODEL").map(PathBuf::from) else {
        panic!("set ZIMAGE_MODEL to a Z-Image-Turbo directory");
    };
    let device = Device::cuda_if_available(0).expect("device");
    let dtype = if device.is_cuda() { DType::BF16 } else { DType::F32 };
    let cfg = VaeConfig::from_file(&dir.join("vae/config.json")).expect("config parses");
    let weights = dir.join("vae/diffusion_pytorch_model.safetensors");
    // SAFETY: the checkpoint is not modified while mapped.
    let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[weights], dtype, &device) }.expect("weights map");
    let vae = VaeDecoder::new(vb, &cfg).expect("decoder builds");
    // Smooth random latents (a real image's latents are spatially correlated): noise upsampled 4×.
    let coarse = normal_latents((1, 16, 32, 32), 3)
        .to_device(&device)
        .expect("device");
    let latents = coarse.upsample_nearest2d(128, 128).expect("upsample");
    let latents = (latents
        + normal_latents((1, 16, 128, 128), 5)
            .to_device(&device)
            .expect("device")
            * 0.3)
        .expect("latents");
    let full = vae.decode(&latents, DecodeMode::Full).expect("full decode");
    let mut default_db = 0.0;
    for tiles in [
        TileOptions::default(),
        TileOptions {
            stats_passes: 0,
            ..TileOptions::default()
        },
        TileOptions {
            tile: 96,
            overlap: 24,
            stats_passes: 1,
        },
    ] {
        let start = std::time::Instant::now();
        let tiled = vae
            .decode(&latents, DecodeMode::Tiled(tiles))
            .expect("tiled decode");
        let db = psnr(&tiled, &full);
        println!(
            "{tiles:?}: PSNR {db:.2} dB, {:.3}s",
            start.elapsed().as_secs_f64()
        );
        if tiles == TileOptions::default() {
            default_db = db;
        }
    }
    assert!(default_db >= 40.0, "default tiles: PSNR {default_db:.2} dB");
}

/// The bf16 path (the CUDA default) runs and stays near the f32 reference: issue 5's bound 2e-2.
#[test]
fn bf16_decode_is_close_to_the_f32_reference() {
    let dir = fixtures().join("tiny/vae");
    let cfg = VaeConfig::from_file(&dir.join("config.json")).expect("config parses");
    let weights = dir.join("diffusion_pytorch_model.safetensors");
    // SAFETY: the fixture file is not modified while mapped.
    let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[weights], DType::BF16, &Device::Cpu) }
        .expect("weights map");
    let vae = VaeDecoder::new(vb, &cfg).expect("decoder builds");
    let tensors = reference();
    let decoded = vae
        .decode(&tensors["vae.latents"], DecodeMode::Full)
        .expect("decodes");
    let err = rel_err(&decoded, &tensors["vae.decoded"]);
    println!("bf16 vae.decoded rel err {err:.3e}");
    assert!(err <= 2e-2, "bf16 vae.decoded rel err {err:e}");
}
