//! pg_background's second API: a worker is named by a handle, its pid and a random cookie,
//! so that a pid the system reused for another worker never reaches someone else's job.

use std::time::Duration;

use bgworker::prelude::*;
use bgworker::srf::{RecordSet, SetOfRecord};

use crate::jobs::{self, Job};

bgworker::composite_type! {
    /// A launched job: its worker's pid and a cookie only its launcher knows.
    #[sql(name = "pg_background_handle")]
    pub struct Handle {
        pub pid: i32,
        pub cookie: i64,
    }
}

bgworker::composite_type! {
    /// What this session's jobs came to.
    #[sql(name = "pg_background_stats")]
    pub struct Stats {
        pub workers_launched: i64,
        pub workers_completed: i64,
        pub workers_failed: i64,
        pub workers_canceled: i64,
        pub workers_active: i32,
        pub avg_execution_ms: f64,
        pub max_workers: i32,
    }
}

bgworker::composite_type! {
    /// The last progress a job's SQL reported with `pg_background_progress`.
    #[sql(name = "pg_background_progress")]
    pub struct Progress {
        pub progress_pct: Option<i32>,
        pub progress_msg: Option<String>,
    }
}

/// The longest a cancel's grace or a wait may last, in milliseconds (an hour).
const LONGEST_WAIT_MS: i32 = 3_600_000;

bgworker::sql_function! {
    /// Starts a worker running `sql`; its handle. Read the result with
    /// `pg_background_result_v2`, then `pg_background_detach_v2`.
    fn pg_background_launch_v2(sql: String, queue_size: i32 = "0") -> Handle {
        let (pid, cookie) = jobs::launch(&sql, queue_size, true)?;
        Ok(Handle { pid, cookie })
    }
}

bgworker::sql_function! {
    /// Starts a worker running `sql` whose output nobody reads (fire and forget); its
    /// handle, to wait for, cancel or detach it.
    fn pg_background_submit_v2(sql: String, queue_size: i32 = "0") -> Handle {
        let (pid, cookie) = jobs::launch(&sql, queue_size, false)?;
        Ok(Handle { pid, cookie })
    }
}

bgworker::sql_function! {
    /// Sends another string to a worker this session holds: it runs in the same session
    /// (temporary tables, settings and an open transaction block carry over) after the
    /// strings before it. Each `pg_background_result_v2` reads the next string's result.
    fn pg_background_run_v2(pid: i32, cookie: i64, sql: String) -> () {
        jobs::using(pid, Some(cookie), |job| job.client.send(&sql))
    }
}

/// Refuses to read a result where there is none to read.
pub fn check_readable(pid: i32, job: &Job) -> Result<()> {
    if job.results_disabled {
        return Err(PgError::new(
            SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!("results of PID {pid} are not kept: it was submitted"),
        )
        .into());
    }
    if job.consumed() {
        return Err(PgError::new(
            SqlState::UNDEFINED_OBJECT,
            format!("results for PID {pid} have already been consumed"),
        )
        .into());
    }
    Ok(())
}

/// Reads the next unread string's result of `job` into `rows`, remembering its ERROR.
pub fn read_result(pid: i32, job: &mut Job, rows: &mut RecordSet) -> Result<()> {
    check_readable(pid, job)?;
    job.read += 1;
    job.client.forward(rows).inspect_err(|e| {
        job.last_error = Some(e.to_pg_error().message);
    })
}

bgworker::sql_function! {
    /// The result of the next string the worker ran, in the caller's column definition
    /// list; once per string. The job stays attached until detached.
    fn pg_background_result_v2(pid: i32, cookie: i64) -> SetOfRecord {
        let mut rows = RecordSet::for_current_call()?;
        jobs::using(pid, Some(cookie), |job| read_result(pid, job, &mut rows))?;
        Ok(rows.finish())
    }
}

bgworker::table_type! {
    /// The columns of a job's result.
    pub struct Columns = "column_number int4, column_name text, column_type regtype, column_typmod int4";
}

bgworker::sql_function! {
    /// The columns of the next unread string's result, without reading it (waits until
    /// they arrive: when its statement ends, or once its rows fill a quarter of the queue);
    /// no rows when it returns none (only commands, or it failed first: see
    /// `pg_background_error_v2`).
    fn pg_background_describe_v2(pid: i32, cookie: i64) -> Columns {
        let mut rows = RecordSet::for_current_call()?;
        let columns = jobs::using(pid, Some(cookie), |job| {
            check_readable(pid, job)?;
            job.client.describe()
        })?;
        for (number, column) in columns.unwrap_or_default().iter().enumerate() {
            let values = [
                (number + 1).to_string(),
                column.name.clone(),
                column.type_oid.to_string(),
                column.typmod.to_string(),
            ];
            rows.push_text(values.iter().map(|v| Some(v.as_bytes())))?;
        }
        Ok(rows.finish().into())
    }
}

bgworker::composite_type! {
    /// The ERROR a job's string ended with.
    #[sql(name = "pg_background_error")]
    pub struct ErrorReport {
        pub sqlstate: Option<String>,
        pub message: Option<String>,
        pub detail: Option<String>,
        pub hint: Option<String>,
        pub context: Option<String>,
    }
}

