//! Small statistics over measurement series: means, spread, least-squares slope, drift.
//! All functions return `None` when the series is too short to say anything.

/// Arithmetic mean.
pub fn mean(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    Some(values.iter().sum::<f64>() / values.len() as f64)
}

/// Median (mean of the two middle values for an even count).
pub fn median(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    Some(if sorted.len() % 2 == 0 {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    } else {
        sorted[mid]
    })
}

/// Sample standard deviation (n − 1); needs two values.
pub fn std_dev(values: &[f64]) -> Option<f64> {
    if values.len() < 2 {
        return None;
    }
    let m = mean(values)?;
    let var = values.iter().map(|v| (v - m).powi(2)).sum::<f64>() / (values.len() - 1) as f64;
    Some(var.sqrt())
}

pub fn min(values: &[f64]) -> Option<f64> {
    values.iter().copied().reduce(f64::min)
}

pub fn max(values: &[f64]) -> Option<f64> {
    values.iter().copied().reduce(f64::max)
}

/// `y ≈ intercept + slope · x`, fitted by ordinary least squares.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LinearFit {
    pub slope: f64,
    pub intercept: f64,
}

/// Least-squares line through `(x, y)` points; needs two distinct x values.
pub fn linear_fit(points: &[(f64, f64)]) -> Option<LinearFit> {
    if points.len() < 2 {
        return None;
    }
    let n = points.len() as f64;
    let mean_x = points.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_y = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mean_x).powi(2)).sum();
    if sxx == 0.0 {
        return None;
    }
    let sxy: f64 = points.iter().map(|p| (p.0 - mean_x) * (p.1 - mean_y)).sum();
    let slope = sxy / sxx;
    Some(LinearFit {
        slope,
        intercept: mean_y - slope * mean_x,
    })
}

/// How many values make up "a tenth" of a series of `len`: at least one.
pub fn tenth_len(len: usize) -> usize {
    (len / 10).max(1)
}

/// Drift of a series in percent: mean of the last tenth against the mean of the first tenth
/// (each at least one value). Needs two values and a non-zero first-tenth mean.
pub fn drift_percent(values: &[f64]) -> Option<f64> {
    if values.len() < 2 {
        return None;
    }
    let k = tenth_len(values.len());
    let first = mean(&values[..k])?;
    let last = mean(&values[values.len() - k..])?;
    if first == 0.0 {
        return None;
    }
    Some((last - first) / first * 100.0)
}

/// Summary of one series, as printed in report tables.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Spread {
    pub count: usize,
    pub mean: f64,
    pub median: f64,
    pub min: f64,
    pub max: f64,
    /// `None` for a single value.
    pub std_dev: Option<f64>,
}

impl Spread {
    pub fn of(values: &[f64]) -> Option<Self> {
        Some(Self {
            count: values.len(),
            mean: mean(values)?,
            median: median(values)?,
            min: min(values)?,
            max: max(values)?,
            std_dev: std_dev(values),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_median_spread_by_hand() {
        let v = [4.7, 4.5, 4.6, 4.8, 4.5];
        assert!((mean(&v).unwrap() - 4.62).abs() < 1e-12);
        assert_eq!(median(&v), Some(4.6));
        assert_eq!(median(&[1.0, 3.0, 2.0, 10.0]), Some(2.5));
        // deviations 0.08 -0.12 -0.02 0.18 -0.12 → squares sum 0.068 → /4 = 0.017
        assert!((std_dev(&v).unwrap() - 0.017f64.sqrt()).abs() < 1e-12);
        assert_eq!(min(&v), Some(4.5));
        assert_eq!(max(&v), Some(4.8));
        assert_eq!(mean(&[]), None);
        assert_eq!(std_dev(&[1.0]), None);
    }

    #[test]
    fn fit_recovers_a_line() {
        let pts: Vec<(f64, f64)> = (0..10).map(|i| (i as f64, 3.0 + 0.5 * i as f64)).collect();
        let fit = linear_fit(&pts).unwrap();
        assert!((fit.slope - 0.5).abs() < 1e-12);
        assert!((fit.intercept - 3.0).abs() < 1e-12);
        assert_eq!(linear_fit(&[(1.0, 2.0)]), None);
        assert_eq!(linear_fit(&[(1.0, 2.0), (1.0, 3.0)]), None);
    }

    #[test]
    fn drift_uses_tenths() {
        // 20 values: first tenth = 2 values (10, 12) mean 11; last tenth (13, 9) mean 11 → 0 %.
        let mut v = vec![10.0, 12.0];
        v.extend(std::iter::repeat_n(50.0, 16));
        v.extend([13.0, 9.0]);
        assert!(drift_percent(&v).unwrap().abs() < 1e-12);
        // 5 values: a tenth is one value: 2 → 3 is +50 %.
        assert!((drift_percent(&[2.0, 9.0, 9.0, 9.0, 3.0]).unwrap() - 50.0).abs() < 1e-12);
        assert_eq!(drift_percent(&[1.0]), None);
        assert_eq!(drift_percent(&[0.0, 1.0]), None);
    }
}
