//! Tile geometry along one axis and the cross-fade weights of tiled decoding.

/// One tile's extent along one axis (latent pixels) and how far it overlaps its neighbours.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct TileSpan {
    pub start: usize,
    pub len: usize,
    pub overlap_before: usize,
    pub overlap_after: usize,
}

impl TileSpan {
    pub fn end(&self) -> usize {
        self.start + self.len
    }

    /// The part of the axis this tile owns: from the middle of the overlap before it to the middle
    /// of the overlap after it. The cores of all tiles partition the axis.
    pub fn core(&self) -> (f64, f64) {
        let lo = self.start as f64 + self.overlap_before as f64 / 2.0;
        let hi = self.end() as f64 - self.overlap_after as f64 / 2.0;
        (lo, hi)
    }

    /// Blend weights per image pixel: linear ramps across the overlaps, 1 elsewhere; always > 0.
    pub fn weights(&self, scale: usize) -> Vec<f32> {
        let n = self.len * scale;
        let before = (self.overlap_before * scale) as f32;
        let after = (self.overlap_after * scale) as f32;
        (0..n)
            .map(|p| {
                let mut weight = 1.0f32;
                if before > 0.0 {
                    weight = weight.min((p as f32 + 0.5) / before);
                }
                if after > 0.0 {
                    weight = weight.min((n as f32 - p as f32 - 0.5) / after);
                }
                weight
            })
            .collect()
    }
}

/// Tiles of side at most `tile` covering `0..len` (as few as possible, then shrunk to fit),
/// evenly spaced so each overlap is at least `overlap` (`overlap < tile`).
pub(super) fn tile_spans(len: usize, tile: usize, overlap: usize) -> Vec<TileSpan> {
    let stride = tile.saturating_sub(overlap).max(1);
    let tile = tile.min(len);
    if tile == len {
        return vec![TileSpan {
            start: 0,
            len,
            overlap_before: 0,
            overlap_after: 0,
        }];
    }
    let count = (len - tile).div_ceil(stride) + 1;
    // The smallest tile that still covers the axis with `count` tiles: no wasted overlap.
    let tile = (len + (count - 1) * overlap).div_ceil(count).min(tile);
    let starts: Vec<usize> = (0..count)
        .map(|i| ((i * (len - tile)) as f64 / (count - 1) as f64).round() as usize)
        .collect();
    (0..count)
        .map(|i| TileSpan {
            start: starts[i],
            len: tile,
            overlap_before: if i > 0 {
                starts[i - 1] + tile - starts[i]
            } else {
                0
            },
            overlap_after: if i + 1 < count {
                starts[i] + tile - starts[i + 1]
            } else {
                0
            },
        })
        .collect()
}

/// Per image pixel, the sum of all tiles' weights along one axis.
pub(super) fn weight_sums(spans: &[TileSpan], len: usize, scale: usize) -> Vec<f32> {
    let mut sums = vec![0f32; len * scale];
    for span in spans {
        for (offset, weight) in span.weights(scale).into_iter().enumerate() {
            sums[span.start * scale + offset] += weight;
        }
    }
    sums
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiles_cover_the_axis_with_enough_overlap() {
        for len in [1, 7, 8, 9, 31, 64, 100, 129] {
            let spans = tile_spans(len, 8, 3);
            assert!(spans.iter().all(|s| s.len <= 8 && s.len == spans[0].len));
            assert_eq!(spans[0].start, 0);
            assert_eq!(spans.last().map(TileSpan::end), Some(len));
            assert_eq!(spans[0].core().0, 0.0);
            assert_eq!(spans.last().map(|s| s.core().1), Some(len as f64));
            for pair in spans.windows(2) {
                assert!(pair[0].end() >= pair[1].start + 3, "{len}: {pair:?}");
                assert!(pair[1].start > pair[0].start);
                assert_eq!(
                    pair[0].core().1,
                    pair[1].core().0,
                    "cores must partition the axis"
                );
            }
            let sums = weight_sums(&spans, len, 2);
            let fewest = if len <= 8 { 1 } else { (len - 8).div_ceil(5) + 1 };
            assert_eq!(spans.len(), fewest, "{len}");
            assert!(sums.iter().all(|&s| s > 0.0), "{len}");
        }
    }
}
