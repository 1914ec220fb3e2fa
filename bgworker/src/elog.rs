//! Logging through PostgreSQL's `ereport`, with one macro per level.
//!
//! The macros take Rust `format!` arguments; the formatted text reaches `ereport` as a `%s`
//! argument, so a `%` in user data is printed as it is and never read as a format directive.
//!
//! Levels below ERROR return normally. For ERROR, return an [`Error`](crate::Error) from the
//! worker or SQL function (or use [`error!`](crate::error!), which unwinds to the nearest
//! entry point); the entry point then raises it from a frame that owns nothing.
//!
//! ```no_run
//! let table = "orders";
//! bgworker::log!("vacuumed {table}: 100% done");
//! bgworker::warning!("{} rows skipped", 3);
//! ```

use crate::error::PgError;
use crate::guard::guard;
use crate::pg_sys;

/// A message level below ERROR, as in `elog.h`.
///
/// ```
/// use bgworker::elog::Level;
/// assert!(Level::Warning > Level::Log);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// `DEBUG5`, the most verbose.
    Debug5,
    /// `DEBUG4`.
    Debug4,
    /// `DEBUG3`.
    Debug3,
    /// `DEBUG2`.
    Debug2,
    /// `DEBUG1`.
    Debug1,
    /// `LOG`: for the server log (the usual level for background workers).
    Log,
    /// `LOG_SERVER_ONLY`: like LOG, never sent to a client.
    LogServerOnly,
    /// `INFO`: always sent to the client.
    Info,
    /// `NOTICE`.
    Notice,
    /// `WARNING`.
    Warning,
}

impl Level {
    fn to_pg(self) -> i32 {
        (match self {
            Level::Debug5 => pg_sys::DEBUG5,
            Level::Debug4 => pg_sys::DEBUG4,
            Level::Debug3 => pg_sys::DEBUG3,
            Level::Debug2 => pg_sys::DEBUG2,
            Level::Debug1 => pg_sys::DEBUG1,
            Level::Log => pg_sys::LOG,
            Level::LogServerOnly => pg_sys::LOG_SERVER_ONLY,
            Level::Info => pg_sys::INFO,
            Level::Notice => pg_sys::NOTICE,
            Level::Warning => pg_sys::WARNING,
        }) as i32
    }
}

/// Emits `message` at `level`. The macros ([`log!`](crate::log!) and friends) call this.
///
/// If PostgreSQL itself fails while reporting (out of memory), the failure is dropped: a log
/// call never turns into an error of its caller. Called from a thread other than the
/// process's main thread, it panics (PostgreSQL is single-threaded).
///
/// ```no_run
/// bgworker::elog::report(bgworker::elog::Level::Log, "100% done");
/// ```
pub fn report(level: Level, message: &str) {
    // PostgreSQL cannot be entered from another thread, and a log call has no error to
    // return: the calling thread panics instead.
    crate::guard::assert_main_thread();
    let message = crate::cstr::to_cstring_lossy(message);
    let ptr = message.as_ptr();
    let code = 0; // ERRCODE_SUCCESSFUL_COMPLETION, as elog() uses below ERROR
                  // SAFETY: pgsys_report copies the text ("%s") before returning; levels below ERROR return.
    let _ = guard(|| unsafe {
        pg_sys::pgsys_report(level.to_pg(), code, ptr, std::ptr::null(), std::ptr::null())
    });
}

/// Emits a report below ERROR with its own SQLSTATE, detail and hint (a NOTICE or WARNING
/// that another process sent, for example). Like [`report`], it never fails.
///
/// ```no_run
/// use bgworker::{elog::Level, PgError, SqlState};
/// let w = PgError::new(SqlState::WARNING, "disk almost full").with_hint("free some space");
/// bgworker::elog::report_error(Level::Warning, &w);
/// ```
pub fn report_error(level: Level, report: &PgError) {
    crate::guard::assert_main_thread();
    let message = crate::cstr::to_cstring_lossy(&report.message);
    let detail = report.detail.as_deref().map(crate::cstr::to_cstring_lossy);
    let hint = report.hint.as_deref().map(crate::cstr::to_cstring_lossy);
    let opt = |c: &Option<std::ffi::CString>| c.as_ref().map_or(std::ptr::null(), |c| c.as_ptr());
    let (m, d, h) = (message.as_ptr(), opt(&detail), opt(&hint));
    let code = report.sqlstate.packed();
    // SAFETY: pgsys_report copies the texts before returning; levels below ERROR return.
    let _ = guard(|| unsafe { pg_sys::pgsys_report(level.to_pg(), code, m, d, h) });
}

