//! Write PostgreSQL background workers in safe Rust.
//!
//! The modules are named after the C concepts they wrap:
//!
//! | module | C counterpart |
//! |---|---|
//! | [`worker`] | `RegisterBackgroundWorker`, `RegisterDynamicBackgroundWorker`, handles |
//! | [`latch`] | `WaitLatch`, `WaitLatchOrSocket`, `CHECK_FOR_INTERRUPTS` |
//! | [`signals`] | `die`, `SignalHandlerForConfigReload`, `ProcessConfigFile` |
//! | [`guc`] | `DefineCustom*Variable`, `MarkGUCPrefixReserved` |
//! | [`elog`] | `ereport`, `elog` |
//! | [`guard()`] | `PG_TRY`/`PG_CATCH` around one call |
//! | [`entry`] | `PG_MODULE_MAGIC`, `_PG_init`, panic and error reporting |
//!
//! A PostgreSQL ERROR becomes an [`Error`] value; a Rust panic or returned error becomes a
//! PostgreSQL ERROR at the entry point. No `longjmp` skips a Rust destructor.
//!
//! ```ignore
//! use bgworker::prelude::*;
//! use std::time::Duration;
//!
//! bgworker::pg_module_magic!();
//!
//! struct Hello;
//! impl Worker for Hello {
//!     const NAME: &'static str = "hello";
//!     fn main(_arg: i64) -> Result<()> {
//!         while !signals::shutdown_requested() {
//!             latch::wait(Some(Duration::from_secs(10)))?;
//!             log!("Hello!");
//!         }
//!         Ok(())
//!     }
//! }
//! bgworker::export_worker!(Hello, "hello_main");
//! bgworker::pg_init!({ Hello::register() });
//! ```

#![warn(missing_docs)]

pub use pg_sys;

pub mod elog;
pub mod entry;
mod error;
mod guard;
pub mod guc;
pub mod latch;
pub mod signals;
#[cfg(feature = "testing")]
pub mod testing;
pub mod worker;

pub use error::{Error, PgError, Result, SqlState};
pub use guard::guard;
pub use worker::Worker;

/// The names a worker file usually needs: `use bgworker::prelude::*;`.
pub mod prelude {
    pub use crate::guc::{self, Context as GucContext, GucBool, GucInt, GucReal, GucString, Unit};
    pub use crate::worker::{self, Restart, StartTime};
    pub use crate::{debug1, info, log, notice, warning};
    pub use crate::{latch, signals};
    pub use crate::{Error, PgError, Result, SqlState, Worker};
}
