//! Background workers: declaring, registering and launching them.
//!
//! A worker is a type implementing [`Worker`], exported with
//! [`export_worker!`](crate::export_worker!). Register it statically from `_PG_init` with
//! [`Worker::register`], or launch it from a backend with [`Worker::launch`]. For unusual
//! cases, [`Builder`] exposes every field of C's `BackgroundWorker`.
//!
//! ```no_run
//! use bgworker::prelude::*;
//!
//! struct Ticker;
//! impl Worker for Ticker {
//!     const NAME: &'static str = "ticker";
//!     fn main(_arg: i64) -> Result<()> {
//!         while !signals::shutdown_requested() {
//!             latch::wait(Some(std::time::Duration::from_secs(1)))?;
//!             log!("tick");
//!         }
//!         Ok(())
//!     }
//! }
//! bgworker::export_worker!(Ticker, "ticker_main");
//! bgworker::pg_init!({ Ticker::register() });
//! ```

use std::time::Duration;

use crate::cstr::{copy_cstring, to_cstring};
use crate::error::{Error, Result};
use crate::guard::guard;
use crate::pg_sys;

/// When the postmaster starts the worker (`bgw_start_time`).
///
/// ```no_run
/// use bgworker::worker::{Builder, StartTime};
/// let b = Builder::new("standby helper").start_time(StartTime::ConsistentState);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartTime {
    /// As soon as the postmaster has started (`BgWorkerStart_PostmasterStart`); no database
    /// access is possible.
    PostmasterStart,
    /// When a consistent state is reached, also on a hot standby
    /// (`BgWorkerStart_ConsistentState`).
    ConsistentState,
    /// When recovery has finished and the server accepts writes
    /// (`BgWorkerStart_RecoveryFinished`), the usual choice.
    RecoveryFinished,
}

/// What the postmaster does when the worker exits with code 1 (`bgw_restart_time`).
///
/// ```no_run
/// use bgworker::worker::{Builder, Restart};
/// let b = Builder::new("resilient").restart(Restart::After(std::time::Duration::from_secs(5)));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Restart {
    /// Never restart it (`BGW_NEVER_RESTART`).
    Never,
    /// Restart it after this long (whole seconds).
    After(Duration),
}

/// A background worker, as a Rust type.
///
/// Implement it, export the entry point with [`export_worker!`](crate::export_worker!), and
/// register it with [`Worker::register`] in `_PG_init` (or [`Worker::launch`] from a
/// backend). `main` runs in the worker process with SIGTERM and SIGHUP handled (see
/// [`crate::signals`]); returning `Ok` exits with code 0, returning `Err` or panicking exits
/// through a PostgreSQL ERROR (code 1) carrying the message.
///
/// ```no_run
/// struct Hello;
/// impl bgworker::Worker for Hello {
///     const NAME: &'static str = "hello";
///     fn main(_arg: i64) -> bgworker::Result<()> {
///         bgworker::log!("hello");
///         Ok(())
///     }
/// }
/// bgworker::export_worker!(Hello, "hello_main");
/// ```
pub trait Worker: Exported {
    /// `bgw_name`: shown in the log and in `pg_stat_activity.backend_type` before 15's types.
    const NAME: &'static str;
    /// `bgw_type`: `pg_stat_activity.backend_type`. Defaults to the name.
    const TYPE: &'static str = Self::NAME;
    /// When to start.
    const START: StartTime = StartTime::RecoveryFinished;
    /// Whether and when to restart after a failure.
    const RESTART: Restart = Restart::Never;
    /// Whether the worker connects to a database (`BGWORKER_BACKEND_DATABASE_CONNECTION`).
    const DATABASE_CONNECTION: bool = false;

    /// The worker's body. `arg` is `bgw_main_arg`, passed by value.
    fn main(arg: i64) -> Result<()>;

    /// A [`Builder`] filled from this type's constants.
    fn builder() -> Builder {
        let mut b = Builder::new(Self::NAME)
            .type_name(Self::TYPE)
            .start_time(Self::START)
            .restart(Self::RESTART)
            .function(Self::FUNCTION);
        if Self::DATABASE_CONNECTION {
            b = b.database_connection();
        }
        b
    }

    /// Registers the worker statically; call it from `_PG_init` while the library is loaded
    /// through `shared_preload_libraries`.
    fn register() -> Result<()> {
        Self::builder().register()
    }

