//! SQL run by a worker for another process, as a client session would run it: what
//! pg_background does, as parts any worker can use.
//!
//! In the worker, [`redirect_output`] sends everything PostgreSQL would send a client
//! (result rows, command tags, NOTICEs and WARNINGs, ERROR reports, ready-for-query) into a
//! message queue, in the frontend/backend protocol's messages; [`Session::execute`] runs a SQL
//! string the way the simple query protocol does: statement after statement, each planned and
//! run through a portal, transaction blocks honoured across calls (`BEGIN` in one, `COMMIT`
//! in a later one), utility commands such as `VACUUM` allowed when alone. An ERROR is
//! reported to the queue and rolls back what it must, and the worker goes on serving.
//!
//! [`Client::launch`] and [`serve`] put the two sides together for the usual case: a worker
//! that runs SQL for the backend that launched it, as that backend's user, in its database,
//! with its settings. In the process that waits for the answers, [`Client::forward`] makes
//! the replies its own result, or [`Reply::parse`] reads each message.
//!
//! ```no_run
//! use bgworker::dsm::Segment;
//! use bgworker::session::{self, Reply};
//! # fn worker(handle: u32) -> bgworker::Result<()> {
//! // In the worker: answers go to the queue at offset 0 of the caller's segment.
//! let segment: &'static Segment = Box::leak(Box::new(Segment::attach(handle)?));
//! let mut session = session::redirect_output(segment, 0)?;
//! session.execute("SELECT 1 AS one; VACUUM")?;
//! # Ok(()) }
//! # fn caller(reply: &[u8]) -> bgworker::Result<()> {
//! // In the caller, for each message received:
//! match Reply::parse(reply)? {
//!     Reply::Columns(columns) => println!("{} columns", columns.len()),
//!     Reply::Row(row) => println!("{:?}", row.values().collect::<Vec<_>>()),
//!     Reply::Error(e) => return Err(e.into()),
//!     _ => {}
//! }
//! # Ok(()) }
//! ```

mod control;
mod look_ahead;
pub mod pool;
mod server;
mod spares;

use std::cell::Cell;
use std::ffi::{c_char, c_long, CString};
use std::marker::PhantomData;
use std::sync::atomic::Ordering::SeqCst;

pub use control::{report_progress, PROGRESS_MESSAGE_MAX};
use control::{Control, CONTROL_SIZE};

use crate::dsm::{Receiver, Segment, Sender};
use crate::error::{Error, PgError, Result, SqlState};
use crate::guard::guard;
use crate::pg_sys;
use crate::srf::RecordSet;
use crate::worker::{Builder, Handle};

/// Sends this worker's client output into the queue at `offset` of `segment` (which the
/// process that reads it created), for the rest of the worker's life (hence `'static`:
/// leak the attached segment, `Box::leak(Box::new(segment))`).
///
/// A statement's result goes out when its statement ends or a quarter of the queue fills
/// ([`Client::receive`]): run SQL with [`Session::execute`], whose strings end with
/// ReadyForQuery. Result messages sent some other way and followed by nothing else before
/// the worker exits may never reach the reader.
///
/// Only in a background worker: a regular backend's output belongs to its client.
///
/// ```no_run
/// # fn f(handle: u32) -> bgworker::Result<()> {
/// let segment = Box::leak(Box::new(bgworker::dsm::Segment::attach(handle)?));
/// let mut session = bgworker::session::redirect_output(segment, 65536)?;
/// # Ok(()) }
/// ```
pub fn redirect_output(segment: &'static Segment, offset: usize) -> Result<Session> {
    // SAFETY: a plain global of this process.
    if unsafe { pg_sys::MyBackendType } != pg_sys::BackendType_B_BG_WORKER {
        return Err(Error::WrongContext(
            "session::redirect_output is for background workers".into(),
        ));
    }
    if REDIRECTED.with(|r| r.replace(true)) {
        return Err(Error::WrongContext(
            "session::redirect_output is called once per worker".into(),
        ));
    }
    let sender = segment.sender(offset, None)?;
    // SAFETY: the segment lives for the rest of the process ('static) and so does the queue
    // handle (not dropped below).
    unsafe { redirect_protocol(segment.raw(), sender.raw()) }?;
    std::mem::forget(sender);
    Ok(Session {
        _not_send: PhantomData,
    })
}

/// Sends this process's protocol messages into `queue` from now on, each whole or not at
/// all; a statement's result (row description, rows, command tag) goes out a quarter of the
/// queue at a time and when the statement ends, every other message at once (the shim's
/// `pgsys_send_output_to`).
///
/// # Safety
/// `queue` is an attached queue handle of `segment`, and stays valid until the redirection
/// ends (another redirect, output turned off, or the segment's detach, whose callback
/// PostgreSQL registers).
unsafe fn redirect_protocol(
    segment: *mut pg_sys::dsm_segment,
    queue: *mut pg_sys::shm_mq_handle,
) -> Result<()> {
    // SAFETY: the caller's promise.
    guard(|| unsafe { pg_sys::pgsys_send_output_to(segment, queue) })?;
    Ok(())
}

thread_local! {
    /// Whether this worker's output goes to a queue already.
    static REDIRECTED: Cell<bool> = const { Cell::new(false) };
    /// Whether a string is being executed (a SQL function it calls must not start another).
    static EXECUTING: Cell<bool> = const { Cell::new(false) };
}

/// A worker's client session whose output goes to a queue ([`redirect_output`]): what runs
/// SQL strings as a client's simple queries.
///
/// ```no_run
/// # fn f(session: &mut bgworker::session::Session) -> bgworker::Result<()> {
/// session.execute("CREATE TEMP TABLE seen (x int)")?;
/// session.execute("INSERT INTO seen VALUES (1)")?;
/// # Ok(()) }
/// ```
pub struct Session {
    _not_send: PhantomData<*const ()>,
}

impl Session {
    /// A session whose output the caller redirects itself (a pooled worker, per job).
    pub(crate) fn new() -> Session {
        Session {
            _not_send: PhantomData,
        }
    }

    /// Runs `sql` as the simple query protocol does and sends the results, command tags,
    /// notices and any ERROR to the redirected output, then ready-for-query. Returns whether
    /// every statement succeeded (an ERROR has been sent and rolled back otherwise).
    ///
    /// Only between a client's strings: refused inside a transaction the worker runs
    /// itself, a SQL function, a statement, or under an LWLock guard. An `Err` means that,
    /// or that the session is broken (the output could not be written): the worker should
    /// exit.
    ///
    /// ```no_run
    /// # fn f(session: &mut bgworker::session::Session) -> bgworker::Result<()> {
    /// if !session.execute("BEGIN; UPDATE t SET x = x + 1; COMMIT")? {
    ///     bgworker::log!("the client got an ERROR");
    /// }
    /// # Ok(()) }
    /// ```
    pub fn execute(&mut self, sql: &str) -> Result<bool> {
        check_idle()?;
        EXECUTING.with(|e| e.set(true));
        let result = execute(sql);
        EXECUTING.with(|e| e.set(false));
        result
    }
}

