//! Warm session workers, shared by the backends of a cluster: a pooled worker serves one
//! job (a [`Client`](super::Client)'s session) after another for one (database, session
//! user, current role), resets its session between jobs (`DISCARD ALL`: temporary tables,
//! prepared statements, settings, advisory locks, `LISTEN`s), and retires after a time
//! idle. When no pooled worker is idle and no more may start (the pool's size, or
//! `max_worker_processes`), a submitter waits its turn in a bounded admission queue.
//!
//! The bookkeeping is a small structure in shared memory ([`Shared::attach_late`]), so the
//! pool works in a library that is not preloaded.
//!
//! ```no_run
//! use bgworker::session::{pool::Limits, Client};
//! use bgworker::Worker;
//! # struct Pooled;
//! # impl bgworker::Worker for Pooled {
//! #     const NAME: &'static str = "p";
//! #     fn main(arg: i64) -> bgworker::Result<()> { bgworker::session::pool::serve(arg) }
//! # }
//! # bgworker::export_worker!(Pooled, "p_main");
//! # fn main() -> bgworker::Result<()> {
//! let limits = Limits { workers: 8, waiting: 32, idle_timeout_secs: 60 };
//! let mut client = Client::from_pool(Pooled::builder(), 65536, limits)?;
//! client.send("SELECT 1")?;
//! # Ok(()) }
//! ```

use std::ffi::c_int;
use std::time::Duration;

use crate::error::{Error, PgError, Result, SqlState};
use crate::latch::{Waker, WakerSlot};
use crate::pg_sys;
use crate::shmem::{Shared, SpinLocked};
use crate::time::Timestamp;

/// The most pooled workers there can be (the [`Limits`] choose fewer).
///
/// ```
/// assert_eq!(bgworker::session::pool::MAX_POOLED, 32);
/// ```
pub const MAX_POOLED: usize = 32;
/// The most warm workers there can be ([`register_warm`]): half the slots, so that jobs of
/// other roles always find room.
///
/// ```
/// assert_eq!(bgworker::session::pool::MAX_WARM, 16);
/// ```
pub const MAX_WARM: usize = MAX_POOLED / 2;
/// The most submitters that can wait in the admission queue (the [`Limits`] choose fewer).
///
/// ```
/// assert_eq!(bgworker::session::pool::MAX_WAITING, 64);
/// ```
pub const MAX_WAITING: usize = 64;
/// How much of a job's SQL the pool keeps for [`jobs`].
///
/// ```
/// assert_eq!(bgworker::session::pool::PREVIEW_BYTES, 64);
/// ```
pub const PREVIEW_BYTES: usize = 64;

/// How big the pool may grow, how many submitters may wait, how long a worker stays idle.
///
/// ```
/// let limits = bgworker::session::pool::Limits { workers: 4, waiting: 16, idle_timeout_secs: 30 };
/// assert!(limits.workers <= bgworker::session::pool::MAX_POOLED);
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Pooled workers at most, all keys together (at most [`MAX_POOLED`]).
    pub workers: usize,
    /// Submitters waiting at most (at most [`MAX_WAITING`]); one more is refused.
    pub waiting: usize,
    /// Seconds an idle pooled worker waits for a job before it exits.
    pub idle_timeout_secs: u32,
}

/// The main argument's bit that tells a pooled worker's main to serve one job's segment
/// (its low 32 bits) like [`serve`](super::serve), outside the pool.
pub(crate) const UNPOOLED: i64 = 1 << 62;

/// The main argument's bit of a warm worker ([`register_warm`]): it serves the role and
/// database named in its `bgw_extra`. (The argument of a pooled worker: slot in bits 0-7,
/// generation in 8-31, this bit 32, idle timeout in 40-61, [`UNPOOLED`] 62.)
const WARM: i64 = 1 << 32;

/// A segment handle no job has: tells an idle worker to exit and make room.
const RETIRE: u32 = u32::MAX;

const FREE: u32 = 0;
const STARTING: u32 = 1;
const IDLE: u32 = 2;
const BUSY: u32 = 3;

crate::plain_struct! {
    /// What a pooled worker serves: one database, as one session user and current role.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct Key {
        /// The database's OID.
        pub database: u32,
        /// The session user's OID (whom the worker connects as).
        pub session_user: u32,
        /// The current role's OID (what `SET ROLE` made it).
        pub current_user: u32,
    }
}

