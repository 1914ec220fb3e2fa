//! The models ALPS fits, independent of PostgreSQL.
//!
//! Data arrive in batches of rows of `k` columns (all complete: no NULLs). One streaming
//! pass ([`Triangle`]) keeps the R factor of the QR decomposition of `[1, columns]`, which
//! serves every linear model of the table at once ([`linear::fit`]) and the first step of
//! every logistic model ([`logistic::fit`]). Nothing grows with the number of rows.

pub mod linear;
pub mod logistic;
pub mod stats;
mod triangle;

pub use triangle::Triangle;

extern "C" {
    fn openblas_set_num_threads(threads: std::ffi::c_int);
}

/// Keeps OpenBLAS single-threaded: its thread pool must not live in a forking postmaster or
/// compete with backends. (OpenBLAS reads `OPENBLAS_NUM_THREADS` only when it is loaded,
/// before any code of ours runs, so it must be told.)
pub fn single_threaded_blas() {
    // SAFETY: a plain setter of the BLAS library this crate links (openblas-system).
    unsafe { openblas_set_num_threads(1) };
}

/// A source of complete rows that can be read more than once (one read per IRLS step).
pub trait Rows {
    /// The error of the underlying reader.
    type Error;
    /// Calls `f` with consecutive batches (rows × columns, row-major) of the whole data.
    fn for_each_batch(
        &mut self,
        f: &mut dyn FnMut(ndarray::ArrayView2<f64>),
    ) -> Result<(), Self::Error>;

    /// The R factor of `[1, columns]` over all rows. A source that can compute it closer to
    /// the data (a database aggregate) overrides this.
    fn triangle(&mut self, width: usize) -> Result<Triangle, Self::Error> {
        let mut t = Triangle::new(width + 1);
        self.for_each_batch(&mut |batch| t.add_data(batch))?;
        Ok(t)
    }

    /// One IRLS pass at the given coefficients; overridable like [`Rows::triangle`].
    fn weighted_pass(
        &mut self,
        spec: &logistic::WeightSpec,
    ) -> Result<logistic::WeightedPass, Self::Error> {
        let mut acc = logistic::WeightedAccumulator::new(spec.clone());
        self.for_each_batch(&mut |batch| {
            for row in batch.outer_iter() {
                acc.add(row.as_slice().expect("row-major batches"));
            }
        })?;
        Ok(acc.finish())
    }
}

/// Rows held in memory, for tests and small tables.
pub struct InMemory(pub ndarray::Array2<f64>);

impl Rows for InMemory {
    type Error = std::convert::Infallible;
    fn for_each_batch(
        &mut self,
        f: &mut dyn FnMut(ndarray::ArrayView2<f64>),
    ) -> Result<(), Self::Error> {
        f(self.0.view());
        Ok(())
    }
}

/// Column means and population standard deviations of the complete rows.
#[derive(Clone, Debug, PartialEq)]
pub struct Scaling {
    /// Means, one per column.
    pub means: Vec<f64>,
    /// Population (ddof = 0) standard deviations, one per column; 0 for a constant column.
    pub scales: Vec<f64>,
}