/// Refuses to run a string where the session is not idle at the top of its worker: inside
/// a transaction someone else runs, a SQL function, a portal, or under an LWLock.
fn check_idle() -> Result<()> {
    let refuse = |why: &str| Err(Error::WrongContext(format!("Session::execute {why}")));
    // SAFETY: plain reads of this process's globals.
    let (cache, portal) = unsafe { (pg_sys::CacheMemoryContext, pg_sys::ActivePortal) };
    if cache.is_null() {
        return refuse("needs a worker connected to a database");
    }
    if EXECUTING.with(Cell::get) || !portal.is_null() || crate::srf::in_call() {
        return refuse("cannot run inside a statement");
    }
    crate::shmem::check_no_lwlock_guard()?;
    // SAFETY: reads the transaction state.
    let (started, block) = guard(|| unsafe {
        (
            pg_sys::IsTransactionOrTransactionBlock(),
            pg_sys::IsTransactionBlock(),
        )
    })?;
    if started && !block {
        return refuse("cannot run inside a transaction (only between a client's statements)");
    }
    Ok(())
}

/// Runs `sql`: the body of [`Session::execute`].
fn execute(sql: &str) -> Result<bool> {
    // An ERROR another part of this worker caught and did not roll back: the string must
    // not commit on top of it.
    if let Some(pending) = crate::recovery::pending_error() {
        recover()?;
        return finish(Some(&pending));
    }
    let Ok(text) = CString::new(sql) else {
        let nul = PgError::new(
            SqlState::PROGRAM_LIMIT_EXCEEDED,
            "a SQL string cannot contain a NUL byte",
        );
        return finish(Some(&nul));
    };
    let sql_ptr = text.as_ptr();
    // SAFETY: reports this process's activity; the text is copied.
    guard(|| unsafe {
        pg_sys::pgstat_report_activity(pg_sys::BackendState_STATE_RUNNING, sql_ptr)
    })?;
    // SAFETY: the statement's start time (statement_timestamp()), as for a client query.
    guard(|| unsafe { pg_sys::SetCurrentStatementStartTimestamp() })?;
    // Parse trees and plans live here, not in the transaction's memory: a statement that
    // commits by itself (VACUUM) must not free the list the loop walks.
    // SAFETY: a new child of TopMemoryContext (default sizes, a static name), deleted below.
    let memory = guard(|| unsafe {
        pg_sys::AllocSetContextCreateInternal(
            pg_sys::TopMemoryContext,
            c"bgworker session statement".as_ptr(),
            0,
            8 * 1024,
            8 * 1024 * 1024,
        )
    })?;
    let outcome = run_statements(sql_ptr, memory);
    // SAFETY: stops the statement_timeout timer run_statements may have started (a no-op
    // when it did not).
    guard(|| unsafe { pg_sys::disable_timeout(pg_sys::TimeoutId_STATEMENT_TIMEOUT, false) })?;
    let failure = match outcome {
        Ok(()) => None,
        Err(e) => {
            recover()?;
            Some(e.to_pg_error())
        }
    };
    // SAFETY: nothing refers to the statement memory any more (portals are dropped, or
    // cleaned up by the abort); the current context is not it.
    guard(|| unsafe {
        if pg_sys::CurrentMemoryContext == memory {
            pg_sys::CurrentMemoryContext = pg_sys::TopMemoryContext;
        }
        pg_sys::MemoryContextDelete(memory);
    })?;
    finish(failure.as_ref())
}

/// Ends a string: its ERROR if any, then ready-for-query; whether it succeeded.
fn finish(failure: Option<&PgError>) -> Result<bool> {
    // The string is over: a cancel arriving now (say while the reply queue is full) is for
    // nothing that still runs, and must not turn into an ERROR of the reporting itself.
    let _hold = CancelHoldoff::new();
    if let Some(e) = failure {
        // The worker's own log says what failed, as a backend's would.
        crate::elog::report_error(crate::elog::Level::LogServerOnly, e);
        send_error(e)?;
    }
    // SAFETY: flushes this session's statistics while idle, as a backend does between
    // queries; NOTIFYs of a committed transaction go out (14 does it here, later majors
    // at commit).
    guard(|| unsafe {
        pg_sys::pgstat_report_stat(false);
        #[cfg(pg14)]
        pg_sys::ProcessCompletedNotifies();
    })?;
    // SAFETY: sends 'Z' with the transaction status to the redirected output.
    guard(|| unsafe { pg_sys::ReadyForQuery(pg_sys::CommandDest_DestRemote) })?;
    // SAFETY: as above.
    guard(|| unsafe {
        let state = if pg_sys::IsTransactionOrTransactionBlock() {
            pg_sys::BackendState_STATE_IDLEINTRANSACTION
        } else {
            pg_sys::BackendState_STATE_IDLE
        };
        pg_sys::pgstat_report_activity(state, std::ptr::null())
    })?;
    // SAFETY: reads a flag of this process's output method.
    if unsafe { pg_sys::pgsys_output_broken() } {
        // Part of the reply will never be finished (an ERROR while it was being sent): the
        // session must end, so that its client sees the queue detach instead of waiting.
        return Err(Error::msg(
            "a reply was cut off while it was being sent; the session ends",
        ));
    }
    Ok(failure.is_none())
}

/// Holds off query cancels while alive (`QueryCancelHoldoffCount`): a SIGINT stays pending
/// instead of raising an ERROR at the next interrupt check.
struct CancelHoldoff;

impl CancelHoldoff {
    fn new() -> CancelHoldoff {
        // SAFETY: a counter of this process, read by ProcessInterrupts in the same thread.
        unsafe { pg_sys::QueryCancelHoldoffCount += 1 };
        CancelHoldoff
    }
}

impl Drop for CancelHoldoff {
    fn drop(&mut self) {
        // SAFETY: as above; an ERROR in between reset the counter to 0 (errfinish does).
        unsafe {
            pg_sys::QueryCancelHoldoffCount = pg_sys::QueryCancelHoldoffCount.saturating_sub(1)
        };
    }
}

/// Sets whether query cancels wait (`true`: between strings, where a cancel has nothing to
/// stop and would otherwise end the worker while it waits for the next request).
fn hold_cancels(hold: bool) {
    // SAFETY: a counter of this process; only the serving loop sets it absolutely, outside
    // any nested holdoff.
    unsafe { pg_sys::QueryCancelHoldoffCount = u32::from(hold) };
}

/// What PostgreSQL does when a client's string fails before it runs inside an open
/// transaction block: the block fails (a later COMMIT rolls back).
fn recover_block() -> Result<()> {
    // SAFETY: reads the transaction state.
    if guard(|| unsafe { pg_sys::IsTransactionBlock() })? {
        recover()?;
    }
    Ok(())
}

/// A worker's side of a session a [`Client`] started: connects to the caller's database as
/// the caller's session user (taking the caller's current role if it differs), attaches
/// the segment the main argument names, sends its output to the reply queue, and runs each
/// SQL string that arrives, with the caller's settings, until the client detaches.
///
/// The worker ends without the C library's exit-time teardown
/// ([`exit::skip_library_teardown`](crate::exit::skip_library_teardown)): a fresh worker
/// per job would otherwise spend about as long freeing the server's SSL state at exit as
/// it spent connecting.
///
/// ```no_run
/// struct Job;
/// impl bgworker::Worker for Job {
///     const NAME: &'static str = "job";
///     const DATABASE_CONNECTION: bool = true;
///     fn main(arg: i64) -> bgworker::Result<()> {
///         bgworker::session::serve(arg)
///     }
/// }
/// bgworker::export_worker!(Job, "job_main");
/// # fn main() {}
/// ```
pub fn serve(main_arg: i64) -> Result<()> {
    server::JobServer::start()?.run_job(main_arg as u64 as u32)
}