    /// Launches the worker dynamically from a backend, with `arg` as its main argument.
    fn launch(arg: i64) -> Result<Handle> {
        Self::builder().main_arg(arg).launch()
    }
}

/// Implemented by [`export_worker!`](crate::export_worker!): the name of the exported C entry
/// point that PostgreSQL looks up (`bgw_function_name`).
///
/// ```no_run
/// # struct MyWorker;
/// # impl bgworker::Worker for MyWorker {
/// #     const NAME: &'static str = "my worker";
/// #     fn main(_arg: i64) -> bgworker::Result<()> { Ok(()) }
/// # }
/// bgworker::export_worker!(MyWorker, "my_worker_main");
/// assert_eq!(<MyWorker as bgworker::worker::Exported>::FUNCTION, "my_worker_main");
/// ```
pub trait Exported {
    /// The unmangled symbol name of the entry point.
    const FUNCTION: &'static str;
}

/// Exports a [`Worker`]'s main function under an unmangled C name and records that name for
/// registration. The generated function installs the signal handlers, runs
/// [`Worker::main`] and turns an error or panic into an ERROR (exit code 1).
///
/// ```no_run
/// # struct MyWorker;
/// # impl bgworker::Worker for MyWorker {
/// #     const NAME: &'static str = "my worker";
/// #     fn main(_arg: i64) -> bgworker::Result<()> { Ok(()) }
/// # }
/// bgworker::export_worker!(MyWorker, "my_worker_main");
/// ```
#[macro_export]
macro_rules! export_worker {
    ($worker:ty, $symbol:literal) => {
        const _: () = {
            #[export_name = $symbol]
            extern "C" fn entry(arg: $crate::pg_sys::Datum) {
                // SAFETY: PostgreSQL calls this directly; the frame owns nothing.
                unsafe { $crate::worker::run_main::<$worker>(arg) }
            }
            impl $crate::worker::Exported for $worker {
                const FUNCTION: &'static str = $symbol;
            }
        };
    };
}

/// The body of every exported worker entry point. Not for direct use.
///
/// # Safety
/// As for [`entry::run`](crate::entry::run): only the exported entry point calls it.
#[doc(hidden)]
pub unsafe fn run_main<W: Worker>(arg: pg_sys::Datum) {
    let body = || {
        crate::signals::install_worker_handlers();
        W::main(arg as i64)
    };
    // SAFETY: forwarded from the caller.
    unsafe { crate::entry::run(body) };
    // `main` returned Ok. Stopped by SIGTERM, a worker with a restart interval exits with
    // code 1, as C workers do (`proc_exit(1)` after their loop), so that the postmaster
    // restarts it after the interval; exit code 0 would unregister it for good.
    if crate::signals::shutdown_requested() && restarts() {
        // SAFETY: proc_exit runs the exit callbacks and ends the process; this frame owns
        // nothing (everything `main` owned was dropped when it returned).
        unsafe { pg_sys::proc_exit(1) };
    }
}

/// Whether the running worker has a restart interval.
fn restarts() -> bool {
    // SAFETY: MyBgworkerEntry is NULL outside a worker, else this process's entry.
    let entry = unsafe { pg_sys::MyBgworkerEntry };
    // SAFETY: checked non-NULL; the entry lives as long as the process.
    !entry.is_null() && unsafe { (*entry).bgw_restart_time } != pg_sys::BGW_NEVER_RESTART
}

/// Every field of C's `BackgroundWorker`, with checked conversions.
///
/// Shared memory access (`BGWORKER_SHMEM_ACCESS`) is always requested: PostgreSQL 15 and
/// later require it, and nothing useful can be done without it. The library defaults to the
/// one this code is linked into.
///
/// ```no_run
/// use bgworker::worker::{Builder, Restart};
/// use std::time::Duration;
/// Builder::new("my worker")
///     .function("my_worker_main")
///     .database_connection()
///     .restart(Restart::After(Duration::from_secs(10)))
///     .register()?;
/// # Ok::<(), bgworker::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Builder {
    name: String,
    type_name: Option<String>,
    flags: i32,
    start_time: StartTime,
    restart: Restart,
    library: Option<String>,
    function: Option<String>,
    main_arg: i64,
    extra: Vec<u8>,
    notify_pid: Option<i32>,
}