crate::plain_struct! {
    struct Slot {
        state: u32,
        key: Key,
        pid: i32,
        /// Bumped each time the slot is taken for a new worker.
        generation: u32,
        /// The job segment handed to the worker (0: none).
        segment: u32,
        worker: WakerSlot,
        /// When the slot was reserved (a worker that never starts is reclaimed after a while).
        reserved_at: i64,
        submitter: i32,
        job_started: i64,
        jobs_done: u64,
        /// 1 for a warm worker (started with the server, kept in the pool).
        warm: u32,
        /// When it last finished a job, in the pool's count of finished jobs.
        finished_at: u64,
        preview_len: u32,
        preview: [u8; PREVIEW_BYTES],
    }
}

crate::plain_struct! {
    struct Waiting {
        /// 0: an empty place.
        ticket: u64,
        key: Key,
        waker: WakerSlot,
    }
}

crate::plain_struct! {
    struct Pool {
        slots: [Slot; MAX_POOLED],
        waiting: [Waiting; MAX_WAITING],
        next_ticket: u64,
        /// Jobs finished, all workers together.
        finished: u64,
        /// Tells this copy of the pool from another build's (see [`POOL`]), in the extra
        /// bytes of the workers it starts.
        id: u64,
    }
}

// Per layout: a newer build of the library, loaded while an older one's pool exists (an
// upgrade without a restart), keeps its own pool instead of failing every pooled launch.
// A worker always runs the library file as it is now, whichever build's backend started
// it: the pool's id in its extra bytes keeps it from taking a slot of a pool that is not
// the one it was started for. The version in the name is bumped when what the pool's
// fields mean changes but not its size.
static POOL: Shared<SpinLocked<Pool>> = Shared::per_layout(c"bgworker session pool v1", || {
    SpinLocked::new(Pool {
        slots: std::array::from_fn(|_| Slot {
            state: FREE,
            key: Key::default(),
            pid: 0,
            generation: 0,
            segment: 0,
            worker: WakerSlot::new(),
            reserved_at: 0,
            submitter: 0,
            job_started: 0,
            jobs_done: 0,
            warm: 0,
            finished_at: 0,
            preview_len: 0,
            preview: [0; PREVIEW_BYTES],
        }),
        waiting: std::array::from_fn(|_| Waiting {
            ticket: 0,
            key: Key::default(),
            waker: WakerSlot::new(),
        }),
        next_ticket: 1 << 32,
        finished: 0,
        id: new_pool_id(),
    })
});

fn pool() -> Result<&'static SpinLocked<Pool>> {
    POOL.attach_late()
}

/// Where a pooled worker's extra bytes hold the id of the pool that started it (after the
/// caller's 16 bytes).
const POOL_ID_AT: usize = 16;

/// A pool id no other copy of the pool has: distinct builds only, nothing to guess.
fn new_pool_id() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    // SAFETY: a plain read of this process's pid.
    (nanos ^ (u64::from(unsafe { pg_sys::MyProcPid } as u32) << 40)) | 1
}

/// The extra bytes for a pooled worker of `caller` (its `bgw_extra`): the caller, then the
/// pool's id.
pub(crate) fn worker_extra(caller: &[u8]) -> Result<Vec<u8>> {
    let id = pool()?.lock().id;
    let mut extra = caller.to_vec();
    extra.resize(POOL_ID_AT, 0);
    extra.extend_from_slice(&id.to_le_bytes());
    Ok(extra)
}

/// How long a worker that has just finished a job looks for the next before it sleeps.
const IDLE_SPIN: Duration = Duration::from_micros(100);

/// A worker reserved for a job that has not shown up in this long is taken to have failed
/// to start.
const START_TIMEOUT_MICROS: i64 = 60_000_000;

impl Slot {
    /// Takes this free slot for a new worker serving `key` (`segment`: its first job, or
    /// 0); the slot's new generation.
    fn reserve(&mut self, key: Key, segment: u32, now: i64, warm: bool) -> u32 {
        self.state = STARTING;
        self.key = key;
        self.pid = 0;
        self.generation = self.generation.wrapping_add(1) & 0xff_ffff;
        self.segment = segment;
        self.reserved_at = now;
        self.jobs_done = 0;
        self.finished_at = 0;
        self.warm = u32::from(warm);
        self.preview_len = 0;
        self.worker.set(None);
        self.generation
    }

