//! The worker's side of background sessions: who it serves (from `bgw_extra`), connecting
//! as them, and serving one job's segment (its control block, request queue and reply
//! queue) until the client detaches.
//!
//! ```no_run
//! // What bgworker::session::serve does in a worker a Client launched:
//! # fn f(main_arg: i64) -> bgworker::Result<()> {
//! bgworker::session::serve(main_arg)
//! # }
//! ```

use std::sync::atomic::Ordering::SeqCst;

use super::control::{self, Control, CONTROL_SIZE};
use super::{apply_settings, hold_cancels, run_numbered, Session};
use crate::dsm::{Receiver, Segment, Sender};
use crate::error::{Error, PgError, Result, SqlState};
use crate::guard::guard;
use crate::pg_sys;

/// The backend a worker runs SQL for: its database, session user, current role and
/// security context when it launched the worker.
pub(crate) struct Caller {
    pub(crate) database: u32,
    pub(crate) session_user: u32,
    pub(crate) current_user: u32,
    pub(crate) security_context: i32,
}

impl Caller {
    /// This backend, as `bgw_extra` bytes for its worker.
    pub(crate) fn current() -> (Caller, Vec<u8>) {
        let (mut user, mut security_context) = (0, 0);
        let (u, c) = (
            &mut user as *mut pg_sys::Oid,
            &mut security_context as *mut i32,
        );
        // SAFETY: plain reads of this backend's identity; the out pointers are valid.
        let caller = unsafe {
            pg_sys::GetUserIdAndSecContext(u, c);
            Caller {
                database: pg_sys::MyDatabaseId,
                session_user: pg_sys::GetSessionUserId(),
                current_user: user,
                security_context,
            }
        };
        let words = [
            caller.database,
            caller.session_user,
            caller.current_user,
            caller.security_context as u32,
        ];
        let extra = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        (caller, extra)
    }

    /// Who this worker serves, from its `bgw_extra`.
    pub(crate) fn from_extra() -> Result<Caller> {
        let extra = crate::worker::extra().unwrap_or_default();
        let word = |i: usize| {
            extra
                .get(i..i + 4)
                .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
                .ok_or_else(|| {
                    Error::msg("a background session worker needs its caller in bgw_extra")
                })
        };
        Ok(Caller {
            database: word(0)?,
            session_user: word(4)?,
            current_user: word(8)?,
            security_context: word(12)? as i32,
        })
    }

    /// The pool's key for the caller's jobs.
    pub(crate) fn key(&self) -> super::pool::Key {
        super::pool::Key {
            database: self.database,
            session_user: self.session_user,
            current_user: self.current_user,
        }
    }

    /// Whether the caller ran inside a SECURITY DEFINER function (or similar).
    pub(crate) fn in_local_user_change(&self) -> bool {
        self.security_context & pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32 != 0
    }

    /// Connects to the caller's database as its session user, then takes its current role.
    pub(crate) fn connect(&self) -> Result<()> {
        crate::worker::connect(
            crate::worker::Connection::new(crate::worker::Database::Oid(self.database))
                .role(crate::worker::Role::Oid(self.session_user)),
        )?;
        self.take_role()
    }

    /// Takes the caller's current role (again, after a `DISCARD ALL` reset it).
    pub(crate) fn take_role(&self) -> Result<()> {
        if self.in_local_user_change() {
            // Launched from a SECURITY DEFINER function: the job has that function's
            // owner's rights and, as in the function, may not SET ROLE or RESET ROLE out
            // of them (to the caller's session user, who may have more).
            let (user, context) = (self.current_user, self.security_context);
            // SAFETY: sets this process's current user and security context, outside any
            // transaction; transactions restore them to these values when they end.
            guard(|| unsafe { pg_sys::SetUserIdAndSecContext(user, context) })?;
        } else if self.current_user != self.session_user {
            let role = self.current_user;
            crate::xact::transaction(|_| {
                // SAFETY: a catalog lookup inside the transaction; an unknown role is an
                // ERROR (noerr false).
                let name = guard(|| unsafe { pg_sys::GetUserNameFromId(role, false) })?;
                // SAFETY: a palloc'd NUL-terminated name, copied at once.
                let name = unsafe { crate::cstr::copy_cstring(name) };
                super::set_for_session("role", &name, None)
            })?;
        }
        Ok(())
    }
}

/// One job's segment, attached by its worker.
pub(crate) struct Job {
    // Dropped first: they borrow the segment.
    output: Option<Sender<'static>>,
    requests: Option<Receiver<'static>>,
    control: &'static Control,
    segment: Box<Segment>,
}

