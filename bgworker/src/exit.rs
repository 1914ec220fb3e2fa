//! How a worker process ends: `proc_exit`, and what runs after PostgreSQL's exit callbacks.
//!
//! When a worker's main function returns, PostgreSQL runs its exit callbacks (releasing
//! locks, shared memory, temporary files, the process's slot) and then calls the C library's
//! `exit`, which runs every `atexit` handler and shared-library destructor the process
//! inherited from the postmaster. Those only free memory, and they cost: OpenSSL's cleanup
//! alone frees the server's SSL state (which the postmaster set up) block by block, and
//! every write copies a page the process still shared with the postmaster. Perf measured
//! about 0.5 ms of CPU per exiting worker on PostgreSQL 15 with OpenSSL 3, where the whole
//! job of a fresh worker takes under 2 ms. [`skip_library_teardown`] ends the process right
//! after PostgreSQL's own callbacks instead, as the kernel frees the memory anyway.
//!
//! ```no_run
//! struct Quick;
//! impl bgworker::Worker for Quick {
//!     const NAME: &'static str = "quick";
//!     fn main(_arg: i64) -> bgworker::Result<()> {
//!         bgworker::exit::skip_library_teardown()?;
//!         bgworker::log!("done");
//!         Ok(())
//!     }
//! }
//! bgworker::export_worker!(Quick, "quick_main");
//! # fn main() {}
//! ```

use std::sync::atomic::{AtomicI32, Ordering::SeqCst};

use crate::error::{Error, Result};
use crate::guard::guard;
use crate::pg_sys;

/// No process has asked yet (a pid is never 0).
const NOBODY: i32 = 0;

/// The process that asked; a child it forks inherits the `atexit` handler but is not it.
static ASKED_BY: AtomicI32 = AtomicI32::new(NOBODY);
/// The code `proc_exit` was given, once PostgreSQL runs this process's exit callbacks.
static EXIT_CODE: AtomicI32 = AtomicI32::new(i32::MIN);

/// From now on, when this background worker exits through `proc_exit` (its main function
/// returned, an ERROR or FATAL ended it, or SIGTERM did), it ends with `_exit` and the same
/// exit code as soon as PostgreSQL's exit callbacks have run, skipping the C library's
/// `atexit` handlers and the destructors of the shared libraries it has loaded.
///
/// Everything PostgreSQL cleans up still happens, in the same order, before the process
/// ends, and the postmaster sees the same exit code. What is skipped is library teardown
/// that only frees memory (OpenSSL's cleanup, ICU's, libxml2's). Do not call this in a
/// worker that loads a library whose exit handler must run, such as a coverage build that
/// writes its counts at exit. Calling it again in the same process does nothing.
///
/// Returns an error outside a background worker: a backend serves a client, and whoever
/// wrote its extensions may rely on their exit handlers.
///
/// ```no_run
/// bgworker::exit::skip_library_teardown()?;
/// # Ok::<(), bgworker::Error>(())
/// ```
pub fn skip_library_teardown() -> Result<()> {
    // SAFETY: plain reads of this process's globals.
    let (in_worker, me) = unsafe { (!pg_sys::MyBgworkerEntry.is_null(), pg_sys::MyProcPid) };
    if !in_worker {
        return Err(Error::msg(
            "only a background worker can skip library teardown at exit",
        ));
    }
    if ASKED_BY.load(SeqCst) == me {
        return Ok(());
    }
    // The callback is registered first: if the `atexit` registration failed after it, it
    // would only record a code nobody reads.
    // SAFETY: `record_exit_code` is a plain function that stores an integer; on_proc_exit
    // raises an ERROR (caught by guard) when its fixed table of callbacks is full.
    guard(|| unsafe { pg_sys::on_proc_exit(Some(record_exit_code), 0) })?;
    // SAFETY: registers a plain function with the C library; this library is never
    // unloaded (PostgreSQL does not unload libraries), so the function outlives the call.
    if unsafe { libc::atexit(end_now) } != 0 {
        return Err(Error::msg("could not register an exit handler"));
    }
    ASKED_BY.store(me, SeqCst);
    Ok(())
}

/// An `on_proc_exit` callback: PostgreSQL is running this process's exit callbacks.
unsafe extern "C" fn record_exit_code(code: std::os::raw::c_int, _arg: pg_sys::Datum) {
    EXIT_CODE.store(code, SeqCst);
}

/// An `atexit` handler. Handlers run in the reverse order of registration and this one was
/// registered in the worker, after the postmaster's, so it runs before them. It ends the
/// process only when `proc_exit` (whose callbacks have all run by the time it calls `exit`)
/// is what is exiting, in the process that asked.
extern "C" fn end_now() {
    let code = EXIT_CODE.load(SeqCst);
    // SAFETY: getpid has no preconditions.
    let me = unsafe { libc::getpid() };
    if code != i32::MIN && ASKED_BY.load(SeqCst) == me {
        // SAFETY: _exit ends the process at once; nothing after this runs, and PostgreSQL
        // has already released everything it holds in shared memory.
        unsafe { libc::_exit(code) }
    }
}
