//! Background sessions (`bgworker::session`): a worker that serves SQL strings, and SQL
//! functions that hand it work and return its results as their own.

use bgworker::prelude::*;
use bgworker::session::{self, Client, Reply};
use bgworker::srf::{RecordSet, SetOfRecord};

/// Serves the session whose segment its main argument names.
pub struct SessionWorker;

impl Worker for SessionWorker {
    const NAME: &'static str = "test session";
    const TYPE: &'static str = "test_session";
    const DATABASE_CONNECTION: bool = true;

    fn main(arg: i64) -> Result<()> {
        let database = crate::DATABASE
            .get()
            .unwrap_or_else(|| "postgres".to_string());
        worker::connect(worker::Connection::new(worker::Database::Name(&database)))?;
        session::serve(arg)
    }
}
bgworker::export_worker!(SessionWorker, "test_session_main");

const QUEUE: usize = 64 * 1024;

bgworker::sql_function! {
    /// Runs `sql` in a new background session; its result is this function's.
    fn session_run(sql: String) -> SetOfRecord {
        let mut rows = RecordSet::for_current_call()?;
        let mut client = Client::launch(SessionWorker::builder(), QUEUE)?;
        client.send(&sql)?;
        client.forward(&mut rows)?;
        Ok(rows.finish())
    }
}

bgworker::sql_function! {
    /// Runs each string in turn in one background session; the last one's result is this
    /// function's. An earlier string's ERROR is reported as a WARNING.
    fn session_script(sqls: Vec<String>) -> SetOfRecord {
        let mut rows = RecordSet::for_current_call()?;
        let mut client = Client::launch(SessionWorker::builder(), QUEUE)?;
        let Some((last, earlier)) = sqls.split_last() else {
            return Ok(rows.finish());
        };
        for sql in earlier {
            client.send(sql)?;
            while let Some(message) = client.receive()? {
                match Reply::parse(&message)? {
                    Reply::Error(e) => warning!("{sql}: {}", e.message),
                    Reply::Ready(_) => break,
                    _ => {}
                }
            }
        }
        client.send(last)?;
        client.forward(&mut rows)?;
        Ok(rows.finish())
    }
}