impl Builder {
    /// A worker named `name` (`bgw_name`), starting after recovery, never restarted.
    pub fn new(name: impl Into<String>) -> Builder {
        Builder {
            name: name.into(),
            type_name: None,
            flags: pg_sys::BGWORKER_SHMEM_ACCESS as i32,
            start_time: StartTime::RecoveryFinished,
            restart: Restart::Never,
            library: None,
            function: None,
            main_arg: 0,
            extra: Vec::new(),
            notify_pid: None,
        }
    }

    /// Renames the worker (`bgw_name`), for example to number instances of one type.
    pub fn name(mut self, name: impl Into<String>) -> Builder {
        self.name = name.into();
        self
    }

    /// `bgw_type`, shown as `pg_stat_activity.backend_type`. Defaults to the name.
    pub fn type_name(mut self, type_name: impl Into<String>) -> Builder {
        self.type_name = Some(type_name.into());
        self
    }

    /// Requests a database connection (`BGWORKER_BACKEND_DATABASE_CONNECTION`).
    pub fn database_connection(mut self) -> Builder {
        self.flags |= pg_sys::BGWORKER_BACKEND_DATABASE_CONNECTION as i32;
        self
    }

    /// When the postmaster starts the worker.
    pub fn start_time(mut self, start_time: StartTime) -> Builder {
        self.start_time = start_time;
        self
    }

    /// The restart policy.
    pub fn restart(mut self, restart: Restart) -> Builder {
        self.restart = restart;
        self
    }

    /// The library holding the entry point (`bgw_library_name`). Defaults to the path of the
    /// library this code is linked into.
    pub fn library(mut self, library: impl Into<String>) -> Builder {
        self.library = Some(library.into());
        self
    }

    /// The entry point's symbol (`bgw_function_name`).
    pub fn function(mut self, function: impl Into<String>) -> Builder {
        self.function = Some(function.into());
        self
    }

    /// `bgw_main_arg`, passed by value (a pointer would not survive into a new process).
    pub fn main_arg(mut self, arg: i64) -> Builder {
        self.main_arg = arg;
        self
    }

    /// `bgw_extra`: up to `BGW_EXTRALEN` (128) bytes the worker reads with [`extra`].
    pub fn extra(mut self, bytes: impl Into<Vec<u8>>) -> Builder {
        self.extra = bytes.into();
        self
    }

    /// `bgw_notify_pid`: the backend to signal on start and stop. [`Builder::launch`] sets it
    /// to the calling backend unless told otherwise.
    pub fn notify_pid(mut self, pid: i32) -> Builder {
        self.notify_pid = Some(pid);
        self
    }

    /// Fills C's struct, refusing values that do not fit their fields.
    fn to_c(&self) -> Result<pg_sys::BackgroundWorker> {
        // SAFETY: BackgroundWorker is plain data; all-zero is a valid (empty) value.
        let mut w: pg_sys::BackgroundWorker = unsafe { std::mem::zeroed() };
        copy_c_string(&mut w.bgw_name, &self.name, "bgw_name (worker name)")?;
        let type_name = self.type_name.as_deref().unwrap_or(&self.name);
        copy_c_string(&mut w.bgw_type, type_name, "bgw_type (worker type)")?;
        let library = match &self.library {
            Some(l) => l.clone(),
            None => current_library()?,
        };
        copy_c_string(&mut w.bgw_library_name, &library, "bgw_library_name")?;
        let function = self.function.as_deref().ok_or_else(|| {
            Error::msg(format!(
                "background worker \"{}\" has no function",
                self.name
            ))
        })?;
        copy_c_string(&mut w.bgw_function_name, function, "bgw_function_name")?;
        if self.extra.len() > w.bgw_extra.len() {
            return Err(Error::TooLong {
                field: "bgw_extra",
                max: w.bgw_extra.len(),
                len: self.extra.len(),
            });
        }
        for (dst, src) in w.bgw_extra.iter_mut().zip(&self.extra) {
            *dst = *src as _;
        }
        w.bgw_flags = self.flags;
        w.bgw_start_time = match self.start_time {
            StartTime::PostmasterStart => pg_sys::BgWorkerStartTime_BgWorkerStart_PostmasterStart,
            StartTime::ConsistentState => pg_sys::BgWorkerStartTime_BgWorkerStart_ConsistentState,
            StartTime::RecoveryFinished => pg_sys::BgWorkerStartTime_BgWorkerStart_RecoveryFinished,
        };
        w.bgw_restart_time = match self.restart {
            Restart::Never => pg_sys::BGW_NEVER_RESTART,
            Restart::After(d) => i32::try_from(d.as_secs()).unwrap_or(i32::MAX),
        };
        w.bgw_main_arg = self.main_arg as pg_sys::Datum;
        w.bgw_notify_pid = self.notify_pid.unwrap_or(0) as _;
        Ok(w)
    }

