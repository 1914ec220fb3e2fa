//! The Server Programming Interface: running SQL inside the server.
//!
//! An [`Spi`] exists only inside [`xact::transaction`](crate::xact::transaction) (a worker's
//! own transaction) or [`xact::within_current`](crate::xact::within_current) (inside a SQL
//! function). Parameters are passed as `$1, $2, ...` with Rust values ([`ToSql`]), never
//! spliced into the text; rows come back as Rust values ([`FromRow`]).
//!
//! ```no_run
//! use bgworker::xact;
//! let names: Vec<(i32, String)> = xact::transaction(|spi| {
//!     spi.execute("CREATE TABLE IF NOT EXISTS t (id int, name text)", &[])?;
//!     spi.execute("INSERT INTO t VALUES ($1, $2)", &[&1, &"one"])?;
//!     spi.query("SELECT id, name FROM t WHERE id > $1", &[&0])
//! })?;
//! # Ok::<(), bgworker::Error>(())
//! ```
//!
//! Every statement sees what the earlier statements of its transaction wrote (SPI runs them
//! read-write, with a new snapshot each); [`Spi::set_read_only`] trades that for speed.
//!
//! After a PostgreSQL ERROR, the transaction (or subtransaction) is unusable until it is
//! rolled back: further statements fail with an error saying so, and the enclosing
//! [`xact::transaction`](crate::xact::transaction) aborts it. Use
//! [`Spi::subtransaction`] to try a statement and carry on after it fails.
//!
//! An `Spi` belongs to the thread that runs the worker or function; it cannot be sent to or
//! shared with another thread:
//!
//! ```compile_fail
//! bgworker::xact::transaction(|spi| {
//!     std::thread::scope(|s| {
//!         s.spawn(|| spi.execute("SELECT 1", &[]));
//!     });
//!     Ok(())
//! });
//! ```

use std::ffi::{c_char, CString};

use crate::cstr::{copy_cstring, take_palloc_cstring, to_cstring, to_cstring_lossy};
use crate::datum::{type_name, FromSql, ToSql};
use crate::error::{Error, Position, Result};
use crate::guard::guard;
use crate::pg_sys::{self, Datum, Oid};

/// A connection to SPI, valid for one transaction (see the [module documentation](self)).
///
/// ```no_run
/// bgworker::xact::transaction(|spi| {
///     let n: i64 = spi.query_one("SELECT count(*) FROM pg_class", &[])?;
///     let name: Option<String> = spi.query_opt("SELECT relname::text FROM pg_class WHERE oid = $1", &[&0u32])?;
///     let gone: Vec<i32> = spi.execute_returning("DELETE FROM jobs WHERE done RETURNING id", &[])?;
///     Ok(())
/// })?;
/// # Ok::<(), bgworker::Error>(())
/// ```
pub struct Spi {
    /// The activity last reported to pg_stat_activity, to avoid re-reporting in loops.
    reported: Option<String>,
    /// Set once the code reported its own activity: statements no longer replace it.
    pinned: bool,
    /// Whether statements run with SPI's `read_only` flag.
    read_only: bool,
    /// Set when the connection is gone: the transaction it ran in was rolled back under
    /// this value (by the `xact` module, which owns transactions), and SPI with it. Every
    /// later call returns this error.
    closed: Option<Error>,
    /// SPI's state belongs to the process's main thread.
    _not_send: std::marker::PhantomData<*mut ()>,
}

/// One row of a result, handed to [`FromRow::from_row`].
///
/// ```no_run
/// # use bgworker::spi::{FromRow, Row};
/// struct Column { name: String, nullable: bool }
/// impl FromRow for Column {
///     fn from_row(row: &Row) -> bgworker::Result<Self> {
///         if row.len() != 2 {
///             return Err(bgworker::Error::msg(format!("unexpected column {}", row.column_name(2))));
///         }
///         Ok(Column { name: row.get(0)?, nullable: row.get(1)? })
///     }
/// }
/// ```
pub struct Row {
    tuple: pg_sys::HeapTuple,
    tupdesc: pg_sys::TupleDesc,
}

