//! Logistic regression by IRLS, with separation detection and an L2-penalized refit.
//!
//! Features are standardized by the mean and population standard deviation of the complete
//! rows; the intercept is never penalized. Each IRLS step is one pass over the data that
//! accumulates the R factor of the weighted design (constant memory); the first step, at
//! coefficients 0, needs no pass: it follows from the R factor every model shares.

use ndarray::{s, Array1, Array2};
use ndarray_linalg::QR;

use crate::linear::{condition_number, upper_inverse, FitError};
use crate::stats::normal_two_sided_p;
use crate::{Rows, Scaling, Triangle};

/// Settings of a logistic fit.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// At most this many IRLS passes per fit.
    pub max_iterations: usize,
    /// Convergence: relative deviance change and coefficient change both below this.
    pub tolerance: f64,
    /// The L2 penalty (lambda) of the refit after separation; 0 disables the refit.
    pub l2: f64,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            max_iterations: 20,
            tolerance: 1e-9,
            l2: 1.0,
        }
    }
}

/// A fitted logistic model.
#[derive(Clone, Debug)]
pub struct LogisticFit {
    /// Indices of the supports in the data columns, in coefficient order.
    pub supports: Vec<usize>,
    /// Intercept and coefficients on the original scale.
    pub coef: Vec<f64>,
    /// Intercept and coefficients on the standardized scale (what the solver found).
    pub coef_std: Vec<f64>,
    /// Standard errors on the original scale (for a penalized fit, from the penalized
    /// information matrix).
    pub std_err: Vec<f64>,
    /// z statistics.
    pub z_stats: Vec<f64>,
    /// Two-sided p-values.
    pub p_values: Vec<f64>,
    /// exp(coef).
    pub odds_ratios: Vec<f64>,
    /// Log-likelihood at the final coefficients' last pass.
    pub log_likelihood: f64,
    /// Condition number of the design `[1, supports]` on the original scale.
    pub condition_no: f64,
    /// IRLS passes of the reported fit.
    pub iterations: usize,
    /// Whether the reported fit converged.
    pub converged: bool,
    /// Whether the unpenalized fit showed complete or quasi separation.
    pub separated: bool,
    /// The penalty of the reported fit (0 for maximum likelihood).
    pub penalty: f64,
    /// Rows used.
    pub rows: u64,
    /// The scaling of the supports (means and population standard deviations).
    pub scaling: Scaling,
}

/// R of `[1, standardized supports, y]`, from the shared R of `[1, all columns]`.
fn design_triangle(
    t: &Triangle,
    supports: &[usize],
    target: usize,
    scaling: &Scaling,
) -> Array2<f64> {
    let r = t.r();
    let mut m = Array2::zeros((r.nrows(), supports.len() + 2));
    m.column_mut(0).assign(&r.column(0));
    for (to, &j) in supports.iter().enumerate() {
        let col = (&r.column(j + 1) - &(&r.column(0) * scaling.means[j])) / scaling.scales[j];
        m.column_mut(to + 1).assign(&col);
    }
    m.column_mut(supports.len() + 1)
        .assign(&r.column(target + 1));
    let (_, q) = m.qr().expect("QR of a small finite matrix");
    q
}

/// Solves the (penalized) weighted least squares behind one Newton step, from the R factor
/// of `[sqrt(w) X, sqrt(w) z]`. Returns the coefficients and the inverse of the R of the
/// (penalized) information matrix, for standard errors.
fn newton_solve(rz: &Array2<f64>, l2: f64) -> Result<(Array1<f64>, Array2<f64>), FitError> {
    let p = rz.ncols() - 1;
    let system = if l2 > 0.0 {
        // Rows sqrt(lambda) * e_j for every coefficient but the intercept, with z = 0.
        let mut aug = Array2::zeros((rz.nrows() + p - 1, p + 1));
        aug.slice_mut(s![..rz.nrows(), ..]).assign(rz);
        for j in 1..p {
            aug[[rz.nrows() + j - 1, j]] = l2.sqrt();
        }
        let (_, r) = aug.qr().expect("QR of a small finite matrix");
        r
    } else {
        rz.clone()
    };
    let r11 = system.slice(s![..p, ..p]).to_owned();
    let r1z = system.slice(s![..p, p]).to_owned();
    let inv = upper_inverse(&r11).ok_or(FitError::Singular)?;
    Ok((inv.dot(&r1z), inv))
}