    /// Registers the worker statically, from `_PG_init` while PostgreSQL processes
    /// `shared_preload_libraries`.
    ///
    /// Anywhere else it does nothing and returns `Ok`, as C's `RegisterBackgroundWorker`
    /// does: a backend that loads the library for its SQL functions (`CREATE FUNCTION ...
    /// AS 'lib'`, `LOAD`) runs `_PG_init` too, and must not fail there. The postmaster logs
    /// that the worker was not registered when that happens in it.
    pub fn register(self) -> Result<()> {
        if !crate::entry::preloading() {
            // SAFETY: a plain server global, true in every process but the postmaster.
            if !unsafe { pg_sys::IsUnderPostmaster } {
                crate::log!(
                    "background worker \"{}\": must be registered in shared_preload_libraries",
                    self.name
                );
            }
            return Ok(());
        }
        let mut w = self.to_c()?;
        let ptr = &mut w as *mut pg_sys::BackgroundWorker;
        // SAFETY: `w` is a fully initialised BackgroundWorker that PostgreSQL copies.
        guard(|| unsafe { pg_sys::RegisterBackgroundWorker(ptr) })?;
        Ok(())
    }

    /// Launches the worker from a backend (dynamic registration). Fails with
    /// [`Error::NoFreeWorkerSlot`] when `max_worker_processes` workers already exist.
    pub fn launch(mut self) -> Result<Handle> {
        if self.notify_pid.is_none() {
            // SAFETY: MyProcPid is a plain global set at process start.
            self.notify_pid = Some(unsafe { pg_sys::MyProcPid });
        }
        let mut w = self.to_c()?;
        let worker = &mut w as *mut pg_sys::BackgroundWorker;
        let mut handle: *mut pg_sys::BackgroundWorkerHandle = std::ptr::null_mut();
        let out = &mut handle as *mut *mut pg_sys::BackgroundWorkerHandle;
        // PostgreSQL pallocs the handle in the current memory context, which may be a
        // transaction's or SPI's and die long before the Rust value: allocate it in
        // TopMemoryContext instead, and free it on drop.
        // SAFETY: both pointers are valid for the call; the context switch is undone right
        // after, also on ERROR (the boundary restores the caller's context).
        let ok = guard(|| unsafe {
            let previous = pg_sys::CurrentMemoryContext;
            pg_sys::CurrentMemoryContext = pg_sys::TopMemoryContext;
            let ok = pg_sys::RegisterDynamicBackgroundWorker(worker, out);
            pg_sys::CurrentMemoryContext = previous;
            ok
        })?;
        if !ok || handle.is_null() {
            return Err(Error::NoFreeWorkerSlot);
        }
        Ok(Handle {
            raw: handle,
            _not_send: std::marker::PhantomData,
        })
    }
}

fn copy_c_string(field: &mut [std::ffi::c_char], value: &str, name: &'static str) -> Result<()> {
    if value.as_bytes().contains(&0) {
        return Err(Error::Nul { field: name });
    }
    // One byte is kept for the terminating NUL.
    if value.len() >= field.len() {
        return Err(Error::TooLong {
            field: name,
            max: field.len() - 1,
            len: value.len(),
        });
    }
    for (dst, src) in field.iter_mut().zip(value.bytes()) {
        *dst = src as std::ffi::c_char;
    }
    field[value.len()] = 0;
    Ok(())
}

