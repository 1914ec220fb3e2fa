//! Least squares for one column on all the others, from the shared R factor.

use ndarray::{s, Array1, Array2};
use ndarray_linalg::{QR, SVD};

use crate::stats::t_two_sided_p;
use crate::Triangle;

/// A fitted linear model, on the original scale of the data.
#[derive(Clone, Debug)]
pub struct LinearFit {
    /// Indices of the supports (features) in the data columns, in coefficient order.
    pub supports: Vec<usize>,
    /// Intercept followed by one coefficient per support.
    pub coef: Vec<f64>,
    /// Standard errors, aligned with `coef`.
    pub std_err: Vec<f64>,
    /// t statistics.
    pub t_stats: Vec<f64>,
    /// Two-sided p-values.
    pub p_values: Vec<f64>,
    /// Coefficient of determination.
    pub r2: f64,
    /// Residual sum of squares.
    pub rss: f64,
    /// Condition number (2-norm) of the design matrix `[1, supports]`.
    pub condition_no: f64,
    /// Rows used.
    pub rows: u64,
    /// The supports' means and population standard deviations.
    pub scaling: crate::Scaling,
}

/// Why a model could not be fitted.
#[derive(Clone, Debug, PartialEq)]
pub enum FitError {
    /// Fewer complete rows than coefficients.
    TooFewRows { rows: u64, coefficients: usize },
    /// The target or a support does not vary.
    Constant(usize),
    /// The supports are collinear (the solve is singular).
    Singular,
}

impl std::fmt::Display for FitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FitError::TooFewRows { rows, coefficients } => {
                write!(
                    f,
                    "{rows} complete rows cannot fit {coefficients} coefficients"
                )
            }
            FitError::Constant(j) => write!(f, "column {j} is constant"),
            FitError::Singular => f.write_str("the supports are collinear"),
        }
    }
}

/// The standardized, centered R (k × k) of the data columns, and the scaling used.
pub(crate) fn standardized_r(t: &Triangle) -> (Array2<f64>, crate::Scaling) {
    let scaling = t.scaling();
    // The centred part of the shifted factor: free of the data's offsets.
    let r = t.shifted_r();
    let mut rs = r.slice(s![1.., 1..]).to_owned();
    for (j, s) in scaling.scales.iter().enumerate() {
        if *s > 0.0 {
            rs.column_mut(j).mapv_inplace(|v| v / s);
        }
    }
    (rs, scaling)
}

/// R of the standardized columns `keep` followed by `last`, re-triangularized.
pub(crate) fn reorder(rs: &Array2<f64>, keep: &[usize], last: Option<usize>) -> Array2<f64> {
    let order: Vec<usize> = keep.iter().copied().chain(last).collect();
    let mut m = Array2::zeros((rs.nrows(), order.len()));
    for (to, from) in order.iter().enumerate() {
        m.column_mut(to).assign(&rs.column(*from));
    }
    let (_, r) = m.qr().expect("QR of a small finite matrix");
    r
}

/// Inverse of an upper-triangular matrix by back substitution.
pub(crate) fn upper_inverse(t: &Array2<f64>) -> Option<Array2<f64>> {
    let n = t.nrows();
    let mut inv = Array2::zeros((n, n));
    for col in 0..n {
        for i in (0..=col).rev() {
            let mut v = if i == col { 1.0 } else { 0.0 };
            for k in i + 1..=col {
                v -= t[[i, k]] * inv[[k, col]];
            }
            if t[[i, i]].abs() < 1e-13 * t[[0, 0]].abs().max(1.0) {
                return None;
            }
            inv[[i, col]] = v / t[[i, i]];
        }
    }
    Some(inv)
}

