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
use std::ffi::{c_void, CStr};
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
/// After an ERROR inside a transaction, the transaction must be aborted before the next one
/// starts; the `xact` module does that for you.
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
        return Err(unsafe { take_error_data(error) });
    }
    if let Some(payload) = call.panic {
        panic::resume_unwind(payload);
    }
    // SAFETY: the trampoline wrote the result, since it neither jumped out nor panicked.
    Ok(unsafe { call.result.assume_init() })
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
        (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
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