/// The file name of the shared library this code is linked into, as the dynamic loader
/// knows it. This is what `bgw_library_name` should name for workers declared here.
///
/// ```no_run
/// let path = bgworker::worker::current_library()?;
/// assert!(path.ends_with(".so"));
/// # Ok::<(), bgworker::Error>(())
/// ```
pub fn current_library() -> Result<String> {
    // SAFETY: Dl_info is plain data; all-zero is a valid value.
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    // SAFETY: dladdr only reads loader tables and fills `info`.
    let found = unsafe { libc::dladdr(current_library as *const libc::c_void, &mut info) };
    if found == 0 || info.dli_fname.is_null() {
        return Err(Error::msg("could not find the path of this shared library"));
    }
    // SAFETY: dli_fname is a NUL-terminated string owned by the loader.
    Ok(unsafe { copy_cstring(info.dli_fname) })
}

/// The current worker's `bgw_extra` bytes (all 128 of them), or `None` outside a worker.
///
/// ```no_run
/// let extra = bgworker::worker::extra().unwrap_or_default();
/// let schema_len = extra.first().copied().unwrap_or(0);
/// ```
pub fn extra() -> Option<Vec<u8>> {
    // SAFETY: MyBgworkerEntry is NULL outside a worker, else points at this process's entry.
    let entry = unsafe { pg_sys::MyBgworkerEntry };
    if entry.is_null() {
        return None;
    }
    // SAFETY: checked non-NULL above; the entry lives as long as the process.
    let bytes = unsafe { &(*entry).bgw_extra };
    Some(bytes.iter().map(|&b| b as u8).collect())
}

/// The state of a dynamically launched worker.
///
/// ```no_run
/// use bgworker::worker::{Builder, Status};
/// let handle = Builder::new("job").function("job_main").launch()?;
/// match handle.wait_for_startup()? {
///     Status::Started(pid) => bgworker::log!("job runs as {pid}"),
///     other => bgworker::warning!("job did not start: {other:?}"),
/// }
/// # Ok::<(), bgworker::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Running, with this pid.
    Started(i32),
    /// Registered but not started yet.
    NotYetStarted,
    /// Stopped (or never able to start).
    Stopped,
    /// The postmaster died; the status is unknown.
    PostmasterDied,
}

/// A dynamically launched worker, from [`Builder::launch`] or [`Worker::launch`].
///
/// ```no_run
/// use bgworker::worker::Builder;
/// let handle = Builder::new("job").function("job_main").main_arg(7).launch()?;
/// handle.wait_for_startup()?;
/// if let Some(pid) = handle.pid()? {
///     bgworker::log!("started {pid}; status {:?}", handle.status()?);
/// }
/// handle.terminate()?;
/// handle.wait_for_shutdown()?;
/// # Ok::<(), bgworker::Error>(())
/// ```
///
/// The handle lives as long as the value, across transactions, in the backend that launched
/// the worker (it cannot be sent to another thread). Dropping it does not stop the worker.
pub struct Handle {
    raw: *mut pg_sys::BackgroundWorkerHandle,
    _not_send: std::marker::PhantomData<*mut ()>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        if crate::entry::exiting() {
            return;
        }
        let raw = self.raw;
        // SAFETY: allocated in TopMemoryContext by `launch` for this value alone; queues
        // that refer to it borrow it, so they are gone already.
        let _ = guard(|| unsafe { pg_sys::pfree(raw.cast()) });
    }
}

impl Handle {
    pub(crate) fn raw(&self) -> *mut pg_sys::BackgroundWorkerHandle {
        self.raw
    }

    /// The status that `call` (`GetBackgroundWorkerPid` or `WaitForBackgroundWorkerStartup`,
    /// which share a signature and a contract) reports for this worker.
    fn status_from(
        &self,
        call: unsafe extern "C" fn(
            *mut pg_sys::BackgroundWorkerHandle,
            *mut pg_sys::pid_t,
        ) -> pg_sys::BgwHandleStatus,
    ) -> Result<Status> {
        let raw = self.raw;
        let mut pid: pg_sys::pid_t = 0;
        let out = &mut pid as *mut pg_sys::pid_t;
        // SAFETY: `raw` is the handle PostgreSQL gave us; `out` is valid for the call; both
        // functions only read the handle and write the pid (waiting for startup needs the
        // launching backend as the notify pid, which `launch` sets).
        let code = guard(|| unsafe { call(raw, out) })?;
        Ok(Self::status_of(code, pid))
    }

