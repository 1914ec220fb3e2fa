//! What the safe API promises, exercised one promise at a time (issue 9): each function or
//! worker here does what once crashed the server, leaked privilege or committed a caught
//! ERROR, and reports what it saw.

use std::ffi::CString;
use std::time::Duration;

use bgworker::dsm::Segment;
use bgworker::prelude::*;
use bgworker::shmem::SharedLock;
use bgworker::worker::Status;
use bgworker::{guard, pg_sys};

use crate::dynamic::Sleeper;
use crate::shared::MqEcho;

/// A call that raises an ERROR (`int4in('x')`), caught by the boundary.
fn failing_call() -> std::result::Result<pg_sys::Datum, PgError> {
    let input = CString::new("not a number").unwrap();
    let arg = input.as_ptr() as pg_sys::Datum;
    // SAFETY: int4in takes a C string Datum; the string outlives the call.
    guard(|| unsafe {
        pg_sys::DirectFunctionCall1Coll(Some(pg_sys::int4in), pg_sys::InvalidOid, arg)
    })
}

// Item 3: a parameter that cannot be one.
bgworker::sql_function! {
    fn param_void() -> String {
        let unit = xact::within_current(|spi| spi.execute("SELECT 1", &[&()]));
        Ok(format!("{:?}", unit.err().map(|e| e.to_string())))
    }
}

// Item 4: a Rust result of another type than the declaration's.
bgworker::sql_function! {
    #[sql(name = "int8_as_int8")]
    fn int8_result() -> i64 {
        Ok(42)
    }
}

// Item 5: a worker handle and a queue end made inside SPI, used after SPI is gone and its
// memory reused.
bgworker::sql_function! {
    fn handle_outlives_spi() -> String {
        let handle = xact::within_current(|_| Sleeper::launch(0))?;
        churn_spi_memory()?;
        let status = handle.wait_for_startup()?;
        let Status::Started(pid) = status else {
            return Ok(format!("{status:?}"));
        };
        let same = handle.pid()? == Some(pid);
        handle.terminate()?;
        let stopped = handle.wait_for_shutdown()?;
        Ok(format!("started, same pid {same}, then {stopped:?}"))
    }
}

/// Allocates in a new SPI connection what a freed SPI context held before.
fn churn_spi_memory() -> Result<()> {
    let junk = "\u{7f}".repeat(4000);
    for _ in 0..3 {
        xact::within_current(|spi| spi.query_one::<i32>("SELECT length($1)", &[&junk]))?;
    }
    Ok(())
}

const QUEUE: usize = 16 * 1024;

bgworker::sql_function! {
    fn queue_outlives_spi(message: String) -> Option<String> {
        let segment = Segment::create(2 * QUEUE)?;
        segment.create_queue(0, QUEUE)?;
        segment.create_queue(QUEUE, QUEUE)?;
        let handle = MqEcho::launch(segment.handle() as i64)?;
        let mut to_worker = xact::within_current(|_| segment.sender(0, Some(&handle)))?;
        let mut from_worker = xact::within_current(|_| segment.receiver(QUEUE, Some(&handle)))?;
        churn_spi_memory()?;
        to_worker.send(message.as_bytes())?;
        let answer = from_worker.receive()?;
        Ok(answer.map(|a| String::from_utf8_lossy(&a).into_owned()))
    }
}

// Item 6: LWLock bookkeeping after a caught ERROR.
static LOCK: SharedLock<[i64; 2]> = SharedLock::new(c"test_workers soundness lock", || [0, 0]);

pub fn request() -> Result<()> {
    LOCK.request()
}

/// Holds an LWLock guard while an ERROR is caught, drops it, then shows whether a query
/// cancel still gets through (it cannot when the interrupt holdoff count wrapped).
pub struct LockedCatch;

impl Worker for LockedCatch {
    const NAME: &'static str = "test locked catch";
    const TYPE: &'static str = "test_locked_catch";
    const DATABASE_CONNECTION: bool = true;

    fn main(_arg: i64) -> Result<()> {
        worker::connect(worker::Connection::new(worker::Database::None))?;
        {
            let mut data = LOCK.exclusive()?;
            data[0] += 1;
            let caught = failing_call().is_err();
            // The ERROR's cleanup released the lock, as PostgreSQL's error recovery does.
            log!(
                "locked catch: caught={caught} lock kept={}",
                data.holds_lock()
            );
        }
        // SAFETY: reads a plain counter of this process.
        let holdoff = unsafe { std::ptr::read_volatile(&raw const pg_sys::InterruptHoldoffCount) };
        log!("locked catch: holdoff {holdoff}; waiting for a cancel");
        for _ in 0..200 {
            if let Err(e) = latch::wait(Some(Duration::from_millis(50))) {
                log!("locked catch: cancel seen: {}", e.sqlstate());
                return Ok(());
            }
            if signals::shutdown_requested() {
                break;
            }
        }
        log!("locked catch: cancel ignored");
        Ok(())
    }
}
bgworker::export_worker!(LockedCatch, "test_locked_catch_main");

