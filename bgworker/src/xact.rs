//! Transactions: run a closure with SPI inside a transaction and a snapshot.
//!
//! [`transaction`] commits when the closure returns `Ok`; when it returns `Err`, when a
//! PostgreSQL ERROR was caught inside it (by any call, not only SQL), or when it panics, the
//! transaction is aborted (`AbortCurrentTransaction`) so that the next one in the same worker
//! starts cleanly, and the error (or panic) is passed on. A commit that fails (a deferred
//! constraint, a serialization failure) is an `Err` too, and so is a subtransaction that
//! cannot end (the whole transaction is then rolled back). `pg_stat_activity` shows the
//! statements while they run and `idle` afterwards.
//!
//! ```no_run
//! use bgworker::xact;
//! // A failed transaction is rolled back; the next one starts cleanly.
//! if let Err(e) = xact::transaction(|spi| spi.execute("INSERT INTO missing_table VALUES (1)", &[])) {
//!     bgworker::warning!("skipped: {e}");
//! }
//! xact::transaction(|spi| spi.execute("SELECT 1", &[]))?;
//! # Ok::<(), bgworker::Error>(())
//! ```

use std::cell::Cell;
use std::panic::{self, AssertUnwindSafe};

use crate::error::{Error, Result};
use crate::guard::{check_main_thread, guard};
use crate::pg_sys;
use crate::recovery;
use crate::spi::Spi;

thread_local! {
    /// The [`Spi`] that [`transaction`] lends its closure, while the closure runs: the one
    /// connection whose transaction this module started and so may roll back whole. Any other
    /// (from [`within_current`]) runs in a caller's transaction. Only compared, never read.
    static OWNING_SPI: Cell<*const Spi> = const { Cell::new(std::ptr::null()) };
}

/// Whether `spi` runs in a transaction that [`transaction`] started.
fn owns_transaction(spi: &Spi) -> bool {
    OWNING_SPI.with(|owner| std::ptr::eq(owner.get(), spi))
}

/// Whether a transaction is in progress in this process.
///
/// ```no_run
/// assert!(!bgworker::xact::in_transaction());
/// ```
pub fn in_transaction() -> bool {
    // SAFETY: reads the transaction state; cannot fail.
    unsafe { pg_sys::IsTransactionState() }
}

/// An error unless this process can run transactions: it must have connected to a database
/// (`worker::connect`), since the catalog caches a transaction reads exist only then.
fn check_connected() -> Result<()> {
    // SAFETY: a plain global, NULL until InitPostgres creates the catalog caches.
    if unsafe { pg_sys::CacheMemoryContext }.is_null() {
        return Err(Error::WrongContext(
            "this process is not connected to a database: call worker::connect (and register \
             the worker with a database connection) before running transactions"
                .to_string(),
        ));
    }
    Ok(())
}

/// Makes `context` current (C's `MemoryContextSwitchTo`, a static inline function).
fn switch_to(context: pg_sys::MemoryContext) {
    // SAFETY: every caller passes a context that is alive; assigning the global is all
    // MemoryContextSwitchTo does.
    unsafe { pg_sys::CurrentMemoryContext = context };
}

/// TopMemoryContext, which lives as long as the process: the context to be in when calling
/// something that deletes the current one (SPI_finish, commit, abort).
fn top_memory_context() -> pg_sys::MemoryContext {
    // SAFETY: a plain global, set at process start.
    unsafe { pg_sys::TopMemoryContext }
}