    fn status_of(code: pg_sys::BgwHandleStatus, pid: i32) -> Status {
        match code {
            pg_sys::BgwHandleStatus_BGWH_STARTED => Status::Started(pid),
            pg_sys::BgwHandleStatus_BGWH_NOT_YET_STARTED => Status::NotYetStarted,
            pg_sys::BgwHandleStatus_BGWH_POSTMASTER_DIED => Status::PostmasterDied,
            _ => Status::Stopped,
        }
    }

    /// The current status, without waiting.
    pub fn status(&self) -> Result<Status> {
        self.status_from(pg_sys::GetBackgroundWorkerPid)
    }

    /// The pid, when the worker is running.
    pub fn pid(&self) -> Result<Option<i32>> {
        Ok(match self.status()? {
            Status::Started(pid) => Some(pid),
            _ => None,
        })
    }

    /// Waits until the worker has started (or failed to), and returns its status.
    pub fn wait_for_startup(&self) -> Result<Status> {
        self.status_from(pg_sys::WaitForBackgroundWorkerStartup)
    }

    /// Waits until the worker has stopped.
    pub fn wait_for_shutdown(&self) -> Result<Status> {
        let raw = self.raw;
        // SAFETY: as in `status`.
        let code = guard(|| unsafe { pg_sys::WaitForBackgroundWorkerShutdown(raw) })?;
        Ok(Self::status_of(code, 0))
    }

    /// Asks the postmaster to stop the worker (SIGTERM). Returns at once.
    pub fn terminate(&self) -> Result<()> {
        let raw = self.raw;
        // SAFETY: as in `status`.
        guard(|| unsafe { pg_sys::TerminateBackgroundWorker(raw) })?;
        Ok(())
    }
}

/// Which database a worker connects to.
///
/// ```no_run
/// use bgworker::worker::{self, Connection, Database};
/// worker::connect(Connection::new(Database::Oid(5)))?;
/// # Ok::<(), bgworker::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Database<'a> {
    /// No database: only shared catalogs are readable, but the worker appears in
    /// `pg_stat_activity` (like the logical replication launcher).
    None,
    /// A database by name.
    Name(&'a str),
    /// A database by OID.
    Oid(u32),
}

/// The role a worker connects as.
///
/// ```no_run
/// use bgworker::worker::{self, Connection, Database, Role};
/// worker::connect(Connection::new(Database::Oid(5)).role(Role::Oid(10)))?;
/// # Ok::<(), bgworker::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role<'a> {
    /// The bootstrap superuser.
    Superuser,
    /// A role by name.
    Name(&'a str),
    /// A role by OID.
    Oid(u32),
}

/// How to connect, for [`connect`].
///
/// ```no_run
/// use bgworker::worker::{self, Connection, Database, Role};
/// worker::connect(Connection::new(Database::Name("postgres")).role(Role::Name("app")))?;
/// # Ok::<(), bgworker::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Connection<'a> {
    database: Database<'a>,
    role: Role<'a>,
    bypass_allow_connections: bool,
    bypass_role_login_check: bool,
    application_name: Option<&'a str>,
}

impl<'a> Connection<'a> {
    /// Connect to `database` as the bootstrap superuser.
    pub fn new(database: Database<'a>) -> Connection<'a> {
        Connection {
            database,
            role: Role::Superuser,
            bypass_allow_connections: false,
            bypass_role_login_check: false,
            application_name: None,
        }
    }

    /// Connect as `role`.
    pub fn role(mut self, role: Role<'a>) -> Connection<'a> {
        self.role = role;
        self
    }

    /// Connect even when the database has `datallowconn = false`
    /// (`BGWORKER_BYPASS_ALLOWCONN`).
    pub fn bypass_allow_connections(mut self) -> Connection<'a> {
        self.bypass_allow_connections = true;
        self
    }

    /// Connect even when the role has `NOLOGIN` (`BGWORKER_BYPASS_ROLELOGINCHECK`).
    /// PostgreSQL 17 and later only; on older majors [`connect`] refuses with an error.
    pub fn bypass_role_login_check(mut self) -> Connection<'a> {
        self.bypass_role_login_check = true;
        self
    }

