//! Where the decoder's activations keep their channel axis.

use candle_core::{DType, Device, Result, Tensor};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActivationLayout {
    /// `[n, c, h, w]` through candle's ops: the reference path (CPU, f32, any device).
    ChannelsFirst,
    /// `[n, h, w, c]` through cuDNN graph convolutions and fused kernels: CUDA, bf16, built with
    /// the `cudnn` feature.
    ChannelsLast,
}

impl ActivationLayout {
    /// The fastest layout available for weights of `dtype` on `device`.
    pub fn fastest_for(device: &Device, dtype: DType) -> Self {
        if cfg!(feature = "cudnn") && device.is_cuda() && dtype == DType::BF16 {
            Self::ChannelsLast
        } else {
            Self::ChannelsFirst
        }
    }

    /// Axes of height and width.
    pub fn spatial_axes(self) -> (usize, usize) {
        match self {
            Self::ChannelsFirst => (2, 3),
            Self::ChannelsLast => (1, 2),
        }
    }

    pub fn channel_axis(self) -> usize {
        match self {
            Self::ChannelsFirst => 1,
            Self::ChannelsLast => 3,
        }
    }

    /// (height, width) of a 4-D activation.
    pub fn spatial_size(self, xs: &Tensor) -> Result<(usize, usize)> {
        let (y, x) = self.spatial_axes();
        Ok((xs.dim(y)?, xs.dim(x)?))
    }

    /// `[n, c, h, w]` → this layout (a contiguous copy when it changes anything).
    pub fn from_channels_first(self, xs: &Tensor) -> Result<Tensor> {
        match self {
            Self::ChannelsFirst => Ok(xs.clone()),
            Self::ChannelsLast => xs.permute((0, 2, 3, 1))?.contiguous(),
        }
    }

    /// This layout → `[n, c, h, w]` (a view).
    pub fn to_channels_first(self, xs: &Tensor) -> Result<Tensor> {
        match self {
            Self::ChannelsFirst => Ok(xs.clone()),
            Self::ChannelsLast => xs.permute((0, 3, 1, 2)),
        }
    }
}