impl Job {
    /// Attaches the job segment `handle` a client created, and takes over its pin.
    pub(crate) fn attach(handle: u32) -> Result<Job> {
        let segment = Box::new(Segment::attach(handle)?);
        if segment.size() < CONTROL_SIZE {
            return Err(Error::msg("a background session segment is too small"));
        }
        // SAFETY: the segment is mapped while the Job lives (the box moves with it and is
        // dropped last) and has room for a control block (checked above), which the
        // client wrote before handing the segment out (the magic number says so).
        let control = unsafe { Control::attach(segment.base()) }?;
        let queue = control.queue_size.load(SeqCst) as usize;
        if segment.size() < CONTROL_SIZE + 2 * queue {
            return Err(Error::msg("a background session segment is too small"));
        }
        // SAFETY: a plain read of this process's pid.
        control
            .worker_pid
            .store(unsafe { pg_sys::MyProcPid }, SeqCst);
        // Attached: the client's pin can go (the client releases it instead only while no
        // worker pid is recorded).
        Segment::release(handle)?;
        // SAFETY: the box lives in the returned Job, which drops the queue ends first.
        let seg: &'static Segment = unsafe { &*(segment.as_ref() as *const Segment) };
        let requests = seg.receiver(CONTROL_SIZE, None)?;
        Ok(Job {
            output: None,
            requests: Some(requests),
            control,
            segment,
        })
    }

    /// Sends this process's client output into the job's reply queue.
    pub(crate) fn redirect_output(&mut self) -> Result<()> {
        let queue = self.control.queue_size.load(SeqCst) as usize;
        // SAFETY: as in `attach`.
        let seg: &'static Segment = unsafe { &*(self.segment.as_ref() as *const Segment) };
        let sender = seg.sender(CONTROL_SIZE + queue, None)?;
        let (raw_segment, raw_queue) = (seg.raw(), sender.raw());
        // SAFETY: the queue handle lives in this Job until `stop_output`, which ends the
        // redirection before dropping it; detaching the segment also ends it (PostgreSQL
        // registers a detach callback that forgets the queue).
        unsafe { super::redirect_protocol(raw_segment, raw_queue) }?;
        self.output = Some(sender);
        control::set_serving(self.control);
        Ok(())
    }

    /// Runs each SQL string the client sends, with its settings, until it detaches.
    pub(crate) fn serve(&mut self, session: &mut Session) -> Result<()> {
        let mut settings: Option<String> = None;
        let mut number = 0u64;
        self.control.connected.store(1, SeqCst);
        loop {
            // As a backend does between a client's queries: a session idle inside an open
            // transaction block ends after idle_in_transaction_session_timeout (a FATAL,
            // which the client reads as the next string's result), instead of holding
            // its locks and snapshot for as long as nobody sends anything.
            // (A timeout that fires as a string arrives still ends the session, as it would
            // a backend's.)
            let timer = idle_in_transaction_timer()?;
            // The client writes its strings right after handing the job over, and detaches
            // right after reading a result: looking a little before sleeping saves a wakeup.
            let received = self.requests()?.receive_within(super::SPIN);
            if timer {
                // SAFETY: disarms the timeout armed above (a plain timer operation).
                guard(|| unsafe {
                    pg_sys::disable_timeout(
                        pg_sys::TimeoutId_IDLE_IN_TRANSACTION_SESSION_TIMEOUT,
                        false,
                    )
                })?;
            }
            let Some(message) = received? else {
                break;
            };
            let (kind, body) = message.split_first().unwrap_or((&0, &[]));
            let text = std::str::from_utf8(body);
            match kind {
                b'S' => {
                    // Settings add up until the next string, which applies them first.
                    let text = String::from_utf8_lossy(body);
                    match settings.as_mut() {
                        Some(pending) if !pending.is_empty() && !text.is_empty() => {
                            pending.push('\0');
                            pending.push_str(&text);
                        }
                        Some(pending) if pending.is_empty() => *pending = text.into_owned(),
                        Some(_) => {}
                        None => settings = Some(text.into_owned()),
                    }
                }
                b'Q' => {
                    number += 1;
                    run_numbered(session, self.control, number, || {
                        let Ok(text) = text else {
                            return Err(PgError::new(
                                SqlState::CHARACTER_NOT_IN_REPERTOIRE,
                                "a background session request is not valid UTF-8",
                            ));
                        };
                        // The caller's settings, before its first string: a setting this
                        // worker cannot take is that string's ERROR (and the next one's,
                        // until they apply), never a silently different setup.
                        if let Some(pending) = settings.take().filter(|p| !p.is_empty()) {
                            if let Err(e) = apply_settings(&pending) {
                                settings = Some(pending);
                                return Err(e.to_pg_error());
                            }
                        }
                        Ok(text)
                    })?;
                }
                _ => return Err(Error::msg("unknown background session request")),
            }
        }
        Ok(())
    }