    /// `application_name` to show in `pg_stat_activity`; defaults to the worker's name.
    pub fn application_name(mut self, name: &'a str) -> Connection<'a> {
        self.application_name = Some(name);
        self
    }
}

/// Connects the worker to a database (`BackgroundWorkerInitializeConnection[ByOid]`). Call
/// once, at the start of `main`; the worker must have been registered with
/// [`Builder::database_connection`] (or `DATABASE_CONNECTION = true`).
///
/// A database or role that does not exist ends the worker with PostgreSQL's own FATAL
/// message (for example `database "x" does not exist`): PostgreSQL does not let a worker
/// survive a failed connection attempt.
///
/// ```no_run
/// use bgworker::worker::{self, Connection, Database};
/// worker::connect(Connection::new(Database::Name("postgres")))?;
/// # Ok::<(), bgworker::Error>(())
/// ```
pub fn connect(c: Connection<'_>) -> Result<()> {
    crate::guard::check_main_thread()?;
    // SAFETY: MyBgworkerEntry is NULL outside a worker.
    if unsafe { pg_sys::MyBgworkerEntry }.is_null() {
        return Err(Error::WrongContext(
            "worker::connect is for background workers; this process is not one".to_string(),
        ));
    }
    // SAFETY: a plain global, set once the process has connected (InitPostgres).
    if !unsafe { pg_sys::CacheMemoryContext }.is_null() {
        return Err(Error::WrongContext(
            "this worker is already connected; a worker connects once".to_string(),
        ));
    }
    let mut flags = 0u32;
    if c.bypass_allow_connections {
        flags |= pg_sys::BGWORKER_BYPASS_ALLOWCONN;
    }
    if c.bypass_role_login_check {
        #[cfg(any(pg17, pg18))]
        {
            flags |= pg_sys::BGWORKER_BYPASS_ROLELOGINCHECK;
        }
        #[cfg(not(any(pg17, pg18)))]
        return Err(Error::WrongContext(
            "BGWORKER_BYPASS_ROLELOGINCHECK needs PostgreSQL 17 or later".to_string(),
        ));
    }
    let flags = flags as _;
    let by_oid = matches!(c.database, Database::Oid(_)) || matches!(c.role, Role::Oid(_));
    if by_oid {
        let db = match c.database {
            Database::None => pg_sys::InvalidOid,
            Database::Oid(oid) => oid,
            Database::Name(name) => lookup_oid_refused("database", name)?,
        };
        let role = match c.role {
            Role::Superuser => pg_sys::InvalidOid,
            Role::Oid(oid) => oid,
            Role::Name(name) => lookup_oid_refused("role", name)?,
        };
        // SAFETY: plain values; PostgreSQL raises FATAL (exits) on failure.
        guard(|| unsafe { pg_sys::BackgroundWorkerInitializeConnectionByOid(db, role, flags) })?;
    } else {
        let db = match c.database {
            Database::Name(name) => Some(to_cstring(name, "database name")?),
            _ => None,
        };
        let role = match c.role {
            Role::Name(name) => Some(to_cstring(name, "role name")?),
            _ => None,
        };
        let db_ptr = db.as_ref().map_or(std::ptr::null(), |s| s.as_ptr());
        let role_ptr = role.as_ref().map_or(std::ptr::null(), |s| s.as_ptr());
        // SAFETY: the strings outlive the call (held above); NULL means none.
        guard(|| unsafe { pg_sys::BackgroundWorkerInitializeConnection(db_ptr, role_ptr, flags) })?;
    }
    let name = match c.application_name {
        Some(n) => n.to_string(),
        None => current_worker_name().unwrap_or_default(),
    };
    if !name.is_empty() {
        crate::guc::set("application_name", &name)?;
    }
    Ok(())
}

fn lookup_oid_refused(what: &str, name: &str) -> Result<u32> {
    Err(Error::msg(format!(
        "cannot mix a {what} name ({name:?}) with an OID: give both by name or both by OID"
    )))
}

/// The running worker's `bgw_name`, or `None` outside a worker.
///
/// ```no_run
/// let name = bgworker::worker::current_worker_name().unwrap_or_default();
/// ```
pub fn current_worker_name() -> Option<String> {
    // SAFETY: MyBgworkerEntry is NULL outside a worker, else this process's entry.
    let entry = unsafe { pg_sys::MyBgworkerEntry };
    if entry.is_null() {
        return None;
    }
    // SAFETY: bgw_name is a NUL-terminated array inside the entry.
    Some(unsafe { copy_cstring((*entry).bgw_name.as_ptr()) })
}