/// Condition number of `[1, columns]` from the raw R.
pub(crate) fn condition_number(t: &Triangle, columns: &[usize]) -> f64 {
    let r = t.r();
    let mut m = Array2::zeros((r.nrows(), columns.len() + 1));
    m.column_mut(0).assign(&r.column(0));
    for (to, from) in columns.iter().enumerate() {
        m.column_mut(to + 1).assign(&r.column(from + 1));
    }
    match m.svd(false, false) {
        Ok((_, sv, _)) => {
            let max = sv.iter().cloned().fold(0.0, f64::max);
            let min = sv.iter().cloned().fold(f64::INFINITY, f64::min);
            if min > 0.0 {
                max / min
            } else {
                f64::INFINITY
            }
        }
        Err(_) => f64::NAN,
    }
}

/// Fits column `target` on all other columns of the data behind `t`, by QR of the
/// standardized design (never by unscaled normal equations).
pub fn fit(t: &Triangle, target: usize) -> Result<LinearFit, FitError> {
    let k = t.r().ncols() - 1;
    let supports: Vec<usize> = (0..k).filter(|&j| j != target).collect();
    let p = supports.len() + 1;
    let n = t.rows();
    if n <= p as u64 {
        return Err(FitError::TooFewRows {
            rows: n,
            coefficients: p,
        });
    }
    let (rs, scaling) = standardized_r(t);
    for &j in supports.iter().chain([&target]) {
        if scaling.scales[j] == 0.0 {
            return Err(FitError::Constant(j));
        }
    }
    // R of [supports, target], standardized and centered; the last column holds the
    // projections of the target, its last diagonal entry the residual norm.
    let q = reorder(&rs, &supports, Some(target));
    let m = supports.len();
    let r11 = q.slice(s![..m, ..m]).to_owned();
    let r1y = q.slice(s![..m, m]).to_owned();
    let inv = upper_inverse(&r11).ok_or(FitError::Singular)?;
    let beta_std: Array1<f64> = inv.dot(&r1y);
    let sy = scaling.scales[target];
    let rss = (q[[m, m]] * sy).powi(2);
    let tss = n as f64 * sy * sy;
    let df = (n - p as u64) as f64;
    let sigma2 = rss / df;

    // Back to the original scale: w_i = beta_i * s_y / s_i; b = m_y - sum w_i m_i.
    let w: Vec<f64> = supports
        .iter()
        .zip(beta_std.iter())
        .map(|(&j, b)| b * sy / scaling.scales[j])
        .collect();
    let intercept = scaling.means[target]
        - supports
            .iter()
            .zip(&w)
            .map(|(&j, w)| w * scaling.means[j])
            .sum::<f64>();
    // Cov(w) = sigma^2 (Xc'Xc)^-1 = sigma^2 D^-1 (R11'R11)^-1 D^-1; (R11'R11)^-1 = inv inv'.
    let gram_inv = inv.dot(&inv.t());
    let mut cov_w = Array2::zeros((m, m));
    for a in 0..m {
        for b in 0..m {
            cov_w[[a, b]] = sigma2 * gram_inv[[a, b]]
                / (scaling.scales[supports[a]] * scaling.scales[supports[b]]);
        }
    }
    let means: Array1<f64> = supports.iter().map(|&j| scaling.means[j]).collect();
    let var_b = sigma2 / n as f64 + means.dot(&cov_w.dot(&means));

    let mut coef = vec![intercept];
    coef.extend(&w);
    let mut std_err = vec![var_b.sqrt()];
    std_err.extend((0..m).map(|a| cov_w[[a, a]].sqrt()));
    let t_stats: Vec<f64> = coef.iter().zip(&std_err).map(|(c, s)| c / s).collect();
    let p_values = t_stats.iter().map(|t| t_two_sided_p(*t, df)).collect();
    let support_scaling = crate::Scaling {
        means: supports.iter().map(|&j| scaling.means[j]).collect(),
        scales: supports.iter().map(|&j| scaling.scales[j]).collect(),
    };
    Ok(LinearFit {
        condition_no: condition_number(t, &supports),
        scaling: support_scaling,
        supports,
        coef,
        std_err,
        t_stats,
        p_values,
        r2: 1.0 - rss / tss,
        rss,
        rows: n,
    })
}