bgworker::sql_function! {
    /// A guard whose lock is released under it (as a rollback's LWLockReleaseAll does) must
    /// refuse access; SQL is refused while a guard is alive.
    fn lock_released_under_guard(what: String) -> String {
        let mut data = LOCK.exclusive()?;
        match what.as_str() {
            "sql" => Ok(format!("{:?}", xact::within_current(|_| Ok(())).err().map(|e| e.to_string()))),
            "again" => Ok(format!("{:?}", LOCK.share().err().map(|e| e.to_string()))),
            _ => {
                // SAFETY: what a rollback does to every LWLock of the process.
                guard(|| unsafe { pg_sys::LWLockReleaseAll() })?;
                data[0] += 1;
                Ok("the data was reachable".to_string())
            }
        }
    }
}

// Item 7: threads.
bgworker::sql_function! {
    fn from_thread() -> String {
        let results = std::thread::spawn(|| {
            let guarded = failing_call().err().map(|e| e.message);
            let sql = xact::within_current(|spi| spi.execute("SELECT 1", &[]))
                .err()
                .map(|e| e.to_string());
            let logged = std::panic::catch_unwind(|| log!("from a thread"))
                .err()
                .map(|p| p.downcast_ref::<String>().cloned().unwrap_or_default());
            format!("guard: {guarded:?}\nsql: {sql:?}\nlog: {logged:?}")
        })
        .join()
        .map_err(|_| Error::msg("the thread panicked"))?;
        Ok(results)
    }
}

// Item 8: queues that are not there.
bgworker::sql_function! {
    fn dsm_misuse() -> Vec<String> {
        let segment = Segment::create(QUEUE)?;
        let tiny = segment.create_queue(0, 0).err();
        let outside = segment.create_queue(8, QUEUE).err();
        let none = segment.sender(0, None).err();
        segment.create_queue(0, 1024)?;
        let overlap = segment.create_queue(512, 1024).err();
        let misplaced = segment.receiver(64, None).err();
        let good = segment.receiver(0, None).map(|_| "ok");
        Ok([tiny, outside, none, overlap, misplaced]
            .into_iter()
            .map(|e| e.map_or("no error".to_string(), |e| e.to_string()))
            .chain([format!("{good:?}")])
            .collect())
    }
}

// Item 9: a transaction in a worker that never connected.
pub struct Unconnected;

impl Worker for Unconnected {
    const NAME: &'static str = "test unconnected";
    const TYPE: &'static str = "test_unconnected";

    fn main(_arg: i64) -> Result<()> {
        match xact::transaction(|spi| spi.execute("SELECT 1", &[])) {
            Ok(_) => log!("unconnected: transaction ran"),
            Err(e) => log!("unconnected: transaction refused: {e}"),
        }
        // Stay until stopped, so that the launcher always sees the worker start.
        while !signals::shutdown_requested() {
            latch::wait(None)?;
        }
        Ok(())
    }
}
bgworker::export_worker!(Unconnected, "test_unconnected_main");

// Item 10: a transaction sees its own writes.
bgworker::sql_function! {
    fn own_writes() -> String {
        xact::within_current(|spi| {
            spi.execute("CREATE TEMP TABLE own_writes_t (x int)", &[])?;
            spi.execute("INSERT INTO own_writes_t VALUES (1)", &[])?;
            let query: i64 = spi.query_one("SELECT count(*) FROM own_writes_t", &[])?;
            let count = spi.prepare("SELECT count(*) FROM own_writes_t", &[])?;
            spi.execute("INSERT INTO own_writes_t VALUES (2)", &[])?;
            let prepared: i64 = spi.query_prepared_one(&count, &[])?;
            spi.execute("INSERT INTO own_writes_t VALUES (3)", &[])?;
            let mut cursor = spi.cursor("SELECT x FROM own_writes_t", &[])?;
            let rows: Vec<i32> = cursor.fetch(100)?;
            drop(cursor);
            spi.execute("INSERT INTO own_writes_t VALUES (4)", &[])?;
            spi.set_read_only(true);
            let read_only: i64 = spi.query_one("SELECT count(*) FROM own_writes_t", &[])?;
            spi.set_read_only(false);
            spi.execute("DROP TABLE own_writes_t", &[])?;
            Ok(format!("query={query} prepared={prepared} cursor={} read_only={read_only}", rows.len()))
        })
    }
}

// Item 11: a caught ERROR cannot become a success.
bgworker::sql_function! {
    /// Inserts `label` into caught_t, then catches an ERROR outside SPI and returns Ok.
    fn insert_then_ignore_error(label: String) -> String {
        xact::within_current(|spi| spi.execute("INSERT INTO caught_t VALUES ($1)", &[&label]))?;
        let _ignored = failing_call();
        Ok("returned success".to_string())
    }
}

bgworker::sql_function! {
    /// A within_current closure that swallows an SPI ERROR and returns Ok; then tries SQL
    /// again. Logs both outcomes before returning.
    fn swallow_spi_error() -> String {
        let first = xact::within_current(|spi| {
            let _ = spi.execute("SELECT 1/0", &[]);
            Ok("swallowed")
        });
        let second = xact::within_current(|spi| spi.query_one::<i32>("SELECT 1", &[]));
        log!("first: {:?}; second: {:?}", first.as_ref().map_err(|e| e.sqlstate()), second.as_ref().map_err(|e| e.sqlstate()));
        Ok("returned success".to_string())
    }
}