impl Row {
    /// The number of columns.
    pub fn len(&self) -> usize {
        // SAFETY: `tupdesc` is the valid descriptor of the current result.
        unsafe { (*self.tupdesc).natts as usize }
    }

    /// Whether the row has no columns.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The name of column `index` (0-based).
    pub fn column_name(&self, index: usize) -> String {
        let (desc, n) = (self.tupdesc, index as i32 + 1);
        // SAFETY: SPI_fname returns a palloc'd copy of the name, or NULL for a bad index.
        match guard(|| unsafe { pg_sys::SPI_fname(desc, n) }) {
            // SAFETY: a palloc'd copy of the name, ours alone.
            Ok(p) if !p.is_null() => unsafe { take_palloc_cstring(p) },
            _ => format!("#{}", index + 1),
        }
    }

    /// Column `index` (0-based) as `T`. A NULL needs `Option<T>`; a SQL type that `T` cannot
    /// hold is an error naming both types. Either is an [`Error::Conversion`] whose `at` is
    /// [`Position::Column`] with the column's number (`index + 1`) and name.
    ///
    /// ```no_run
    /// # use bgworker::spi::{FromRow, Row};
    /// struct Item { id: i64, label: Option<String> }
    /// impl FromRow for Item {
    ///     fn from_row(row: &Row) -> bgworker::Result<Self> {
    ///         Ok(Item { id: row.get(0)?, label: row.get(1)? })
    ///     }
    /// }
    /// ```
    pub fn get<T: FromSql>(&self, index: usize) -> Result<T> {
        if index >= self.len() {
            return Err(Error::conversion(format!(
                "column index {index} is out of range: the row has {} columns",
                self.len()
            )));
        }
        let (desc, n) = (self.tupdesc, index as i32 + 1);
        let mut is_null = false;
        let null_out = &mut is_null as *mut bool;
        let tuple = self.tuple;
        // SAFETY: a valid tuple of this descriptor and a column number in range; no
        // detoasting happens here.
        let datum = unsafe { pg_sys::SPI_getbinval(tuple, desc, n, null_out) };
        // SAFETY: the value of column `index` of this row.
        unsafe { self.convert(index, datum, is_null) }
    }
}

impl Row {
    /// Every column as `T`, reading the tuple once (faster than [`Row::get`] per column for
    /// wide rows); the same type and NULL checks as `get`.
    ///
    /// ```no_run
    /// # use bgworker::spi::{FromRow, Row};
    /// struct Features(Vec<Option<f64>>);
    /// impl FromRow for Features {
    ///     fn from_row(row: &Row) -> bgworker::Result<Self> {
    ///         row.get_all().map(Features)
    ///     }
    /// }
    /// ```
    pub fn get_all<T: FromSql>(&self) -> Result<Vec<T>> {
        let n = self.len();
        let mut values: Vec<Datum> = vec![0; n];
        let mut nulls: Vec<bool> = vec![false; n];
        // SAFETY: a valid tuple of this descriptor; the arrays hold natts entries.
        // heap_deform_tuple only reads the tuple (no detoasting) and cannot raise an ERROR.
        unsafe {
            pg_sys::heap_deform_tuple(
                self.tuple,
                self.tupdesc,
                values.as_mut_ptr(),
                nulls.as_mut_ptr(),
            )
        };
        let mut out = Vec::with_capacity(n);
        for (index, (datum, is_null)) in values.into_iter().zip(nulls).enumerate() {
            // SAFETY: the value of column `index` of this row.
            out.push(unsafe { self.convert(index, datum, is_null) }?);
        }
        Ok(out)
    }

