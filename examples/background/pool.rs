//! The cluster's warm workers and the jobs they serve, across sessions.

use bgworker::security;
use bgworker::session::pool;
use bgworker::srf::{RecordSet, SetOfRecord};

bgworker::sql_function! {
    /// Every pooled worker whose role the current role has the privileges of (all of them
    /// for a superuser): `(pid int4, database oid, role oid, state text, submitter int4,
    /// started timestamptz, query text, jobs_done int8, warm bool)`. The `pg_background_jobs` view
    /// names the columns.
    fn pg_background_pool_jobs() -> SetOfRecord {
        let mut rows = RecordSet::for_current_call()?;
        for job in pool::jobs()? {
            if !security::has_privileges_of(job.key.current_user)? {
                continue;
            }
            let busy = job.state == "busy";
            let row = [
                Some(job.pid.to_string()),
                Some(job.key.database.to_string()),
                Some(job.key.current_user.to_string()),
                Some(job.state.to_string()),
                busy.then(|| job.submitter.to_string()),
                busy.then(|| job.started.to_string()),
                busy.then(|| job.query.clone()),
                Some(job.jobs_done.to_string()),
                Some(job.warm.to_string()),
            ];
            rows.push_text(row.iter().map(|v| v.as_deref().map(str::as_bytes)))?;
        }
        Ok(rows.finish())
    }
}