/// Fits `target` (0/1 values) on all other columns.
pub fn fit<D: Rows>(
    data: &mut D,
    t: &Triangle,
    target: usize,
    options: Options,
) -> Result<Result<LogisticFit, FitError>, D::Error> {
    let k = t.r().ncols() - 1;
    let supports: Vec<usize> = (0..k).filter(|&j| j != target).collect();
    let p = supports.len() + 1;
    let n = t.rows();
    if n <= p as u64 {
        return Ok(Err(FitError::TooFewRows {
            rows: n,
            coefficients: p,
        }));
    }
    let scaling = t.scaling();
    if let Some(&j) = supports.iter().find(|&&j| scaling.scales[j] == 0.0) {
        return Ok(Err(FitError::Constant(j)));
    }
    if scaling.scales[target] == 0.0 {
        return Ok(Err(FitError::Constant(target)));
    }
    let support_scaling = Scaling {
        means: supports.iter().map(|&j| scaling.means[j]).collect(),
        scales: supports.iter().map(|&j| scaling.scales[j]).collect(),
    };
    // The first step at coefficients 0 (p = 1/2, w = 1/4, z = 4y - 2) needs no pass.
    let mut first = design_triangle(t, &supports, target, &scaling);
    let zc = &first.column(p) * 4.0 - &(&first.column(0) * 2.0);
    first.column_mut(p).assign(&zc);
    first.mapv_inplace(|v| v * 0.5);

    let mle = irls(
        data,
        &supports,
        target,
        &support_scaling,
        &first,
        0.0,
        options,
    )?;
    let mle = match mle {
        Ok(v) => v,
        Err(e) => return Ok(Err(e)),
    };
    let separated = mle.separated;
    let (chosen, penalty) = if separated && options.l2 > 0.0 {
        match irls(
            data,
            &supports,
            target,
            &support_scaling,
            &first,
            options.l2,
            options,
        )? {
            Ok(pen) => (pen, options.l2),
            Err(e) => return Ok(Err(e)),
        }
    } else {
        (mle, 0.0)
    };

    // Back to the original scale: b = b_s - sum w_s m / s; w = w_s / s.
    let beta = &chosen.beta;
    let mut coef = vec![
        beta[0]
            - (1..p)
                .map(|i| beta[i] * support_scaling.means[i - 1] / support_scaling.scales[i - 1])
                .sum::<f64>(),
    ];
    coef.extend((1..p).map(|i| beta[i] / support_scaling.scales[i - 1]));
    let mut a = Array2::zeros((p, p));
    a[[0, 0]] = 1.0;
    for i in 1..p {
        a[[0, i]] = -support_scaling.means[i - 1] / support_scaling.scales[i - 1];
        a[[i, i]] = 1.0 / support_scaling.scales[i - 1];
    }
    let cov_std = chosen.inv.dot(&chosen.inv.t());
    let cov = a.dot(&cov_std).dot(&a.t());
    let std_err: Vec<f64> = (0..p).map(|i| cov[[i, i]].sqrt()).collect();
    let z_stats: Vec<f64> = coef.iter().zip(&std_err).map(|(c, s)| c / s).collect();
    Ok(Ok(LogisticFit {
        condition_no: condition_number(t, &supports),
        p_values: z_stats.iter().map(|z| normal_two_sided_p(*z)).collect(),
        odds_ratios: coef.iter().map(|c| c.exp()).collect(),
        coef_std: beta.to_vec(),
        log_likelihood: -chosen.deviance / 2.0,
        iterations: chosen.iterations,
        converged: chosen.converged,
        separated,
        penalty,
        rows: n,
        supports,
        coef,
        std_err,
        z_stats,
        scaling: support_scaling,
    }))
}

struct Irls {
    beta: Array1<f64>,
    inv: Array2<f64>,
    deviance: f64,
    iterations: usize,
    converged: bool,
    separated: bool,
}

