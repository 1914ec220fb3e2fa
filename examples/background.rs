//! background: run SQL in a background worker and collect its result later, with
//! pg_background's SQL API (version 1: launch, result, detach), on `bgworker::session`.
//!
//! ```sql
//! SELECT pg_background_launch('VACUUM (VERBOSE) big_table');          -- the worker's pid
//! SELECT * FROM pg_background_result(12345) AS (result text);        -- 'VACUUM'
//! SELECT * FROM pg_background_result(pg_background_launch('SELECT 1')) AS (x int);
//! ```
//!
//! The worker runs as the caller (its database, session user and current role) with the
//! caller's session settings; its ERRORs and NOTICEs arrive as the caller's own. No
//! `shared_preload_libraries` needed.

use std::cell::RefCell;
use std::collections::HashMap;

use bgworker::prelude::*;
use bgworker::session::{self, Client};
use bgworker::srf::{RecordSet, SetOfRecord};

bgworker::pg_module_magic!();

/// The size of the reply queue when the caller gives none (pg_background's default).
const DEFAULT_QUEUE_SIZE: usize = 65_536;

struct Background;

impl Worker for Background {
    const NAME: &'static str = "pg_background";
    const TYPE: &'static str = "pg_background";
    const DATABASE_CONNECTION: bool = true;

    fn main(arg: i64) -> Result<()> {
        session::serve(arg)
    }
}

bgworker::export_worker!(Background, "pg_background_main");

thread_local! {
    /// The workers this session launched and has not detached, by pid.
    static JOBS: RefCell<HashMap<i32, Client>> = RefCell::new(HashMap::new());
}

fn not_attached(pid: i32) -> Error {
    PgError::new(
        SqlState::UNDEFINED_OBJECT,
        format!("PID {pid} is not attached to this session"),
    )
    .into()
}

bgworker::sql_function! {
    /// Starts a worker running `sql`; its pid. `queue_size` is the reply queue's size in
    /// bytes (0: 64 kB).
    fn pg_background_launch(sql: String, queue_size: i32 = "0") -> i32 {
        let size = match queue_size {
            n if n < 0 => {
                return Err(PgError::new(
                    SqlState::INVALID_PARAMETER_VALUE,
                    "queue size must not be negative",
                )
                .into())
            }
            0 => DEFAULT_QUEUE_SIZE,
            n => n as usize,
        };
        let mut client = Client::launch(Background::builder(), size)?;
        client.send(&sql)?;
        let pid = match client.worker().wait_for_startup()? {
            worker::Status::Started(pid) => pid,
            _ => {
                return Err(PgError::new(
                    SqlState::INSUFFICIENT_RESOURCES,
                    "could not start background process",
                )
                .with_hint("More details may be available in the server log.")
                .into())
            }
        };
        JOBS.with(|jobs| jobs.borrow_mut().insert(pid, client));
        Ok(pid)
    }
}

bgworker::sql_function! {
    /// The result of the worker's SQL, in the caller's column definition list (a single
    /// text column for the command tags of statements that return no rows). Once only:
    /// the worker is detached after.
    fn pg_background_result(pid: i32) -> SetOfRecord {
        let mut rows = RecordSet::for_current_call()?;
        let mut client = JOBS
            .with(|jobs| jobs.borrow_mut().remove(&pid))
            .ok_or_else(|| not_attached(pid))?;
        client.forward(&mut rows)?;
        Ok(rows.finish())
    }
}

bgworker::sql_function! {
    /// Forgets the worker: it finishes its SQL, but nobody reads the result.
    fn pg_background_detach(pid: i32) -> () {
        JOBS.with(|jobs| jobs.borrow_mut().remove(&pid))
            .map(drop)
            .ok_or_else(|| not_attached(pid))
    }
}