    /// Gives the slot up: no worker, no job.
    fn free(&mut self) {
        self.state = FREE;
        self.pid = 0;
        self.segment = 0;
        self.worker.set(None);
    }
}

impl Pool {
    /// Workers started for jobs (warm workers come on top of the pool's size).
    fn on_demand(&self) -> usize {
        self.slots
            .iter()
            .filter(|s| s.state != FREE && s.warm == 0)
            .count()
    }

    /// Forgets waiters whose backend has exited, and reservations that never started.
    fn tidy(&mut self, now: i64) {
        for w in self.waiting.iter_mut().filter(|w| w.ticket != 0) {
            if !w.waker.get().is_some_and(Waker::alive) {
                w.ticket = 0;
            }
        }
        for s in self.slots.iter_mut() {
            if s.state == STARTING && s.pid == 0 && now - s.reserved_at > START_TIMEOUT_MICROS {
                s.free();
            }
        }
    }

    fn first_waiting(&self, key: Option<Key>) -> Option<u64> {
        self.waiting
            .iter()
            .filter(|w| w.ticket != 0 && key.is_none_or(|k| w.key == k))
            .map(|w| w.ticket)
            .min()
    }

    /// Asks the idle worker (not a warm one, not of `except`) that finished longest ago to
    /// exit and make room.
    fn retire_one(&mut self, except: Option<Key>) {
        let oldest = self
            .slots
            .iter_mut()
            .filter(|s| s.state == IDLE && s.segment == 0 && s.warm == 0)
            .filter(|s| except.is_none_or(|k| s.key != k))
            .min_by_key(|s| s.finished_at);
        if let Some(s) = oldest {
            s.segment = RETIRE;
            if let Some(w) = s.worker.get() {
                w.wake();
            }
        }
    }

    fn wake_waiting(&self) {
        for w in self.waiting.iter().filter(|w| w.ticket != 0) {
            w.waker.wake();
        }
    }
}

/// Where a submitted job went.
pub(crate) enum Placement {
    /// To the idle worker in this slot.
    Idle { slot: usize, generation: u32 },
    /// To a worker to start in this slot: launch it with [`main_arg`].
    Start { slot: usize, generation: u32 },
}

/// The main argument of a pooled worker for `slot`.
pub(crate) fn main_arg(slot: usize, generation: u32, limits: Limits) -> i64 {
    let idle = limits.idle_timeout_secs.min(0x3f_ffff);
    (slot as i64) | (i64::from(generation) << 8) | (i64::from(idle) << 40)
}

fn preview_of(sql: &str) -> ([u8; PREVIEW_BYTES], u32) {
    let mut end = sql.len().min(PREVIEW_BYTES);
    while !sql.is_char_boundary(end) {
        end -= 1;
    }
    let mut bytes = [0u8; PREVIEW_BYTES];
    bytes[..end].copy_from_slice(&sql.as_bytes()[..end]);
    (bytes, end as u32)
}

