//! GroupNorm whose statistics can come from the whole image while the image is decoded in tiles.
//!
//! Per-tile statistics are what makes naive tiled decoding differ from a full decode (measured on
//! the tiny VAE: PSNR depends on the tile size, hardly on the overlap). So a tiled decode can first
//! run "statistics passes" that record, for every GroupNorm, the moments of its input over each
//! tile's own core region (tiles' cores partition the image), combine them into whole-image
//! statistics, and then decode with those.

use candle_core::{DType, Tensor};
use candle_nn::VarBuilder;

use super::layout::ActivationLayout;

pub(super) struct GroupNorm {
    weight: Tensor,
    bias: Tensor,
    groups: usize,
    eps: f64,
    layout: ActivationLayout,
    /// Channels-last path: weight then bias in f32, `[2, c]`.
    #[cfg_attr(not(feature = "cudnn"), allow(dead_code))]
    affine: Option<Tensor>,
}

/// Mean and variance per (batch, group), shape `[b, groups, 1]`, f32.
#[derive(Clone)]
pub(super) struct GroupStats {
    mean: Tensor,
    var: Tensor,
}

/// Moments of one core region: mean, sum of squared deviations, element count.
struct Moments {
    mean: Tensor,
    m2: Tensor,
    count: f64,
}

/// A tile's core region in absolute latent coordinates (may be fractional), and the tile's origin
/// and size in latent pixels; mapped to every layer's resolution by its scale.
#[derive(Debug, Clone, Copy)]
pub(super) struct CoreRegion {
    pub origin: (usize, usize),
    pub size: (usize, usize),
    pub rows: (f64, f64),
    pub cols: (f64, f64),
}

/// Collects core-region moments of every norm's input over all tiles of a statistics pass.
#[derive(Default)]
pub(super) struct StatsRecorder {
    per_norm: Vec<Vec<Moments>>,
}

impl StatsRecorder {
    /// Whole-image statistics per norm (Chan et al.'s parallel combination of the moments).
    pub fn finish(self) -> candle_core::Result<Vec<GroupStats>> {
        self.per_norm.into_iter().map(|parts| combine(&parts)).collect()
    }
}

fn sum(parts: impl Iterator<Item = candle_core::Result<Tensor>>) -> candle_core::Result<Tensor> {
    let mut total: Option<Tensor> = None;
    for part in parts {
        let part = part?;
        total = Some(match total {
            Some(acc) => (acc + part)?,
            None => part,
        });
    }
    total.ok_or_else(|| candle_core::Error::Msg("tiled decode recorded no statistics for a norm".into()))
}

fn combine(parts: &[Moments]) -> candle_core::Result<GroupStats> {
    let total: f64 = parts.iter().map(|m| m.count).sum();
    let mean = sum(parts.iter().map(|m| &m.mean * (m.count / total)))?;
    let m2 = sum(parts
        .iter()
        .map(|m| (m.mean.broadcast_sub(&mean)?.sqr()? * m.count)? + &m.m2))?;
    Ok(GroupStats {
        var: (m2 / total)?,
        mean,
    })
}

/// What the GroupNorms of one forward pass do, in call order: statistics of their input (`fixed:
/// None`) or the given ones; and optionally record core-region moments.
#[derive(Default)]
pub(super) struct NormContext<'a> {
    fixed: Option<&'a [GroupStats]>,
    record: Option<(CoreRegion, &'a mut StatsRecorder)>,
    next: usize,
}

impl<'a> NormContext<'a> {
    /// Plain GroupNorm: statistics of the input itself.
    pub fn local() -> Self {
        Self::default()
    }

    pub fn new(fixed: Option<&'a [GroupStats]>, record: Option<(CoreRegion, &'a mut StatsRecorder)>) -> Self {
        Self {
            fixed,
            record,
            next: 0,
        }
    }
}