bgworker::sql_function! {
    /// The ERROR the next unread string ended with (NULLs when it succeeded), without
    /// consuming its result: `pg_background_result_v2` still raises it. Waits until the
    /// string ends; a result larger than the job's queue must be read instead.
    fn pg_background_error_v2(pid: i32, cookie: i64) -> ErrorReport {
        let error = jobs::using(pid, Some(cookie), |job| {
            check_readable(pid, job)?;
            job.client.error()
        })?;
        Ok(match error {
            Some(e) => ErrorReport {
                sqlstate: Some(e.sqlstate.as_str().to_string()),
                message: Some(e.message),
                detail: e.detail,
                hint: e.hint,
                context: e.context,
            },
            None => ErrorReport {
                sqlstate: None,
                message: None,
                detail: None,
                hint: None,
                context: None,
            },
        })
    }
}

bgworker::sql_function! {
    /// Forgets the job: the worker finishes the string it runs (nobody reads the result),
    /// then exits.
    fn pg_background_detach_v2(pid: i32, cookie: i64) -> () {
        jobs::remove(pid, Some(cookie))
    }
}

bgworker::sql_function! {
    /// Cancels the job's SQL (a query cancel: what runs rolls back, what has not started
    /// does not run). The job stays attached.
    fn pg_background_cancel_v2(pid: i32, cookie: i64) -> () {
        jobs::using(pid, Some(cookie), cancel)
    }
}

fn cancel(job: &mut Job) -> Result<()> {
    job.canceled = true;
    job.client.cancel()
}

bgworker::sql_function! {
    /// Cancels the job's SQL, and if it is still running after `grace_ms` (at most an
    /// hour), terminates its worker (SIGTERM).
    fn pg_background_cancel_v2_grace(pid: i32, cookie: i64, grace_ms: i32) -> () {
        let grace = Duration::from_millis(grace_ms.clamp(0, LONGEST_WAIT_MS) as u64);
        jobs::using(pid, Some(cookie), |job| {
            cancel(job)?;
            if !job.client.wait(Some(grace))? {
                job.client.terminate()?;
            }
            Ok(())
        })
    }
}

bgworker::sql_function! {
    /// Waits until the job's SQL is over.
    fn pg_background_wait_v2(pid: i32, cookie: i64) -> () {
        jobs::using(pid, Some(cookie), |job| job.client.wait(None).map(drop))
    }
}

bgworker::sql_function! {
    /// Waits at most `timeout_ms` (up to an hour) for the job's SQL to be over: whether it
    /// is.
    fn pg_background_wait_v2_timeout(pid: i32, cookie: i64, timeout_ms: i32) -> bool {
        let timeout = Duration::from_millis(timeout_ms.clamp(0, LONGEST_WAIT_MS) as u64);
        jobs::using(pid, Some(cookie), |job| job.client.wait(Some(timeout)))
    }
}

bgworker::sql_function! {
    /// This session's jobs that the current role may act on: `(pid int4, cookie int8,
    /// launched_at timestamptz, user_id oid, queue_size int4, state text, sql_preview text,
    /// last_error text, consumed bool)`.
    fn pg_background_list_v2() -> SetOfRecord {
        let mut rows = RecordSet::for_current_call()?;
        for pid in jobs::visible()? {
            let row = jobs::using(pid, None, |job| {
                Ok([
                    Some(pid.to_string()),
                    Some(job.cookie.to_string()),
                    Some(job.launched_at.to_string()),
                    Some(job.user_id.to_string()),
                    Some(job.queue_size.to_string()),
                    Some(job.state_name()?.to_string()),
                    Some(job.sql_preview.clone()),
                    job.last_error.clone(),
                    Some(if job.consumed() { "t" } else { "f" }.to_string()),
                ])
            })?;
            rows.push_text(row.iter().map(|v| v.as_deref().map(str::as_bytes)))?;
        }
        Ok(rows.finish())
    }
}

bgworker::sql_function! {
    /// What this session's jobs came to: launched, and of those detached, completed,
    /// failed and canceled; how many are attached; their mean time from launch to detach.
    fn pg_background_stats_v2() -> Stats {
        crate::define_settings()?;
        let s = jobs::stats();
        let finished = s.completed + s.failed + s.canceled;
        Ok(Stats {
            workers_launched: s.launched,
            workers_completed: s.completed,
            workers_failed: s.failed,
            workers_canceled: s.canceled,
            workers_active: jobs::active() as i32,
            avg_execution_ms: if finished > 0 {
                s.execution_micros as f64 / finished as f64 / 1000.0
            } else {
                0.0
            },
            max_workers: crate::MAX_WORKERS.get(),
        })
    }
}

bgworker::sql_function! {
    /// Reports progress from the SQL a background worker runs: a percentage (clamped to
    /// 0..100) and a message (kept to 64 bytes).
    fn pg_background_progress(pct: i32, msg: Option<String> = "NULL") -> () {
        bgworker::session::report_progress(pct, msg.as_deref())
    }
}

bgworker::sql_function! {
    /// The job's last progress report (NULLs before the first, or for an unknown handle).
    fn pg_background_get_progress_v2(pid: i32, cookie: i64) -> Progress {
        let progress = jobs::using(pid, Some(cookie), |job| Ok(job.client.progress()));
        let (progress_pct, progress_msg) = match progress {
            Ok(Some((pct, msg))) => (Some(pct), msg),
            _ => (None, None),
        };
        Ok(Progress {
            progress_pct,
            progress_msg,
        })
    }
}