    /// Column `index`'s value as `T`, after checking that `T` reads the column's type; a
    /// conversion error says which column it was.
    ///
    /// # Safety
    /// `index` must be in range and `datum` the column's value in this row (unless NULL).
    unsafe fn convert<T: FromSql>(&self, index: usize, datum: Datum, is_null: bool) -> Result<T> {
        // SAFETY: a valid descriptor and a column number in range (guaranteed by the caller).
        let oid = unsafe { pg_sys::SPI_gettypeid(self.tupdesc, index as i32 + 1) };
        let value = if T::accepts(oid) {
            // SAFETY: `datum` is of type `oid` unless NULL (guaranteed by the caller).
            unsafe { T::from_datum(datum, is_null, oid) }
        } else {
            Err(crate::datum::wrong_type::<T>(oid))
        };
        value.map_err(|e| {
            e.at(Position::Column {
                number: index + 1,
                name: self.column_name(index),
            })
        })
    }
}

/// Reading a whole row into a Rust value: implemented for every [`FromSql`] type (a
/// one-column row), for tuples of up to eight of them, and by hand for your structs.
///
/// ```no_run
/// # use bgworker::spi::{FromRow, Row};
/// struct Point { x: f64, y: f64 }
/// impl FromRow for Point {
///     fn from_row(row: &Row) -> bgworker::Result<Self> {
///         Ok(Point { x: row.get(0)?, y: row.get(1)? })
///     }
/// }
/// ```
pub trait FromRow: Sized {
    /// Builds the value from the row.
    fn from_row(row: &Row) -> Result<Self>;
}

impl<T: FromSql> FromRow for T {
    fn from_row(row: &Row) -> Result<Self> {
        if row.len() != 1 {
            return Err(Error::conversion(format!(
                "the row has {} columns; a single {} reads one",
                row.len(),
                std::any::type_name::<T>()
            )));
        }
        row.get(0)
    }
}

macro_rules! tuple_from_row {
    ($($t:ident $i:tt),+) => {
        impl<$($t: FromSql),+> FromRow for ($($t,)+) {
            fn from_row(row: &Row) -> Result<Self> {
                Ok(($(row.get::<$t>($i)?,)+))
            }
        }
    };
}
tuple_from_row!(A 0);
tuple_from_row!(A 0, B 1);
tuple_from_row!(A 0, B 1, C 2);
tuple_from_row!(A 0, B 1, C 2, D 3);
tuple_from_row!(A 0, B 1, C 2, D 3, E 4);
tuple_from_row!(A 0, B 1, C 2, D 3, E 4, F 5);
tuple_from_row!(A 0, B 1, C 2, D 3, E 4, F 5, G 6);
tuple_from_row!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7);

/// Statement parameters converted to Datums; by-reference values are freed on drop.
struct Params {
    types: Vec<Oid>,
    values: Vec<Datum>,
    nulls: Vec<c_char>,
    allocated: Vec<Datum>,
}

impl Params {
    fn new(params: &[&dyn ToSql]) -> Result<Params> {
        let mut p = Params {
            types: Vec::with_capacity(params.len()),
            values: Vec::with_capacity(params.len()),
            nulls: Vec::with_capacity(params.len()),
            allocated: Vec::new(),
        };
        for (i, param) in params.iter().enumerate() {
            let at = || Position::Parameter(i + 1);
            let oid = param.sql_type();
            let by_value = parameter_layout(oid).map_err(|e| e.at(at()))?;
            p.types.push(oid);
            match param.to_datum().map_err(|e| e.at(at()))? {
                Some(d) => {
                    if !by_value && d == 0 {
                        return Err(Error::conversion(format!(
                            "a value of type {} is missing",
                            type_name(oid)
                        ))
                        .at(at()));
                    }
                    p.values.push(d);
                    p.nulls.push(b' ' as c_char);
                    if !by_value {
                        p.allocated.push(d);
                    }
                }
                None => {
                    p.values.push(0);
                    p.nulls.push(b'n' as c_char);
                }
            }
        }
        Ok(p)
    }