/// Runs `f` in a new transaction with SPI connected and a snapshot pushed, as a worker's
/// main loop does in C (`StartTransactionCommand`, `SPI_connect`, `PushActiveSnapshot`).
///
/// The transaction commits only if `f` returns `Ok` and no PostgreSQL ERROR was caught in it
/// (outside a subtransaction that was rolled back); otherwise it is rolled back and the error
/// returned. A panic rolls it back and goes on unwinding.
///
/// ```no_run
/// let total: i64 = bgworker::xact::transaction(|spi| {
///     spi.execute("UPDATE counters SET n = n + 1", &[])?;
///     spi.query_one("SELECT sum(n)::int8 FROM counters", &[])
/// })?;
/// # Ok::<(), bgworker::Error>(())
/// ```
pub fn transaction<R>(f: impl FnOnce(&mut Spi) -> Result<R>) -> Result<R> {
    check_main_thread()?;
    check_connected()?;
    crate::shmem::check_no_lwlock_guard()?;
    if in_transaction() {
        return Err(Error::WrongContext(
            "a transaction is already in progress; use xact::within_current inside SQL functions"
                .to_string(),
        ));
    }
    // SAFETY: the canonical start sequence of a worker transaction; each call can raise an
    // ERROR, in which case the partial transaction is aborted below.
    let started = guard(|| unsafe {
        pg_sys::SetCurrentStatementStartTimestamp();
        pg_sys::StartTransactionCommand();
    })
    // SAFETY: connecting SPI inside the transaction just started.
    .and_then(|()| guard(|| unsafe { pg_sys::SPI_connect() }))
    .and_then(|rc| {
        // SAFETY: a snapshot for the statements of this transaction.
        guard(|| unsafe { pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot()) })
            .map(|()| rc)
    });
    match started {
        Ok(rc) if rc >= 0 => {}
        Ok(rc) => {
            abort();
            return Err(Error::msg(format!("SPI_connect failed with code {rc}")));
        }
        Err(e) => {
            abort();
            return Err(e.into());
        }
    }

    let mut spi = Spi::connected();
    OWNING_SPI.with(|owner| owner.set(&spi));
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| f(&mut spi)));
    OWNING_SPI.with(|owner| owner.set(std::ptr::null()));
    let lost = spi.take_closed();
    let result = match outcome {
        Ok(_) if lost.is_some() => {
            // A subtransaction could not end and the whole transaction was rolled back then.
            abort();
            Err(lost.unwrap_or_else(|| Error::msg("the transaction was lost")))
        }
        Ok(Ok(value)) => match recovery::pending_error() {
            None => commit().map(|()| value),
            Some(caught) => {
                abort();
                Err(Error::Postgres(caught))
            }
        },
        Ok(Err(e)) => {
            abort();
            Err(e)
        }
        Err(payload) => {
            abort();
            report_idle();
            panic::resume_unwind(payload);
        }
    };
    report_idle();
    result
}

fn commit() -> Result<()> {
    // SPI_finish deletes SPI's procedure context, which is current: call it from one that
    // outlives it, so that an ERROR comes back into live memory.
    switch_to(top_memory_context());
    // SAFETY: matches the SPI_connect of `transaction`.
    if let Err(e) = guard(|| unsafe { pg_sys::SPI_finish() }) {
        abort();
        return Err(e.into());
    }
    // The commit deletes the transaction's memory contexts; a commit-time ERROR (a deferred
    // constraint, a serialization failure) must not return into one of them.
    switch_to(top_memory_context());
    // SAFETY: the closing sequence matching `transaction`'s start; a failing commit raises
    // an ERROR, after which we abort.
    let done = guard(|| unsafe {
        pg_sys::PopActiveSnapshot();
        pg_sys::CommitTransactionCommand();
    });
    if let Err(e) = done {
        abort();
        return Err(e.into());
    }
    // Workers have no idle loop that flushes statistics: do it here, as worker_spi does, so
    // pg_stat_* views see this transaction's changes.
    // SAFETY: reporting statistics outside a transaction; failures only lose statistics.
    let _ = guard(|| unsafe { pg_sys::pgstat_report_stat(true) });
    Ok(())
}

