//! C strings at the boundary: Rust text into NUL-terminated strings for PostgreSQL, and
//! PostgreSQL's strings (owned by it, or palloc'd for us) back into Rust `String`s.
//!
//! A `&str` may hold a NUL byte, which a C string cannot: where the text is an argument (SQL,
//! a name, a setting), that is an [`Error::Nul`] naming the argument; where it is only shown
//! (a log message, an error report, `pg_stat_activity`), the NUL is written as `\0`.
//!
//! ```no_run
//! use bgworker::Error;
//! // Refused before PostgreSQL is called:
//! let e = bgworker::spi::quote_literal("it\0s").unwrap_err();
//! assert_eq!(e, Error::Nul { field: "literal" });
//! ```

use std::ffi::{c_char, CStr, CString};

use crate::error::{Error, Result};
use crate::pg_sys;

/// `text` as a C string; an interior NUL byte is an [`Error::Nul`] naming `field`.
pub(crate) fn to_cstring(text: &str, field: &'static str) -> Result<CString> {
    CString::new(text).map_err(|_| Error::Nul { field })
}

/// `text` as a C string for display, with NUL bytes (which C cannot carry) shown as `\0`.
pub(crate) fn to_cstring_lossy(text: &str) -> CString {
    CString::new(text).unwrap_or_else(|_| {
        CString::new(text.replace('\0', "\\0")).expect("NUL bytes were replaced")
    })
}

/// A copy of a C string that someone else owns (invalid UTF-8 replaced).
///
/// # Safety
/// `ptr` must point at a NUL-terminated string that stays valid during the call.
pub(crate) unsafe fn copy_cstring(ptr: *const c_char) -> String {
    // SAFETY: guaranteed by the caller.
    unsafe { CStr::from_ptr(ptr) }
        .to_string_lossy()
        .into_owned()
}

/// A copy of a palloc'd C string, which is then freed (invalid UTF-8 replaced).
///
/// # Safety
/// `ptr` must point at a NUL-terminated string palloc'd in a live memory context, which
/// nothing uses afterwards.
pub(crate) unsafe fn take_palloc_cstring(ptr: *mut c_char) -> String {
    // SAFETY: a NUL-terminated string (guaranteed by the caller), copied before it is freed.
    let text = unsafe { copy_cstring(ptr) };
    // SAFETY: palloc'd and not used again (guaranteed by the caller); pfree of a valid chunk
    // does not raise an ERROR.
    unsafe { pg_sys::pfree(ptr.cast()) };
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nul_bytes_are_an_error_or_escaped() {
        assert_eq!(to_cstring("a b", "x").unwrap().as_bytes(), b"a b");
        assert_eq!(
            to_cstring("a\0b", "SQL text"),
            Err(Error::Nul { field: "SQL text" })
        );
        assert_eq!(to_cstring_lossy("a\0b").as_bytes(), b"a\\0b");
        // SAFETY: a NUL-terminated static string.
        assert_eq!(unsafe { copy_cstring(c"caf\xc3\xa9".as_ptr()) }, "café");
    }
}
