//! Entry points: where PostgreSQL calls into Rust, and where Rust failures go back as ERRORs.
//!
//! Every `extern "C"` function this crate exports (worker mains, `_PG_init`, SQL-callable
//! functions) runs its body through [`run`]. A panic never unwinds into C: it is caught here,
//! and it and any returned [`Error`] are raised as a PostgreSQL ERROR. The raise happens in
//! `raise`, a frame that holds only a raw pointer, so the `longjmp` that `ereport(ERROR)`
//! performs skips no destructor.
//!
//! ```no_run
//! bgworker::pg_module_magic!();
//! bgworker::pg_init!({
//!     bgworker::log!("my library is loaded");
//!     Ok(())
//! });
//! ```

use std::any::Any;
use std::cell::RefCell;
use std::ffi::{c_void, CString};
use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;

use crate::cstr::to_cstring_lossy;
use crate::error::{Error, PgError, SqlState};
use crate::pg_sys;

/// Runs `body` as the body of an `extern "C"` entry point: returns normally on `Ok`, raises
/// an ERROR for an `Err` or a panic.
///
/// The macros [`pg_init!`](crate::pg_init!), [`export_worker!`](crate::export_worker!) and
/// `sql_function!` call it; call it yourself only for entry points
/// they do not cover (for example a hook).
///
/// ```no_run
/// #[no_mangle]
/// extern "C" fn my_hook() {
///     let body = || {
///         bgworker::log!("hook called");
///         Ok(())
///     };
///     // SAFETY: called by PostgreSQL directly; this frame owns nothing.
///     unsafe { bgworker::entry::run(body) };
/// }
/// ```
///
/// # Safety
/// An ERROR leaves by `longjmp` to PostgreSQL's innermost `sigsetjmp`, skipping every frame
/// between: call it only directly from an entry point PostgreSQL calls, in a frame that owns
/// nothing with a destructor (no scoped threads, guards or other values).
pub unsafe fn run<F>(body: F)
where
    F: FnOnce() -> Result<(), Error>,
{
    if let Some(report) = catch(body) {
        // SAFETY: `report` came from `catch`; this frame owns nothing else, and the caller
        // promised the same of the frames above.
        unsafe { raise(report) }
    }
}

/// Like [`run`], for bodies that return a value (SQL functions). On failure the ERROR is
/// raised and this function does not return.
///
/// ```no_run
/// #[no_mangle]
/// extern "C" fn answer_datum() -> usize {
///     // SAFETY: called by PostgreSQL directly; this frame owns nothing.
///     unsafe { bgworker::entry::run_returning(|| Ok(42usize)) }
/// }
/// ```
///
/// # Safety
/// As for [`run`].
pub unsafe fn run_returning<F, R>(body: F) -> R
where
    F: FnOnce() -> Result<R, Error>,
    R: Copy,
{
    let mut out: Option<R> = None;
    let failure = catch(|| {
        out = Some(body()?);
        Ok(())
    });
    match (failure, out) {
        (None, Some(value)) => value,
        // SAFETY: `report` came from `catch`; `out` is `Copy` and needs no drop.
        (Some(report), _) => unsafe { raise(report) },
        (None, None) => unreachable!("body returned Ok without a value"),
    }
}

/// Whether PostgreSQL is loading `shared_preload_libraries` right now: the only time static
/// workers can be registered and shared memory requested.
///
/// ```no_run
/// if bgworker::entry::preloading() {
///     bgworker::log!("loaded at server start");
/// }
/// ```
pub fn preloading() -> bool {
    // SAFETY: a plain server global, written only by this process's main thread.
    unsafe { pg_sys::process_shared_preload_libraries_in_progress }
}

/// Whether the process is exiting (`proc_exit` has begun). Values dropped after that (a
/// thread-local's, at `exit`) must not touch PostgreSQL: it has already released what they
/// refer to.
pub(crate) fn exiting() -> bool {
    // SAFETY: a plain server global of this process.
    unsafe { pg_sys::proc_exit_inprogress }
}

/// What an ERROR will say; owned C strings, freed by [`release_report`] just before
/// `errfinish` leaves by `longjmp`.
struct Report {
    sqlstate: i32,
    message: CString,
    detail: Option<CString>,
    hint: Option<CString>,
    context: Option<CString>,
}

impl Report {
    fn new(e: PgError) -> Report {
        Report {
            sqlstate: e.sqlstate.packed(),
            message: to_cstring_lossy(&e.message),
            detail: e.detail.as_deref().map(to_cstring_lossy),
            hint: e.hint.as_deref().map(to_cstring_lossy),
            context: e.context.as_deref().map(to_cstring_lossy),
        }
    }
}