bgworker::sql_function! {
    /// A subtransaction rolls back the caught ERROR: the function may then succeed.
    fn error_in_subtransaction() -> String {
        xact::within_current(|spi| {
            let inner = spi.subtransaction(|_| {
                failing_call()?;
                Ok(())
            });
            spi.execute("INSERT INTO caught_t VALUES ('after subtransaction')", &[])?;
            Ok(format!("{:?}", inner.map_err(|e| e.sqlstate())))
        })
    }
}

// Item 12: commit-time ERRORs and subtransactions that cannot end.
thread_local! {
    static FAIL_SUBCOMMIT: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

unsafe extern "C" fn fail_pre_commit_sub(
    event: pg_sys::SubXactEvent,
    _sub: pg_sys::SubTransactionId,
    _parent: pg_sys::SubTransactionId,
    _arg: *mut std::ffi::c_void,
) {
    if event == pg_sys::SubXactEvent_SUBXACT_EVENT_PRE_COMMIT_SUB
        && FAIL_SUBCOMMIT.with(|f| f.replace(false))
    {
        // SAFETY: raising an ERROR from a C callback, as C code does; this frame owns
        // nothing and the message is static.
        unsafe {
            pg_sys::pgsys_report(
                pg_sys::ERROR as i32,
                pg_sys::pgsys_make_sqlstate(c"XX000".as_ptr()),
                c"subtransaction commit refused by the test".as_ptr(),
                std::ptr::null(),
                std::ptr::null(),
            )
        };
    }
}

pub struct CommitErrors;

impl Worker for CommitErrors {
    const NAME: &'static str = "test commit errors";
    const TYPE: &'static str = "test_commit_errors";
    const DATABASE_CONNECTION: bool = true;

    fn main(_arg: i64) -> Result<()> {
        let db = crate::DATABASE
            .get()
            .unwrap_or_else(|| "postgres".to_string());
        worker::connect(worker::Connection::new(worker::Database::Name(&db)))?;
        // A deferred foreign key fails at commit.
        let deferred = xact::transaction(|spi| {
            spi.execute("INSERT INTO child_t VALUES (42)", &[])?;
            Ok(())
        });
        log!(
            "commit errors: deferred: {:?}",
            deferred.map_err(|e| e.sqlstate())
        );
        // A serialization failure at commit is the same path; the next transaction works.
        let next = xact::transaction(|spi| spi.execute("INSERT INTO parent_t VALUES (1)", &[]));
        log!("commit errors: next: {:?}", next.map_err(|e| e.to_string()));

        // SAFETY: registering a callback of this library for the rest of the process.
        guard(|| unsafe {
            pg_sys::RegisterSubXactCallback(Some(fail_pre_commit_sub), std::ptr::null_mut())
        })?;
        FAIL_SUBCOMMIT.with(|f| f.set(true));
        let sub = xact::transaction(|spi| {
            let inner =
                spi.subtransaction(|spi| spi.execute("INSERT INTO parent_t VALUES (2)", &[]));
            log!(
                "commit errors: subtransaction end: {:?}",
                inner.as_ref().map_err(|e| e.to_string())
            );
            let after = spi.execute("INSERT INTO parent_t VALUES (3)", &[]);
            log!(
                "commit errors: statement after: {:?}",
                after.as_ref().map_err(|e| e.sqlstate())
            );
            // Ignore both and claim success: the transaction must still not commit.
            Ok(())
        });
        log!("commit errors: outer: {:?}", sub.map_err(|e| e.sqlstate()));
        let later = xact::transaction(|spi| {
            spi.execute("INSERT INTO parent_t VALUES (4)", &[])?;
            spi.query_one::<i64>("SELECT count(*) FROM parent_t", &[])
        });
        log!(
            "commit errors: later: {:?}",
            later.map_err(|e| e.to_string())
        );
        // Stay until stopped, so that the launcher always sees the worker start.
        while !signals::shutdown_requested() {
            latch::wait(None)?;
        }
        Ok(())
    }
}
bgworker::export_worker!(CommitErrors, "test_commit_errors_main");

// Item 14: a static worker with a restart interval, stopped by SIGTERM, comes back. No
// database connection: nothing else in the process turns the SIGTERM into an exit code.
pub struct Restarter;

impl Worker for Restarter {
    const NAME: &'static str = "test restarter";
    const TYPE: &'static str = "test_restarter";
    const RESTART: Restart = Restart::After(Duration::from_secs(1));

    fn main(_arg: i64) -> Result<()> {
        log!("restarter running as {}", std::process::id());
        while !signals::shutdown_requested() {
            latch::wait(None)?;
        }
        // Nothing after the loop: a log line would process the pending termination itself.
        Ok(())
    }
}
bgworker::export_worker!(Restarter, "test_restarter_main");