    /// The count and the arrays, as the `SPI_*_with_args` calls take them; valid while
    /// `self` is.
    fn as_args(&mut self) -> (i32, *mut Oid, *mut Datum, *const c_char) {
        (
            self.types.len() as i32,
            self.types.as_mut_ptr(),
            self.values.as_mut_ptr(),
            self.nulls.as_ptr(),
        )
    }
}

impl Drop for Params {
    fn drop(&mut self) {
        for &d in &self.allocated {
            // SAFETY: each was palloc'd by ToSql::to_datum for this statement only.
            unsafe { pg_sys::pfree(d as *mut std::ffi::c_void) };
        }
    }
}

/// Whether a parameter of type `oid` is passed by value, as the catalog says; a conversion
/// error (without the position) for what cannot be a parameter (no type, a pseudo-type such
/// as `void`).
fn parameter_layout(oid: Oid) -> Result<bool> {
    if oid == pg_sys::InvalidOid {
        return Err(Error::conversion(
            "no SQL type (an array of a type without an array type?)",
        ));
    }
    // SAFETY: a catalog lookup; an unknown type raises an ERROR that guard returns.
    let kind = guard(|| unsafe { pg_sys::get_typtype(oid) })?;
    if kind == pg_sys::TYPTYPE_PSEUDO as c_char {
        return Err(Error::conversion(format!(
            "type {} cannot be a statement parameter",
            type_name(oid)
        )));
    }
    Ok(crate::datum::type_layout(oid)?.by_val)
}

fn spi_result(rc: i32, what: &str) -> Result<()> {
    if rc >= 0 {
        return Ok(());
    }
    // SAFETY: returns a static string for any code.
    let name = unsafe { copy_cstring(pg_sys::SPI_result_code_string(rc)) };
    Err(Error::msg(format!("{what} failed: {name}")))
}

