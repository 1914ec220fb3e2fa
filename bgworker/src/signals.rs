//! SIGTERM and SIGHUP, the way a worker loop wants them.
//!
//! Every exported worker starts with PostgreSQL's own handlers installed: SIGTERM runs
//! `die` (a termination request that also cancels a running query, and sets the latch) and
//! SIGHUP runs `SignalHandlerForConfigReload` (a flag plus the latch). Nothing happens inside
//! the handlers beyond that; the loop asks [`shutdown_requested`] and calls
//! [`reload_if_pending`].
//!
//! ```no_run
//! use bgworker::{latch, signals};
//! while !signals::shutdown_requested() {
//!     latch::wait(Some(std::time::Duration::from_secs(10)))?;
//!     signals::reload_if_pending()?;
//! }
//! # Ok::<(), bgworker::Error>(())
//! ```

use crate::error::Result;
use crate::guard::guard;
use crate::pg_sys;

/// Installs the handlers and unblocks signals; run by every exported worker entry point.
pub(crate) fn install_worker_handlers() {
    // SAFETY: pqsignal installs handlers PostgreSQL provides for exactly this use; at worker
    // start signals are still blocked, so nothing races with the installation.
    unsafe {
        pg_sys::pgsys_pqsignal(libc::SIGHUP, Some(pg_sys::SignalHandlerForConfigReload));
        pg_sys::pgsys_pqsignal(libc::SIGTERM, Some(pg_sys::die));
        pg_sys::BackgroundWorkerUnblockSignals();
    }
}

/// Whether the worker has been asked to stop (SIGTERM: `pg_ctl stop`, `pg_terminate_backend`,
/// or a handle's `terminate`). A worker loop checks this after every wait and returns.
///
/// ```no_run
/// while !bgworker::signals::shutdown_requested() {
///     bgworker::latch::wait(None)?;
/// }
/// # Ok::<(), bgworker::Error>(())
/// ```
pub fn shutdown_requested() -> bool {
    // SAFETY: both are sig_atomic_t flags written by signal handlers; volatile reads.
    unsafe {
        std::ptr::read_volatile(&raw const pg_sys::ProcDiePending) != 0
            || std::ptr::read_volatile(&raw const pg_sys::ShutdownRequestPending) != 0
    }
}

/// Re-reads the configuration files when a SIGHUP arrived since the last call. Returns
/// whether it did. Custom variables (see [`crate::guc`]) show their new values afterwards.
///
/// ```no_run
/// if bgworker::signals::reload_if_pending()? {
///     bgworker::log!("configuration reloaded");
/// }
/// # Ok::<(), bgworker::Error>(())
/// ```
pub fn reload_if_pending() -> Result<bool> {
    // SAFETY: ConfigReloadPending is a sig_atomic_t flag set by the SIGHUP handler.
    let pending = unsafe { std::ptr::read_volatile(&raw const pg_sys::ConfigReloadPending) };
    if pending == 0 {
        return Ok(false);
    }
    // SAFETY: clearing the flag before reloading, as C workers do, so a SIGHUP arriving
    // during the reload is not lost.
    unsafe { std::ptr::write_volatile(&raw mut pg_sys::ConfigReloadPending, 0) };
    // SAFETY: ProcessConfigFile is meant to be called from a backend's main loop.
    guard(|| unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext_PGC_SIGHUP) })?;
    Ok(true)
}
