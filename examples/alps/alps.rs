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

use bgworker::latch::{Waker, WakerSlot};
use bgworker::prelude::*;
use bgworker::shmem::Shared;

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

/// The worker's latch, for `alps.wake()`.
static WORKER: Shared<WakerSlot> = Shared::new(c"alps worker latch", WakerSlot::new);

struct Alps;

impl Worker for Alps {
    const NAME: &'static str = "alps";
    const DATABASE_CONNECTION: bool = true;
    const RESTART: Restart = Restart::After(Duration::from_secs(10));

    fn main(_arg: i64) -> Result<()> {
        alps_models::single_threaded_blas();
        let database = DATABASE.get().unwrap_or_else(|| "postgres".to_string());
        worker::connect(worker::Connection::new(worker::Database::Name(&database)))?;
        // ALPS's own SQL names system functions and operators unqualified: only the system
        // catalogs may answer to those names, never look-alikes a user created elsewhere.
        guc::set("search_path", "pg_catalog, pg_temp")?;
        WORKER.get()?.set(Some(Waker::current()?));
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
        WORKER.get()?.set(None);
        Ok(())
    }
}
bgworker::export_worker!(Alps, "alps_main");

bgworker::sql_function! {
    /// Wakes the ALPS worker for an early cycle; false when it is not running.
    #[sql(schema = "@extschema@", name = "wake")]
    fn alps_wake() -> bool {
        Ok(WORKER.get()?.wake())
    }
}

bgworker::pg_init!({
    alps_models::single_threaded_blas();
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
        WORKER.request()?;
        Alps::register()?;
    }
    Ok(())
});
