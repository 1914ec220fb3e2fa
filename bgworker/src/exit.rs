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
use crate::pg_sys;

/// The process that asked (no pid is 0); a child it forks inherits the handler but is not it.
static ASKED_BY: AtomicI32 = AtomicI32::new(0);

#[cfg(all(target_os = "linux", target_env = "gnu"))]
extern "C" {
    /// glibc's `on_exit`: like `atexit`, but the handler is given the exit status.
    fn on_exit(
        function: extern "C" fn(std::os::raw::c_int, *mut std::os::raw::c_void),
        arg: *mut std::os::raw::c_void,
    ) -> std::os::raw::c_int;
}

/// From now on, when this background worker exits through `proc_exit` (its main function
/// returned, an ERROR or FATAL ended it, or SIGTERM did), it ends with `_exit` and the same
/// exit code as soon as PostgreSQL's exit callbacks have run, skipping the C library's
/// `atexit` handlers and the destructors of the shared libraries it has loaded.
///
/// Everything PostgreSQL cleans up still happens, in the same order, before the process
/// ends, and the postmaster sees the same exit code; C stdio buffers are flushed. What is
/// skipped is library teardown that only frees memory (OpenSSL's cleanup, ICU's,
/// libxml2's). Do not call this in a worker that loads a library whose exit handler must
/// run, such as a coverage build that writes its counts at exit. Calling it again in the
/// same process does nothing, and so does calling it where the C library is not glibc.
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
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: registers a plain function with the C library; this library is never
        // unloaded (PostgreSQL does not unload libraries), so the function outlives the call.
        if unsafe { on_exit(end_now, std::ptr::null_mut()) } != 0 {
            return Err(Error::msg("could not register an exit handler"));
        }
    }
    ASKED_BY.store(me, SeqCst);
    Ok(())
}

/// An `on_exit` handler. Handlers run in the reverse order of registration and this one was
/// registered in the worker, after the postmaster's, so it runs before them. It ends the
/// process only when `proc_exit` is what is exiting (which calls `exit` once all its
/// callbacks have run, with the code of the innermost `proc_exit` if a callback's FATAL
/// nested one), in the process that asked.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
extern "C" fn end_now(status: std::os::raw::c_int, _arg: *mut std::os::raw::c_void) {
    // SAFETY: getpid has no preconditions; proc_exit_inprogress is a plain flag of this
    // process that proc_exit sets before its callbacks run.
    let (me, in_proc_exit) = unsafe { (libc::getpid(), pg_sys::proc_exit_inprogress) };
    if in_proc_exit && ASKED_BY.load(SeqCst) == me {
        // SAFETY: flushing every C stream and ending the process at once; nothing after this
        // runs, and PostgreSQL has already released everything it holds in shared memory.
        unsafe {
            libc::fflush(std::ptr::null_mut());
            libc::_exit(status)
        }
    }
}