/// Aborts whatever transaction is open, subtransactions included; cleans up SPI,
/// snapshots, locks and memory. A no-op when none is open.
pub(crate) fn abort() {
    // The abort deletes the transaction's contexts, maybe the current one.
    switch_to(top_memory_context());
    // SAFETY: AbortOutOfAnyTransaction is valid in any transaction state, including after a
    // caught ERROR and half-way through ending a subtransaction; unlike
    // AbortCurrentTransaction (which, inside a subtransaction, only marks it aborted, as an
    // interactive session needs), it unwinds every level, as a worker's error recovery does.
    if let Err(e) = guard(|| unsafe {
        pg_sys::AbortOutOfAnyTransaction();
    }) {
        crate::warning!("could not abort the transaction cleanly: {e}");
    }
    recovery::rolled_back(1);
}

fn report_idle() {
    // SAFETY: reporting state; NULL activity keeps the last statement's text.
    let _ = guard(|| unsafe {
        pg_sys::pgstat_report_activity(pg_sys::BackendState_STATE_IDLE, std::ptr::null())
    });
}

/// Runs `f` with SPI connected inside the transaction that is already open: the way to run
/// SQL from a SQL-callable function. Errors are returned as they are; the caller's
/// transaction is aborted by PostgreSQL when the function raises them as an ERROR.
///
/// If a PostgreSQL ERROR was caught inside `f` (outside a rolled back subtransaction), the
/// result is that ERROR even when `f` returns `Ok`, and the function cannot return success
/// (see [`xact`](self)).
///
/// ```no_run
/// let n: i64 = bgworker::xact::within_current(|spi| spi.query_one("SELECT 1::int8", &[]))?;
/// # Ok::<(), bgworker::Error>(())
/// ```
pub fn within_current<R>(f: impl FnOnce(&mut Spi) -> Result<R>) -> Result<R> {
    check_main_thread()?;
    if !in_transaction() {
        return Err(Error::WrongContext(
            "no transaction is in progress; use xact::transaction".to_string(),
        ));
    }
    if let Some(caught) = recovery::pending_error() {
        return Err(Error::Postgres(caught));
    }
    crate::shmem::check_no_lwlock_guard()?;
    // SAFETY: reading the current memory context, to return to it before SPI_finish.
    let outer = unsafe { pg_sys::CurrentMemoryContext };
    // SAFETY: connecting SPI inside a transaction.
    let rc = guard(|| unsafe { pg_sys::SPI_connect() })?;
    if rc < 0 {
        return Err(Error::msg(format!("SPI_connect failed with code {rc}")));
    }
    let mut spi = Spi::connected();
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| f(&mut spi)));
    if let Some(lost) = spi.take_closed() {
        // The transaction is gone: SPI was cleaned up with it.
        return Err(lost);
    }
    if let Some(caught) = recovery::pending_error() {
        // The abort that must follow cleans SPI up; finishing it here could touch state the
        // ERROR left half-way. Nothing can succeed from here: the error is pending.
        return match outcome {
            Ok(Err(e)) => Err(e),
            Ok(Ok(_)) => Err(Error::Postgres(caught)),
            Err(payload) => panic::resume_unwind(payload),
        };
    }
    switch_to(outer);
    // SAFETY: matches the SPI_connect above, from the context that was current before it.
    guard(|| unsafe { pg_sys::SPI_finish() })?;
    match outcome {
        Ok(r) => r,
        Err(payload) => panic::resume_unwind(payload),
    }
}

impl Spi {
    /// Runs `f` in a subtransaction: if it fails (an error value, a PostgreSQL ERROR or a
    /// panic), only the subtransaction is rolled back and the error returned; the enclosing
    /// transaction goes on.
    ///
    /// ```no_run
    /// bgworker::xact::transaction(|spi| {
    ///     if let Err(e) = spi.subtransaction(|spi| spi.execute("INSERT INTO t VALUES (1)", &[])) {
    ///         bgworker::log!("insert failed, going on: {e}");
    ///     }
    ///     spi.execute("INSERT INTO log VALUES ('done')", &[])
    /// })?;
    /// # Ok::<(), bgworker::Error>(())
    /// ```
    pub fn subtransaction<R>(&mut self, f: impl FnOnce(&mut Spi) -> Result<R>) -> Result<R> {
        self.check_usable()?;
        in_subtransaction(self, f)
    }
}

