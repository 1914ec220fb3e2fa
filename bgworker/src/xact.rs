//! Transactions: run a closure with SPI inside a transaction and a snapshot.
//!
//! [`transaction`] commits when the closure returns `Ok`; when it returns `Err`, when a
//! PostgreSQL ERROR was caught inside it, or when it panics, the transaction is aborted
//! (`AbortCurrentTransaction`) so that the next one in the same worker starts cleanly, and
//! the error (or panic) is passed on. `pg_stat_activity` shows the statements while they
//! run and `idle` afterwards.
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

use std::panic::{self, AssertUnwindSafe};

use crate::error::{Error, Result};
use crate::guard::guard;
use crate::pg_sys;
use crate::spi::Spi;

/// Whether a transaction is in progress in this process.
///
/// ```no_run
/// assert!(!bgworker::xact::in_transaction());
/// ```
pub fn in_transaction() -> bool {
    // SAFETY: reads the transaction state; cannot fail.
    unsafe { pg_sys::IsTransactionState() }
}

/// Runs `f` in a new transaction with SPI connected and a snapshot pushed, as a worker's
/// main loop does in C (`StartTransactionCommand`, `SPI_connect`, `PushActiveSnapshot`).
///
/// ```no_run
/// let total: i64 = bgworker::xact::transaction(|spi| {
///     spi.execute("UPDATE counters SET n = n + 1", &[])?;
///     spi.query_one("SELECT sum(n)::int8 FROM counters", &[])
/// })?;
/// # Ok::<(), bgworker::Error>(())
/// ```
pub fn transaction<R>(f: impl FnOnce(&mut Spi) -> Result<R>) -> Result<R> {
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
    .and_then(|()| guard(|| unsafe { pg_sys::SPI_connect() }))
    .and_then(|rc| {
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

    let mut spi = Spi::new();
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| f(&mut spi)));
    let result = match outcome {
        Ok(Ok(value)) if !spi.failed() => commit().map(|()| value),
        Ok(Ok(_)) => {
            abort();
            Err(Error::WrongContext(
                "a PostgreSQL error was caught inside the transaction but the closure returned Ok; \
                 the transaction was rolled back"
                    .to_string(),
            ))
        }
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
    // SAFETY: the closing sequence matching `transaction`'s start; a failing commit (for
    // example a deferred constraint) raises an ERROR, after which we abort.
    let done = guard(|| unsafe {
        pg_sys::SPI_finish();
        pg_sys::PopActiveSnapshot();
        pg_sys::CommitTransactionCommand();
    });
    done.map_err(|e| {
        abort();
        Error::from(e)
    })?;
    // Workers have no idle loop that flushes statistics: do it here, as worker_spi does, so
    // pg_stat_* views see this transaction's changes.
    // SAFETY: reporting statistics outside a transaction; failures only lose statistics.
    let _ = guard(|| unsafe { pg_sys::pgstat_report_stat(true) });
    Ok(())
}

/// Aborts whatever transaction is open; cleans up SPI, snapshots, locks and memory.
fn abort() {
    // SAFETY: AbortCurrentTransaction is valid in any transaction state, including after a
    // caught ERROR; it runs the same cleanup as error recovery in a backend's main loop.
    if let Err(e) = guard(|| unsafe {
        pg_sys::AbortCurrentTransaction();
    }) {
        crate::warning!("could not abort the transaction cleanly: {e}");
    }
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
/// ```no_run
/// let n: i64 = bgworker::xact::within_current(|spi| spi.query_one("SELECT 1::int8", &[]))?;
/// # Ok::<(), bgworker::Error>(())
/// ```
pub fn within_current<R>(f: impl FnOnce(&mut Spi) -> Result<R>) -> Result<R> {
    if !in_transaction() {
        return Err(Error::WrongContext(
            "no transaction is in progress; use xact::transaction".to_string(),
        ));
    }
    // SAFETY: connecting SPI inside a transaction.
    let rc = guard(|| unsafe { pg_sys::SPI_connect() })?;
    if rc < 0 {
        return Err(Error::msg(format!("SPI_connect failed with code {rc}")));
    }
    let mut spi = Spi::new();
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| f(&mut spi)));
    if !spi.failed() {
        // SAFETY: matches the SPI_connect above. After a caught ERROR PostgreSQL's abort
        // cleans SPI up instead, so we must not call it then.
        guard(|| unsafe { pg_sys::SPI_finish() })?;
    }
    match outcome {
        Ok(r) => r,
        Err(payload) => panic::resume_unwind(payload),
    }
}

/// The body of [`Spi::subtransaction`](crate::spi::Spi::subtransaction).
pub(crate) fn in_subtransaction<R>(
    spi: &mut Spi,
    f: impl FnOnce(&mut Spi) -> Result<R>,
) -> Result<R> {
    // SAFETY: reading the current memory context and resource owner, which the
    // subtransaction calls change and we must restore, as PL/pgSQL does.
    let (context, owner) = unsafe { (pg_sys::CurrentMemoryContext, pg_sys::CurrentResourceOwner) };
    let restore = || {
        // SAFETY: both were valid before the subtransaction and outlive it.
        unsafe {
            pg_sys::CurrentMemoryContext = context;
            pg_sys::CurrentResourceOwner = owner;
        }
    };
    // SAFETY: starting a subtransaction inside a transaction.
    guard(|| unsafe { pg_sys::BeginInternalSubTransaction(std::ptr::null()) })?;
    // The subtransaction's statements run in the caller's memory context (its resource
    // owner stays the subtransaction's until it ends).
    // SAFETY: a context that outlives the subtransaction.
    unsafe { pg_sys::CurrentMemoryContext = context };

    let outer_failed = spi.failed();
    spi.reset_failed(false);
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| f(spi)));
    let inner_failed = spi.failed();
    spi.reset_failed(outer_failed);
    let succeeded = matches!(outcome, Ok(Ok(_))) && !inner_failed;
    let end = if succeeded {
        // SAFETY: ending the subtransaction we began.
        guard(|| unsafe { pg_sys::ReleaseCurrentSubTransaction() })
    } else {
        // SAFETY: rolling back the subtransaction we began; valid after a caught ERROR.
        guard(|| unsafe { pg_sys::RollbackAndReleaseCurrentSubTransaction() })
    };
    restore();
    if let Err(e) = end {
        spi.reset_failed(true);
        return Err(e.into());
    }
    match outcome {
        Ok(Ok(_)) if inner_failed => Err(Error::WrongContext(
            "a PostgreSQL error was caught inside the subtransaction but the closure returned Ok; \
             the subtransaction was rolled back"
                .to_string(),
        )),
        Ok(r) => r,
        Err(payload) => panic::resume_unwind(payload),
    }
}
