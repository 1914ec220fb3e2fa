//! Points in time as PostgreSQL keeps them (`timestamptz`: microseconds since
//! 2000-01-01 00:00:00 UTC), for SQL values and for measuring how long something took.
//!
//! ```no_run
//! use bgworker::time::Timestamp;
//! let started = Timestamp::now();
//! // ... work ...
//! bgworker::log!("took {} µs (since {started})", Timestamp::now().micros_since(started));
//! ```

use std::fmt;

/// A `timestamp with time zone` value.
///
/// ```
/// use bgworker::time::Timestamp;
/// let t = Timestamp::from_micros(86_400_000_000 + 1_500_000);
/// assert_eq!(t.to_string(), "2000-01-02 00:00:01.5+00");
/// assert_eq!(Timestamp::from_micros(-1).to_string(), "1999-12-31 23:59:59.999999+00");
/// // 0001-01-01 minus one day, in PostgreSQL's spelling:
/// let bc = Timestamp::from_micros(-63_082_281_600_000_000 - 86_400_000_000);
/// assert_eq!(bc.to_string(), "0001-12-31 00:00:00+00 BC");
/// assert_eq!(Timestamp::from_micros(i64::MAX).to_string(), "infinity");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    /// The time now (`GetCurrentTimestamp`; `clock_timestamp()` in SQL).
    ///
    /// ```no_run
    /// let started = bgworker::time::Timestamp::now();
    /// # let _ = started;
    /// ```
    pub fn now() -> Timestamp {
        // SAFETY: reads the clock.
        Timestamp(unsafe { crate::pg_sys::GetCurrentTimestamp() })
    }

    /// The timestamp `micros` microseconds after 2000-01-01 00:00:00 UTC.
    ///
    /// ```
    /// assert_eq!(bgworker::time::Timestamp::from_micros(7).micros(), 7);
    /// ```
    pub const fn from_micros(micros: i64) -> Timestamp {
        Timestamp(micros)
    }

    /// Microseconds since 2000-01-01 00:00:00 UTC (PostgreSQL's representation).
    ///
    /// ```
    /// assert_eq!(bgworker::time::Timestamp::from_micros(-3).micros(), -3);
    /// ```
    pub const fn micros(self) -> i64 {
        self.0
    }

    /// Microseconds from `earlier` to `self` (negative if `earlier` is later).
    ///
    /// ```
    /// use bgworker::time::Timestamp;
    /// assert_eq!(Timestamp::from_micros(10).micros_since(Timestamp::from_micros(4)), 6);
    /// ```
    pub const fn micros_since(self, earlier: Timestamp) -> i64 {
        self.0.saturating_sub(earlier.0)
    }
}

/// ISO 8601 in UTC as PostgreSQL prints it (`2026-11-24 03:10:00.123456+00`), which the
/// `timestamptz` input function reads back exactly.
impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const DAY: i64 = 86_400_000_000;
        match self.0 {
            i64::MAX => return f.write_str("infinity"),
            i64::MIN => return f.write_str("-infinity"),
            _ => {}
        }
        let (days, micros) = (self.0.div_euclid(DAY), self.0.rem_euclid(DAY));
        // Days since 2000-01-01 to a civil date (Howard Hinnant's algorithm, shifted to
        // start at 0000-03-01).
        let z = days + 730_425;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        // There is no year 0: 1 BC precedes 1 AD.
        let (shown, era_suffix) = if year > 0 {
            (year, "")
        } else {
            (1 - year, " BC")
        };
        let seconds = micros / 1_000_000;
        write!(
            f,
            "{shown:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
            seconds / 3600,
            seconds / 60 % 60,
            seconds % 60
        )?;
        let fraction = micros % 1_000_000;
        if fraction != 0 {
            let digits = format!("{fraction:06}");
            write!(f, ".{}", digits.trim_end_matches('0'))?;
        }
        write!(f, "+00{era_suffix}")
    }
}
