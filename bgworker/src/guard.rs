//! The error boundary: call into PostgreSQL and get its ERROR back as a Rust value.
//!
//! `ereport(ERROR)` leaves by `siglongjmp` to the innermost `sigsetjmp`. [`guard`] puts that
//! `sigsetjmp` in C (`pgsys_try` in the shim), directly around the call, so the jump lands in
//! a C frame. The only Rust frames it can pass over are [`trampoline`] and the closure itself,
//! and both own nothing with a destructor: the closure and its result are `Copy` (so they have
//! no drop glue), and the trampoline's panic catcher is a plain call. Rust defines a jump over
//! such "plain old frames" as sound; a jump over a frame with pending destructors would not be.
//!
//! ```no_run
//! use bgworker::{guard, pg_sys};
//! let oid = 0;
//! // SAFETY: format_type_be takes any OID and returns a palloc'd string.
//! match guard(|| unsafe { pg_sys::format_type_be(oid) }) {
//!     Ok(_name) => {}
//!     Err(e) => bgworker::log!("failed with {}: {}", e.sqlstate, e.message),
//! }
//! ```

use std::any::Any;
use std::cell::Cell;
use std::ffi::c_void;
use std::mem::MaybeUninit;
use std::panic::{self, AssertUnwindSafe};

use crate::error::{PgError, SqlState};
use crate::pg_sys;

/// Runs `f`, which calls PostgreSQL C functions, and returns PostgreSQL's ERROR as `Err`.
///
/// `f` and its result must be `Copy`: that is what makes the frames a `longjmp` passes over
/// free of destructors. In practice `f` is a closure that makes one FFI call with arguments
/// prepared beforehand (raw pointers, numbers, `&` references).
///
/// After an ERROR inside a transaction, the (sub)transaction must be rolled back before
/// anything else runs in it: the ERROR is recorded, further SQL is refused, and the
/// transaction cannot be committed by returning `Ok` (the `xact` module rolls it back for
/// you). Called from a thread other than the process's main thread, `guard` returns an error
/// without calling `f`.
///
/// ```no_run
/// use bgworker::{guard, pg_sys};
/// // SAFETY: quote_identifier takes a NUL-terminated string and returns a palloc'd one.
/// let quoted = guard(|| unsafe { pg_sys::quote_identifier(c"my table".as_ptr()) })?;
/// # Ok::<(), bgworker::PgError>(())
/// ```
pub fn guard<F, R>(f: F) -> Result<R, PgError>
where
    F: FnOnce() -> R + Copy,
    R: Copy,
{
    check_main_thread()?;
    let mut call = Call::<F, R> {
        f: Some(f),
        result: MaybeUninit::uninit(),
        panic: None,
    };
    // SAFETY: `trampoline::<F, R>` matches the callback type and receives a pointer to `call`,
    // which outlives the call. pgsys_try returns either NULL (fn returned) or a copied
    // ErrorData in the current memory context, which we read and free at once.
    let error = unsafe {
        pg_sys::pgsys_try(
            Some(trampoline::<F, R>),
            &mut call as *mut Call<F, R> as *mut c_void,
        )
    };
    if !error.is_null() {
        // SAFETY: a non-NULL result is a valid ErrorData owned by us.
        let error = unsafe { take_error_data(error) };
        crate::recovery::record_caught_error(&error);
        return Err(error);
    }
    if let Some(payload) = call.panic {
        panic::resume_unwind(payload);
    }
    // SAFETY: the trampoline wrote the result, since it neither jumped out nor panicked.
    Ok(unsafe { call.result.assume_init() })
}

/// Whether this is the process's main thread, the only one PostgreSQL may be entered from.
fn on_main_thread() -> bool {
    thread_local! {
        static MAIN: Cell<Option<bool>> = const { Cell::new(None) };
    }
    MAIN.with(|main| match main.get() {
        Some(known) => known,
        None => {
            // SAFETY: both are plain system calls without arguments.
            let known = unsafe { libc::gettid() == libc::getpid() };
            main.set(Some(known));
            known
        }
    })
}

/// An error unless called on the process's main thread. PostgreSQL is single-threaded: its
/// globals (memory contexts, the error stack, SPI's state) belong to the main thread, and a
/// call from any other corrupts them.
pub(crate) fn check_main_thread() -> Result<(), PgError> {
    if on_main_thread() {
        return Ok(());
    }
    Err(PgError::new(
        SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE,
        "PostgreSQL was called from a thread other than the backend's main thread",
    )
    .with_hint(
        "PostgreSQL is single-threaded: call it only from the thread that runs the worker or \
         function, and hand data to other threads as plain Rust values",
    ))
}

/// Panics unless called on the main thread; for calls that cannot return an error.
pub(crate) fn assert_main_thread() {
    if let Err(e) = check_main_thread() {
        panic!("{}", e.message);
    }
}

struct Call<F, R> {
    f: Option<F>,
    result: MaybeUninit<R>,
    panic: Option<Box<dyn Any + Send>>,
}

/// Called by the shim inside its `sigsetjmp`. Owns nothing that needs dropping while C code
/// runs below it: `f` and `R` are `Copy`.
extern "C" fn trampoline<F, R>(arg: *mut c_void)
where
    F: FnOnce() -> R + Copy,
    R: Copy,
{
    // SAFETY: `arg` is the `&mut Call<F, R>` that `guard` passed, alive for this call.
    let call = unsafe { &mut *(arg as *mut Call<F, R>) };
    let Some(f) = call.f.take() else { return };
    // A panic must not unwind into the C frame above; carry it back to `guard` instead.
    match panic::catch_unwind(AssertUnwindSafe(f)) {
        Ok(value) => {
            call.result.write(value);
        }
        Err(payload) => call.panic = Some(payload),
    }
}

/// Copies an `ErrorData` into a [`PgError`] and frees it.
///
/// # Safety
/// `error` must be a valid `ErrorData` from `CopyErrorData`, not used afterwards.
unsafe fn take_error_data(error: *mut pg_sys::ErrorData) -> PgError {
    // SAFETY: the caller guarantees a valid ErrorData; its strings are NULL or NUL-terminated.
    let e = unsafe { &*error };
    let text = |p: *mut std::ffi::c_char| {
        // SAFETY: see above.
        (!p.is_null()).then(|| unsafe { crate::cstr::copy_cstring(p) })
    };
    let result = PgError {
        sqlstate: SqlState::from_packed(e.sqlerrcode),
        message: text(e.message).unwrap_or_default(),
        detail: text(e.detail),
        hint: text(e.hint),
        context: text(e.context),
    };
    // FreeErrorData only pfree()s, which cannot raise an ERROR for a valid chunk.
    // SAFETY: `error` came from CopyErrorData and is not used again.
    unsafe { pg_sys::FreeErrorData(error) };
    result
}