/// Converts and frees the current `SPI_tuptable`.
fn take_rows<R: FromRow>() -> Result<Vec<R>> {
    // SAFETY: SPI_tuptable/SPI_processed describe the result of the statement just run; we
    // free the table when done so that loops do not accumulate results.
    unsafe {
        let table = pg_sys::SPI_tuptable;
        if table.is_null() {
            return Ok(Vec::new());
        }
        let count = pg_sys::SPI_processed as usize;
        let tupdesc = (*table).tupdesc;
        let mut out = Vec::with_capacity(count);
        let mut result = Ok(());
        for i in 0..count {
            let row = Row {
                tuple: *(*table).vals.add(i),
                tupdesc,
            };
            match R::from_row(&row) {
                Ok(v) => out.push(v),
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        pg_sys::SPI_freetuptable(table);
        pg_sys::SPI_tuptable = std::ptr::null_mut();
        result.map(|()| out)
    }
}

/// The only row, if any; [`Error::TooManyRows`] for more.
fn at_most_one<R>(mut rows: Vec<R>) -> Result<Option<R>> {
    match rows.len() {
        0 | 1 => Ok(rows.pop()),
        n => Err(Error::TooManyRows { count: n as u64 }),
    }
}

fn free_tuptable() {
    // SAFETY: freeing the current result (or nothing) is always allowed while connected.
    unsafe {
        if !pg_sys::SPI_tuptable.is_null() {
            pg_sys::SPI_freetuptable(pg_sys::SPI_tuptable);
            pg_sys::SPI_tuptable = std::ptr::null_mut();
        }
    }
}

impl Spi {
    /// A handle on the SPI connection just opened (`SPI_connect`) by the caller, which
    /// closes it.
    pub(crate) fn connected() -> Spi {
        Spi {
            reported: None,
            pinned: false,
            read_only: false,
            closed: None,
            _not_send: std::marker::PhantomData,
        }
    }

    /// Refuses every later call with `why`: the connection was torn down under this value.
    pub(crate) fn close(&mut self, why: Error) {
        self.closed = Some(why);
    }

    /// Why the connection was closed under this value, if it was; clears the record.
    pub(crate) fn take_closed(&mut self) -> Option<Error> {
        self.closed.take()
    }

    pub(crate) fn check_usable(&self) -> Result<()> {
        if let Some(closed) = &self.closed {
            return Err(closed.clone());
        }
        if let Some(caught) = crate::recovery::pending_error() {
            return Err(Error::WrongContext(format!(
                "current transaction is aborted after an error ({}); return the error (or use a \
                 subtransaction) so it can be rolled back",
                caught.message
            )));
        }
        crate::shmem::check_no_lwlock_guard()
    }

    /// Runs the following statements with SPI's `read_only` flag (or, with `false`, without
    /// it, the default). Read-only statements are cheaper (no new snapshot, no command
    /// counter increment) but do not see what this transaction wrote since its last
    /// read-write statement, and are refused if they write.
    ///
    /// ```no_run
    /// bgworker::xact::transaction(|spi| {
    ///     spi.set_read_only(true);
    ///     let n: i64 = spi.query_one("SELECT count(*) FROM pg_class", &[])?;
    ///     Ok(())
    /// })?;
    /// # Ok::<(), bgworker::Error>(())
    /// ```
    pub fn set_read_only(&mut self, read_only: bool) {
        self.read_only = read_only;
    }

    /// Shows `activity` as this process's query in `pg_stat_activity` (state `active`).
    /// Until then each statement shows its own text; from then on, `activity` stays until the
    /// next call (or the end of the transaction), as in C, where SPI reports nothing itself:
    /// a worker can say what it is doing ("pass 2 of 5") across the statements that do it.
    ///
    /// ```no_run
    /// bgworker::xact::transaction(|spi| {
    ///     spi.report_activity("vacuuming the queue");
    ///     Ok(())
    /// })?;
    /// # Ok::<(), bgworker::Error>(())
    /// ```
    pub fn report_activity(&mut self, activity: &str) {
        self.pinned = true;
        self.show(activity);
    }

    /// Shows a statement's text, unless the code reported its own activity.
    fn report_statement(&mut self, sql: &str) {
        if !self.pinned {
            self.show(sql);
        }
    }

    fn show(&mut self, activity: &str) {
        if self.reported.as_deref() == Some(activity) {
            return;
        }
        let text = to_cstring_lossy(activity);
        let ptr = text.as_ptr();
        // SAFETY: pgstat_report_activity copies the string into shared memory.
        let _ = guard(|| unsafe {
            pg_sys::pgstat_report_activity(pg_sys::BackendState_STATE_RUNNING, ptr)
        });
        self.reported = Some(activity.to_string());
    }

    /// Checks that a statement can run, shows it as the activity, and converts its text
    /// and parameters for an `SPI_*_with_args` call.
    fn statement_with_args(
        &mut self,
        sql: &str,
        params: &[&dyn ToSql],
    ) -> Result<(CString, Params)> {
        self.check_usable()?;
        self.report_statement(sql);
        Ok((to_cstring(sql, "SQL text")?, Params::new(params)?))
    }

    fn run(&mut self, sql: &str, params: &[&dyn ToSql], limit: i64) -> Result<u64> {
        let (text, mut p) = self.statement_with_args(sql, params)?;
        let (src, read_only) = (text.as_ptr(), self.read_only);
        let (n, types, values, nulls) = p.as_args();
        // SAFETY: all arrays hold `n` entries and outlive the call.
        let rc = guard(|| unsafe {
            pg_sys::SPI_execute_with_args(src, n, types, values, nulls, read_only, limit as _)
        });
        let rc = rc?;
        spi_result(rc, "SPI_execute_with_args")?;
        // SAFETY: set by the statement just run.
        Ok(unsafe { pg_sys::SPI_processed })
    }

    /// Runs a query and returns its rows.
    ///
    /// ```no_run
    /// bgworker::xact::transaction(|spi| {
    ///     let n: i64 = spi.query_one("SELECT count(*) FROM pg_class WHERE relkind = $1", &[&"r"])?;
    ///     Ok(())
    /// })?;
    /// # Ok::<(), bgworker::Error>(())
    /// ```
    pub fn query<R: FromRow>(&mut self, sql: &str, params: &[&dyn ToSql]) -> Result<Vec<R>> {
        self.run(sql, params, 0)?;
        take_rows()
    }

    /// Runs a query that must return exactly one row: [`Error::NoRows`] or
    /// [`Error::TooManyRows`] otherwise.
    pub fn query_one<R: FromRow>(&mut self, sql: &str, params: &[&dyn ToSql]) -> Result<R> {
        at_most_one(self.query::<R>(sql, params)?)?.ok_or(Error::NoRows)
    }

    /// Runs a query that returns at most one row: [`Error::TooManyRows`] otherwise.
    pub fn query_opt<R: FromRow>(&mut self, sql: &str, params: &[&dyn ToSql]) -> Result<Option<R>> {
        at_most_one(self.query::<R>(sql, params)?)
    }

    /// Runs a statement that may write; returns the number of rows processed.
    ///
    /// ```no_run
    /// bgworker::xact::transaction(|spi| {
    ///     let deleted = spi.execute("DELETE FROM queue WHERE done", &[])?;
    ///     Ok(())
    /// })?;
    /// # Ok::<(), bgworker::Error>(())
    /// ```
    pub fn execute(&mut self, sql: &str, params: &[&dyn ToSql]) -> Result<u64> {
        let n = self.run(sql, params, 0)?;
        free_tuptable();
        Ok(n)
    }

    /// Runs a statement that may write and returns its rows (`... RETURNING`).
    pub fn execute_returning<R: FromRow>(
        &mut self,
        sql: &str,
        params: &[&dyn ToSql],
    ) -> Result<Vec<R>> {
        self.run(sql, params, 0)?;
        take_rows()
    }

    /// Prepares a statement whose plan is kept across transactions (`SPI_prepare` +
    /// `SPI_keepplan`). `types` are the parameters' OIDs (`i32::OID` with
    /// [`SqlType`](crate::datum::SqlType)).
    ///
    /// ```no_run
    /// use bgworker::datum::SqlType;
    /// let stmt = bgworker::xact::transaction(|spi| spi.prepare("SELECT $1 + 1", &[i32::OID]))?;
    /// let two: i32 = bgworker::xact::transaction(|spi| spi.query_prepared_one(&stmt, &[&1]))?;
    /// # Ok::<(), bgworker::Error>(())
    /// ```
    pub fn prepare(&mut self, sql: &str, types: &[Oid]) -> Result<Statement> {
        self.check_usable()?;
        let text = to_cstring(sql, "SQL text")?;
        let mut types = types.to_vec();
        let (src, n, t) = (text.as_ptr(), types.len() as i32, types.as_mut_ptr());
        // SAFETY: `types` holds `n` OIDs and outlives the call.
        let plan = guard(|| unsafe { pg_sys::SPI_prepare(src, n, t) });
        let plan = plan?;
        if plan.is_null() {
            // SAFETY: SPI_result holds the failure code.
            return Err(spi_result(unsafe { pg_sys::SPI_result }, "SPI_prepare")
                .err()
                .unwrap_or_else(|| Error::msg("SPI_prepare failed")));
        }
        // SAFETY: `plan` is a fresh plan; keeping it moves it out of the procedure context.
        let rc = guard(|| unsafe { pg_sys::SPI_keepplan(plan) })?;
        spi_result(rc, "SPI_keepplan")?;
        Ok(Statement {
            plan,
            types,
            sql: sql.to_string(),
        })
    }

    fn run_prepared(&mut self, stmt: &Statement, params: &[&dyn ToSql]) -> Result<u64> {
        self.check_usable()?;
        let read_only = self.read_only;
        if params.len() != stmt.types.len() {
            return Err(Error::msg(format!(
                "the statement takes {} parameters, {} given",
                stmt.types.len(),
                params.len()
            )));
        }
        self.report_statement(&stmt.sql);
        let p = Params::new(params)?;
        for (i, (given, wanted)) in p.types.iter().zip(&stmt.types).enumerate() {
            if given != wanted {
                return Err(Error::conversion(format!(
                    "type {} given, the statement was prepared for {}",
                    type_name(*given),
                    type_name(*wanted)
                ))
                .at(Position::Parameter(i + 1)));
            }
        }
        let (plan, values, nulls) = (stmt.plan, p.values.as_ptr() as *mut Datum, p.nulls.as_ptr());
        // SAFETY: a kept plan; arrays match its parameter count and outlive the call.
        let rc = guard(|| unsafe { pg_sys::SPI_execute_plan(plan, values, nulls, read_only, 0) });
        let rc = rc?;
        spi_result(rc, "SPI_execute_plan")?;
        // SAFETY: set by the statement just run.
        Ok(unsafe { pg_sys::SPI_processed })
    }

    /// Runs a prepared query.
    pub fn query_prepared<R: FromRow>(
        &mut self,
        stmt: &Statement,
        params: &[&dyn ToSql],
    ) -> Result<Vec<R>> {
        self.run_prepared(stmt, params)?;
        take_rows()
    }

    /// Runs a prepared query that must return exactly one row.
    pub fn query_prepared_one<R: FromRow>(
        &mut self,
        stmt: &Statement,
        params: &[&dyn ToSql],
    ) -> Result<R> {
        at_most_one(self.query_prepared::<R>(stmt, params)?)?.ok_or(Error::NoRows)
    }

    /// Runs a prepared statement that may write; returns the number of rows processed.
    pub fn execute_prepared(&mut self, stmt: &Statement, params: &[&dyn ToSql]) -> Result<u64> {
        let n = self.run_prepared(stmt, params)?;
        free_tuptable();
        Ok(n)
    }

    /// Opens a cursor; [`Cursor::fetch`] reads it in batches, so a table of any size
    /// is read in constant memory.
    ///
    /// ```no_run
    /// bgworker::xact::transaction(|spi| {
    ///     let mut cursor = spi.cursor("SELECT x FROM big", &[])?;
    ///     loop {
    ///         let batch: Vec<f64> = cursor.fetch(1000)?;
    ///         if batch.is_empty() { break; }
    ///     }
    ///     Ok(())
    /// })?;
    /// # Ok::<(), bgworker::Error>(())
    /// ```
    pub fn cursor(&mut self, sql: &str, params: &[&dyn ToSql]) -> Result<Cursor<'_>> {
        let (text, mut p) = self.statement_with_args(sql, params)?;
        let (src, read_only) = (text.as_ptr(), self.read_only);
        let (n, types, values, nulls) = p.as_args();
        // SAFETY: arrays hold `n` entries; the portal copies the parameter values.
        let portal = guard(|| unsafe {
            pg_sys::SPI_cursor_open_with_args(
                std::ptr::null(),
                src,
                n,
                types,
                values,
                nulls,
                read_only,
                0,
            )
        });
        let portal = portal?;
        if portal.is_null() {
            return Err(Error::msg("SPI_cursor_open_with_args returned no cursor"));
        }
        Ok(Cursor { portal, spi: self })
    }
}

/// A prepared statement whose plan outlives transactions; see [`Spi::prepare`]. Freed on drop.
///
/// ```no_run
/// use bgworker::{datum::SqlType, xact};
/// let bump = xact::transaction(|spi| spi.prepare("UPDATE c SET n = n + $1", &[i64::OID]))?;
/// for _ in 0..3 {
///     xact::transaction(|spi| spi.execute_prepared(&bump, &[&1i64]))?;
/// }
/// let all = xact::transaction(|spi| spi.prepare("SELECT n FROM c", &[]))?;
/// let rows: Vec<i64> = xact::transaction(|spi| spi.query_prepared(&all, &[]))?;
/// # Ok::<(), bgworker::Error>(())
/// ```
pub struct Statement {
    plan: pg_sys::SPIPlanPtr,
    types: Vec<Oid>,
    sql: String,
}

impl Drop for Statement {
    fn drop(&mut self) {
        if crate::entry::exiting() {
            return;
        }
        let plan = self.plan;
        // SAFETY: a kept plan owned by this value; SPI_freeplan works outside SPI too.
        let _ = guard(|| unsafe { pg_sys::SPI_freeplan(plan) });
    }
}

/// An open cursor; see [`Spi::cursor`]. Closed on drop.
///
/// ```no_run
/// bgworker::xact::transaction(|spi| {
///     let mut cursor = spi.cursor("SELECT id FROM events WHERE day = $1", &[&"monday"])?;
///     loop {
///         let batch: Vec<i64> = cursor.fetch(500)?;
///         if batch.is_empty() {
///             break;
///         }
///         bgworker::log!("{} events", batch.len());
///     }
///     Ok(())
/// })?;
/// # Ok::<(), bgworker::Error>(())
/// ```
pub struct Cursor<'s> {
    portal: pg_sys::Portal,
    spi: &'s mut Spi,
}