fn irls<D: Rows>(
    data: &mut D,
    supports: &[usize],
    target: usize,
    scaling: &Scaling,
    first: &Array2<f64>,
    l2: f64,
    options: Options,
) -> Result<Result<Irls, FitError>, D::Error> {
    let (mut beta, mut inv) = match newton_solve(first, l2) {
        Ok(v) => v,
        Err(e) => return Ok(Err(e)),
    };
    let mut deviance = f64::NAN;
    let mut growth = Vec::new();
    let mut converged = false;
    let mut extreme = 0;
    let mut iterations = 0;
    let mut degenerate = false;
    while iterations < options.max_iterations {
        iterations += 1;
        let pass = weighted_pass(data, supports, target, scaling, &beta)?;
        let previous_deviance = std::mem::replace(&mut deviance, pass.deviance);
        extreme = pass.extreme;
        let (next, next_inv) = match newton_solve(&pass.r, l2) {
            Ok(v) => v,
            // Weights collapsing to zero make the unpenalized system singular: separation.
            Err(_) if l2 == 0.0 => {
                degenerate = true;
                break;
            }
            Err(e) => return Ok(Err(e)),
        };
        let step = (&next - &beta).iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let size = next.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        growth.push(size);
        beta = next;
        inv = next_inv;
        let deviance_settled =
            (deviance - previous_deviance).abs() / (deviance.abs() + 0.1) < options.tolerance;
        if deviance_settled && step <= options.tolerance * (1.0 + size) {
            converged = true;
            break;
        }
    }
    // Separation: fitted probabilities at 0 or 1 while the coefficients keep growing (or the
    // deviance has all but vanished), or no convergence with ever larger coefficients.
    let growing = growth.len() >= 3
        && growth
            .windows(2)
            .rev()
            .take(2)
            .all(|w| w[1] > w[0] * (1.0 + 1e-6));
    let vanishing = deviance < 1e-6;
    let separated = l2 == 0.0
        && (degenerate
            || (extreme > 0 && (growing || vanishing || !converged))
            || (!converged && growing));
    Ok(Ok(Irls {
        beta,
        inv,
        deviance,
        iterations,
        converged,
        separated,
    }))
}

/// What a weighted pass needs: the model's columns, scaling and current coefficients.
#[derive(Clone, Debug)]
pub struct WeightSpec {
    /// Indices of the supports in the data columns.
    pub supports: Vec<usize>,
    /// Index of the 0/1 target.
    pub target: usize,
    /// Means and scales of the supports.
    pub scaling: Scaling,
    /// Current standardized coefficients, intercept first.
    pub beta: Vec<f64>,
}

impl WeightSpec {
    /// One complete data row (all columns) as a row of the weighted least squares of the
    /// Newton step, `sqrt(w) [1, standardized supports, z]`, written to `out` (supports + 2
    /// values). Returns the row's deviance and whether its fitted probability is extreme.
    pub fn weigh(&self, row: &[f64], out: &mut [f64]) -> (f64, bool) {
        let p = self.supports.len() + 1;
        let mut eta = self.beta[0];
        out[0] = 1.0;
        for (c, &j) in self.supports.iter().enumerate() {
            let v = (row[j] - self.scaling.means[c]) / self.scaling.scales[c];
            eta += self.beta[c + 1] * v;
            out[c + 1] = v;
        }
        let y = row[self.target];
        // One exponential serves both the probability and the log-likelihood.
        let e = (-eta.abs()).exp();
        let mu = if eta >= 0.0 {
            1.0 / (1.0 + e)
        } else {
            e / (1.0 + e)
        };
        let extreme = !(1e-8..=1.0 - 1e-8).contains(&mu);
        // -log P(y | eta) = log(1 + exp(eta)) - y * eta
        let deviance = 2.0 * (eta.max(0.0) + e.ln_1p() - y * eta);
        let w = (mu * (1.0 - mu)).max(1e-300);
        let sw = w.sqrt();
        let z = eta + (y - mu) / w;
        for v in out[..p].iter_mut() {
            *v *= sw;
        }
        out[p] = sw * z;
        (deviance, extreme)
    }

    /// Flattened: target, number of supports, supports, means, scales, beta.
    pub fn to_vec(&self) -> Vec<f64> {
        let mut v = vec![self.target as f64, self.supports.len() as f64];
        v.extend(self.supports.iter().map(|&j| j as f64));
        v.extend(&self.scaling.means);
        v.extend(&self.scaling.scales);
        v.extend(&self.beta);
        v
    }

    /// The inverse of [`WeightSpec::to_vec`].
    pub fn from_slice(v: &[f64]) -> Option<WeightSpec> {
        let target = *v.first()? as usize;
        let m = *v.get(1)? as usize;
        if v.len() != 2 + m + m + m + (m + 1) {
            return None;
        }
        let supports = v[2..2 + m].iter().map(|&j| j as usize).collect();
        let means = v[2 + m..2 + 2 * m].to_vec();
        let scales = v[2 + 2 * m..2 + 3 * m].to_vec();
        let beta = v[2 + 3 * m..].to_vec();
        Some(WeightSpec {
            supports,
            target,
            scaling: Scaling { means, scales },
            beta,
        })
    }
}

