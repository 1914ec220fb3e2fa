//! Static workers that fail on purpose.

use std::ffi::CString;

use bgworker::prelude::*;
use bgworker::{guard, pg_sys};

/// Waits for a SIGHUP (so the test can connect first), then panics.
pub struct Panicker;

impl Worker for Panicker {
    const NAME: &'static str = "test panicker";
    const TYPE: &'static str = "test_panicker";

    fn main(_arg: i64) -> Result<()> {
        log!("panicker waiting for SIGHUP");
        while !signals::reload_if_pending()? {
            latch::wait(None)?;
        }
        let owned = String::from("owned strings are dropped on the way out");
        panic!("deliberate panic: 100% of %s ☃ ({})", owned.len());
    }
}
bgworker::export_worker!(Panicker, "test_panicker_main");

/// Makes a call that raises an ERROR, three times, and carries on each time.
pub struct GuardCaller;

impl Worker for GuardCaller {
    const NAME: &'static str = "test guard caller";
    const TYPE: &'static str = "test_guard_caller";
    const DATABASE_CONNECTION: bool = true;

    fn main(_arg: i64) -> Result<()> {
        worker::connect(worker::Connection::new(worker::Database::None))?;
        let input = CString::new("not a number").unwrap();
        let arg = input.as_ptr() as pg_sys::Datum;
        for round in 1..=3 {
            // SAFETY: int4in takes a C string Datum; DirectFunctionCall1Coll builds the call.
            let result = guard(|| unsafe {
                pg_sys::DirectFunctionCall1Coll(Some(pg_sys::int4in), pg_sys::InvalidOid, arg)
            });
            match result {
                Ok(v) => log!("guarded call unexpectedly returned {v}"),
                Err(e) => log!(
                    "guarded call {round} failed: SQLSTATE {}: {}",
                    e.sqlstate,
                    e.message
                ),
            }
        }
        log!("guard caller still running after 3 caught errors");
        while !signals::shutdown_requested() {
            latch::wait(None)?;
        }
        Ok(())
    }
}
bgworker::export_worker!(GuardCaller, "test_guard_caller_main");

/// Returns an error value with detail and hint from its main function.
pub struct ErrReturner;

impl Worker for ErrReturner {
    const NAME: &'static str = "test error returner";

    fn main(_arg: i64) -> Result<()> {
        Err(
            PgError::new(SqlState::INVALID_PARAMETER_VALUE, "returned error: 50% bad")
                .with_detail("detail of the returned error")
                .with_hint("hint of the returned error")
                .into(),
        )
    }
}
bgworker::export_worker!(ErrReturner, "test_err_returner_main");