/// Logs at `LOG` level: the server log. `bgworker::log!("count is {n}")`.
///
/// ```no_run
/// let n = 3;
/// bgworker::log!("count is now {n}");
/// ```
#[macro_export]
macro_rules! log {
    ($($arg:tt)*) => { $crate::elog::report($crate::elog::Level::Log, &::std::format!($($arg)*)) };
}

/// Logs at `INFO` level.
///
/// ```no_run
/// bgworker::info!("starting");
/// ```
#[macro_export]
macro_rules! info {
    ($($arg:tt)*) => { $crate::elog::report($crate::elog::Level::Info, &::std::format!($($arg)*)) };
}

/// Logs at `NOTICE` level.
///
/// ```no_run
/// bgworker::notice!("table {} skipped", "t");
/// ```
#[macro_export]
macro_rules! notice {
    ($($arg:tt)*) => { $crate::elog::report($crate::elog::Level::Notice, &::std::format!($($arg)*)) };
}

/// Logs at `WARNING` level.
///
/// ```no_run
/// bgworker::warning!("retrying in {} s", 5);
/// ```
#[macro_export]
macro_rules! warning {
    ($($arg:tt)*) => { $crate::elog::report($crate::elog::Level::Warning, &::std::format!($($arg)*)) };
}

/// Logs at `DEBUG1` level.
///
/// ```no_run
/// bgworker::debug1!("woke up");
/// ```
#[macro_export]
macro_rules! debug1 {
    ($($arg:tt)*) => { $crate::elog::report($crate::elog::Level::Debug1, &::std::format!($($arg)*)) };
}

/// Logs at `DEBUG2` level.
///
/// ```no_run
/// bgworker::debug2!("woke up");
/// ```
#[macro_export]
macro_rules! debug2 {
    ($($arg:tt)*) => { $crate::elog::report($crate::elog::Level::Debug2, &::std::format!($($arg)*)) };
}

/// Logs at `DEBUG3` level.
///
/// ```no_run
/// bgworker::debug3!("woke up");
/// ```
#[macro_export]
macro_rules! debug3 {
    ($($arg:tt)*) => { $crate::elog::report($crate::elog::Level::Debug3, &::std::format!($($arg)*)) };
}

/// Logs at `DEBUG4` level.
///
/// ```no_run
/// bgworker::debug4!("woke up");
/// ```
#[macro_export]
macro_rules! debug4 {
    ($($arg:tt)*) => { $crate::elog::report($crate::elog::Level::Debug4, &::std::format!($($arg)*)) };
}

/// Logs at `DEBUG5` level.
///
/// ```no_run
/// bgworker::debug5!("woke up");
/// ```
#[macro_export]
macro_rules! debug5 {
    ($($arg:tt)*) => { $crate::elog::report($crate::elog::Level::Debug5, &::std::format!($($arg)*)) };
}

/// Raises an ERROR: unwinds (as a panic carrying a [`PgError`](crate::PgError)) to the nearest
/// entry point (worker main, SQL function, `_PG_init`), which reports it with its SQLSTATE.
/// Destructors run on the way, unlike C's `ereport(ERROR)`.
///
/// Prefer returning an [`Error`](crate::Error) where the function can; this macro is for deep
/// code that has no `Result` to return.
///
/// ```no_run
/// # fn f(x: i32) {
/// if x < 0 {
///     bgworker::error!("x must not be negative, got {x}");
/// }
/// # }
/// ```
#[macro_export]
macro_rules! error {
    ($($arg:tt)*) => {
        ::std::panic::panic_any($crate::PgError::new(
            $crate::SqlState::INTERNAL_ERROR,
            ::std::format!($($arg)*),
        ))
    };
}
