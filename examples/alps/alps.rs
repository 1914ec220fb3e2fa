//! ALPS: a background worker that keeps a linear model of every numeric column and a
//! logistic model of every boolean column of a database's tables, and writes the
//! predictions next to them in `<column>__predicted`.
//!
//! A table is (re)trained after an ANALYZE that follows changes to its data; the models land
//! in `alps.models` and, MADlib-style, in one relation per model. Everything it writes is
//! batched, under `lock_timeout`: applications that hold locks delay ALPS, never the other
//! way round.

mod aggregate;
mod catalog;
mod data;
mod predict;

use std::time::Duration;

use bgworker::prelude::*;
use bgworker::shmem::Shared;
use std::sync::atomic::{AtomicUsize, Ordering};

bgworker::pg_module_magic!();

pub static DATABASE: GucString = GucString::new(
    c"alps.database",
    c"Database ALPS connects to.",
    Some(c"postgres"),
)
.context(GucContext::Postmaster);
pub static NAPTIME: GucInt = GucInt::new(
    c"alps.naptime",
    c"Seconds between ALPS cycles.",
    10,
    1,
    86_400,
)
.context(GucContext::Sighup)
.unit(Unit::Seconds);
pub static INCLUDE_SCHEMAS: GucString = GucString::new(
    c"alps.include_schemas",
    c"Comma-separated schemas to learn from (empty: all but system schemas and alps).",
    None,
)
.context(GucContext::Sighup);
pub static EXCLUDE_SCHEMAS: GucString = GucString::new(
    c"alps.exclude_schemas",
    c"Comma-separated schemas never to learn from.",
    None,
)
.context(GucContext::Sighup);
pub static INCLUDE_TABLES: GucString = GucString::new(
    c"alps.include_tables",
    c"Comma-separated schema.table names to learn from even when their columns look like keys.",
    None,
)
.context(GucContext::Sighup);
pub static EXCLUDE_TABLES: GucString = GucString::new(
    c"alps.exclude_tables",
    c"Comma-separated schema.table names never to learn from.",
    None,
)
.context(GucContext::Sighup);
pub static MIN_CHANGE: GucReal = GucReal::new(
    c"alps.min_change",
    c"Rewrite a prediction only when it moved by more than this many standard deviations of its column (0: any change).",
    0.01,
    0.0,
    1e6,
)
.context(GucContext::Sighup);
pub static MAX_PARALLEL_WORKERS: GucInt = GucInt::new(
    c"alps.max_parallel_workers",
    c"Parallel workers each pass over a table may use (0: ALPS takes one core).",
    0,
    0,
    1024,
)
.context(GucContext::Sighup);
pub static MAX_ITERATIONS: GucInt = GucInt::new(
    c"alps.max_iterations",
    c"Most IRLS iterations of a logistic fit.",
    20,
    1,
    1000,
)
.context(GucContext::Sighup);
pub static TOLERANCE: GucReal = GucReal::new(
    c"alps.tolerance",
    c"IRLS convergence tolerance (deviance and coefficients).",
    1e-9,
    1e-15,
    1e-2,
)
.context(GucContext::Sighup);
pub static LOGIT_L2: GucReal = GucReal::new(
    c"alps.logit_l2",
    c"L2 penalty of the logistic refit after separation (0: no refit).",
    1.0,
    0.0,
    1e9,
)
.context(GucContext::Sighup);
pub static IMPUTE: GucEnum = GucEnum::new(
    c"alps.impute",
    c"Predictions for rows with NULL supports: mean (impute the training mean) or none.",
    0,
    &[(c"mean", 0), (c"none", 1)],
)
.context(GucContext::Sighup);
pub static BATCH_PAGES: GucInt = GucInt::new(
    c"alps.batch_pages",
    c"Heap pages per prediction write batch.",
    64,
    1,
    1_000_000,
)
.context(GucContext::Sighup);
pub static LOCK_TIMEOUT: GucInt = GucInt::new(
    c"alps.lock_timeout",
    c"How long ALPS waits for a lock before leaving the table for the next cycle.",
    1000,
    1,
    600_000,
)
.context(GucContext::Sighup)
.unit(Unit::Milliseconds);

/// The worker's latch, for `alps.wake()` (an address in shared memory, valid in every
/// process of the cluster).
static LATCH: Shared<AtomicUsize> = Shared::new(c"alps worker latch", || AtomicUsize::new(0));

extern "C" {
    fn openblas_set_num_threads(threads: std::ffi::c_int);
}

/// Keeps OpenBLAS single-threaded: its thread pool must not live in a forking postmaster or
/// compete with backends.
fn single_threaded_blas() {
    // SAFETY: a plain setter of the BLAS library linked into this module.
    unsafe { openblas_set_num_threads(1) };
}

struct Alps;

impl Worker for Alps {
    const NAME: &'static str = "alps";
    const DATABASE_CONNECTION: bool = true;
    const RESTART: Restart = Restart::After(Duration::from_secs(10));

    fn main(_arg: i64) -> Result<()> {
        single_threaded_blas();
        let database = DATABASE.get().unwrap_or_else(|| "postgres".to_string());
        worker::connect(worker::Connection::new(worker::Database::Name(&database)))?;
        // ALPS's own SQL names system functions and operators unqualified: only the system
        // catalogs may answer to those names, never look-alikes a user created elsewhere.
        guc::set("search_path", "pg_catalog, pg_temp")?;
        // SAFETY: MyLatch points into this process's PGPROC, in shared memory.
        LATCH.get()?.store(
            unsafe { bgworker::pg_sys::MyLatch } as usize,
            Ordering::Release,
        );
        catalog::ensure()?;
        log!("alps started in database \"{database}\"");
        let event = latch::WaitEvent::named(c"AlpsMain")?;
        while !signals::shutdown_requested() {
            if let Err(e) = catalog::cycle() {
                warning!("alps: cycle failed: {e}");
            }
            latch::wait_for(Some(Duration::from_secs(NAPTIME.get() as u64)), None, event)?;
            signals::reload_if_pending()?;
        }
        LATCH.get()?.store(0, Ordering::Release);
        Ok(())
    }
}
bgworker::export_worker!(Alps, "alps_main");

bgworker::sql_function! {
    /// Wakes the ALPS worker for an early cycle; false when it is not running.
    #[sql(schema = "@extschema@", name = "wake")]
    fn alps_wake() -> bool {
        let latch = LATCH.get()?.load(Ordering::Acquire);
        if latch == 0 {
            return Ok(false);
        }
        // SAFETY: the address of a PGPROC latch in shared memory; setting a latch is always
        // allowed, even if its process has exited meanwhile.
        unsafe { bgworker::pg_sys::SetLatch(latch as *mut bgworker::pg_sys::Latch) };
        Ok(true)
    }
}

bgworker::pg_init!({
    single_threaded_blas();
    for guc in [
        &DATABASE,
        &INCLUDE_SCHEMAS,
        &EXCLUDE_SCHEMAS,
        &INCLUDE_TABLES,
        &EXCLUDE_TABLES,
    ] {
        guc.define()?;
    }
    for guc in [
        &NAPTIME,
        &MAX_ITERATIONS,
        &BATCH_PAGES,
        &LOCK_TIMEOUT,
        &MAX_PARALLEL_WORKERS,
    ] {
        guc.define()?;
    }
    TOLERANCE.define()?;
    MIN_CHANGE.define()?;
    LOGIT_L2.define()?;
    IMPUTE.define()?;
    guc::reserve_prefix(c"alps")?;
    if bgworker::entry::preloading() {
        LATCH.request()?;
        Alps::register()?;
    }
    Ok(())
});
