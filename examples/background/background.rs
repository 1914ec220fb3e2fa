//! background: run SQL in a background worker and collect its result later, with
//! pg_background's SQL API (version 1: launch, result, detach; version 2: handles with
//! cookies, submit, cancel, wait, list, statistics, progress), plus `pg_background_run_v2`
//! to hand a worker another string, warm workers from a pool shared by the cluster's
//! sessions (`pg_background.pool_max_workers`), and `pg_background_jobs`, a view of them;
//! all on `bgworker::session`.
//!
//! ```sql
//! SELECT pg_background_launch('VACUUM (VERBOSE) big_table');          -- the worker's pid
//! SELECT * FROM pg_background_result(12345) AS (result text);        -- 'VACUUM'
//! SELECT * FROM pg_background_result(pg_background_launch('SELECT 1')) AS (x int);
//! ```
//!
//! The worker runs as the caller (its database, session user and current role) with the
//! caller's session settings; its ERRORs and NOTICEs arrive as the caller's own. No
//! `shared_preload_libraries` needed; preloaded, it starts the warm workers listed in
//! `pg_background.pool_warm_workers` with the server.

mod jobs;
mod pool;
mod v1;
mod v2;

use bgworker::guc::{self, GucInt, GucString, Unit};
use bgworker::prelude::*;

bgworker::pg_module_magic!();

pub struct Background;

impl Worker for Background {
    const NAME: &'static str = "pg_background";
    const TYPE: &'static str = "pg_background";
    const DATABASE_CONNECTION: bool = true;

    fn main(arg: i64) -> Result<()> {
        bgworker::session::serve(arg)
    }
}

bgworker::export_worker!(Background, "pg_background_main");

/// A warm worker of the pool: serves one job after another for one database and role.
pub struct PooledBackground;

impl Worker for PooledBackground {
    const NAME: &'static str = "pg_background pooled";
    const TYPE: &'static str = "pg_background";
    const DATABASE_CONNECTION: bool = true;

    fn main(arg: i64) -> Result<()> {
        bgworker::session::pool::serve(arg)
    }
}

bgworker::export_worker!(PooledBackground, "pg_background_pooled_main");

/// How many warm workers the cluster keeps (0: a fresh worker for every job).
static POOL_MAX_WORKERS: GucInt = GucInt::new(
    c"pg_background.pool_max_workers",
    c"Maximum number of pooled background workers in the cluster (0: no pool).",
    8,
    0,
    bgworker::session::pool::MAX_POOLED as i32,
)
.context(GucContext::Sighup);

/// How many launches may wait for a pooled worker.
static MAX_QUEUED_JOBS: GucInt = GucInt::new(
    c"pg_background.max_queued_jobs",
    c"Maximum number of launches waiting for a pooled background worker.",
    64,
    1,
    bgworker::session::pool::MAX_WAITING as i32,
)
.context(GucContext::Sighup);

/// How long a pooled worker waits for its next job.
static POOL_IDLE_TIMEOUT: GucInt = GucInt::new(
    c"pg_background.pool_idle_timeout",
    c"Time an idle pooled background worker waits for a job before it exits.",
    60,
    1,
    86_400,
)
.context(GucContext::Sighup)
.unit(Unit::Seconds);

/// Warm workers to start with the server (when preloaded): `role@database, ...`.
static POOL_WARM_WORKERS: GucString = GucString::new(
    c"pg_background.pool_warm_workers",
    c"Pooled background workers started with the server, as role@database entries separated by commas.",
    None,
)
.context(GucContext::Postmaster);

/// How many workers one session may have attached at once.
static MAX_WORKERS: GucInt = GucInt::new(
    c"pg_background.max_workers",
    c"Maximum number of concurrent background workers per session.",
    16,
    1,
    1000,
);

/// The reply queue's size when a launch asks for 0.
static DEFAULT_QUEUE_SIZE: GucInt = GucInt::new(
    c"pg_background.default_queue_size",
    c"Default shared memory queue size for background workers.",
    65_536,
    4096,
    256 * 1024 * 1024,
)
.unit(Unit::Bytes);

/// A statement_timeout for the workers' SQL (0: the caller's statement_timeout).
static WORKER_TIMEOUT: GucInt = GucInt::new(
    c"pg_background.worker_timeout",
    c"Maximum execution time of a background worker's SQL (0: no limit of its own).",
    0,
    0,
    i32::MAX,
)
.unit(Unit::Milliseconds);

bgworker::pg_init!({
    // Background workers (this library's own among them) do not define these settings at
    // load time: on PostgreSQL 15 and older each definition sorts the server's whole list
    // of settings again, and a job's worker reads none of them. Whatever reads them calls
    // define_settings first, so a worker whose SQL calls the functions defines them then.
    if bgworker::worker::current_worker_name().is_none() {
        define_settings()?;
    }
    if bgworker::entry::preloading() {
        // A mistake in the list must not keep the server from starting: it is reported,
        // and no warm worker starts.
        let warm = POOL_WARM_WORKERS.get().unwrap_or_default();
        if let Err(e) = bgworker::session::pool::register_warm(PooledBackground::builder(), &warm) {
            bgworker::warning!(
                "pg_background.pool_warm_workers ignored: {}",
                e.to_pg_error().message
            );
        }
    }
    Ok(())
});

/// Defines the settings (once per process): what reads them calls this first.
pub fn define_settings() -> Result<()> {
    static DEFINED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if DEFINED.load(std::sync::atomic::Ordering::SeqCst) {
        return Ok(());
    }
    MAX_WORKERS.define()?;
    DEFAULT_QUEUE_SIZE.define()?;
    WORKER_TIMEOUT.define()?;
    POOL_MAX_WORKERS.define()?;
    MAX_QUEUED_JOBS.define()?;
    POOL_IDLE_TIMEOUT.define()?;
    POOL_WARM_WORKERS.define()?;
    guc::reserve_prefix(c"pg_background")?;
    DEFINED.store(true, std::sync::atomic::Ordering::SeqCst);
    Ok(())
}