impl GroupNorm {
    pub fn new(
        groups: usize,
        channels: usize,
        eps: f64,
        vb: VarBuilder,
        layout: ActivationLayout,
    ) -> candle_core::Result<Self> {
        if groups == 0 || channels % groups != 0 {
            candle_core::bail!("GroupNorm: {groups} groups do not divide {channels} channels");
        }
        let weight = vb.get_with_hints(channels, "weight", candle_nn::Init::Const(1.0))?;
        let bias = vb.get_with_hints(channels, "bias", candle_nn::Init::Const(0.0))?;
        let affine = match layout {
            ActivationLayout::ChannelsLast => {
                Some(Tensor::stack(&[&weight, &bias], 0)?.to_dtype(DType::F32)?)
            }
            ActivationLayout::ChannelsFirst => None,
        };
        Ok(Self {
            weight,
            bias,
            groups,
            eps,
            layout,
            affine,
        })
    }

    /// GroupNorm, then SiLU when `silu`. `xs` is `[b, c, h, w]` or, channels-last, `[b, h, w, c]`.
    /// Statistics are computed in f32 whatever the dtype (as torch does).
    pub fn forward(&self, xs: &Tensor, ctx: &mut NormContext, silu: bool) -> candle_core::Result<Tensor> {
        crate::model::profile::scope("vae.groupnorm", xs.device(), || self.forward_timed(xs, ctx, silu))
    }

    fn forward_timed(&self, xs: &Tensor, ctx: &mut NormContext, silu: bool) -> candle_core::Result<Tensor> {
        let index = ctx.next;
        ctx.next += 1;
        if let Some((core, recorder)) = ctx.record.as_mut() {
            if recorder.per_norm.len() <= index {
                recorder.per_norm.resize_with(index + 1, Vec::new);
            }
            if let Some(moments) = self.core_moments(xs, *core)? {
                recorder.per_norm[index].push(moments);
            }
        }
        let fixed = match ctx.fixed {
            Some(stats) => Some(stats.get(index).ok_or_else(|| {
                candle_core::Error::Msg("tiled decode: statistics missing for a norm".into())
            })?),
            None => None,
        };
        match self.layout {
            ActivationLayout::ChannelsFirst => {
                let normed = self.forward_channels_first(xs, fixed)?;
                if silu {
                    candle_nn::ops::silu(&normed)
                } else {
                    Ok(normed)
                }
            }
            ActivationLayout::ChannelsLast => self.forward_channels_last(xs, fixed, silu),
        }
    }

    #[cfg(feature = "cudnn")]
    fn forward_channels_last(
        &self,
        xs: &Tensor,
        fixed: Option<&GroupStats>,
        silu: bool,
    ) -> candle_core::Result<Tensor> {
        let moments = match fixed {
            Some(stats) => {
                let (b, groups, _) = stats.mean.dims3()?;
                Tensor::cat(
                    &[
                        stats.mean.reshape((1, b, groups))?,
                        stats.var.reshape((1, b, groups))?,
                    ],
                    0,
                )?
            }
            None => super::cuda::group_moments(xs, self.groups)?,
        };
        let affine = self
            .affine
            .as_ref()
            .ok_or_else(|| candle_core::Error::Msg("GroupNorm: channels-last affine missing".into()))?;
        super::cuda::group_norm(xs, &moments, affine, self.eps as f32, silu)
    }

    #[cfg(not(feature = "cudnn"))]
    fn forward_channels_last(
        &self,
        _: &Tensor,
        _: Option<&GroupStats>,
        _: bool,
    ) -> candle_core::Result<Tensor> {
        candle_core::bail!("the channels-last GroupNorm needs the `cudnn` feature")
    }

    fn forward_channels_first(&self, xs: &Tensor, fixed: Option<&GroupStats>) -> candle_core::Result<Tensor> {
        let (b, c, h, w) = xs.dims4()?;
        let n = c / self.groups * h * w;
        let grouped = xs.to_dtype(DType::F32)?.reshape((b, self.groups, n))?;
        let (centered, var) = match fixed {
            Some(stats) => (grouped.broadcast_sub(&stats.mean)?, stats.var.clone()),
            None => {
                let mean = (grouped.sum_keepdim(2)? / n as f64)?;
                let centered = grouped.broadcast_sub(&mean)?;
                let var = (centered.sqr()?.sum_keepdim(2)? / n as f64)?;
                (centered, var)
            }
        };
        let normed = centered.broadcast_div(&(var + self.eps)?.sqrt()?)?;
        let normed = normed.to_dtype(xs.dtype())?.reshape((b, c, h, w))?;
        normed
            .broadcast_mul(&self.weight.reshape((1, c, 1, 1))?)?
            .broadcast_add(&self.bias.reshape((1, c, 1, 1))?)
    }

