//! The one error type of the crate.
//!
//! A PostgreSQL ERROR caught at the error boundary becomes [`Error::Postgres`] with the
//! SQLSTATE, message, detail and hint the server reported. Everything else the safe layer can
//! refuse (a name too long for its field, a full worker pool, a wrong column type...) has its
//! own variant, so callers can match on what went wrong.
//!
//! ```no_run
//! use bgworker::{Error, SqlState};
//! match bgworker::xact::transaction(|spi| spi.execute("SELEC 1", &[])) {
//!     Err(Error::Postgres(e)) if e.sqlstate == SqlState::SYNTAX_ERROR => bgworker::log!("typo: {}", e.message),
//!     Err(other) => return Err(other),
//!     Ok(_) => {}
//! }
//! # Ok::<(), bgworker::Error>(())
//! ```

use std::fmt;

/// A five-character SQLSTATE code such as `42601` (syntax error).
///
/// ```
/// use bgworker::SqlState;
/// assert_eq!(SqlState::SYNTAX_ERROR.as_str(), "42601");
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SqlState([u8; 5]);

impl SqlState {
    /// `XX000`: internal error, the code of Rust panics and of errors without a better one.
    pub const INTERNAL_ERROR: SqlState = SqlState(*b"XX000");
    /// `42601`: syntax error.
    pub const SYNTAX_ERROR: SqlState = SqlState(*b"42601");
    /// `42804`: datatype mismatch.
    pub const DATATYPE_MISMATCH: SqlState = SqlState(*b"42804");
    /// `22023`: invalid parameter value.
    pub const INVALID_PARAMETER_VALUE: SqlState = SqlState(*b"22023");
    /// `53000`: insufficient resources.
    pub const INSUFFICIENT_RESOURCES: SqlState = SqlState(*b"53000");
    /// `55000`: object not in prerequisite state.
    pub const OBJECT_NOT_IN_PREREQUISITE_STATE: SqlState = SqlState(*b"55000");
    /// `22000`: data exception.
    pub const DATA_EXCEPTION: SqlState = SqlState(*b"22000");
    /// `22004`: null value not allowed.
    pub const NULL_VALUE_NOT_ALLOWED: SqlState = SqlState(*b"22004");
    /// `3D000`: invalid catalog name (no such database).
    pub const INVALID_CATALOG_NAME: SqlState = SqlState(*b"3D000");
    /// `55P03`: lock not available.
    pub const LOCK_NOT_AVAILABLE: SqlState = SqlState(*b"55P03");
    /// `57014`: query canceled (also raised by `statement_timeout`).
    pub const QUERY_CANCELED: SqlState = SqlState(*b"57014");
    /// `0A000`: feature not supported.
    pub const FEATURE_NOT_SUPPORTED: SqlState = SqlState(*b"0A000");

    /// Parses a five-character code of digits and upper-case letters.
    ///
    /// ```
    /// use bgworker::SqlState;
    /// assert_eq!(SqlState::new("42P01").unwrap().as_str(), "42P01");
    /// assert!(SqlState::new("nope").is_none());
    /// ```
    pub fn new(code: &str) -> Option<SqlState> {
        let bytes: [u8; 5] = code.as_bytes().try_into().ok()?;
        bytes
            .iter()
            .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase())
            .then_some(SqlState(bytes))
    }

    /// Unpacks PostgreSQL's packed representation (`ErrorData.sqlerrcode`).
    pub(crate) fn from_packed(mut packed: i32) -> SqlState {
        let mut out = [b'0'; 5];
        for byte in &mut out {
            *byte = ((packed & 0x3F) as u8) + b'0';
            packed >>= 6;
        }
        SqlState(out)
    }

    /// The packed form `ereport` takes (`MAKE_SQLSTATE`).
    pub(crate) fn packed(self) -> i32 {
        self.0
            .iter()
            .rev()
            .fold(0i32, |acc, b| (acc << 6) | ((b - b'0') as i32 & 0x3F))
    }

    /// The code as text.
    pub fn as_str(&self) -> &str {
        // Only ASCII digits and letters are ever stored.
        std::str::from_utf8(&self.0).unwrap_or("XX000")
    }
}

impl fmt::Debug for SqlState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SqlState({})", self.as_str())
    }
}

impl fmt::Display for SqlState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error reported by PostgreSQL (an `ereport(ERROR)` caught at the boundary), or one this
/// crate raises in the same shape.
///
/// ```
/// use bgworker::{PgError, SqlState};
/// let e = PgError::new(SqlState::SYNTAX_ERROR, "syntax error at or near \"SELEC\"");
/// assert_eq!(e.sqlstate.as_str(), "42601");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PgError {
    /// The SQLSTATE.
    pub sqlstate: SqlState,
    /// The primary message.
    pub message: String,
    /// `errdetail`, when given.
    pub detail: Option<String>,
    /// `errhint`, when given.
    pub hint: Option<String>,
    /// The error context lines, when given.
    pub context: Option<String>,
}

impl PgError {
    /// An error with a code and message only.
    pub fn new(sqlstate: SqlState, message: impl Into<String>) -> PgError {
        PgError {
            sqlstate,
            message: message.into(),
            detail: None,
            hint: None,
            context: None,
        }
    }