/// Hands the job in `segment` to an idle worker of `key`, or reserves a slot for a new
/// one, waiting in the admission queue meanwhile. `launch` starts the worker for a
/// reserved slot; when it finds no free worker process slot, the job waits on.
pub(crate) fn place(
    key: Key,
    segment: u32,
    limits: Limits,
    mut launch: impl FnMut(usize, u32) -> Result<Option<crate::worker::Handle>>,
) -> Result<(Placement, Option<crate::worker::Handle>)> {
    let me = Waker::current()?;
    // SAFETY: a plain read of this backend's pid.
    let my_pid = unsafe { pg_sys::MyProcPid };
    let mut ticket = 0u64;
    let result = loop {
        let now = Timestamp::now().micros();
        let decision = {
            let mut pool = pool()?.lock();
            pool.tidy(now);
            let mine = (ticket != 0).then_some(ticket);
            let first_for_key = pool.first_waiting(Some(key));
            let first_overall = pool.first_waiting(None);
            let my_turn_for_key = first_for_key.is_none() || first_for_key == mine;
            let my_turn_overall = first_overall.is_none() || first_overall == mine;
            // The worker that finished last: it may still be looking for its next job,
            // awake (the others sleep, and stay asleep).
            let idle = pool
                .slots
                .iter()
                .enumerate()
                .filter(|(_, s)| s.state == IDLE && s.key == key && s.segment == 0)
                .max_by_key(|(_, s)| s.finished_at)
                .map(|(i, _)| i);
            let decision = if let (Some(i), true) = (idle, my_turn_for_key) {
                let s = &mut pool.slots[i];
                s.state = BUSY;
                s.segment = segment;
                Some(Placement::Idle {
                    slot: i,
                    generation: s.generation,
                })
            } else if let (true, Some(i)) = (
                my_turn_overall && pool.on_demand() < limits.workers.min(MAX_POOLED),
                pool.slots.iter().position(|s| s.state == FREE),
            ) {
                let generation = pool.slots[i].reserve(key, segment, now, false);
                Some(Placement::Start {
                    slot: i,
                    generation,
                })
            } else {
                let retiring = pool.slots.iter().any(|s| s.segment == RETIRE);
                if my_turn_overall && idle.is_none() && !retiring {
                    // The pool is full: ask an idle worker of another key to make room.
                    pool.retire_one(None);
                }
                None
            };
            match &decision {
                Some(Placement::Idle { slot, .. }) | Some(Placement::Start { slot, .. }) => {
                    let s = &mut pool.slots[*slot];
                    s.submitter = my_pid;
                    s.job_started = now;
                    s.preview_len = 0;
                    if ticket != 0 {
                        if let Some(w) = pool.waiting.iter_mut().find(|w| w.ticket == ticket) {
                            w.ticket = 0;
                        }
                    }
                }
                None if ticket == 0 => {
                    let queued = pool.waiting.iter().filter(|w| w.ticket != 0).count();
                    let capacity = limits.waiting.min(MAX_WAITING);
                    if queued >= capacity {
                        drop(pool);
                        break Err(PgError::new(
                            SqlState::CONFIGURATION_LIMIT_EXCEEDED,
                            format!("the background job admission queue is full ({queued} waiting)"),
                        )
                        .with_hint(
                            "Raise the setting that sizes the admission queue (pg_background.max_queued_jobs for the background extension), or the pool's size.",
                        )
                        .into());
                    }
                    let Some(place) = pool.waiting.iter().position(|w| w.ticket == 0) else {
                        drop(pool);
                        break Err(PgError::new(
                            SqlState::CONFIGURATION_LIMIT_EXCEEDED,
                            "the background job admission queue is full",
                        )
                        .into());
                    };
                    ticket = pool.next_ticket;
                    pool.next_ticket += 1;
                    let w = &mut pool.waiting[place];
                    w.ticket = ticket;
                    w.key = key;
                    w.waker.set(Some(me));
                }
                None => {}
            }
            decision
        };
        match decision {
            Some(Placement::Idle { slot, generation }) => {
                wake_slot(slot);
                break Ok((Placement::Idle { slot, generation }, None));
            }
            Some(Placement::Start { slot, generation }) => {
                match launch(slot, generation) {
                    Ok(Some(handle)) => {
                        break Ok((Placement::Start { slot, generation }, Some(handle)))
                    }
                    Ok(None) => {
                        // No free worker process: give the slot back and wait our turn; an
                        // idle pooled worker of another key makes room when it can.
                        free_slot(slot, generation, 0)?;
                        let mut pool = pool()?.lock();
                        if !pool.slots.iter().any(|s| s.segment == RETIRE) {
                            pool.retire_one(Some(key));
                        }
                        ticket = pool.next_ticket;
                        pool.next_ticket += 1;
                        // Keep our place at the head: the oldest ticket goes first.
                        let head = pool
                            .first_waiting(None)
                            .map_or(ticket, |t| t.saturating_sub(1));
                        ticket = head.min(ticket);
                        if let Some(w) = pool.waiting.iter_mut().find(|w| w.ticket == 0) {
                            w.ticket = ticket;
                            w.key = key;
                            w.waker.set(Some(me));
                        }
                    }
                    Err(e) => {
                        free_slot(slot, generation, 0)?;
                        break Err(e);
                    }
                }
            }
            None => {}
        }
        if let Err(e) = crate::latch::wait(Some(Duration::from_millis(100))) {
            break Err(e);
        }
    };
    if result.is_err() && ticket != 0 {
        let mut pool = pool()?.lock();
        if let Some(w) = pool.waiting.iter_mut().find(|w| w.ticket == ticket) {
            w.ticket = 0;
        }
    }
    result
}