    fn requests(&mut self) -> Result<&mut Receiver<'static>> {
        self.requests
            .as_mut()
            .ok_or_else(|| Error::msg("this job's requests are closed"))
    }

    /// Lets the segment go: detaches the queues and tells the client's backend that this
    /// worker no longer touches the segment (it may make it new for another job).
    pub(crate) fn release(mut self) {
        self.stop_output();
        self.requests = None;
        self.control.released.store(1, SeqCst);
    }

    /// Ends the redirection to this job's queue: output goes nowhere until the next job.
    pub(crate) fn stop_output(&mut self) {
        control::clear_serving();
        // SAFETY: plain globals of this process: no more protocol messages go out, and the
        // output method forgets the queue handle dropped here.
        unsafe {
            pg_sys::whereToSendOutput = pg_sys::CommandDest_DestNone;
            pg_sys::pgsys_stop_output();
        }
        self.output = None;
    }
}

/// A pooled worker's sessions: connects once, then serves one job after another, resetting
/// the session in between.
pub(crate) struct JobServer {
    caller: Caller,
    session: Session,
    /// Whether this worker has connected (it does so once its first job's output goes to
    /// that job's client, so that a failure to connect reaches the client).
    connected: bool,
}

impl JobServer {
    /// Serves the caller in `bgw_extra`, connecting as them with the first job.
    pub(crate) fn start() -> Result<JobServer> {
        crate::exit::skip_library_teardown()?;
        hold_cancels(true);
        Ok(JobServer {
            caller: Caller::from_extra()?,
            session: Session::new(),
            connected: false,
        })
    }

    /// Serves whom this worker connected as (a warm worker, which named its role and
    /// database itself).
    pub(crate) fn for_this_session() -> Result<JobServer> {
        crate::exit::skip_library_teardown()?;
        hold_cancels(true);
        Ok(JobServer {
            caller: Caller::current().0,
            session: Session::new(),
            connected: true,
        })
    }

    /// The pool key of whom this worker serves.
    pub(crate) fn key(&self) -> super::pool::Key {
        self.caller.key()
    }

    /// Serves the job in segment `handle` until its client detaches, calls `over`, then
    /// resets the session for the next job.
    pub(crate) fn serve_job(
        &mut self,
        handle: u32,
        over: impl FnOnce() -> Result<()>,
    ) -> Result<()> {
        self.run_job(handle)?;
        over()?;
        self.reset()
    }

    /// Serves the job in segment `handle` until its client detaches, then lets the segment
    /// go. Its output goes to its client before this worker connects, so that a failure to
    /// connect reaches the client too.
    pub(crate) fn run_job(&mut self, handle: u32) -> Result<()> {
        let mut job = Job::attach(handle)?;
        job.redirect_output()?;
        let served = match self.connect_once() {
            Ok(()) => job.serve(&mut self.session),
            Err(e) => {
                // A FATAL went to the client already; an ERROR is sent here.
                let _ = super::send_error(&e.to_pg_error());
                Err(e)
            }
        };
        job.release();
        served
    }

    /// Connects as the caller, the first time (a failure to connect ends the process with
    /// a FATAL, which the job's client reads).
    fn connect_once(&mut self) -> Result<()> {
        if !self.connected {
            self.caller.connect()?;
            self.connected = true;
        }
        Ok(())
    }

    /// What the next job must not see of this one: an open transaction, temporary tables,
    /// prepared statements, cursors, settings, advisory locks, `LISTEN`s (`DISCARD ALL`).
    fn reset(&mut self) -> Result<()> {
        // SAFETY: reads the transaction state.
        if guard(|| unsafe { pg_sys::IsTransactionOrTransactionBlock() })? {
            self.session.execute("ROLLBACK")?;
        }
        if !self.session.execute("DISCARD ALL")? {
            return Err(Error::msg("a pooled worker could not reset its session"));
        }
        self.caller.take_role()
    }
}

/// Arms idle_in_transaction_session_timeout if the session is inside a transaction block
/// and the setting is on: whether it armed it.
fn idle_in_transaction_timer() -> Result<bool> {
    // SAFETY: reads the transaction state and a setting of this process.
    let armed = guard(|| unsafe {
        let timeout = pg_sys::IdleInTransactionSessionTimeout;
        let arm = timeout > 0 && pg_sys::IsTransactionBlock();
        if arm {
            pg_sys::enable_timeout_after(
                pg_sys::TimeoutId_IDLE_IN_TRANSACTION_SESSION_TIMEOUT,
                timeout,
            );
        }
        arm
    })?;
    Ok(armed)
}