/// Runs the client's string number `number` (what `prepare` returns, or its ERROR), unless
/// the client canceled it already, and tells the client when it is over.
fn run_numbered<'t>(
    session: &mut Session,
    control: &Control,
    number: u64,
    prepare: impl FnOnce() -> std::result::Result<&'t str, PgError>,
) -> Result<()> {
    // A cancel sent for an earlier string must not stop this one; a cancel of this one is
    // seen below, whether it was asked before the string starts or while it runs (the
    // client signals only a string it sees running).
    // SAFETY: a flag of this process that the SIGINT handler sets; clearing it is what
    // PostgreSQL does before reading a client's next query.
    unsafe { std::ptr::write_volatile(&raw mut pg_sys::QueryCancelPending, 0) };
    hold_cancels(false);
    control.running.store(number, SeqCst);
    let text = if number <= control.cancel_upto.load(SeqCst) {
        Err(PgError::new(
            SqlState::QUERY_CANCELED,
            "canceling statement due to user request",
        ))
    } else {
        prepare()
    };
    let outcome = match text {
        Ok(text) => session.execute(text).map(drop),
        // An ERROR before the string runs fails an open transaction block, as one while
        // it runs would, so that a later COMMIT cannot commit what came before.
        Err(e) => recover_block().and_then(|()| finish(Some(&e))).map(drop),
    };
    hold_cancels(true);
    control.running.store(0, SeqCst);
    control.done.store(number, SeqCst);
    control.client.wake();
    outcome
}

/// Applies settings a [`Client`] captured: `name\0value\0` pairs. A setting the caller
/// could make but this worker cannot is an ERROR: the job must not run otherwise set up.
fn apply_settings(text: &str) -> Result<()> {
    let parts: Vec<&str> = text.split('\0').collect();
    crate::xact::transaction(|_| {
        for setting in parts.chunks_exact(4) {
            // Set in the caller's session with the rights of the context and role it
            // names (as a parallel worker takes its leader's settings); none given: the
            // current role's.
            let rights = match (setting[2].parse(), setting[3].parse()) {
                (Ok(context), Ok(role)) => Some((context, role)),
                _ => None,
            };
            set_for_session(setting[0], setting[1], rights)?;
        }
        Ok(())
    })
}

/// Sets `name` to `value` for the session, as `SET` does with the rights of `rights`' context
/// and role, or else as `set_config(name, value, false)` does with the current role's (a
/// superuser may set superuser settings; others those they were granted); inside a
/// transaction, as check hooks may read the catalogs.
pub(crate) fn set_for_session(
    name: &str,
    value: &str,
    rights: Option<(pg_sys::GucContext, pg_sys::Oid)>,
) -> Result<()> {
    let name = crate::cstr::to_cstring(name, "setting name")?;
    let value = crate::cstr::to_cstring(value, "setting value")?;
    let (n, v) = (name.as_ptr(), value.as_ptr());
    // SAFETY: both strings outlive the call (PostgreSQL copies them); elevel 0 makes a
    // refused value an ERROR, which guard returns; the context is one the caller's own
    // session recorded (or USERSET/SUSET).
    guard(|| unsafe {
        let (context, role) = match rights {
            Some((context, role)) => (context, role),
            None if pg_sys::superuser() => (pg_sys::GucContext_PGC_SUSET, pg_sys::GetUserId()),
            None => (pg_sys::GucContext_PGC_USERSET, pg_sys::GetUserId()),
        };
        #[cfg(pg14)]
        let _ = role;
        #[cfg(pg14)]
        pg_sys::set_config_option(
            n,
            v,
            context,
            pg_sys::GucSource_PGC_S_SESSION,
            pg_sys::GucAction_GUC_ACTION_SET,
            true,
            0,
            false,
        );
        #[cfg(not(pg14))]
        pg_sys::set_config_option_ext(
            n,
            v,
            context,
            pg_sys::GucSource_PGC_S_SESSION,
            role,
            pg_sys::GucAction_GUC_ACTION_SET,
            true,
            0,
            false,
        );
    })?;
    Ok(())
}

/// The caller's end of a background session: a worker that runs the SQL strings
/// [`Client::send`] gives it, in one session (settings, temporary tables and open
/// transaction blocks carry over), and whose replies [`Client::receive`] reads.
///
/// ```no_run
/// use bgworker::session::{Client, Reply};
/// use bgworker::Worker;
/// # struct Session;
/// # impl Worker for Session {
/// #     const NAME: &'static str = "s";
/// #     fn main(arg: i64) -> bgworker::Result<()> { bgworker::session::serve(arg) }
/// # }
/// # bgworker::export_worker!(Session, "s_main");
/// # fn main() -> bgworker::Result<()> {
/// let mut client = Client::launch(Session::builder(), 65536)?;
/// client.send("SELECT 42")?;
/// while let Some(message) = client.receive()? {
///     if let Reply::Ready(_) = Reply::parse(&message)? {
///         break;
///     }
/// }
/// # Ok(()) }
/// ```
pub struct Client {
    // Dropped first: the queue ends and the control block borrow the segment and the
    // handle below.
    to_worker: Sender<'static>,
    /// `None` once [`Client::ignore_replies`] detached it.
    from_worker: Option<Receiver<'static>>,
    control: &'static Control,
    /// The worker's handle, when this client launched it.
    handle: Option<Box<Handle>>,
    /// The pool slot and its generation, when a pooled worker serves this client.
    pooled: Option<(usize, u32)>,
    /// Taken out only by `Drop` (to keep it for the next client of this backend).
    segment: std::mem::ManuallyDrop<Box<Segment>>,
    /// Set while [`Client::forward`] reads a string's replies; still set if it stopped
    /// before the end, when the queue may hold replies of that string.
    broken: bool,
    /// Set when a string could not be sent whole: nothing more may be sent (what the
    /// worker already replied can still be read).
    cannot_send: bool,
    /// Replies [`Client::describe`] or [`Client::error`] read ahead of [`Client::forward`],
    /// in order: the next string's, up to its ReadyForQuery at most.
    read_ahead: std::collections::VecDeque<Vec<u8>>,
}

impl Client {
    /// Sends a SQL string to run; its replies end with [`Reply::Ready`]. A worker that has
    /// exited before its first string takes the string (its result is why it exited); one
    /// that exited later refuses it.
    pub fn send(&mut self, sql: &str) -> Result<()> {
        self.check_usable()?;
        self.check_can_send()?;
        // Counted first, so the worker never finishes a string the count does not include;
        // a send that fails part-way breaks the session (nothing more may be sent).
        if let Some((slot, generation)) = self.pooled {
            pool::set_preview(slot, generation, self.segment.handle(), sql)?;
        }
        self.control.sent.fetch_add(1, SeqCst);
        let sent = self.request(b'Q', sql);
        if sent.is_err() {
            if !self.stopped().unwrap_or(false) {
                // Cut off part-way while the worker waits for the rest: nothing more can
                // be sent, nor anything of this session read.
                self.cannot_send = true;
                self.broken = true;
            } else if self.control.sent.load(SeqCst) == 1 {
                // Its result (an ERROR or FATAL it sent, or a lost connection) says why.
                return Ok(());
            } else {
                let pid = self.pid().ok().flatten().unwrap_or(0);
                return Err(PgError::new(
                    SqlState::CONNECTION_FAILURE,
                    format!("background session worker {pid} has exited"),
                )
                .with_hint("Read its result for the reason.")
                .into());
            }
        }
        sent
    }

    /// Sends settings; a worker that has exited already is not an error here (the next
    /// string's result says why it exited).
    fn send_settings(&mut self, settings: &str) -> Result<()> {
        match self.request(b'S', settings) {
            Err(_) if self.stopped().unwrap_or(false) => Ok(()),
            sent => sent,
        }
    }