fn wake_slot(slot: usize) {
    if let Ok(pool) = pool() {
        let waker = pool.lock().slots[slot].worker.get();
        if let Some(w) = waker {
            w.wake();
        }
    }
}

/// Frees `slot` if it still belongs to `generation` (and, when `pid` is not 0, to that
/// process), and wakes the waiting submitters: a place in the pool is open.
fn free_slot(slot: usize, generation: u32, pid: i32) -> Result<()> {
    let pool = pool()?;
    let mut guard = pool.lock();
    let s = &mut guard.slots[slot];
    if s.generation == generation && (pid == 0 || s.pid == pid) && s.state != FREE {
        s.free();
    }
    guard.wake_waiting();
    Ok(())
}

/// Records the start of the job's first string, for [`jobs`].
pub(crate) fn set_preview(slot: usize, generation: u32, segment: u32, sql: &str) -> Result<()> {
    let (preview, len) = preview_of(sql);
    let mut pool = pool()?.lock();
    let s = &mut pool.slots[slot];
    if s.generation == generation && s.segment == segment && s.preview_len == 0 {
        s.preview = preview;
        s.preview_len = len;
    }
    Ok(())
}

/// Whether the worker in `slot` still serves the job in `segment`.
pub(crate) fn serving(slot: usize, generation: u32, segment: u32) -> Result<bool> {
    let pool = pool()?.lock();
    let s = &pool.slots[slot];
    Ok(s.generation == generation && s.segment == segment && s.state != FREE)
}

/// Signals the worker in `slot` if it still serves the job in `segment` (the check and the
/// signal happen under the pool's lock, so a pid reused by another process is never hit).
pub(crate) fn signal(slot: usize, generation: u32, segment: u32, signal: c_int) -> Result<bool> {
    let pool = pool()?.lock();
    let s = &pool.slots[slot];
    if s.generation == generation
        && s.segment == segment
        && (s.state == BUSY || s.state == STARTING)
        && s.pid > 0
    {
        // SAFETY: a signal to the pooled worker that serves our job.
        unsafe { libc::kill(s.pid, signal) };
        return Ok(true);
    }
    Ok(false)
}

/// The pid of the worker in `slot` once it has started.
pub(crate) fn pid_of(slot: usize, generation: u32) -> Result<Option<i32>> {
    let pool = pool()?.lock();
    let s = &pool.slots[slot];
    Ok((s.generation == generation && s.pid > 0).then_some(s.pid))
}

/// A pooled worker and the job it serves, for [`jobs`].
///
/// ```no_run
/// for job in bgworker::session::pool::jobs()? {
///     bgworker::log!("{} {} {}", job.pid, job.state, job.query);
/// }
/// # Ok::<(), bgworker::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Job {
    /// The worker's pid (0 while it starts).
    pub pid: i32,
    /// Whom it serves.
    pub key: Key,
    /// `starting`, `idle` or `busy`.
    pub state: &'static str,
    /// The backend whose job it serves (or last served).
    pub submitter: i32,
    /// When that job was placed.
    pub started: Timestamp,
    /// The start of the job's first string.
    pub query: String,
    /// Jobs this worker finished.
    pub jobs_done: u64,
    /// Whether it is a warm worker ([`register_warm`]).
    pub warm: bool,
}

/// Every pooled worker of the cluster and its job (a snapshot).
///
/// ```no_run
/// let busy = bgworker::session::pool::jobs()?
///     .iter()
///     .filter(|job| job.state == "busy")
///     .count();
/// # Ok::<(), bgworker::Error>(())
/// ```
pub fn jobs() -> Result<Vec<Job>> {
    let pool = pool()?.lock();
    Ok(pool
        .slots
        .iter()
        .filter(|s| s.state != FREE)
        .map(|s| Job {
            pid: s.pid,
            key: s.key,
            state: match s.state {
                STARTING => "starting",
                IDLE => "idle",
                _ => "busy",
            },
            submitter: s.submitter,
            started: Timestamp::from_micros(s.job_started),
            query: String::from_utf8_lossy(&s.preview[..s.preview_len as usize]).into_owned(),
            jobs_done: s.jobs_done,
            warm: s.warm != 0,
        })
        .collect())
}

