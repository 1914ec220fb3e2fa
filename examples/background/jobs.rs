//! The jobs this session launched and has not detached, by worker pid, and what happened
//! to those it let go (for `pg_background_stats_v2`).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;

use bgworker::prelude::*;
use bgworker::security;
use bgworker::session::{pool, Client, State};
use bgworker::time::Timestamp;

use crate::{Background, PooledBackground, DEFAULT_QUEUE_SIZE, MAX_WORKERS, WORKER_TIMEOUT};

/// The smallest and largest reply queues a launch may ask for (pg_background's bounds:
/// room for a message, and 256 MB).
const MIN_QUEUE_SIZE: i32 = 4096;
const MAX_QUEUE_SIZE: i32 = 256 * 1024 * 1024;

/// One launched worker and its bookkeeping.
pub struct Job {
    pub client: Client,
    pub cookie: i64,
    pub launched_at: Timestamp,
    /// The role that launched it: only roles with its privileges may touch the job.
    pub user_id: Oid,
    pub queue_size: i32,
    pub sql_preview: String,
    /// The message of the last ERROR a result brought back.
    pub last_error: Option<String>,
    /// Strings whose results were read.
    pub read: u64,
    /// Submitted fire-and-forget: nobody reads its results.
    pub results_disabled: bool,
    pub canceled: bool,
}

impl Job {
    /// pg_background's state names: `starting`, `running`, `stopped` (its SQL is over) and
    /// `canceled` (over after a cancel).
    pub fn state_name(&self) -> Result<&'static str> {
        Ok(match self.client.state()? {
            State::Starting => "starting",
            State::Running => "running",
            State::Idle | State::Stopped if self.canceled => "canceled",
            State::Idle | State::Stopped => "stopped",
        })
    }

    /// Whether every string's result was read.
    pub fn consumed(&self) -> bool {
        self.read >= self.client.progress_counts().0
    }
}

/// Counts of the jobs this session let go, by outcome.
#[derive(Clone, Copy, Default)]
pub struct Stats {
    pub launched: i64,
    pub completed: i64,
    pub failed: i64,
    pub canceled: i64,
    pub execution_micros: i64,
}

thread_local! {
    static JOBS: RefCell<HashMap<i32, Job>> = RefCell::new(HashMap::new());
    static STATS: Cell<Stats> = Cell::new(Stats::default());
}

pub fn stats() -> Stats {
    STATS.with(Cell::get)
}

pub fn active() -> usize {
    JOBS.with(|jobs| jobs.borrow().len())
}

/// Starts a worker running `sql` as the caller; its pid and cookie. Without `results`, its
/// output is dropped as it comes.
pub fn launch(sql: &str, queue_size: i32, results: bool) -> Result<(i32, i64)> {
    crate::define_settings()?;
    let size = match queue_size {
        n if n < 0 => {
            return Err(PgError::new(
                SqlState::INVALID_PARAMETER_VALUE,
                "queue size must not be negative",
            )
            .into())
        }
        0 => DEFAULT_QUEUE_SIZE.get(),
        n if !(MIN_QUEUE_SIZE..=MAX_QUEUE_SIZE).contains(&n) => {
            return Err(PgError::new(
                SqlState::INVALID_PARAMETER_VALUE,
                format!("queue size must be between {MIN_QUEUE_SIZE} and {MAX_QUEUE_SIZE} bytes"),
            )
            .into())
        }
        n => n,
    };
    let limit = MAX_WORKERS.get();
    if active() >= limit as usize {
        return Err(PgError::new(
            SqlState::INSUFFICIENT_RESOURCES,
            "too many background workers in this session",
        )
        .with_detail(format!(
            "Current limit is {limit} concurrent workers per session."
        ))
        .with_hint("Detach finished workers, or raise pg_background.max_workers.")
        .into());
    }
    let mut client = match crate::POOL_MAX_WORKERS.get() {
        0 => Client::launch(Background::builder(), size as usize)?,
        workers => Client::from_pool(
            PooledBackground::builder(),
            size as usize,
            pool::Limits {
                workers: workers as usize,
                waiting: crate::MAX_QUEUED_JOBS.get() as usize,
                idle_timeout_secs: crate::POOL_IDLE_TIMEOUT.get() as u32,
            },
        )?,
    };
    if WORKER_TIMEOUT.get() > 0 {
        client.configure("statement_timeout", &WORKER_TIMEOUT.get().to_string())?;
    }
    client.send(sql)?;
    let pid = client.wait_for_start()?;
    if !results {
        client.ignore_replies();
    }
    let job = Job {
        client,
        cookie: security::unguessable_u64()? as i64,
        launched_at: Timestamp::now(),
        user_id: security::current_user(),
        queue_size: size,
        sql_preview: preview(sql),
        last_error: None,
        read: 0,
        results_disabled: !results,
        canceled: false,
    };
    let cookie = job.cookie;
    // A pid this session still holds a job for was reused by the system after that
    // worker exited: that job is over; count it and forget it.
    if let Some(stale) = JOBS.with(|jobs| jobs.borrow_mut().insert(pid, job)) {
        retire(stale);
    }
    update_stats(|s| s.launched += 1);
    Ok((pid, cookie))
}