/// Runs `body`, catching panics; returns the report to raise, if any, as a raw pointer so
/// that the caller's frame owns nothing while it raises.
#[inline(never)]
fn catch<F>(body: F) -> Option<*mut Report>
where
    F: FnOnce() -> Result<(), Error>,
{
    install_panic_hook();
    let error = match panic::catch_unwind(AssertUnwindSafe(body)) {
        // A success after a caught ERROR that nothing rolled back is that ERROR: PostgreSQL
        // must roll the work back.
        Ok(Ok(())) => crate::recovery::unhandled_error()?,
        Ok(Err(e)) => e.to_pg_error(),
        Err(payload) => panic_to_error(payload),
    };
    Some(Box::into_raw(Box::new(Report::new(error))))
}

/// Raises `report` as an ERROR. Never returns.
///
/// # Safety
/// `report` must come from [`catch`]. The calling frames up to PostgreSQL's `sigsetjmp` must
/// own nothing that needs dropping: the `longjmp` skips them.
#[inline(never)]
unsafe fn raise(report: *mut Report) -> ! {
    // SAFETY: `report` is a live Box from `catch`; its strings stay alive until
    // release_report runs, which pgsys_raise does after copying them.
    unsafe {
        let r = &*report;
        let opt = |c: &Option<CString>| c.as_ref().map_or(std::ptr::null(), |c| c.as_ptr());
        pg_sys::pgsys_raise(
            pg_sys::ERROR as i32,
            r.sqlstate,
            r.message.as_ptr(),
            opt(&r.detail),
            opt(&r.hint),
            opt(&r.context),
            Some(release_report),
            report as *mut c_void,
        );
    }
    // ereport(ERROR) does not return; if it ever did, continuing would be wrong.
    std::process::abort()
}

extern "C" fn release_report(report: *mut c_void) {
    // SAFETY: called exactly once by pgsys_raise with the pointer from `catch`.
    drop(unsafe { Box::from_raw(report as *mut Report) });
}

thread_local! {
    /// Where the last panic happened, recorded by our panic hook for the ERROR's detail.
    static PANIC_LOCATION: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Replaces the default panic hook (which prints to stderr) with one that remembers where
/// the panic happened; the entry point reports it inside the ERROR instead.
fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        panic::set_hook(Box::new(|info| {
            let location = info
                .location()
                .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()));
            PANIC_LOCATION.with(|cell| *cell.borrow_mut() = location);
        }));
    });
}

fn panic_to_error(payload: Box<dyn Any + Send>) -> PgError {
    let location = PANIC_LOCATION.with(|cell| cell.borrow_mut().take());
    let payload = match payload.downcast::<PgError>() {
        Ok(e) => return *e,
        Err(other) => other,
    };
    let payload = match payload.downcast::<Error>() {
        Ok(e) => return e.to_pg_error(),
        Err(other) => other,
    };
    let message = if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "Rust panic with a non-text payload".to_string()
    };
    let error = PgError::new(SqlState::INTERNAL_ERROR, message);
    match location {
        Some(at) => error.with_detail(format!("Rust panic at {at}")),
        None => error,
    }
}

/// Declares the module magic block PostgreSQL checks when loading the library
/// (C's `PG_MODULE_MAGIC`). Use it once per library, at the crate root.
///
/// ```no_run
/// bgworker::pg_module_magic!();
/// ```
#[macro_export]
macro_rules! pg_module_magic {
    () => {
        #[no_mangle]
        #[doc(hidden)]
        pub extern "C" fn Pg_magic_func() -> *const ::std::ffi::c_void {
            // SAFETY: returns a pointer to a static struct in the shim.
            unsafe { $crate::pg_sys::pgsys_module_magic() as *const ::std::ffi::c_void }
        }
    };
}

/// Declares `_PG_init`, the function PostgreSQL calls when it loads the library. The body
/// returns `Result<(), bgworker::Error>`; an error or panic is raised as an ERROR (which stops
/// the server's start when the library is in `shared_preload_libraries`).
///
/// ```no_run
/// bgworker::pg_init!({
///     bgworker::log!("loaded");
///     Ok(())
/// });
/// ```
#[macro_export]
macro_rules! pg_init {
    ($body:block) => {
        // Not nameable from Rust: only PostgreSQL calls it.
        const _: () = {
            #[no_mangle]
            extern "C" fn _PG_init() {
                let body = || -> ::std::result::Result<(), $crate::Error> { $body };
                // SAFETY: PostgreSQL calls this directly; the frame owns nothing.
                unsafe { $crate::entry::run(body) };
            }
        };
    };
}