/// What a pooled worker's main does: serves jobs for the key its launcher gave it, one
/// after another, until it has been idle for the pool's idle timeout (or is told to stop).
/// Like [`session::serve`](super::serve), it ends without the C library's exit-time
/// teardown.
///
/// ```no_run
/// struct Pooled;
/// impl bgworker::Worker for Pooled {
///     const NAME: &'static str = "pooled";
///     const DATABASE_CONNECTION: bool = true;
///     fn main(arg: i64) -> bgworker::Result<()> {
///         bgworker::session::pool::serve(arg)
///     }
/// }
/// bgworker::export_worker!(Pooled, "pooled_main");
/// # fn main() {}
/// ```
pub fn serve(main_arg: i64) -> Result<()> {
    if main_arg & UNPOOLED != 0 {
        return super::serve(main_arg & 0xffff_ffff);
    }
    if main_arg & WARM != 0 {
        return serve_warm();
    }
    let slot = (main_arg & 0xff) as usize;
    let generation = ((main_arg >> 8) & 0xff_ffff) as u32;
    let idle_timeout = Duration::from_secs(((main_arg >> 40) & 0x3f_ffff) as u64);
    if slot >= MAX_POOLED {
        return Err(Error::msg("a pooled worker's slot is out of range"));
    }
    let extra = crate::worker::extra().unwrap_or_default();
    let started_by = extra
        .get(POOL_ID_AT..POOL_ID_AT + 8)
        .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
        .unwrap_or(0);
    let key = super::server::Caller::from_extra()?.key();
    take_slot(slot, generation, started_by, key)?;
    let server = super::server::JobServer::start()?;
    serve_in_slot(slot, Some(idle_timeout), server)
}

/// Names this process in the slot reserved for it, once its exit frees the slot: the slot
/// `generation` of the pool `pool_id` reserved for `key`'s jobs (a worker another build's
/// backend started, for its own pool, finds no such slot here).
fn take_slot(slot: usize, generation: u32, pool_id: u64, key: Key) -> Result<()> {
    // SAFETY: a plain read of this process's pid.
    let my_pid = unsafe { pg_sys::MyProcPid };
    let me = Waker::current()?;
    // Whatever way this process ends, its slot is free for another worker (registered
    // before the slot names this process, so that no exit path misses it).
    let arg = (slot as u64 | (u64::from(generation) << 8)) as pg_sys::Datum;
    // SAFETY: registers a callback that only touches the pool (a spin lock and plain
    // data) and sets latches; it runs once, at exit.
    crate::guard(|| unsafe { pg_sys::before_shmem_exit(Some(on_exit), arg) })?;
    let mut pool = pool()?.lock();
    if pool.id != pool_id {
        return Err(Error::msg(
            "this pooled worker was started for another build's pool (the library was replaced while the server runs)",
        ));
    }
    let s = &mut pool.slots[slot];
    if s.generation != generation || s.state != STARTING || s.key != key {
        return Err(Error::msg("this pooled worker's slot was given up"));
    }
    s.pid = my_pid;
    s.worker.set(Some(me));
    Ok(())
}