/// The first 120 characters of `sql`, for `pg_background_list_v2`.
fn preview(sql: &str) -> String {
    let mut text: String = sql.trim().chars().take(120).collect();
    if sql.trim().chars().count() > 120 {
        text.push_str("...");
    }
    text
}

/// Runs `f` on the job `pid` (whose cookie must be `cookie` when given), after checking
/// that the current role may act on it. The job is out of the table meanwhile (so `f`
/// can wait or read results without holding it borrowed) and goes back after, whatever
/// `f` returns.
pub fn using<R>(pid: i32, cookie: Option<i64>, f: impl FnOnce(&mut Job) -> Result<R>) -> Result<R> {
    let mut job = take(pid, cookie)?;
    let result = f(&mut job);
    put(pid, job);
    result
}

/// Removes the job `pid` (checked as for [`using`]) and counts its outcome: it is
/// detached, its worker finishes the string it runs and exits.
pub fn remove(pid: i32, cookie: Option<i64>) -> Result<()> {
    retire(take(pid, cookie)?);
    Ok(())
}

/// Counts the outcome of a job taken out for good, and detaches it.
pub fn retire(job: Job) {
    let micros = Timestamp::now().micros_since(job.launched_at);
    update_stats(|s| {
        s.execution_micros = s.execution_micros.saturating_add(micros.max(0));
        if job.canceled {
            s.canceled += 1;
        } else if job.last_error.is_some() {
            s.failed += 1;
        } else {
            s.completed += 1;
        }
    });
}

/// Puts back a job [`take`] took out.
pub fn put(pid: i32, job: Job) {
    JOBS.with(|jobs| jobs.borrow_mut().insert(pid, job));
}

/// Takes the job `pid` out of the table, checked as for [`using`].
pub fn take(pid: i32, cookie: Option<i64>) -> Result<Job> {
    let job = JOBS
        .with(|jobs| jobs.borrow_mut().remove(&pid))
        .ok_or_else(|| {
            Error::from(PgError::new(
                SqlState::UNDEFINED_OBJECT,
                format!("PID {pid} is not attached to this session"),
            ))
        })?;
    let refusal = if !security::has_privileges_of(job.user_id)? {
        Some(PgError::new(
            SqlState::INSUFFICIENT_PRIVILEGE,
            format!("permission denied for background worker with PID \"{pid}\""),
        ))
    } else if cookie.is_some_and(|c| c != job.cookie) {
        Some(
            PgError::new(
                SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE,
                format!("cookie mismatch for PID {pid}"),
            )
            .with_hint("The worker may have been restarted or the handle is stale."),
        )
    } else {
        None
    };
    match refusal {
        Some(e) => {
            JOBS.with(|jobs| jobs.borrow_mut().insert(pid, job));
            Err(e.into())
        }
        None => Ok(job),
    }
}

/// The pids of the jobs the current role may see, in launch order.
pub fn visible() -> Result<Vec<i32>> {
    let mut seen: Vec<(Timestamp, i32, Oid)> = JOBS.with(|jobs| {
        jobs.borrow()
            .iter()
            .map(|(pid, job)| (job.launched_at, *pid, job.user_id))
            .collect()
    });
    seen.sort();
    let mut pids = Vec::new();
    for (_, pid, user) in seen {
        if security::has_privileges_of(user)? {
            pids.push(pid);
        }
    }
    Ok(pids)
}

fn update_stats(f: impl FnOnce(&mut Stats)) {
    STATS.with(|cell| {
        let mut stats = cell.get();
        f(&mut stats);
        cell.set(stats);
    });
}