/// The result of one weighted pass.
#[derive(Clone, Debug)]
pub struct WeightedPass {
    /// R of `[sqrt(w) X, sqrt(w) z]`.
    pub r: Array2<f64>,
    /// Deviance at the pass's coefficients.
    pub deviance: f64,
    /// Rows whose fitted probability is within 1e-8 of 0 or 1.
    pub extreme: u64,
}

/// Accumulates a weighted pass row by row, in bounded memory.
pub struct WeightedAccumulator {
    spec: WeightSpec,
    triangle: Triangle,
    buffer: Vec<f64>,
    buffered: usize,
    /// Deviance so far.
    pub deviance: f64,
    /// Extreme fitted probabilities so far.
    pub extreme: u64,
}

const BUFFER_ROWS: usize = 1024;

impl WeightedAccumulator {
    /// An empty pass.
    pub fn new(spec: WeightSpec) -> WeightedAccumulator {
        let width = spec.supports.len() + 2;
        WeightedAccumulator {
            spec,
            triangle: Triangle::new(width),
            buffer: vec![0.0; BUFFER_ROWS * width],
            buffered: 0,
            deviance: 0.0,
            extreme: 0,
        }
    }

    /// Adds one complete data row (all columns).
    pub fn add(&mut self, row: &[f64]) {
        let width = self.spec.supports.len() + 2;
        let out = &mut self.buffer[self.buffered * width..(self.buffered + 1) * width];
        let (deviance, extreme) = self.spec.weigh(row, out);
        self.deviance += deviance;
        self.extreme += u64::from(extreme);
        self.buffered += 1;
        if self.buffered == BUFFER_ROWS {
            self.flush();
        }
    }

    fn flush(&mut self) {
        if self.buffered == 0 {
            return;
        }
        let width = self.spec.supports.len() + 2;
        let rows = ndarray::ArrayView2::from_shape(
            (self.buffered, width),
            &self.buffer[..self.buffered * width],
        )
        .expect("buffer shape");
        self.triangle.add(rows);
        self.buffered = 0;
    }

    /// Merges a partial pass over other rows.
    pub fn merge(&mut self, other: &mut WeightedAccumulator) {
        self.flush();
        other.flush();
        self.triangle.merge(&other.triangle);
        self.deviance += other.deviance;
        self.extreme += other.extreme;
    }

    /// The accumulated factor and counts.
    pub fn finish(mut self) -> WeightedPass {
        self.flush();
        WeightedPass {
            r: self.triangle.r(),
            deviance: self.deviance,
            extreme: self.extreme,
        }
    }

    /// Flattened: deviance, extreme, rows, then R (row-major).
    pub fn to_vec(mut self) -> Vec<f64> {
        self.flush();
        let mut v = vec![
            self.deviance,
            self.extreme as f64,
            self.triangle.rows() as f64,
        ];
        v.extend(self.triangle.to_vec());
        v
    }

    /// The pass's specification.
    pub fn spec(&self) -> &WeightSpec {
        &self.spec
    }

    /// A partial pass from [`WeightedAccumulator::to_vec`]'s output, to go on accumulating.
    pub fn restore(spec: WeightSpec, v: &[f64]) -> Option<WeightedAccumulator> {
        if v.len() < 3 {
            return None;
        }
        let width = spec.supports.len() + 2;
        let mut acc = WeightedAccumulator::new(spec);
        acc.deviance = v[0];
        acc.extreme = v[1] as u64;
        acc.triangle = Triangle::from_parts(width, v[2] as u64, &v[3..]);
        Some(acc)
    }

    /// A finished pass from [`WeightedAccumulator::to_vec`]'s output.
    pub fn pass_from_slice(width: usize, v: &[f64]) -> Option<WeightedPass> {
        if v.len() < 3 {
            return None;
        }
        let t = Triangle::from_parts(width, v[2] as u64, &v[3..]);
        Some(WeightedPass {
            r: t.r(),
            deviance: v[0],
            extreme: v[1] as u64,
        })
    }
}

fn weighted_pass<D: Rows>(
    data: &mut D,
    supports: &[usize],
    target: usize,
    scaling: &Scaling,
    beta: &Array1<f64>,
) -> Result<WeightedPass, D::Error> {
    let spec = WeightSpec {
        supports: supports.to_vec(),
        target,
        scaling: scaling.clone(),
        beta: beta.to_vec(),
    };
    data.weighted_pass(&spec)
}