/// Serves the jobs handed to `slot` until idle for `idle_timeout` (never, for `None`), or
/// asked to retire.
fn serve_in_slot(
    slot: usize,
    idle_timeout: Option<Duration>,
    mut server: super::server::JobServer,
) -> Result<()> {
    loop {
        let segment = {
            let mut pool = pool()?.lock();
            let s = &mut pool.slots[slot];
            if s.segment == RETIRE {
                s.free();
                pool.wake_waiting();
                return Ok(());
            }
            if s.segment != 0 {
                s.state = BUSY;
                s.segment
            } else {
                s.state = IDLE;
                0
            }
        };
        if segment == 0 {
            // Wakeups of the job just served are forgotten: a job placed from here on sets
            // the latch, and one placed before is seen just below.
            crate::latch::reset();
            let placed = {
                let pool = pool()?.lock();
                pool.wake_waiting();
                pool.slots[slot].segment != 0
            };
            if placed {
                continue;
            }
            let nap = Duration::from_secs(1).min(idle_timeout.unwrap_or(Duration::MAX));
            let deadline = idle_timeout.map(|t| std::time::Instant::now() + t);
            // The next job often comes right after a job: look for it a little before
            // sleeping (a submitter sets the latch without a signal then).
            crate::latch::spin(IDLE_SPIN);
            loop {
                crate::latch::wait(Some(nap))?;
                if pool()?.lock().slots[slot].segment != 0 {
                    // A job (which, if this worker is being terminated too, ends with the
                    // termination as its ERROR), or a request to retire.
                    break;
                }
                if crate::signals::shutdown_requested() {
                    return Ok(()); // the exit frees the slot
                }
                if deadline.is_some_and(|d| std::time::Instant::now() >= d) {
                    let mut pool = pool()?.lock();
                    let s = &mut pool.slots[slot];
                    if s.segment == 0 {
                        s.free();
                        pool.wake_waiting();
                        return Ok(());
                    }
                    break;
                }
            }
            continue;
        }
        // The job is over once its client detached; the next one may be handed over while
        // this worker resets its session (it starts it after the reset).
        let reset = server.serve_job(segment, || {
            let mut pool = pool()?.lock();
            pool.finished += 1;
            let finished = pool.finished;
            let s = &mut pool.slots[slot];
            s.segment = 0;
            s.jobs_done += 1;
            s.finished_at = finished;
            s.state = IDLE;
            Ok(())
        });
        reset?;
    }
}

/// One warm worker of a [`register_warm`] list: the role it connects as, and where.
///
/// ```
/// use bgworker::session::pool::{parse_warm, Warm};
/// let list = parse_warm(r#"app@shop, "Report, Inc."@shop"#).unwrap();
/// assert_eq!(list[1], Warm { role: "Report, Inc.".into(), database: "shop".into() });
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Warm {
    /// The role (session user and current role of the jobs it serves).
    pub role: String,
    /// The database.
    pub database: String,
}

/// Reads a list of warm workers: `role@database` entries separated by commas, each name
/// taken as written (blanks around it dropped), or in double quotes when it holds a comma,
/// an `@`, a quote (doubled) or blanks at its ends. An entry twice is two workers.
///
/// ```
/// let list = bgworker::session::pool::parse_warm("app@shop, app@shop").unwrap();
/// assert_eq!(list.len(), 2);
/// assert!(bgworker::session::pool::parse_warm("app").is_err());
/// ```
pub fn parse_warm(spec: &str) -> Result<Vec<Warm>> {
    let bad = |why: &str| -> Error {
        PgError::new(
            SqlState::INVALID_PARAMETER_VALUE,
            format!("invalid warm worker list \"{spec}\": {why}"),
        )
        .with_hint("List role@database entries separated by commas; double-quote a name that holds a comma, an @ or a quote.")
        .into()
    };
    let mut list = Vec::new();
    let mut rest = spec.trim_start();
    while !rest.is_empty() {
        let (role, after) = warm_name(rest).map_err(&bad)?;
        let after = after.trim_start();
        let Some(after) = after.strip_prefix('@') else {
            return Err(bad("an entry needs role@database"));
        };
        let (database, after) = warm_name(after.trim_start()).map_err(&bad)?;
        list.push(Warm { role, database });
        let after = after.trim_start();
        rest = match after.strip_prefix(',') {
            Some(next) if !next.trim().is_empty() => next.trim_start(),
            Some(_) => return Err(bad("a comma with no entry after it")),
            None if after.is_empty() => after,
            None => return Err(bad("entries are separated by commas")),
        };
    }
    Ok(list)
}

/// One name at the start of `text`, and what follows it.
fn warm_name(text: &str) -> std::result::Result<(String, &str), &'static str> {
    let name_error = "a role or database name is empty or longer than 63 bytes";
    let (name, rest) = if let Some(quoted) = text.strip_prefix('"') {
        let mut name = String::new();
        let mut chars = quoted.char_indices();
        loop {
            match chars.next() {
                None => return Err("a double quote is not closed"),
                Some((i, '"')) => {
                    if quoted[i + 1..].starts_with('"') {
                        name.push('"');
                        chars.next();
                    } else {
                        break (name, &quoted[i + 1..]);
                    }
                }
                Some((_, c)) => name.push(c),
            }
        }
    } else {
        let end = text.find([',', '@', '"']).unwrap_or(text.len());
        (text[..end].trim_end().to_string(), &text[end..])
    };
    if name.is_empty() || name.len() > 63 || name.contains('\0') {
        return Err(name_error);
    }
    Ok((name, rest))
}