    /// Refuses a session that could not be sent a string whole.
    fn check_can_send(&self) -> Result<()> {
        if self.cannot_send {
            return Err(Error::WrongContext(
                "this background session could not be sent a string: start another".into(),
            ));
        }
        Ok(())
    }

    /// Refuses a session whose queue may still hold replies of a string read part-way.
    fn check_usable(&self) -> Result<()> {
        if self.broken {
            return Err(Error::WrongContext(
                "this background session stopped reading a result part-way: start another".into(),
            ));
        }
        Ok(())
    }

    fn request(&mut self, kind: u8, body: &str) -> Result<()> {
        self.check_usable()?;
        self.check_can_send()?;
        let mut message = Vec::with_capacity(body.len() + 1);
        message.push(kind);
        message.extend_from_slice(body.as_bytes());
        self.to_worker.send(&message)
    }

    /// Launches the worker `builder` describes (its main calls [`serve`]) to run SQL for
    /// this backend: as its session user (and current role), in its database, with the
    /// settings this session changed (`search_path`, `TimeZone`, `DateStyle`,
    /// `statement_timeout`, ...), so a job has no more privilege than its submitter and
    /// sees what the submitter would. Each queue holds `queue_size` bytes. Call it from a
    /// SQL function; refused inside a security-restricted operation.
    pub fn launch(builder: Builder, queue_size: usize) -> Result<Client> {
        // SAFETY: reads this backend's security context.
        if guard(|| unsafe { pg_sys::InSecurityRestrictedOperation() })? {
            return Err(PgError::new(
                SqlState::INSUFFICIENT_PRIVILEGE,
                "cannot start a background session within a security-restricted operation",
            )
            .into());
        }
        let settings = capture_settings()?;
        let (_, extra) = server::Caller::current();
        let mut client = Client::launch_with(builder.extra(extra), queue_size, 0)?;
        client.send_settings(&settings)?;
        Ok(client)
    }

    /// Like [`Client::launch`], but served by a warm worker of this backend's database and
    /// role from the cluster's [`pool`] when one is idle, else by a new pooled worker
    /// (`builder`'s main calls [`pool::serve`]); when the pool is full, waits in the pool's
    /// admission queue (an ERROR when that is full too). The worker goes back to the pool
    /// when the client is dropped. Inside a SECURITY DEFINER function the worker is not
    /// pooled (its security context is the caller's own).
    pub fn from_pool(builder: Builder, queue_size: usize, limits: pool::Limits) -> Result<Client> {
        // SAFETY: reads this backend's security context.
        if guard(|| unsafe { pg_sys::InSecurityRestrictedOperation() })? {
            return Err(PgError::new(
                SqlState::INSUFFICIENT_PRIVILEGE,
                "cannot start a background session within a security-restricted operation",
            )
            .into());
        }
        let (caller, extra) = server::Caller::current();
        if caller.in_local_user_change() {
            // A worker of its own, told so by its main argument (pool::serve hands it to
            // serve).
            let settings = capture_settings()?;
            let mut client = Client::launch_with(builder.extra(extra), queue_size, pool::UNPOOLED)?;
            client.send_settings(&settings)?;
            return Ok(client);
        }
        let settings = capture_settings()?;
        let worker_extra = pool::worker_extra(&extra)?;
        let (segment, control) = new_segment(queue_size)?;
        let segment_handle = segment.handle();
        // The client's queue ends exist before any worker can take the job, so that a
        // worker never waits for a client that failed to attach.
        let mut client = match Client::with_segment(segment, control, None, None) {
            Ok(client) => client,
            Err(e) => {
                Segment::release(segment_handle)?;
                return Err(e);
            }
        };
        let placed = pool::place(caller.key(), segment_handle, limits, |slot, generation| {
            let launched = builder
                .clone()
                .main_arg(pool::main_arg(slot, generation, limits))
                .extra(worker_extra.clone())
                .notify_pid(0)
                .launch();
            match launched {
                Ok(handle) => Ok(Some(handle)),
                Err(Error::NoFreeWorkerSlot) => Ok(None),
                Err(e) => Err(e),
            }
        });
        let (placement, handle) = match placed {
            Ok(placed) => placed,
            Err(e) => {
                drop(client);
                Segment::release(segment_handle)?;
                return Err(e);
            }
        };
        client.pooled = match placement {
            pool::Placement::Idle { slot, generation } => {
                // A warm worker: connected, and likely awake for the job.
                control.connected.store(1, SeqCst);
                Some((slot, generation))
            }
            pool::Placement::Start { slot, generation } => Some((slot, generation)),
        };
        client.handle = handle.map(Box::new);
        client.send_settings(&settings)?;
        Ok(client)
    }

    /// Creates the segment and launches the worker with it (`flags` go into the main
    /// argument's upper bits).
    fn launch_with(builder: Builder, queue_size: usize, flags: i64) -> Result<Client> {
        let (segment, control) = new_segment(queue_size)?;
        let handle = match builder
            .main_arg(flags | i64::from(segment.handle()))
            .launch()
        {
            Ok(worker) => Box::new(worker),
            Err(e) => {
                Segment::release(segment.handle())?;
                return Err(e);
            }
        };
        Client::with_segment(segment, control, Some(handle), None)
    }

    /// The client's queue ends on a segment whose worker is launched or chosen.
    fn with_segment(
        segment: Box<Segment>,
        control: &'static Control,
        handle: Option<Box<Handle>>,
        pooled: Option<(usize, u32)>,
    ) -> Result<Client> {
        let queue_size = control.queue_size.load(SeqCst) as usize;
        // SAFETY: both boxes live in the returned Client, which drops the queue ends (the
        // only borrowers) before them; boxing keeps their addresses stable when it moves.
        let seg: &'static Segment = unsafe { &*(segment.as_ref() as *const Segment) };
        // SAFETY: as above.
        let worker: Option<&'static Handle> = handle
            .as_ref()
            .map(|h| unsafe { &*(h.as_ref() as *const Handle) });
        let to_worker = seg.sender(CONTROL_SIZE, worker)?;
        let from_worker = Some(seg.receiver(CONTROL_SIZE + queue_size, worker)?);
        Ok(Client {
            to_worker,
            from_worker,
            control,
            handle,
            pooled,
            segment: std::mem::ManuallyDrop::new(segment),
            broken: false,
            cannot_send: false,
            read_ahead: std::collections::VecDeque::new(),
        })
    }

    /// Whether the worker has exited (or a pooled one no longer serves this client).
    fn stopped(&self) -> Result<bool> {
        if let Some(handle) = &self.handle {
            if matches!(handle.status()?, crate::worker::Status::Stopped) {
                return Ok(true);
            }
        }
        match self.pooled {
            Some((slot, generation)) => {
                Ok(!pool::serving(slot, generation, self.segment.handle())?)
            }
            None => Ok(false),
        }
    }

