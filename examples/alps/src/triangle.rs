//! Streaming QR: the R factor of a tall matrix, built batch by batch.

use ndarray::{concatenate, s, Array1, Array2, ArrayView2, Axis};
use ndarray_linalg::{Lapack, MatrixLayout};

use crate::Scaling;

/// The upper-triangular R of `A = [1, X]` (or of a weighted `A`), updated by QR of
/// `[R; new rows]` for each batch: constant memory, and as stable as a QR of all of `A`.
///
/// The factorization is shifted: it is the R of `[1, X - 1 c']`, with `c` the first row seen
/// (divided by its intercept entry). Data far from zero compared with its spread (years,
/// prices, Longley's GNP) would otherwise lose to cancellation as many digits as that ratio
/// has; shifted, the centred part is computed from the spread alone. Since
/// `[1, X] = [1, X - 1 c'] M` with `M = [[1, c'], [0, I]]`, the unshifted R is `R M`
/// ([`Triangle::r`]).
#[derive(Clone, Debug)]
pub struct Triangle {
    r: Array2<f64>,
    rows: u64,
    /// `c`, one value per data column; all zero until the first row arrives.
    shift: Vec<f64>,
    shifted: bool,
}

impl Triangle {
    /// An empty factor for rows of `width` values (intercept column included).
    pub fn new(width: usize) -> Triangle {
        Triangle {
            r: Array2::zeros((0, width)),
            rows: 0,
            shift: vec![0.0; width.saturating_sub(1)],
            shifted: false,
        }
    }

    /// Adds rows (already including the intercept column, and any weights: a row is
    /// `a * [1, x]` for a weight `a`).
    pub fn add(&mut self, rows: ArrayView2<f64>) {
        if rows.nrows() == 0 {
            return;
        }
        if !self.shifted {
            if let Some(first) = rows.rows().into_iter().find(|row| row[0] != 0.0) {
                for (c, v) in self.shift.iter_mut().zip(first.iter().skip(1)) {
                    *c = v / first[0];
                }
                self.shifted = true;
            }
        }
        // Householder QR (LAPACK dgeqrf) of [R; rows] in column-major order; Q is never
        // formed, only R is kept.
        let width = self.r.ncols();
        let top = self.r.nrows();
        let height = top + rows.nrows();
        let mut a = vec![0.0; height * width];
        for j in 0..width {
            let column = &mut a[j * height..(j + 1) * height];
            for (i, dst) in column.iter_mut().enumerate().take(top.min(j + 1)) {
                *dst = self.r[[i, j]];
            }
            if j == 0 {
                for (dst, v) in column[top..].iter_mut().zip(rows.column(0)) {
                    *dst = *v;
                }
            } else {
                // a * (x - c): the shift scaled by the row's own intercept entry.
                let c = self.shift[j - 1];
                for ((dst, v), a) in column[top..]
                    .iter_mut()
                    .zip(rows.column(j))
                    .zip(rows.column(0))
                {
                    *dst = v - a * c;
                }
            }
        }
        let layout = MatrixLayout::F {
            col: width as i32,
            lda: height as i32,
        };
        f64::householder(layout, &mut a).expect("QR of a finite matrix");
        let kept = width.min(height);
        let mut r = Array2::zeros((kept, width));
        for j in 0..width {
            for i in 0..kept.min(j + 1) {
                r[[i, j]] = a[j * height + i];
            }
        }
        self.r = r;
        self.rows += rows.nrows() as u64;
    }

    /// Adds raw data rows, prefixing the intercept column.
    pub fn add_data(&mut self, data: ArrayView2<f64>) {
        let ones = Array2::ones((data.nrows(), 1));
        let rows = concatenate(Axis(1), &[ones.view(), data]).expect("same height");
        self.add(rows.view());
    }

    /// A factor from its parts (as [`Triangle::to_vec`] wrote them).
    pub fn from_parts(width: usize, rows: u64, parts: &[f64]) -> Triangle {
        let data = width.saturating_sub(1);
        let (r, shift) = parts.split_at(parts.len().saturating_sub(data));
        let kept = r.len() / width;
        let r = Array2::from_shape_vec((kept, width), r[..kept * width].to_vec())
            .expect("rows x width values");
        Triangle {
            r,
            rows,
            shift: shift.to_vec(),
            shifted: rows > 0,
        }
    }

    /// R (shifted), row-major, as many rows as it has (at most its width), then the shift.
    pub fn to_vec(&self) -> Vec<f64> {
        self.r
            .iter()
            .copied()
            .chain(self.shift.iter().copied())
            .collect()
    }

    /// Merges another factor of the same columns (for parallel partial results).
    pub fn merge(&mut self, other: &Triangle) {
        if other.rows == 0 {
            return;
        }
        if self.rows == 0 {
            *self = other.clone();
            return;
        }
        // The other's R in this factor's shift: R_other [[1, c_other - c], [0, I]]. Its rows
        // are then rows of [a, a (x - c)], which `add` must not shift again.
        let mut theirs = other.r.clone();
        for j in 1..theirs.ncols() {
            let d = other.shift[j - 1] - self.shift[j - 1];
            let first = theirs.column(0).to_owned();
            theirs.column_mut(j).scaled_add(d, &first);
        }
        let rows = self.rows + other.rows;
        let shift = std::mem::replace(&mut self.shift, vec![0.0; theirs.ncols() - 1]);
        self.add(theirs.view());
        self.shift = shift;
        self.rows = rows;
    }

    /// The shift `c` (zeros before any row).
    pub fn shift(&self) -> &[f64] {
        &self.shift
    }

    /// How many rows went in.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// The shifted R, square (padded with zero rows while fewer rows than columns went in):
    /// the factor of `[1, X - 1 c']`, whose centred part is the precise one.
    pub fn shifted_r(&self) -> Array2<f64> {
        let width = self.r.ncols();
        let mut out = Array2::zeros((width, width));
        let n = self.r.nrows().min(width);
        out.slice_mut(s![..n, ..])
            .assign(&self.r.slice(s![..n, ..]));
        out
    }

    /// R of `[1, X]` itself, square: the shifted R times `[[1, c'], [0, I]]`.
    pub fn r(&self) -> Array2<f64> {
        let mut out = self.shifted_r();
        let first = out.column(0).to_owned();
        for (j, c) in self.shift.iter().enumerate() {
            out.column_mut(j + 1).scaled_add(*c, &first);
        }
        out
    }

    /// Means and population standard deviations of the data columns, from R of `[1, X]`:
    /// the first row of R holds the sums (scaled by sqrt(n)), and R without its first row
    /// and column is the R of the centered data.
    pub fn scaling(&self) -> Scaling {
        let r = self.shifted_r();
        let n = self.rows as f64;
        let r00 = r[[0, 0]];
        let k = r.ncols() - 1;
        let means = (1..=k)
            .map(|j| self.shift[j - 1] + r[[0, j]] / r00)
            .collect();
        let centered = r.slice(s![1.., 1..]);
        let scales = (0..k)
            .map(|j| {
                let col: Array1<f64> = centered.column(j).to_owned();
                (col.dot(&col) / n).sqrt()
            })
            .collect();
        Scaling { means, scales }
    }
}