/// Registers a warm pooled worker for each entry of `spec` (see [`parse_warm`]): each
/// starts with the server, connects as its role to its database and waits in the pool for
/// that role's jobs, without an idle timeout and without making room for other roles (on
/// top of the pool's size; at most [`MAX_WARM`]); the postmaster restarts it 5 seconds
/// after it exits (a failure to connect, `pg_terminate_backend`). Call it from `_PG_init` while
/// [`preloading`](crate::entry::preloading); `builder` is the pool's worker (its main
/// calls [`serve`]). The number of workers registered.
///
/// ```no_run
/// # struct Pooled;
/// # impl bgworker::Worker for Pooled {
/// #     const NAME: &'static str = "p";
/// #     const DATABASE_CONNECTION: bool = true;
/// #     fn main(arg: i64) -> bgworker::Result<()> { bgworker::session::pool::serve(arg) }
/// # }
/// # bgworker::export_worker!(Pooled, "p_main");
/// use bgworker::Worker;
/// if bgworker::entry::preloading() {
///     bgworker::session::pool::register_warm(Pooled::builder(), "app@shop, app@shop")?;
/// }
/// # Ok::<(), bgworker::Error>(())
/// ```
pub fn register_warm(builder: crate::worker::Builder, spec: &str) -> Result<usize> {
    let list = parse_warm(spec)?;
    if list.len() > MAX_WARM {
        return Err(PgError::new(
            SqlState::INVALID_PARAMETER_VALUE,
            format!("{} warm workers asked for, at most {MAX_WARM}", list.len()),
        )
        .into());
    }
    for warm in &list {
        let mut extra = warm.role.clone().into_bytes();
        extra.push(0);
        extra.extend_from_slice(warm.database.as_bytes());
        builder
            .clone()
            .main_arg(WARM)
            .extra(extra)
            .restart(crate::worker::Restart::After(Duration::from_secs(5)))
            .register()?;
    }
    Ok(list.len())
}

/// A warm worker's main: connects as the role to the database its `bgw_extra` names, takes
/// a slot of the pool (waiting for one when the pool is full), and serves that role's jobs.
fn serve_warm() -> Result<()> {
    let extra = crate::worker::extra().unwrap_or_default();
    let text = String::from_utf8_lossy(&extra);
    let mut names = text.trim_end_matches('\0').splitn(2, '\0');
    let (Some(role), Some(database)) = (names.next(), names.next()) else {
        return Err(Error::msg(
            "a warm pooled worker needs role\\0database in bgw_extra",
        ));
    };
    crate::worker::connect(
        crate::worker::Connection::new(crate::worker::Database::Name(database))
            .role(crate::worker::Role::Name(role)),
    )?;
    let server = super::server::JobServer::for_this_session()?;
    let key = server.key();
    let (slot, generation) = loop {
        let now = Timestamp::now().micros();
        let reserved = {
            let mut pool = pool()?.lock();
            pool.tidy(now);
            pool.slots
                .iter()
                .position(|s| s.state == FREE)
                .map(|i| (i, pool.slots[i].reserve(key, 0, now, true)))
        };
        match reserved {
            Some(reserved) => break reserved,
            // Every slot is taken: the next one freed is ours.
            None => {
                crate::latch::wait(Some(Duration::from_secs(1)))?;
                if crate::signals::shutdown_requested() {
                    return Ok(());
                }
            }
        }
    };
    // Reserved by this process in its own copy of the pool.
    let id = pool()?.lock().id;
    if let Err(e) = take_slot(slot, generation, id, key) {
        free_slot(slot, generation, 0)?;
        return Err(e);
    }
    serve_in_slot(slot, None, server)
}

unsafe extern "C" fn on_exit(_code: c_int, arg: pg_sys::Datum) {
    let bits = arg as u64;
    let (slot, generation) = ((bits & 0xff) as usize, ((bits >> 8) & 0xff_ffff) as u32);
    let _ = std::panic::catch_unwind(|| {
        // SAFETY: a plain read of this process's pid.
        let pid = unsafe { pg_sys::MyProcPid };
        let _ = free_slot(slot, generation, pid);
    });
}
