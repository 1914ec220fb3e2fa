//! pg_background's first API: a worker is named by its pid.

use bgworker::srf::{RecordSet, SetOfRecord};

use crate::jobs;

bgworker::sql_function! {
    /// Starts a worker running `sql`; its pid. `queue_size` is the reply queue's size in
    /// bytes (0: `pg_background.default_queue_size`).
    fn pg_background_launch(sql: String, queue_size: i32 = "0") -> i32 {
        Ok(jobs::launch(&sql, queue_size, true)?.0)
    }
}

bgworker::sql_function! {
    /// The result of the worker's SQL, in the caller's column definition list (a single
    /// text column for the command tags of statements that return no rows). Once only:
    /// the worker is detached after.
    fn pg_background_result(pid: i32) -> SetOfRecord {
        let mut rows = RecordSet::for_current_call()?;
        let mut job = jobs::take(pid, None)?;
        if let Err(e) = crate::v2::check_readable(pid, &job) {
            jobs::put(pid, job);
            return Err(e);
        }
        let read = crate::v2::read_result(pid, &mut job, &mut rows);
        jobs::retire(job);
        read.map(|()| rows.finish())
    }
}

bgworker::sql_function! {
    /// Forgets the worker: it finishes its SQL, but nobody reads the result.
    fn pg_background_detach(pid: i32) -> () {
        jobs::remove(pid, None).map(drop)
    }
}