    /// Sends `signal` to the worker if it still serves this client.
    fn signal(&self, signal: std::ffi::c_int) -> Result<bool> {
        if let Some((slot, generation)) = self.pooled {
            return pool::signal(slot, generation, self.segment.handle(), signal);
        }
        let pid = self.control.worker_pid.load(SeqCst);
        match &self.handle {
            Some(handle) if pid > 0 && handle.pid()? == Some(pid) => {
                // SAFETY: signals our own worker (the pid the postmaster reports for its
                // handle).
                unsafe { libc::kill(pid, signal) };
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// The worker's pid, once it has started.
    pub fn pid(&self) -> Result<Option<i32>> {
        let attached = self.control.worker_pid.load(SeqCst);
        if attached > 0 {
            return Ok(Some(attached));
        }
        if let Some((slot, generation)) = self.pooled {
            if let Some(pid) = pool::pid_of(slot, generation)? {
                return Ok(Some(pid));
            }
        }
        match &self.handle {
            Some(handle) => handle.pid(),
            None => Ok(None),
        }
    }

    /// Waits until the worker has started; its pid. An error when it could not start.
    pub fn wait_for_start(&self) -> Result<i32> {
        if let Some(handle) = &self.handle {
            if let crate::worker::Status::Started(pid) = handle.wait_for_startup()? {
                return Ok(pid);
            }
        } else if let Some(pid) = self.pid()? {
            return Ok(pid);
        }
        // One that attached and has exited since (its result says why) did start; looked
        // at after the wait, which returns once the worker is gone too.
        let attached = self.control.worker_pid.load(SeqCst);
        if attached > 0 {
            return Ok(attached);
        }
        Err(PgError::new(
            SqlState::INSUFFICIENT_RESOURCES,
            "could not start background process",
        )
        .with_hint("More details may be available in the server log.")
        .into())
    }

    /// Asks the worker to exit (SIGTERM, as `pg_terminate_backend` does); the string it
    /// runs is rolled back.
    pub fn terminate(&self) -> Result<()> {
        match (&self.handle, self.pooled) {
            (Some(handle), None) => handle.terminate(),
            _ => self.signal(libc::SIGTERM).map(drop),
        }
    }

    /// Where the worker is: starting, running a string, idle between strings, or gone.
    pub fn state(&self) -> Result<State> {
        if self.stopped()? {
            return Ok(State::Stopped);
        }
        Ok(if self.control.worker_pid.load(SeqCst) == 0 {
            State::Starting
        } else if self.control.done.load(SeqCst) < self.control.sent.load(SeqCst) {
            State::Running
        } else {
            State::Idle
        })
    }

    /// How many strings were sent, and how many of them the worker has finished
    /// (successfully or not; a finished string's replies may still wait to be read).
    pub fn progress_counts(&self) -> (u64, u64) {
        (
            self.control.sent.load(SeqCst),
            self.control.done.load(SeqCst),
        )
    }

    /// Waits until the worker has finished every string sent so far (or has exited),
    /// at most `timeout` when given: whether it has. A string whose result does not fit
    /// the reply queue finishes only while its replies are read.
    pub fn wait(&self, timeout: Option<std::time::Duration>) -> Result<bool> {
        let deadline = timeout.map(|t| std::time::Instant::now() + t);
        loop {
            if self.control.done.load(SeqCst) >= self.control.sent.load(SeqCst) || self.stopped()? {
                return Ok(true);
            }
            // The worker sets this process's latch when a string ends, and the postmaster
            // when the worker exits (it was launched with this backend to notify); the
            // cap re-checks in case the notification went to an earlier waiter.
            let mut nap = std::time::Duration::from_millis(500);
            if let Some(deadline) = deadline {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                if left.is_zero() {
                    return Ok(false);
                }
                nap = nap.min(left);
            }
            crate::latch::wait(Some(nap))?;
        }
    }

    /// Cancels every string sent so far that has not finished: one that runs gets a query
    /// cancel (its ERROR, `57014`, is its result and rolls it back), one that has not
    /// started yet ends with that ERROR without running. The worker stays, ready for the
    /// next string.
    pub fn cancel(&self) -> Result<()> {
        let upto = self.control.sent.load(SeqCst);
        self.control.cancel_upto.fetch_max(upto, SeqCst);
        let running = self.control.running.load(SeqCst);
        if running != 0 && running <= upto {
            // SIGINT is a query cancel to a backend-like process.
            self.signal(libc::SIGINT)?;
        }
        Ok(())
    }

    /// The last progress the running SQL reported with [`report_progress`]: a percentage
    /// and a message; `None` before any.
    pub fn progress(&self) -> Option<(i32, Option<String>)> {
        self.control.progress()
    }

    /// The next reply message, waiting for it; `None` when the worker has gone.
    ///
    /// A statement's result (its row description, rows and command tag) arrives a quarter
    /// of the reply queue at a time: the worker publishes it when that much is pending,
    /// when the statement ends, and with any other message (a NOTICE, an ERROR), much as a
    /// backend's output reaches its client when its buffer fills or at those points. A
    /// statement that returns a few rows and then runs on for a while shows them when it
    /// ends.
    pub fn receive(&mut self) -> Result<Option<Vec<u8>>> {
        match self.read_ahead.pop_front() {
            Some(message) => Ok(Some(message)),
            None => self.receive_from_queue(),
        }
    }

    /// The next message in the reply queue, waiting for it; `None` when the worker has gone.
    fn receive_from_queue(&mut self) -> Result<Option<Vec<u8>>> {
        // A result comes as several messages written one after another: looking again for
        // a few microseconds before sleeping saves a sleep and a wakeup per message (once
        // the worker is connected: a worker that starts has a while to go).
        let mut spin = match self.control.connected.load(SeqCst) {
            0 => std::time::Duration::ZERO,
            _ => SPIN,
        };
        loop {
            let Some(queue) = self.from_worker.as_mut() else {
                return Err(Error::WrongContext(
                    "this background session's replies are ignored".into(),
                ));
            };
            let found = crate::latch::spin_for(spin, || {
                Ok(match queue.try_receive()? {
                    crate::dsm::Received::Empty => None,
                    received => Some(received),
                })
            })?;
            match found {
                Some(crate::dsm::Received::Message(m)) => return Ok(Some(m)),
                Some(_) => return Ok(None),
                None => {}
            }
            spin = std::time::Duration::ZERO;
            // A worker that exits before it attaches the queue never detaches from it
            // either (one that attached did, and the queue says so): look at the worker
            // itself now and then.
            if self.stopped()? && self.control.worker_pid.load(SeqCst) == 0 {
                return Ok(None);
            }
            crate::latch::wait(Some(std::time::Duration::from_secs(1)))?;
        }
    }

    /// Stops reading replies for good: the reply queue is detached, so the worker drops
    /// its output instead of waiting for a reader (fire-and-forget jobs).
    pub fn ignore_replies(&mut self) {
        self.from_worker = None;
        self.read_ahead.clear();
    }

    /// Sets `name` to `value` in the worker's session before the next string runs (as
    /// `SET` would; a value the worker cannot take is that string's ERROR).
    ///
    /// ```no_run
    /// # fn f(client: &mut bgworker::session::Client) -> bgworker::Result<()> {
    /// client.configure("statement_timeout", "5s")?;
    /// client.send("SELECT pg_sleep(10)")?; // canceled after 5 seconds
    /// # Ok(()) }
    /// ```
    pub fn configure(&mut self, name: &str, value: &str) -> Result<()> {
        if name.contains('\0') || value.contains('\0') {
            return Err(Error::msg("a setting's name or value cannot contain NUL"));
        }
        // No context or role: set with the worker's current role's rights, as SET would.
        self.send_settings(&format!("{name}\0{value}\0\0"))
    }

    /// Reads the replies to one SQL string, up to ready-for-query, as the caller's result:
    /// rows go into `rows` (whose columns must match the result's in number), NOTICEs and
    /// WARNINGs are re-raised here, and the worker's ERROR becomes this call's error, with a
    /// context line naming the worker. A string with no result set gives its command tags
    /// (`INSERT 0 1`) as rows, when the caller asked for one text column.
    ///
    /// Every reply is read even after an ERROR, so that the session is ready for the next
    /// string.
    pub fn forward(&mut self, rows: &mut RecordSet) -> Result<()> {
        self.check_usable()?;
        self.broken = true;
        self.forward_replies(rows)
    }

    fn forward_replies(&mut self, rows: &mut RecordSet) -> Result<()> {
        let pid = self.pid().ok().flatten().unwrap_or(0);
        let mut failure: Option<Error> = None;
        let mut described = false;
        let mut tags: Vec<String> = Vec::new();
        loop {
            let Some(message) = self.receive()? else {
                return Err(failure.unwrap_or_else(|| lost_connection(pid).into()));
            };
            if failure.is_some() && !matches!(message.first(), Some(b'Z')) {
                continue;
            }
            match Reply::parse(&message)? {
                Reply::Columns(columns) => {
                    described = true;
                    if columns.len() != rows.columns() {
                        failure = Some(mismatch(columns.len(), rows.columns()));
                    }
                }
                Reply::Row(row) => {
                    if let Err(e) = rows.push_text(row.values()) {
                        failure = Some(e);
                    }
                }
                Reply::Complete(tag) => tags.push(tag.to_string()),
                Reply::Notice(severity, report) => {
                    crate::elog::report_error(level_of(&severity), &report);
                }
                Reply::Error(report) => failure = Some(from_worker(report, pid).into()),
                Reply::Ready(_) => {
                    self.broken = false;
                    break;
                }
                Reply::Other(..) => {}
            }
        }
        if let Some(e) = failure {
            return Err(e);
        }
        if !described {
            let text_column = rows.columns() == 1 && rows.column_type(0) == Some(pg_sys::TEXTOID);
            if !text_column {
                return Err(PgError::new(
                    SqlState::DATATYPE_MISMATCH,
                    "the SQL returned no rows, only command tags: ask for one text column",
                )
                .into());
            }
            for tag in &tags {
                rows.push_text(std::iter::once(Some(tag.as_bytes())))?;
            }
        }
        Ok(())
    }
}

/// A new session segment: the control block, then two queues of `queue_size` bytes
/// (requests, replies), kept alive until its worker attaches.
fn new_segment(queue_size: usize) -> Result<(Box<Segment>, &'static Control)> {
    if queue_size > u32::MAX as usize {
        return Err(Error::msg("a session queue is at most 4 GB"));
    }
    if let Some(reused) = spares::take(queue_size) {
        return Ok(reused);
    }
    let segment = Box::new(Segment::create(CONTROL_SIZE + 2 * queue_size)?);
    // SAFETY: the segment is new and its first CONTROL_SIZE bytes are for this block; the
    // reference is used only while a Client owns the segment.
    let control = unsafe { Control::create(segment.base(), queue_size) };
    control.client.set(Some(crate::latch::Waker::current()?));
    segment.create_queue(CONTROL_SIZE, queue_size)?;
    segment.create_queue(CONTROL_SIZE + queue_size, queue_size)?;
    // What the client writes before the worker attaches must survive a client that
    // detaches first (a fire-and-forget job): the worker releases the segment once
    // attached.
    segment.keep()?;
    Ok((segment, control))
}

impl Drop for Client {
    fn drop(&mut self) {
        if crate::entry::exiting() {
            return;
        }
        // A worker that never attached (it failed to start, or exited first) will not
        // release the segment: release it here, or it would stay until the server stops.
        if self.control.worker_pid.load(SeqCst) == 0 && matches!(self.stopped(), Ok(true)) {
            let _ = Segment::release(self.segment.handle());
        }
        // SAFETY: taken once, here. The queue ends, dropped right after this, borrow the
        // boxed segment: it stays mapped among the spares meanwhile (the box does not move,
        // and the spare it may push out is an older one, whose queue ends are gone).
        let segment = unsafe { std::mem::ManuallyDrop::take(&mut self.segment) };
        spares::keep(segment);
    }
}

/// How long [`Client::receive`] (once the worker is connected) and a worker (for the next
/// request) look for the next message before they sleep on the latch.
const SPIN: std::time::Duration = std::time::Duration::from_micros(50);

/// Where a [`Client`]'s worker is.
///
/// ```
/// use bgworker::session::State;
/// assert_ne!(State::Running, State::Idle);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Launched, not yet attached to the session.
    Starting,
    /// Running a string (or holding its replies until they are read).
    Running,
    /// Waiting for the next string.
    Idle,
    /// Exited.
    Stopped,
}

/// The settings this session set (`SET`, or the client's startup options), except those
/// that carry identity or belong to one transaction: `name\0value\0...`.
fn capture_settings() -> Result<String> {
    /// Identity, encoding and per-transaction settings: never carried over.
    const NOT_CARRIED: [&str; 7] = [
        "role",
        "session_authorization",
        "client_encoding",
        "is_superuser",
        "transaction_isolation",
        "transaction_read_only",
        "transaction_deferrable",
    ];
    let mut len = 0;
    let len_ptr = &mut len as *mut i32;
    // SAFETY: reads this session's settings into a palloc'd buffer of `len` bytes (an
    // ERROR, such as a setting the current role may not read, is returned).
    let data = guard(|| unsafe { pg_sys::pgsys_session_settings(len_ptr) })?;
    // SAFETY: `data` holds `len` bytes, copied before it is freed.
    let bytes =
        unsafe { std::slice::from_raw_parts(data as *const u8, len.max(0) as usize) }.to_vec();
    // SAFETY: the buffer was palloc'd by the call above and is not used after.
    guard(|| unsafe { pg_sys::pfree(data.cast()) })?;
    let parts: Vec<&str> = bytes
        .split(|&b| b == 0)
        .map(|p| std::str::from_utf8(p).unwrap_or(""))
        .collect();
    let mut settings: Vec<&[&str]> = parts
        .chunks_exact(4)
        .filter(|setting| !NOT_CARRIED.contains(&setting[0]))
        .collect();
    settings.sort_unstable();
    let text = settings
        .iter()
        .map(|setting| setting.join("\0"))
        .collect::<Vec<_>>()
        .join("\0");
    Ok(text)
}

/// What PostgreSQL's main loop does after an ERROR: abort the transaction (or mark the
/// transaction block failed), drop the portals, return to the top memory context.
fn recover() -> Result<()> {
    // SAFETY: aborts whatever transaction state the failed statement left; the block state
    // machine turns an explicit block into "aborted, waiting for ROLLBACK".
    guard(|| unsafe {
        pg_sys::AbortCurrentTransaction();
        pg_sys::PortalErrorCleanup();
        pg_sys::CurrentMemoryContext = pg_sys::TopMemoryContext;
    })?;
    // Whatever was caught is rolled back now, even if the abort found the block already
    // failed (and ran no callback).
    crate::recovery::rolled_back(1);
    Ok(())
}

/// Parses and runs each statement of `sql` (a NUL-terminated string that outlives the
/// call); trees and plans go into `memory`.
fn run_statements(sql: *const c_char, memory: pg_sys::MemoryContext) -> Result<()> {
    // SAFETY: starts (or continues, inside a block) the transaction the statements run in,
    // then parses in `memory`; returns a List of RawStmt.
    let trees = guard(|| unsafe {
        pg_sys::StartTransactionCommand();
        // statement_timeout covers the whole string, as for a client's simple query.
        if pg_sys::StatementTimeout > 0 {
            pg_sys::enable_timeout_after(
                pg_sys::TimeoutId_STATEMENT_TIMEOUT,
                pg_sys::StatementTimeout,
            );
        }
        pg_sys::CurrentMemoryContext = memory;
        pg_sys::pg_parse_query(sql)
    })?;
    let count = if trees.is_null() {
        0
    } else {
        // SAFETY: a List (NIL is handled above).
        unsafe { (*trees).length }
    } as usize;
    let implicit_block = count > 1;
    for i in 0..count {
        // SAFETY: i < length; the cells hold RawStmt pointers.
        let raw = unsafe { (*(*trees).elements.add(i)).ptr_value } as *mut pg_sys::RawStmt;
        // SAFETY: a parsed statement.
        let stmt = unsafe { (*raw).stmt };
        // SAFETY: reads the transaction block state.
        let aborted = guard(|| unsafe { pg_sys::IsAbortedTransactionBlockState() })?;
        if aborted && !is_transaction_exit(stmt) {
            return Err(PgError::new(
                SqlState::IN_FAILED_SQL_TRANSACTION,
                "current transaction is aborted, commands ignored until end of transaction block",
            )
            .into());
        }
        if implicit_block {
            // SAFETY: wraps a multi-statement string in one transaction, as psql sees it.
            guard(|| unsafe { pg_sys::BeginImplicitTransactionBlock() })?;
        }
        let mut completion = pg_sys::QueryCompletion {
            commandTag: pg_sys::CommandTag_CMDTAG_UNKNOWN,
            nprocessed: 0,
        };
        let qc = &mut completion as *mut pg_sys::QueryCompletion;
        // SAFETY: runs one statement; `sql`, `raw` and `memory` live through the call; qc is
        // ours.
        guard(|| unsafe { run_one(raw, sql, qc, memory) })?;
        let last = i + 1 == count;
        if last && implicit_block {
            // SAFETY: ends the implicit block so that the commit below commits.
            guard(|| unsafe { pg_sys::EndImplicitTransactionBlock() })?;
        }
        if last || is_transaction_statement(stmt) {
            // SAFETY: commits, or (inside an explicit block) just advances the block state.
            guard(|| unsafe { pg_sys::CommitTransactionCommand() })?;
            if !last {
                // SAFETY: the next statement needs a transaction again.
                guard(|| unsafe { pg_sys::StartTransactionCommand() })?;
            }
        } else {
            // SAFETY: makes this statement's effects visible to the next.
            guard(|| unsafe { pg_sys::CommandCounterIncrement() })?;
        }
        // SAFETY: sends the command tag ('C') for the completed statement; the result of one
        // that is not the last goes out with it rather than wait for the statements after.
        guard(|| unsafe {
            pg_sys::pgsys_publish_next_tag(!last);
            pg_sys::EndCommand(qc, pg_sys::CommandDest_DestRemote, false);
            pg_sys::pgsys_publish_next_tag(false);
        })?;
    }
    if count == 0 {
        // SAFETY: an empty string: finish the transaction started above.
        guard(|| unsafe { pg_sys::CommitTransactionCommand() })?;
    }
    Ok(())
}

/// Analyzes, plans and runs one statement through an unnamed portal whose output goes to
/// the client (the redirected queue), in text format.
///
/// # Safety
/// Called through `guard` inside a transaction, with a parsed statement and its source
/// text; holds nothing that needs dropping (an ERROR leaves by `longjmp`).
unsafe fn run_one(
    raw: *mut pg_sys::RawStmt,
    sql: *const c_char,
    qc: *mut pg_sys::QueryCompletion,
    memory: pg_sys::MemoryContext,
) {
    // SAFETY: the caller's promise; every call below may raise an ERROR, which `guard`
    // catches above this frame.
    unsafe {
        pg_sys::CurrentMemoryContext = memory;
        let tag = pg_sys::CreateCommandTag((*raw).stmt);
        let snapshot = pg_sys::analyze_requires_snapshot(raw);
        if snapshot {
            pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
        }
        #[cfg(pg14)]
        let queries =
            pg_sys::pg_analyze_and_rewrite(raw, sql, std::ptr::null_mut(), 0, std::ptr::null_mut());
        #[cfg(not(pg14))]
        let queries = pg_sys::pg_analyze_and_rewrite_fixedparams(
            raw,
            sql,
            std::ptr::null(),
            0,
            std::ptr::null_mut(),
        );
        let plans = pg_sys::pg_plan_queries(
            queries,
            sql,
            pg_sys::CURSOR_OPT_PARALLEL_OK as i32,
            std::ptr::null_mut(),
        );
        if snapshot {
            pg_sys::PopActiveSnapshot();
        }
        pg_sys::pgsys_check_for_interrupts();
        let portal = pg_sys::CreatePortal(c"".as_ptr(), true, true);
        (*portal).visible = false;
        pg_sys::PortalDefineQuery(
            portal,
            std::ptr::null(),
            sql,
            tag,
            plans,
            std::ptr::null_mut(),
        );
        pg_sys::PortalStart(portal, std::ptr::null_mut(), 0, std::ptr::null_mut());
        let mut text_format: i16 = 0;
        pg_sys::PortalSetResultFormat(portal, 1, &mut text_format);
        let receiver = pg_sys::CreateDestReceiver(pg_sys::CommandDest_DestRemote);
        pg_sys::SetRemoteDestReceiverParams(receiver, portal);
        #[cfg(not(pg18))]
        pg_sys::PortalRun(portal, c_long::MAX, true, true, receiver, receiver, qc);
        #[cfg(pg18)]
        pg_sys::PortalRun(portal, c_long::MAX, true, receiver, receiver, qc);
        if let Some(destroy) = (*receiver).rDestroy {
            destroy(receiver);
        }
        pg_sys::PortalDrop(portal, false);
    }
}

/// A `TransactionStmt` (`BEGIN`, `COMMIT`, `SAVEPOINT` ...)?
fn is_transaction_statement(stmt: *mut pg_sys::Node) -> bool {
    // SAFETY: every parse tree node starts with its tag.
    !stmt.is_null() && unsafe { (*stmt).type_ } == pg_sys::NodeTag_T_TransactionStmt
}

/// A statement allowed in a failed transaction block: one that ends it.
fn is_transaction_exit(stmt: *mut pg_sys::Node) -> bool {
    if !is_transaction_statement(stmt) {
        return false;
    }
    // SAFETY: checked to be a TransactionStmt.
    let kind = unsafe { (*(stmt as *mut pg_sys::TransactionStmt)).kind };
    matches!(
        kind,
        pg_sys::TransactionStmtKind_TRANS_STMT_COMMIT
            | pg_sys::TransactionStmtKind_TRANS_STMT_PREPARE
            | pg_sys::TransactionStmtKind_TRANS_STMT_ROLLBACK
            | pg_sys::TransactionStmtKind_TRANS_STMT_ROLLBACK_TO
    )
}

/// Sends `error` to the redirected output as an ErrorResponse ('E').
fn send_error(error: &PgError) -> Result<()> {
    let mut fields: Vec<(u8, &str)> = vec![
        (b'S', "ERROR"),
        (b'V', "ERROR"),
        (b'C', error.sqlstate.as_str()),
        (b'M', &error.message),
    ];
    for (code, value) in [
        (b'D', &error.detail),
        (b'H', &error.hint),
        (b'W', &error.context),
    ] {
        if let Some(v) = value {
            fields.push((code, v));
        }
    }
    let mut body = Vec::new();
    for (code, value) in fields {
        body.push(code);
        body.extend(value.bytes().filter(|&b| b != 0));
        body.push(0);
    }
    body.push(0);
    send_message(b'E', &body)
}

/// Sends one protocol message to the redirected output.
fn send_message(kind: u8, body: &[u8]) -> Result<()> {
    let (data, len) = (body.as_ptr().cast(), body.len() as i32);
    // SAFETY: builds a StringInfo in the current context and sends it; `body` outlives the
    // call.
    guard(|| unsafe {
        let mut buf = std::mem::zeroed::<pg_sys::StringInfoData>();
        pg_sys::pq_beginmessage(&mut buf, kind as c_char);
        pg_sys::appendBinaryStringInfo(&mut buf, data, len);
        pg_sys::pq_endmessage(&mut buf);
    })?;
    Ok(())
}

/// One protocol message from a worker's redirected output.
///
/// ```
/// use bgworker::session::Reply;
/// let ready = Reply::parse(b"ZI").unwrap();
/// assert!(matches!(ready, Reply::Ready(b'I')));
/// ```
#[derive(Debug)]
pub enum Reply<'a> {
    /// RowDescription ('T'): the result's columns.
    Columns(Vec<Column>),
    /// DataRow ('D'): one row, in text format.
    Row(Row<'a>),
    /// CommandComplete ('C'): a statement's tag (`INSERT 0 1`).
    Complete(&'a str),
    /// NoticeResponse ('N'): a NOTICE, WARNING, INFO ...; the severity and the report.
    Notice(String, PgError),
    /// ErrorResponse ('E').
    Error(PgError),
    /// ReadyForQuery ('Z'): the string is done; `I` idle, `T` in a block, `E` in a failed one.
    Ready(u8),
    /// Any other message (for example NotificationResponse 'A'), with its type.
    Other(u8, &'a [u8]),
}

/// A result column: its name and type.
///
/// ```
/// # use bgworker::session::Column;
/// fn describe(c: &Column) -> String { format!("{} {}", c.name, c.type_oid) }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Column {
    /// The column's name.
    pub name: String,
    /// Its type's OID.
    pub type_oid: pg_sys::Oid,
    /// Its type modifier.
    pub typmod: i32,
}

/// A DataRow's values, borrowed from the message.
///
/// ```
/// # use bgworker::session::Reply;
/// // One column, "42".
/// let Reply::Row(row) = Reply::parse(b"D\x00\x01\x00\x00\x00\x0242").unwrap() else { panic!() };
/// assert_eq!(row.values().collect::<Vec<_>>(), vec![Some(&b"42"[..])]);
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Row<'a> {
    count: usize,
    data: &'a [u8],
}

impl<'a> Row<'a> {
    /// How many values the row has.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether it has none.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The values in text format; `None` is NULL.
    pub fn values(&self) -> impl Iterator<Item = Option<&'a [u8]>> + 'a {
        let mut rest = self.data;
        (0..self.count).map(move |_| {
            let len = i32::from_be_bytes(rest[..4].try_into().expect("checked by parse"));
            rest = &rest[4..];
            if len < 0 {
                return None;
            }
            let (value, tail) = rest.split_at(len as usize);
            rest = tail;
            Some(value)
        })
    }
}

impl<'a> Reply<'a> {
    /// Reads one message (type byte, then its body, as the queue carries them).
    pub fn parse(message: &'a [u8]) -> Result<Reply<'a>> {
        let (&kind, body) = message
            .split_first()
            .ok_or_else(|| protocol("an empty message"))?;
        let mut r = Reader { data: body };
        let reply = match kind {
            b'T' => {
                let n = r.i16()?;
                let mut columns = Vec::with_capacity(n.max(0) as usize);
                for _ in 0..n {
                    let name = r.string()?.to_string();
                    r.take(6)?; // table OID, column number
                    let type_oid = r.i32()? as pg_sys::Oid;
                    r.take(2)?; // type length
                    let typmod = r.i32()?;
                    r.take(2)?; // format
                    columns.push(Column {
                        name,
                        type_oid,
                        typmod,
                    });
                }
                Reply::Columns(columns)
            }
            b'D' => {
                let count = r.i16()?.max(0) as usize;
                let data = r.data;
                for _ in 0..count {
                    let len = r.i32()?;
                    if len > 0 {
                        r.take(len as usize)?;
                    }
                }
                Reply::Row(Row { count, data })
            }
            b'C' => Reply::Complete(r.string()?),
            b'E' => Reply::Error(r.report()?.1),
            b'N' => {
                let (severity, report) = r.report()?;
                Reply::Notice(severity, report)
            }
            b'Z' => Reply::Ready(*body.first().ok_or_else(|| protocol("ReadyForQuery"))?),
            other => Reply::Other(other, body),
        };
        Ok(reply)
    }
}

/// A worker's ERROR as the caller reports it: with a context line naming the worker.
fn from_worker(mut report: PgError, pid: i32) -> PgError {
    let line = format!("background session worker {pid}");
    report.context = Some(match report.context.take() {
        Some(c) => format!("{c}\n{line}"),
        None => line,
    });
    report
}

/// The ERROR for a worker that went away before its string's end.
fn lost_connection(pid: i32) -> PgError {
    PgError::new(
        SqlState::CONNECTION_FAILURE,
        format!("lost connection to background session worker {pid}"),
    )
}

fn mismatch(got: usize, asked: usize) -> Error {
    PgError::new(
        SqlState::DATATYPE_MISMATCH,
        format!("the result has {got} columns, the column definition list {asked}"),
    )
    .into()
}

/// The report level of a NOTICE-like severity name.
fn level_of(severity: &str) -> crate::elog::Level {
    use crate::elog::Level;
    match severity {
        "WARNING" => Level::Warning,
        "INFO" => Level::Info,
        "LOG" => Level::Log,
        s if s.starts_with("DEBUG") => Level::Debug1,
        _ => Level::Notice,
    }
}

fn protocol(what: &str) -> Error {
    PgError::new(
        SqlState::PROTOCOL_VIOLATION,
        format!("malformed message from a background session: {what}"),
    )
    .into()
}

struct Reader<'a> {
    data: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.data.len() < n {
            return Err(protocol("truncated"));
        }
        let (head, tail) = self.data.split_at(n);
        self.data = tail;
        Ok(head)
    }
    fn i16(&mut self) -> Result<i16> {
        Ok(i16::from_be_bytes(
            self.take(2)?.try_into().expect("2 bytes"),
        ))
    }
    fn i32(&mut self) -> Result<i32> {
        Ok(i32::from_be_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }
    fn string(&mut self) -> Result<&'a str> {
        let end = self
            .data
            .iter()
            .position(|&b| b == 0)
            .ok_or_else(|| protocol("unterminated string"))?;
        let s = std::str::from_utf8(&self.data[..end]).map_err(|_| protocol("not UTF-8"))?;
        self.data = &self.data[end + 1..];
        Ok(s)
    }
    /// An ErrorResponse/NoticeResponse body: fields until a zero byte.
    fn report(&mut self) -> Result<(String, PgError)> {
        let mut severity = String::from("ERROR");
        let mut error = PgError::new(SqlState::INTERNAL_ERROR, "");
        loop {
            let code = self.take(1)?[0];
            if code == 0 {
                break;
            }
            let value = self.string()?.to_string();
            match code {
                b'V' => severity = value,
                b'C' => {
                    if let Some(state) = SqlState::new(&value) {
                        error.sqlstate = state;
                    }
                }
                b'M' => error.message = value,
                b'D' => error.detail = Some(value),
                b'H' => error.hint = Some(value),
                b'W' => error.context = Some(value),
                _ => {}
            }
        }
        Ok((severity, error))
    }
}
