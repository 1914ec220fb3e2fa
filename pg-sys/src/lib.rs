//! Raw bindings to the PostgreSQL server headers.
//!
//! Generated at build time by `bindgen` from the server headers of the PostgreSQL whose
//! `pg_config` is named by the `PG_CONFIG` environment variable (else `pg_config` on PATH),
//! plus the functions of a small C shim (`pgsys_*`) for macros, static inline functions and
//! the `sigsetjmp` error boundary. This crate has no policy: everything here is `unsafe` to
//! use. Worker authors use the safe `bgworker` crate instead.
//!
//! The crate sets `cfg(pg14)` ... `cfg(pg18)` for the major it was built against; dependents
//! read the same facts from `DEP_PG_MAJOR` in their build scripts.

#![allow(
    non_upper_case_globals,
    non_camel_case_types,
    non_snake_case,
    dead_code
)]
#![allow(clippy::all, rustdoc::all, improper_ctypes, unnecessary_transmutes)]
// Generated code: the safety argument is the C headers', not written next to each block.
#![allow(clippy::undocumented_unsafe_blocks, unsafe_op_in_unsafe_fn)]

include!(concat!(env!("OUT_DIR"), "/bindings.rs"));

/// The major version these bindings were generated for, e.g. `15`.
pub const PG_MAJOR: u32 = PG_VERSION_NUM / 10000;

/// `InvalidOid` (a cast macro in C, which bindgen skips).
pub const InvalidOid: Oid = 0;
