//! What a caught ERROR leaves behind: a (sub)transaction that must be rolled back.
//!
//! PostgreSQL's rule is that after an ERROR nothing more runs in the (sub)transaction it
//! happened in: it is rolled back, and only then does work go on (PL/pgSQL's `EXCEPTION`
//! blocks are subtransactions for that reason). [`guard`](crate::guard()) records the
//! nesting level of every ERROR it catches, wherever it was called from; the `spi` and
//! `xact` modules and the entry points read that record:
//!
//! - SQL is refused while the current level has a caught ERROR;
//! - a transaction or subtransaction whose closure returns `Ok` after a caught ERROR is
//!   rolled back and returns that ERROR instead;
//! - an entry point (a SQL function, a worker) that returns `Ok` after a caught ERROR raises
//!   that ERROR instead, so PostgreSQL rolls the work back.
//!
//! Every end of a (sub)transaction clears the record of its level, whoever ends it: our own
//! rollbacks, and PostgreSQL's (PL/pgSQL's exception blocks, a failed statement), through
//! transaction callbacks.
//!
//! ```no_run
//! use bgworker::xact;
//! let outcome = xact::transaction(|spi| {
//!     spi.execute("INSERT INTO audit VALUES ('kept?')", &[])?;
//!     let _ignored = spi.execute("SELECT 1/0", &[]); // ERROR caught, then ignored
//!     Ok(())
//! });
//! // Rolled back: the insert is gone and the division by zero is the result.
//! assert!(outcome.is_err());
//! ```

use std::cell::{Cell, RefCell};
use std::ffi::c_void;

use crate::error::PgError;
use crate::pg_sys;

thread_local! {
    /// The lowest transaction nesting level (1 = top level) with a caught, not yet rolled
    /// back ERROR; 0 when there is none.
    static FAILED_LEVEL: Cell<i32> = const { Cell::new(0) };
    /// The first ERROR caught at that level, raised again if the code returns `Ok`.
    static FIRST_ERROR: RefCell<Option<PgError>> = const { RefCell::new(None) };
    static CALLBACKS_REGISTERED: Cell<bool> = const { Cell::new(false) };
}

/// The current transaction nesting level: 0 outside a transaction, 1 at top level.
pub(crate) fn current_level() -> i32 {
    // SAFETY: reads the transaction state stack; cannot fail.
    unsafe { pg_sys::GetCurrentTransactionNestLevel() }
}

/// Records an ERROR that `guard` caught (on the main thread).
pub(crate) fn record_caught_error(error: &PgError) {
    let level = current_level();
    if level <= 0 {
        return;
    }
    register_callbacks();
    let failed = FAILED_LEVEL.with(Cell::get);
    if failed == 0 || level < failed {
        FAILED_LEVEL.with(|f| f.set(level));
        FIRST_ERROR.with(|e| *e.borrow_mut() = Some(error.clone()));
    }
}

/// The caught ERROR that makes the current (sub)transaction unusable, if any.
pub(crate) fn pending_error() -> Option<PgError> {
    if FAILED_LEVEL.with(Cell::get) == 0 {
        return None;
    }
    Some(FIRST_ERROR.with(|e| e.borrow().clone()).unwrap_or_else(|| {
        PgError::new(
            crate::SqlState::INTERNAL_ERROR,
            "an ERROR was caught in this transaction",
        )
    }))
}

/// Whether an ERROR was caught at `level` or deeper and not rolled back yet.
pub(crate) fn failed_at_or_below(level: i32) -> bool {
    let failed = FAILED_LEVEL.with(Cell::get);
    failed != 0 && failed >= level
}

/// Forgets the ERRORs of `level` and deeper: that (sub)transaction was rolled back.
pub(crate) fn rolled_back(level: i32) {
    if failed_at_or_below(level) {
        FAILED_LEVEL.with(|f| f.set(0));
        FIRST_ERROR.with(|e| *e.borrow_mut() = None);
    }
}

/// The error to raise instead of a success, when an ERROR was caught during an entry point
/// and nothing rolled it back.
pub(crate) fn unhandled_error() -> Option<PgError> {
    Some(pending_error()?.with_context_line(
        "the Rust code caught this ERROR and returned success without rolling back its \
         (sub)transaction",
    ))
}

fn register_callbacks() {
    if CALLBACKS_REGISTERED.with(|r| r.replace(true)) {
        return;
    }
    // SAFETY: registering process-lifetime callbacks (they live in this library, which
    // PostgreSQL never unloads). A failure (out of memory) is caught; the flag set above
    // keeps the nested record_caught_error from coming back here.
    let _ = crate::guard(|| unsafe {
        pg_sys::RegisterXactCallback(Some(on_xact_event), std::ptr::null_mut());
        pg_sys::RegisterSubXactCallback(Some(on_subxact_event), std::ptr::null_mut());
    });
}

unsafe extern "C" fn on_xact_event(event: pg_sys::XactEvent, _arg: *mut c_void) {
    match event {
        pg_sys::XactEvent_XACT_EVENT_COMMIT
        | pg_sys::XactEvent_XACT_EVENT_PARALLEL_COMMIT
        | pg_sys::XactEvent_XACT_EVENT_ABORT
        | pg_sys::XactEvent_XACT_EVENT_PARALLEL_ABORT
        | pg_sys::XactEvent_XACT_EVENT_PREPARE => rolled_back(1),
        _ => {}
    }
}

unsafe extern "C" fn on_subxact_event(
    event: pg_sys::SubXactEvent,
    _sub: pg_sys::SubTransactionId,
    _parent: pg_sys::SubTransactionId,
    _arg: *mut c_void,
) {
    // While the callbacks run, the ending subtransaction is still the current level.
    let level = current_level();
    match event {
        pg_sys::SubXactEvent_SUBXACT_EVENT_ABORT_SUB => rolled_back(level),
        pg_sys::SubXactEvent_SUBXACT_EVENT_COMMIT_SUB if failed_at_or_below(level) => {
            // Committed anyway (not through this crate): the failure belongs to the parent.
            FAILED_LEVEL.with(|f| f.set((level - 1).max(1)));
        }
        _ => {}
    }
}
