//! Cheap live previews: the 16-channel latents projected linearly to RGB, one pixel per latent
//! (1/8 of the image size), no VAE. Shows the layout of the image forming, not its true colours,
//! unless a fitted table is given with [`LatentProjection::new`].

use candle_core::{DType, Tensor};

use super::{Result, RgbImage};

/// Number of latent channels of the Z-Image (Flux) VAE.
pub const LATENT_CHANNELS: usize = 16;

/// A linear map latent channels → RGB, then a contrast stretch over the image.
#[derive(Debug, Clone, PartialEq)]
pub struct LatentProjection {
    /// `weights[c]` = (r, g, b) contribution of channel `c`.
    weights: Vec<[f32; 3]>,
    bias: [f32; 3],
}

impl Default for LatentProjection {
    /// Each output colour averages a different third of the channels, with alternating signs so
    /// the three colours decorrelate; the stretch afterwards maps the result to the full range.
    fn default() -> Self {
        let weights = (0..LATENT_CHANNELS)
            .map(|c| {
                let sign = if (c / 3) % 2 == 0 { 1.0 } else { -1.0 };
                let mut row = [0.0f32; 3];
                row[c % 3] = sign / (LATENT_CHANNELS as f32 / 3.0);
                row
            })
            .collect();
        Self {
            weights,
            bias: [0.0; 3],
        }
    }
}

impl LatentProjection {
    /// A projection from a fitted table (one row per channel) and bias.
    pub fn new(weights: Vec<[f32; 3]>, bias: [f32; 3]) -> Self {
        Self { weights, bias }
    }

    /// Projects latents `[1, C, h, w]` (any float dtype) to an RGB image at most `max_side`
    /// pixels on its longer side (strided subsampling), stretched to 0..=255 by the 1st/99th
    /// percentile so early noisy steps stay visible.
    pub fn project(&self, latents: &Tensor, max_side: usize) -> Result<RgbImage> {
        let (channels, height, width) = match latents.dims() {
            [1, c, h, w] => (*c, *h, *w),
            [c, h, w] => (*c, *h, *w),
            other => {
                return Err(super::ModelError::Compute(format!(
                    "preview expects latents [1, C, h, w], got {other:?}"
                )))
            }
        };
        let channels = channels.min(self.weights.len());
        let data: Vec<f32> = latents.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
        let stride = height.max(width).div_ceil(max_side.max(1)).max(1);
        let (out_h, out_w) = (height.div_ceil(stride), width.div_ceil(stride));
        let mut rgb = Vec::with_capacity(out_h * out_w * 3);
        for y in (0..height).step_by(stride) {
            for x in (0..width).step_by(stride) {
                let mut pixel = self.bias;
                for (c, row) in self.weights.iter().enumerate().take(channels) {
                    let value = data[(c * height + y) * width + x];
                    for k in 0..3 {
                        pixel[k] += row[k] * value;
                    }
                }
                rgb.extend_from_slice(&pixel);
            }
        }
        Ok(RgbImage {
            width: out_w as u32,
            height: out_h as u32,
            pixels: stretch(&rgb),
        })
    }
}

/// Maps values to 0..=255 between their 1st and 99th percentile.
fn stretch(values: &[f32]) -> Vec<u8> {
    let mut sorted: Vec<f32> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if sorted.is_empty() {
        return vec![0; values.len()];
    }
    sorted.sort_by(f32::total_cmp);
    let low = sorted[sorted.len() / 100];
    let high = sorted[(sorted.len() * 99 / 100).min(sorted.len() - 1)];
    let scale = if high > low { 255.0 / (high - low) } else { 0.0 };
    values
        .iter()
        .map(|v| {
            if v.is_finite() {
                ((v - low) * scale).clamp(0.0, 255.0) as u8
            } else {
                0
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn projects_and_downscales() {
        let latents = Tensor::randn(0f32, 1.0, (1, 16, 64, 32), &Device::Cpu).unwrap();
        let image = LatentProjection::default().project(&latents, 16).unwrap();
        assert_eq!((image.width, image.height), (8, 16));
        assert_eq!(image.pixels.len(), 8 * 16 * 3);
        assert!(image.pixels.iter().any(|&p| p > 200) && image.pixels.iter().any(|&p| p < 50));
    }

    #[test]
    fn constant_latents_do_not_divide_by_zero() {
        let latents = Tensor::zeros((1, 16, 4, 4), DType::F32, &Device::Cpu).unwrap();
        let image = LatentProjection::default().project(&latents, 64).unwrap();
        assert!(image.pixels.iter().all(|&p| p == 0));
        assert!(LatentProjection::default()
            .project(&Tensor::zeros(4, DType::F32, &Device::Cpu).unwrap(), 8)
            .is_err());
    }
}
