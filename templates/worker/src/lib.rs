//! my_worker: a background worker that counts ticks, and SQL functions to greet, read the
//! count and start more workers. Rename it and make it yours.
//!
//! With `shared_preload_libraries = 'my_worker'` one worker starts with the server; without
//! it, `CREATE EXTENSION my_worker` still gives the SQL functions (and `my_worker_launch()`
//! starts workers on demand).

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use bgworker::prelude::*;
use bgworker::shmem::Shared;

bgworker::pg_module_magic!();

static NAPTIME: GucInt = GucInt::new(
    c"my_worker.naptime",
    c"Seconds between ticks.",
    10,
    1,
    3600,
)
.context(GucContext::Sighup)
.unit(Unit::Seconds);

/// Ticks of every my_worker, in shared memory (only with shared_preload_libraries).
static TICKS: Shared<AtomicI64> = Shared::new(c"my_worker ticks", || AtomicI64::new(0));

struct MyWorker;

impl Worker for MyWorker {
    const NAME: &'static str = "my_worker";
    const TYPE: &'static str = "my_worker";
    const DATABASE_CONNECTION: bool = true;

    fn main(_arg: i64) -> Result<()> {
        worker::connect(worker::Connection::new(worker::Database::Name("postgres")))?;
        log!("my_worker started, naptime {} s", NAPTIME.get());
        while !signals::shutdown_requested() {
            let woke = latch::wait(Some(Duration::from_secs(NAPTIME.get() as u64)))?;
            signals::reload_if_pending()?;
            if woke == latch::Woke::Timeout {
                let ticks = TICKS.get().map_or(0, |t| t.fetch_add(1, Ordering::Relaxed) + 1);
                // What PostgreSQL major this was built for, decided at compile time.
                let built_for = if cfg!(pg18) { "18" } else { "before 18" };
                log!("my_worker: tick {ticks} (built for PostgreSQL {built_for})");
            }
        }
        Ok(())
    }
}

bgworker::export_worker!(MyWorker, "my_worker_main");

bgworker::sql_function! {
    /// A greeting; `name` may be NULL.
    #[sql(immutable, parallel_safe)]
    fn my_worker_hello(name: Option<String> = "NULL") -> String {
        Ok(format!("hello, {}", name.as_deref().unwrap_or("stranger")))
    }
}

bgworker::sql_function! {
    /// The ticks counted so far (0 without shared_preload_libraries).
    fn my_worker_ticks() -> i64 {
        Ok(TICKS.get().map_or(0, |t| t.load(Ordering::Relaxed)))
    }
}

bgworker::sql_function! {
    /// Starts another worker; its pid, or NULL when no worker slot is free.
    fn my_worker_launch() -> Option<i32> {
        let handle = match MyWorker::launch(0) {
            Ok(handle) => handle,
            Err(Error::NoFreeWorkerSlot) => return Ok(None),
            Err(e) => return Err(e),
        };
        match handle.wait_for_startup()? {
            worker::Status::Started(pid) => Ok(Some(pid)),
            _ => Ok(None),
        }
    }
}

bgworker::pg_init!({
    NAPTIME.define()?;
    guc::reserve_prefix(c"my_worker")?;
    if bgworker::entry::preloading() {
        TICKS.request()?;
        MyWorker::register()?;
    }
    Ok(())
});