    /// Adds a detail line.
    ///
    /// ```
    /// # use bgworker::{PgError, SqlState};
    /// let e = PgError::new(SqlState::DATA_EXCEPTION, "bad").with_detail("why");
    /// assert_eq!(e.detail.as_deref(), Some("why"));
    /// ```
    pub fn with_detail(mut self, detail: impl Into<String>) -> PgError {
        self.detail = Some(detail.into());
        self
    }

    /// Adds a hint line.
    ///
    /// ```
    /// # use bgworker::{PgError, SqlState};
    /// let e = PgError::new(SqlState::DATA_EXCEPTION, "bad").with_hint("try again");
    /// assert_eq!(e.hint.as_deref(), Some("try again"));
    /// ```
    pub fn with_hint(mut self, hint: impl Into<String>) -> PgError {
        self.hint = Some(hint.into());
        self
    }

    /// Adds a line to the error's context (below the lines already there).
    pub(crate) fn with_context_line(mut self, line: &str) -> PgError {
        self.context = Some(match self.context.take() {
            Some(c) => format!("{c}\n{line}"),
            None => line.to_string(),
        });
        self
    }
}

impl fmt::Display for PgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (SQLSTATE {})", self.message, self.sqlstate)
    }
}

/// Everything that can go wrong in the safe layer.
///
/// ```
/// use bgworker::{Error, SqlState};
/// let e = Error::msg("something broke");
/// assert_eq!(e.sqlstate(), SqlState::INTERNAL_ERROR);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// PostgreSQL raised an ERROR.
    Postgres(PgError),
    /// A name or path does not fit the fixed-size field PostgreSQL keeps it in.
    TooLong {
        /// What the value is (for example `bgw_name`).
        field: &'static str,
        /// The longest value the field holds, in bytes.
        max: usize,
        /// The length of the value given, in bytes.
        len: usize,
    },
    /// A string contains a NUL byte, which C strings cannot hold.
    Nul {
        /// What the value is.
        field: &'static str,
    },
    /// A call that is only valid in some situations was made in another.
    WrongContext(String),
    /// No background worker slot was free.
    NoFreeWorkerSlot,
    /// A value could not be converted between SQL and Rust.
    Conversion(String),
    /// Any other failure, with its message.
    Other(String),
}

impl Error {
    /// A free-form error, reported with SQLSTATE `XX000`.
    pub fn msg(message: impl Into<String>) -> Error {
        Error::Other(message.into())
    }

    /// The SQLSTATE this error is reported with when it reaches PostgreSQL.
    pub fn sqlstate(&self) -> SqlState {
        match self {
            Error::Postgres(e) => e.sqlstate,
            Error::TooLong { .. } | Error::Nul { .. } => SqlState::INVALID_PARAMETER_VALUE,
            Error::WrongContext(_) => SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE,
            Error::NoFreeWorkerSlot => SqlState::INSUFFICIENT_RESOURCES,
            Error::Conversion(_) => SqlState::DATATYPE_MISMATCH,
            Error::Other(_) => SqlState::INTERNAL_ERROR,
        }
    }

    /// The error as PostgreSQL would report it.
    pub fn to_pg_error(&self) -> PgError {
        match self {
            Error::Postgres(e) => e.clone(),
            Error::NoFreeWorkerSlot => PgError::new(self.sqlstate(), self.to_string()).with_hint(
                "Consider increasing the configuration parameter \"max_worker_processes\".",
            ),
            other => PgError::new(other.sqlstate(), other.to_string()),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Postgres(e) => e.fmt(f),
            Error::TooLong { field, max, len } => {
                write!(f, "{field} is {len} bytes long; at most {max} bytes fit")
            }
            Error::Nul { field } => write!(f, "{field} contains a NUL byte"),
            Error::WrongContext(m) | Error::Conversion(m) | Error::Other(m) => f.write_str(m),
            Error::NoFreeWorkerSlot => f.write_str(
                "could not register background worker: no free slot (max_worker_processes is reached)",
            ),
        }
    }
}

impl std::error::Error for Error {}

impl From<PgError> for Error {
    fn from(e: PgError) -> Error {
        Error::Postgres(e)
    }
}

/// Shorthand for results of this crate.
///
/// ```
/// fn parse(x: &str) -> bgworker::Result<i32> {
///     x.parse().map_err(|_| bgworker::Error::msg("not a number"))
/// }
/// assert!(parse("x").is_err());
/// ```
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstate_packs_like_make_sqlstate() {
        // MAKE_SQLSTATE('4','2','6','0','1') as computed by PostgreSQL's macro.
        let s = SqlState::SYNTAX_ERROR;
        let expected = (b'4' - b'0') as i32
            | ((b'2' - b'0') as i32) << 6
            | ((b'6' - b'0') as i32) << 12
            | ((b'0' - b'0') as i32) << 18
            | ((b'1' - b'0') as i32) << 24;
        assert_eq!(s.packed(), expected);
        assert_eq!(SqlState::from_packed(expected), s);
        let p = SqlState::new("55P03").unwrap();
        assert_eq!(SqlState::from_packed(p.packed()), p);
    }
}
