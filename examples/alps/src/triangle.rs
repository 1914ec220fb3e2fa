//! Streaming QR: the R factor of a tall matrix, built batch by batch.

use ndarray::{concatenate, s, Array1, Array2, ArrayView2, Axis};
use ndarray_linalg::{Lapack, MatrixLayout};

use crate::Scaling;

/// The upper-triangular R of `A = [1, X]` (or of a weighted `A`), updated by QR of
/// `[R; new rows]` for each batch: constant memory, and as stable as a QR of all of `A`.
#[derive(Clone, Debug)]
pub struct Triangle {
    r: Array2<f64>,
    rows: u64,
}

impl Triangle {
    /// An empty factor for rows of `width` values (intercept column included).
    pub fn new(width: usize) -> Triangle {
        Triangle {
            r: Array2::zeros((0, width)),
            rows: 0,
        }
    }

    /// Adds rows (already including the intercept column, and any weights).
    pub fn add(&mut self, rows: ArrayView2<f64>) {
        if rows.nrows() == 0 {
            return;
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
            for (dst, v) in column[top..].iter_mut().zip(rows.column(j)) {
                *dst = *v;
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
    pub fn from_parts(width: usize, rows: u64, r: &[f64]) -> Triangle {
        let kept = r.len() / width;
        let r = Array2::from_shape_vec((kept, width), r.to_vec()).expect("rows x width values");
        Triangle { r, rows }
    }

    /// R, row-major, as many rows as it has (at most its width).
    pub fn to_vec(&self) -> Vec<f64> {
        self.r.iter().copied().collect()
    }

    /// Merges another factor of the same columns (for parallel partial results).
    pub fn merge(&mut self, other: &Triangle) {
        let rows = self.rows + other.rows;
        self.add(other.r.view());
        self.rows = rows;
    }

    /// How many rows went in.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// R, square (padded with zero rows while fewer rows than columns went in).
    pub fn r(&self) -> Array2<f64> {
        let width = self.r.ncols();
        let mut out = Array2::zeros((width, width));
        let n = self.r.nrows().min(width);
        out.slice_mut(s![..n, ..])
            .assign(&self.r.slice(s![..n, ..]));
        out
    }

    /// Means and population standard deviations of the data columns, from R of `[1, X]`:
    /// the first row of R holds the sums (scaled by sqrt(n)), and R without its first row
    /// and column is the R of the centered data.
    pub fn scaling(&self) -> Scaling {
        let r = self.r();
        let n = self.rows as f64;
        let r00 = r[[0, 0]];
        let k = r.ncols() - 1;
        let means = (1..=k).map(|j| r[[0, j]] / r00).collect();
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
