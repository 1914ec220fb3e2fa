//! Shows whether a process ran the C library's exit handlers: with
//! `test_workers.exit_handler` on, the preloaded library registers one in the postmaster
//! (every server process inherits it) that logs the process's pid.

use bgworker::prelude::*;

/// Whether the postmaster registers the logging exit handler.
pub static EXIT_HANDLER: GucBool = GucBool::new(
    c"test_workers.exit_handler",
    c"Log when a process runs the C library's exit handlers.",
    false,
)
.context(GucContext::Postmaster);

/// Registers the handler (in the postmaster, when the setting is on).
pub fn register() -> Result<()> {
    // SAFETY: registers a plain function; the library stays loaded for the process's life.
    if EXIT_HANDLER.get() && unsafe { libc::atexit(log_exit) } != 0 {
        return Err(Error::msg("atexit failed"));
    }
    Ok(())
}

extern "C" fn log_exit() {
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() };
    let line = format!("test_workers: C exit handlers ran in process [{pid}]\n");
    // SAFETY: writes a valid buffer to the server log (stderr); a short write only loses
    // part of a line.
    unsafe { libc::write(2, line.as_ptr().cast(), line.len()) };
}

bgworker::sql_function! {
    /// What `bgworker::exit::skip_library_teardown` says in a backend.
    fn skip_teardown_in_backend() -> bool {
        bgworker::exit::skip_library_teardown()?;
        Ok(true)
    }
}
