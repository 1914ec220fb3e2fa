//! Background sessions (`bgworker::session`): a worker that serves SQL strings, and SQL
//! functions that hand it work and return its results as their own.

use bgworker::prelude::*;

use bgworker::session::{self, Client, Reply};
use bgworker::srf::{RecordSet, SetOfRecord};

/// Serves the session of the backend that launched it, as that backend's user.
pub struct SessionWorker;

impl Worker for SessionWorker {
    const NAME: &'static str = "test session";
    const TYPE: &'static str = "test_session";
    const DATABASE_CONNECTION: bool = true;

    fn main(arg: i64) -> Result<()> {
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

thread_local! {
    static FINISHED: std::cell::Cell<Option<SetOfRecord>> = const { std::cell::Cell::new(None) };
    static STASHED: std::cell::RefCell<Option<RecordSet>> = const { std::cell::RefCell::new(None) };
}

bgworker::sql_function! {
    /// One row holding `value` as text, whatever its bytes.
    fn push_raw(value: Vec<u8>) -> SetOfRecord {
        let mut rows = RecordSet::for_current_call()?;
        rows.push_text(std::iter::once(Some(&value[..])))?;
        Ok(rows.finish())
    }
}

bgworker::sql_function! {
    /// Misuses record sets the way safe code can: a second one in one call, or one kept
    /// past its call (`keep`) and used in a later one (`use`). Says what was refused.
    fn misuse_record_set(phase: String) -> SetOfRecord {
        let rows = RecordSet::for_current_call()?;
        match phase.as_str() {
            "twice" => {
                let second = RecordSet::for_current_call().err().map(|e| e.to_string());
                notice!("second: {}", second.unwrap_or_else(|| "allowed".into()));
                Ok(rows.finish())
            }
            "keep" => {
                let finished = rows.finish();
                FINISHED.with(|f| f.set(Some(finished)));
                let again = RecordSet::for_current_call().err().map(|e| e.to_string());
                notice!("kept: {}", again.unwrap_or_default());
                Ok(finished)
            }
            "stash" => {
                STASHED.with(|s| *s.borrow_mut() = Some(rows));
                Ok(FINISHED.with(|f| f.get()).expect("keep ran first"))
            }
            _ => {
                let mut stashed = STASHED.with(|s| s.borrow_mut().take()).expect("stash ran first");
                let used = stashed.push_text(std::iter::once(Some(&b"x"[..])));
                notice!("stale: {}", used.err().map(|e| e.to_string()).unwrap_or_else(|| "allowed".into()));
                Ok(rows.finish())
            }
        }
    }
}

bgworker::sql_function! {
    /// Runs `sql` in a new background session (with a 4 kB reply queue) and returns what
    /// came back, one line per message in the order it arrived: `row <first column>`,
    /// `notice <message>`, `error <message>`, `complete <tag>`, `columns`, `ready`.
    fn session_messages(sql: String) -> Vec<String> {
        let mut client = Client::launch(SessionWorker::builder(), 4096)?;
        client.send(&sql)?;
        let mut seen = Vec::new();
        while let Some(message) = client.receive()? {
            seen.push(match Reply::parse(&message)? {
                Reply::Row(row) => {
                    let first = row.values().next().flatten().unwrap_or_default();
                    format!("row {}", String::from_utf8_lossy(first))
                }
                Reply::Notice(_, n) => format!("notice {}", n.message),
                Reply::Error(e) => format!("error {}", e.message),
                Reply::Complete(tag) => format!("complete {tag}"),
                Reply::Columns(_) => "columns".into(),
                Reply::Ready(_) => {
                    seen.push("ready".into());
                    break;
                }
                Reply::Other(t, _) => format!("other {}", t as char),
            });
        }
        Ok(seen)
    }
}
