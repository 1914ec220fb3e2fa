//! Looking at a string's result before reading it: its columns, or the ERROR it ended with.
//! The replies read to find out stay in the client, in order, for [`Client::forward`].
//!
//! ```no_run
//! # fn f(client: &mut bgworker::session::Client) -> bgworker::Result<()> {
//! let failed = client.error()?.is_some(); // the rows are still there
//! # Ok(()) }
//! ```

use std::sync::atomic::Ordering::SeqCst;

use super::{from_worker, lost_connection, Client, Column, Reply};
use crate::error::{PgError, Result, SqlState};

/// What a message read ahead costs besides its bytes (its vector and allocation).
const MESSAGE_OVERHEAD: usize = 48;

/// Where reading ahead stopped.
enum Stop {
    /// At the message of this index in `read_ahead`.
    At(usize),
    /// The worker went away first.
    Gone,
}

impl Client {
    /// The columns of the next unread string's first result set, without reading its
    /// rows (they stay for [`Client::forward`]): waits until the description arrives,
    /// which is when the statement ends or a quarter of the reply queue fills with its
    /// result (see [`Client::receive`]). `None` when the string returns no rows: it ran
    /// only commands, or failed first (see [`Client::error`]); a worker that went away
    /// first is an ERROR.
    ///
    /// ```no_run
    /// # fn f(client: &mut bgworker::session::Client) -> bgworker::Result<()> {
    /// client.send("SELECT 1 AS one, now() AS at")?;
    /// for column in client.describe()?.unwrap_or_default() {
    ///     bgworker::log!("{}: type {}", column.name, column.type_oid);
    /// }
    /// # Ok(()) }
    /// ```
    pub fn describe(&mut self) -> Result<Option<Vec<Column>>> {
        let index = match self.read_ahead_to(b'T')? {
            Stop::At(index) => index,
            Stop::Gone => {
                let pid = self.pid().ok().flatten().unwrap_or(0);
                return Err(lost_connection(pid).into());
            }
        };
        match Reply::parse(&self.read_ahead[index])? {
            Reply::Columns(columns) => Ok(Some(columns)),
            _ => Ok(None),
        }
    }

    /// The ERROR the next unread string ended with, `None` if it succeeded, without
    /// consuming its result ([`Client::forward`] still returns it): waits until the string
    /// has ended. A worker that went away before is the connection failure `forward`
    /// would report.
    ///
    /// ```no_run
    /// # fn f(client: &mut bgworker::session::Client) -> bgworker::Result<()> {
    /// client.send("SELECT 1 / 0")?;
    /// if let Some(e) = client.error()? {
    ///     bgworker::log!("the job failed with {}: {}", e.sqlstate.as_str(), e.message);
    /// }
    /// # Ok(()) }
    /// ```
    pub fn error(&mut self) -> Result<Option<PgError>> {
        let pid = self.pid().ok().flatten().unwrap_or(0);
        match self.read_ahead_to(b'E')? {
            Stop::Gone => Ok(Some(lost_connection(pid))),
            Stop::At(index) => match Reply::parse(&self.read_ahead[index])? {
                Reply::Error(report) => Ok(Some(from_worker(report, pid))),
                _ => Ok(None),
            },
        }
    }

    /// Reads replies of the next unread string into `read_ahead` until one of type `kind`
    /// or the string's end (ReadyForQuery), looking first at what was read ahead before.
    /// Holds about a queue's worth at most (each message counted with its bookkeeping): a
    /// longer result must be read to be looked past.
    fn read_ahead_to(&mut self, kind: u8) -> Result<Stop> {
        self.check_usable()?;
        let stops = |message: &[u8]| matches!(message.first(), Some(&k) if k == kind || k == b'Z');
        if let Some(index) = self.read_ahead.iter().position(|m| stops(m)) {
            return Ok(Stop::At(index));
        }
        let budget = self.control.queue_size.load(SeqCst) as usize;
        let mut held: usize = self
            .read_ahead
            .iter()
            .map(|m| m.len() + MESSAGE_OVERHEAD)
            .sum();
        loop {
            if held > budget {
                return Err(PgError::new(
                    SqlState::PROGRAM_LIMIT_EXCEEDED,
                    "the result read so far is larger than the session's queue: read it to look further",
                )
                .into());
            }
            let Some(message) = self.receive_from_queue()? else {
                return Ok(Stop::Gone);
            };
            held += message.len() + MESSAGE_OVERHEAD;
            let stop = stops(&message);
            self.read_ahead.push_back(message);
            if stop {
                return Ok(Stop::At(self.read_ahead.len() - 1));
            }
        }
    }
}