impl Cursor<'_> {
    /// Fetches up to `count` rows; an empty result means the cursor is exhausted.
    pub fn fetch<R: FromRow>(&mut self, count: usize) -> Result<Vec<R>> {
        self.spi.check_usable()?;
        let (portal, n) = (self.portal, count as std::ffi::c_long);
        // SAFETY: an open portal of this transaction.
        let r = guard(|| unsafe { pg_sys::SPI_cursor_fetch(portal, true, n) });
        r?;
        take_rows()
    }
}

impl Drop for Cursor<'_> {
    fn drop(&mut self) {
        if self.spi.closed.is_some() || crate::recovery::pending_error().is_some() {
            // The (sub)transaction's abort closes the portal; closing it here could touch
            // a portal that is being torn down.
            return;
        }
        let portal = self.portal;
        // SAFETY: an open portal created by this cursor.
        let _ = guard(|| unsafe { pg_sys::SPI_cursor_close(portal) });
    }
}

/// Quotes an identifier with PostgreSQL's own `quote_identifier` (only when needed).
///
/// ```no_run
/// assert_eq!(bgworker::spi::quote_identifier("my table")?, "\"my table\"");
/// assert_eq!(bgworker::spi::quote_identifier("plain")?, "plain");
/// # Ok::<(), bgworker::Error>(())
/// ```
pub fn quote_identifier(ident: &str) -> Result<String> {
    let text = to_cstring(ident, "identifier")?;
    let ptr = text.as_ptr();
    // SAFETY: returns either its argument or a palloc'd quoted copy.
    let quoted = guard(|| unsafe { pg_sys::quote_identifier(ptr) })?;
    if quoted == ptr {
        return Ok(ident.to_string());
    }
    // SAFETY: a palloc'd copy made by quote_identifier, ours alone.
    Ok(unsafe { take_palloc_cstring(quoted as *mut c_char) })
}

/// Quotes a string literal with PostgreSQL's own `quote_literal_cstr`. Prefer parameters;
/// this is for the few places (DDL) that take no parameters.
///
/// ```no_run
/// assert_eq!(bgworker::spi::quote_literal("it's")?, "'it''s'");
/// # Ok::<(), bgworker::Error>(())
/// ```
pub fn quote_literal(value: &str) -> Result<String> {
    let text = to_cstring(value, "literal")?;
    let ptr = text.as_ptr();
    // SAFETY: returns a palloc'd quoted copy.
    let quoted = guard(|| unsafe { pg_sys::quote_literal_cstr(ptr) })?;
    // SAFETY: the palloc'd copy, ours alone.
    Ok(unsafe { take_palloc_cstring(quoted) })
}
