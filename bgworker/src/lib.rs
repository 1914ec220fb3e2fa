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
//! | [`xact`] | `StartTransactionCommand`, `CommitTransactionCommand`, subtransactions |
//! | [`spi`] | `SPI_execute_with_args`, `SPI_prepare`, cursors, `quote_identifier` |
//! | [`datum`] | Datums and type OIDs: [`datum::ToSql`], [`datum::FromSql`] |
//! | [`shmem`] | `ShmemInitStruct`, `shmem_request_hook`, named LWLock tranches |
//! | [`dsm`] | `dsm_create`/`dsm_attach`, `shm_mq` |
//! | [`fmgr`] | `PG_FUNCTION_INFO_V1`: [`sql_function!`] |
//! | [`composite`] | `CREATE TYPE ... AS (...)`, `heap_form_tuple`: [`composite_type!`] |
//! | [`aggregate`] | `CREATE AGGREGATE` support functions, `AggCheckCallContext`: [`sql_aggregate!`] |
//! | [`sql`] | the `CREATE FUNCTION` statements of an extension script, from the Rust code |
//! | [`elog`] | `ereport`, `elog` |
//! | [`security`] | `SetUserIdAndSecContext`, security-restricted operations |
//! | [`session`] | `pq_redirect_to_shm_mq`, `exec_simple_query`: SQL run by a worker for another process |
//! | [`srf`] | `SRF_IS_FIRSTCALL`, materialize mode: `RETURNS SETOF record` |
//! | [`guard()`] | `PG_TRY`/`PG_CATCH` around one call |
//! | [`entry`] | `PG_MODULE_MAGIC`, `_PG_init`, panic and error reporting |
//! | [`exit`] | `proc_exit`, `atexit`: how a worker process ends |
//!
//! A PostgreSQL ERROR becomes an [`Error`] value; a Rust panic or returned error becomes a
//! PostgreSQL ERROR at the entry point. No `longjmp` skips a Rust destructor.
//!
//! ```no_run
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
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

pub use pg_sys;

pub mod aggregate;
pub mod composite;
mod cstr;
pub mod datum;
pub mod dsm;
pub mod elog;
pub mod entry;
mod error;
pub mod exit;
pub mod fmgr;
mod guard;
pub mod guc;
pub mod latch;
mod recovery;
pub mod security;
pub mod session;
pub mod shmem;
pub mod signals;
pub mod spi;
pub mod sql;
pub mod srf;
#[cfg(feature = "testing")]
pub mod testing;
pub mod time;
pub mod worker;
pub mod xact;

pub use error::{Error, PgError, Position, Result, SqlState};
pub use guard::guard;
pub use worker::Worker;

/// The names a worker file usually needs: `use bgworker::prelude::*;`.
pub mod prelude {
    pub use crate::datum::{FromSql, Numeric, Oid, SqlType, ToSql};
    pub use crate::guc::{
        self, Context as GucContext, GucBool, GucEnum, GucInt, GucReal, GucString, Unit,
    };
    pub use crate::spi::{FromRow, Row, Spi};
    pub use crate::worker::{self, Restart, StartTime};
    pub use crate::{debug1, info, log, notice, warning};
    pub use crate::{latch, signals, spi, xact};
    pub use crate::{Error, PgError, Result, SqlState, Worker};
}