    fn core_moments(&self, xs: &Tensor, core: CoreRegion) -> candle_core::Result<Option<Moments>> {
        let (axis_y, axis_x) = self.layout.spatial_axes();
        let (h, w) = self.layout.spatial_size(xs)?;
        let span = |(lo, hi): (f64, f64), origin: usize, tile: usize, len: usize| {
            let scale = (len / tile.max(1)) as f64;
            let to_layer =
                |v: f64| ((v * scale).round() - origin as f64 * scale).clamp(0.0, len as f64) as usize;
            (to_layer(lo), to_layer(hi))
        };
        let (y0, y1) = span(core.rows, core.origin.0, core.size.0, h);
        let (x0, x1) = span(core.cols, core.origin.1, core.size.1, w);
        if y1 <= y0 || x1 <= x0 {
            return Ok(None);
        }
        let region = xs.narrow(axis_y, y0, y1 - y0)?.narrow(axis_x, x0, x1 - x0)?;
        let b = xs.dim(0)?;
        let c = xs.dims()[self.layout.channel_axis()];
        let count = (c / self.groups * (y1 - y0) * (x1 - x0)) as f64;
        let (mean, m2) = match self.layout {
            ActivationLayout::ChannelsFirst => {
                let grouped =
                    region
                        .to_dtype(DType::F32)?
                        .contiguous()?
                        .reshape((b, self.groups, count as usize))?;
                let mean = (grouped.sum_keepdim(2)? / count)?;
                let m2 = grouped.broadcast_sub(&mean)?.sqr()?.sum_keepdim(2)?;
                (mean, m2)
            }
            ActivationLayout::ChannelsLast => self.region_moments_channels_last(&region, count)?,
        };
        Ok(Some(Moments { mean, m2, count }))
    }

    /// Mean and sum of squared deviations `[b, groups, 1]` of a channels-last region.
    #[cfg(feature = "cudnn")]
    fn region_moments_channels_last(
        &self,
        region: &Tensor,
        count: f64,
    ) -> candle_core::Result<(Tensor, Tensor)> {
        let b = region.dim(0)?;
        let moments = super::cuda::group_moments(region, self.groups)?;
        let mean = moments.get(0)?.reshape((b, self.groups, 1))?;
        let m2 = (moments.get(1)?.reshape((b, self.groups, 1))? * count)?;
        Ok((mean, m2))
    }

    #[cfg(not(feature = "cudnn"))]
    fn region_moments_channels_last(&self, _: &Tensor, _: f64) -> candle_core::Result<(Tensor, Tensor)> {
        candle_core::bail!("the channels-last GroupNorm needs the `cudnn` feature")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// Statistics recorded over tiles whose cores partition the image equal the image's own.
    #[test]
    fn recorded_statistics_equal_whole_image_statistics() -> candle_core::Result<()> {
        let varmap = candle_nn::VarMap::new();
        let norm = GroupNorm::new(
            2,
            4,
            1e-6,
            VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
            ActivationLayout::ChannelsFirst,
        )?;
        let xs = (Tensor::arange(0f32, 4.0 * 6.0 * 5.0, &Device::Cpu)?
            .reshape((1, 4, 6, 5))?
            .sin()?
            * 3.0)?;
        let whole = norm.forward(&xs, &mut NormContext::local(), false)?;

        // Two overlapping "tiles" of rows 0..4 and 2..6 whose cores are rows 0..3 and 3..6.
        let mut recorder = StatsRecorder::default();
        for (start, core) in [(0, (0.0, 3.0)), (2, (3.0, 6.0))] {
            let tile = xs.narrow(2, start, 4)?;
            let region = CoreRegion {
                origin: (start, 0),
                size: (4, 5),
                rows: core,
                cols: (0.0, 5.0),
            };
            norm.forward(
                &tile,
                &mut NormContext::new(None, Some((region, &mut recorder))),
                false,
            )?;
        }
        let stats = recorder.finish()?;
        let with_stats = norm.forward(&xs, &mut NormContext::new(Some(&stats), None), false)?;
        let diff = (whole - with_stats)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(diff < 1e-5, "{diff}");
        Ok(())
    }
}