/// The body of [`Spi::subtransaction`].
fn in_subtransaction<R>(spi: &mut Spi, f: impl FnOnce(&mut Spi) -> Result<R>) -> Result<R> {
    // SAFETY: reading the current memory context and resource owner, which the
    // subtransaction calls change and we must restore, as PL/pgSQL does.
    let (context, owner) = unsafe { (pg_sys::CurrentMemoryContext, pg_sys::CurrentResourceOwner) };
    let level = recovery::current_level() + 1;
    // SAFETY: starting a subtransaction inside a transaction.
    guard(|| unsafe { pg_sys::BeginInternalSubTransaction(std::ptr::null()) })?;
    // The subtransaction's statements run in the caller's memory context (its resource
    // owner stays the subtransaction's until it ends).
    switch_to(context);

    let outcome = panic::catch_unwind(AssertUnwindSafe(|| f(spi)));
    if let Some(lost) = spi.take_closed() {
        // A nested subtransaction could not end; everything was rolled back already.
        spi.close(lost.clone());
        return match outcome {
            Err(payload) => panic::resume_unwind(payload),
            Ok(_) => Err(lost),
        };
    }
    let caught = recovery::failed_at_or_below(level)
        .then(recovery::pending_error)
        .flatten();
    let succeeded = matches!(outcome, Ok(Ok(_))) && caught.is_none();
    let end = if succeeded {
        // SAFETY: ending the subtransaction we began.
        guard(|| unsafe { pg_sys::ReleaseCurrentSubTransaction() })
    } else {
        // SAFETY: rolling back the subtransaction we began; valid after a caught ERROR.
        guard(|| unsafe { pg_sys::RollbackAndReleaseCurrentSubTransaction() })
    };
    let restore = || {
        // SAFETY: both were valid before the subtransaction and outlive it.
        unsafe {
            pg_sys::CurrentMemoryContext = context;
            pg_sys::CurrentResourceOwner = owner;
        }
    };
    if let Err(e) = end {
        // A release that fails (a callback's pre-commit work) leaves the subtransaction in
        // progress: roll it back instead, as PL/pgSQL does.
        // SAFETY: as above; the subtransaction is still the current one.
        let rolled_back = succeeded
            && guard(|| unsafe { pg_sys::RollbackAndReleaseCurrentSubTransaction() }).is_ok();
        if rolled_back {
            recovery::rolled_back(level);
            restore();
            return Err(Error::Postgres(e.with_context_line(
                "the subtransaction could not be released and was rolled back",
            )));
        }
        // It cannot end at all. In a worker's own transaction, only rolling back everything
        // recovers. Inside a SQL function the transaction is the caller's, with its executor
        // running above us: leave the recovery to PostgreSQL, which the recorded ERROR makes
        // sure happens (nothing else runs, and the function fails with it).
        if !owns_transaction(spi) {
            return match outcome {
                Err(payload) => panic::resume_unwind(payload),
                Ok(_) => Err(Error::Postgres(e)),
            };
        }
        abort();
        let lost = Error::Postgres(e.with_context_line(
            "the subtransaction could not end, so the whole transaction was rolled back",
        ));
        spi.close(lost.clone());
        return match outcome {
            Err(payload) => panic::resume_unwind(payload),
            Ok(_) => Err(lost),
        };
    }
    if !succeeded {
        recovery::rolled_back(level);
    }
    restore();
    match outcome {
        Ok(Ok(_)) if caught.is_some() => Err(Error::Postgres(caught.unwrap_or_else(|| {
            crate::PgError::new(crate::SqlState::INTERNAL_ERROR, "caught ERROR")
        }))),
        Ok(r) => r,
        Err(payload) => panic::resume_unwind(payload),
    }
}
