//! Set-returning functions of `record`s (`RETURNS SETOF record`), in materialize mode: the
//! rows go into a tuplestore (which spills to disk past `work_mem`) whose shape the caller
//! chose with a column definition list, `SELECT * FROM f() AS (a int, b text)`.
//!
//! ```no_run
//! use bgworker::srf::{RecordSet, SetOfRecord};
//! bgworker::sql_function! {
//!     /// Two rows of text values, typed as the caller asks.
//!     fn two_rows() -> SetOfRecord {
//!         let mut rows = RecordSet::for_current_call()?;
//!         rows.push_text([Some(&b"1"[..]), Some(&b"one"[..])].into_iter())?;
//!         rows.push_text([Some(&b"2"[..]), None].into_iter())?;
//!         Ok(rows.finish())
//!     }
//! }
//! // SELECT * FROM two_rows() AS (n int, name text);
//! # fn main() {}
//! ```

use std::cell::Cell;

use crate::datum::ToSql;
use crate::error::{Error, PgError, Result, SqlState};
use crate::guard::guard;
use crate::pg_sys::{self, Datum, Oid};

/// A SQL function call in progress: its fcinfo, a number no other call had, and whether a
/// [`RecordSet`] was started for it.
#[derive(Clone, Copy)]
struct Current {
    fcinfo: pg_sys::FunctionCallInfo,
    generation: u64,
    result_started: bool,
}

const NO_CALL: Current = Current {
    fcinfo: std::ptr::null_mut(),
    generation: 0,
    result_started: false,
};

thread_local! {
    /// The call of the SQL function running now, set by `sql_function!` (NULL inside an
    /// aggregate's support functions: they have no result set to give).
    static CURRENT_CALL: Cell<Current> = const { Cell::new(NO_CALL) };
    static GENERATIONS: Cell<u64> = const { Cell::new(0) };
}

/// Marks `fcinfo` (or no call, for NULL) as the current call until the returned guard is
/// dropped.
pub(crate) fn enter_call(fcinfo: pg_sys::FunctionCallInfo) -> CallScope {
    let generation = GENERATIONS.with(|g| {
        g.set(g.get() + 1);
        g.get()
    });
    let current = Current {
        fcinfo,
        generation,
        result_started: false,
    };
    CallScope(CURRENT_CALL.with(|c| c.replace(current)))
}

/// Whether a SQL function's body is running.
pub(crate) fn in_call() -> bool {
    !CURRENT_CALL.with(Cell::get).fcinfo.is_null()
}

/// Restores the enclosing call (nested SQL functions, through SPI).
pub(crate) struct CallScope(Current);

impl Drop for CallScope {
    fn drop(&mut self) {
        CURRENT_CALL.with(|c| c.set(self.0));
    }
}

/// What a set-returning function's body returns: the rows are in the [`RecordSet`] it
/// finished. Declared as `SETOF record`.
///
/// ```
/// let t = <bgworker::srf::SetOfRecord as bgworker::sql::SignatureType>::SQL;
/// assert_eq!(t.name(), "SETOF record");
/// ```
#[derive(Clone, Copy, Debug)]
pub struct SetOfRecord(());

// SAFETY: a materialize-mode set-returning function's Datum is ignored; NULL it is.
unsafe impl ToSql for SetOfRecord {
    fn sql_type(&self) -> Oid {
        pg_sys::RECORDOID
    }
    fn to_datum(&self) -> Result<Option<Datum>> {
        Ok(None)
    }
}

impl crate::sql::SignatureType for SetOfRecord {
    const SQL: crate::sql::TypeSpelling = crate::sql::TypeSpelling::named("SETOF record");
}

/// Declares a set-returning function's result by its columns, `RETURNS TABLE (...)`: a type
/// to return from [`sql_function!`](crate::sql_function) after filling a [`RecordSet`],
/// whose columns then come from the declaration (callers need no column definition list).
///
/// ```no_run
/// use bgworker::srf::RecordSet;
/// bgworker::table_type! {
///     /// Numbers and their squares.
///     pub struct Squares = "n int4, square int8";
/// }
/// bgworker::sql_function! {
///     /// `SELECT * FROM squares(3)`: (1, 1), (2, 4), (3, 9).
///     fn squares(count: i32) -> Squares {
///         let mut rows = RecordSet::for_current_call()?;
///         for n in 1..=i64::from(count) {
///             let values = [n.to_string(), (n * n).to_string()];
///             rows.push_text(values.iter().map(|v| Some(v.as_bytes())))?;
///         }
///         Ok(rows.finish().into())
///     }
/// }
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! table_type {
    ($(#[doc = $doc:literal])* $vis:vis struct $name:ident = $columns:literal;) => {
        $(#[doc = $doc])*
        #[derive(Clone, Copy, Debug)]
        $vis struct $name($crate::srf::SetOfRecord);

        impl ::std::convert::From<$crate::srf::SetOfRecord> for $name {
            fn from(rows: $crate::srf::SetOfRecord) -> $name {
                $name(rows)
            }
        }

        // SAFETY: the same Datum as SetOfRecord's (the rows went to the executor).
        unsafe impl $crate::datum::ToSql for $name {
            fn sql_type(&self) -> $crate::pg_sys::Oid {
                $crate::datum::ToSql::sql_type(&self.0)
            }
            fn to_datum(&self) -> $crate::Result<Option<$crate::pg_sys::Datum>> {
                $crate::datum::ToSql::to_datum(&self.0)
            }
        }

        impl $crate::sql::SignatureType for $name {
            const SQL: $crate::sql::TypeSpelling =
                $crate::sql::TypeSpelling::named(concat!("TABLE (", $columns, ")"));
        }
    };
}

/// Refuses text a type input function must not see: a NUL byte (it would end the text
/// early) or bytes that are not valid in the database encoding.
fn check_text(bytes: &[u8]) -> Result<()> {
    let bad = |what: &str| -> Result<()> {
        Err(PgError::new(
            SqlState::CHARACTER_NOT_IN_REPERTOIRE,
            format!("a value {what}"),
        )
        .into())
    };
    if bytes.contains(&0) {
        return bad("contains a NUL byte");
    }
    let (ptr, len) = (
        bytes.as_ptr() as *const std::ffi::c_char,
        bytes.len() as i32,
    );
    // SAFETY: checks `len` bytes against the database encoding; noError: returns false.
    let valid = guard(|| unsafe {
        pg_sys::pg_verify_mbstr(pg_sys::GetDatabaseEncoding(), ptr, len, true)
    })?;
    if !valid {
        return bad("is not valid in the database encoding");
    }
    Ok(())
}

/// How one result column is read from text: its type's input function.
struct Input {
    function: pg_sys::FmgrInfo,
    ioparam: Oid,
    typmod: i32,
    type_oid: Oid,
}

/// The rows of the current set-returning call, shaped by the caller's column definition
/// list.
///
/// ```no_run
/// use bgworker::srf::{RecordSet, SetOfRecord};
/// bgworker::sql_function! {
///     /// `n` rows of as many columns as the caller asks for, each value `row.column`.
///     fn grid(n: i32) -> SetOfRecord {
///         let mut rows = RecordSet::for_current_call()?;
///         for r in 0..n {
///             let values: Vec<String> = (0..rows.columns()).map(|c| format!("{r}.{c}")).collect();
///             rows.push_text(values.iter().map(|v| Some(v.as_bytes())))?;
///         }
///         Ok(rows.finish())
///     }
/// }
/// # fn main() {}
/// ```
pub struct RecordSet {
    /// The call it belongs to: everything below is freed by the executor after it.
    generation: u64,
    desc: pg_sys::TupleDesc,
    store: *mut pg_sys::Tuplestorestate,
    inputs: Vec<Input>,
    /// Reset after each row: what the input functions allocate.
    row_memory: pg_sys::MemoryContext,
    values: Vec<Datum>,
    nulls: Vec<bool>,
    text: Vec<u8>,
}

impl RecordSet {
    /// Starts the result of the SQL function running now (inside `sql_function!`'s body),
    /// which must have been called where a set of records is allowed (in `FROM`, with a
    /// column definition list).
    pub fn for_current_call() -> Result<RecordSet> {
        let current = CURRENT_CALL.with(Cell::get);
        let fcinfo = current.fcinfo;
        if fcinfo.is_null() {
            return Err(Error::WrongContext(
                "RecordSet::for_current_call outside a SQL function".into(),
            ));
        }
        if current.result_started {
            return Err(Error::WrongContext(
                "RecordSet::for_current_call: this call's result set is started already".into(),
            ));
        }
        // SAFETY: the running call's fcinfo; resultinfo is a node or NULL.
        let rsinfo = unsafe { (*fcinfo).resultinfo } as *mut pg_sys::ReturnSetInfo;
        // SAFETY: as above.
        let usable = !rsinfo.is_null()
            && unsafe { (*rsinfo).type_ } == pg_sys::NodeTag_T_ReturnSetInfo
            && unsafe { (*rsinfo).allowedModes }
                & pg_sys::SetFunctionReturnMode_SFRM_Materialize as i32
                != 0;
        if !usable {
            return Err(PgError::new(
                SqlState::FEATURE_NOT_SUPPORTED,
                "set-valued function called in context that cannot accept a set",
            )
            .into());
        }
        let mut desc: pg_sys::TupleDesc = std::ptr::null_mut();
        let out = &mut desc as *mut pg_sys::TupleDesc;
        // SAFETY: resolves the caller's row type (a column definition list for `record`).
        let kind =
            guard(|| unsafe { pg_sys::get_call_result_type(fcinfo, std::ptr::null_mut(), out) })?;
        if kind != pg_sys::TypeFuncClass_TYPEFUNC_COMPOSITE || desc.is_null() {
            return Err(PgError::new(
                SqlState::FEATURE_NOT_SUPPORTED,
                "function returning record called in context that cannot accept type record",
            )
            .with_hint("Call it in FROM with a column definition list: AS (a int, b text).")
            .into());
        }
        // SAFETY: a ReturnSetInfo (checked above).
        let econtext = unsafe { (*rsinfo).econtext };
        if econtext.is_null() {
            return Err(Error::WrongContext(
                "a set-returning call without an executor context".into(),
            ));
        }
        // SAFETY: econtext of a set-returning call; its per-query memory outlives the call.
        let query_memory = unsafe { (*econtext).ecxt_per_query_memory };
        // SAFETY: as above.
        let random = unsafe { (*rsinfo).allowedModes }
            & pg_sys::SetFunctionReturnMode_SFRM_Materialize_Random as i32
            != 0;
        // SAFETY: copies the descriptor and creates the tuplestore where they must outlive
        // the call, and hands them to the executor.
        let (desc, store) = guard(|| unsafe {
            let old = std::mem::replace(
                &mut *std::ptr::addr_of_mut!(pg_sys::CurrentMemoryContext),
                query_memory,
            );
            let desc = pg_sys::CreateTupleDescCopy(desc);
            let store = pg_sys::tuplestore_begin_heap(random, false, pg_sys::work_mem);
            pg_sys::CurrentMemoryContext = old;
            (*rsinfo).returnMode = pg_sys::SetFunctionReturnMode_SFRM_Materialize;
            (*rsinfo).setResult = store;
            (*rsinfo).setDesc = desc;
            (desc, store)
        })?;
        // SAFETY: a valid descriptor.
        let natts = unsafe { (*desc).natts }.max(0) as usize;
        let mut inputs = Vec::with_capacity(natts);
        for i in 0..natts {
            // SAFETY: i < natts.
            let attr = unsafe { pg_sys::pgsys_tupdesc_attr(desc, i as i32) };
            // SAFETY: a valid attribute.
            let (type_oid, typmod) = unsafe { ((*attr).atttypid, (*attr).atttypmod) };
            let mut input = Input {
                // SAFETY: a plain C struct, filled by fmgr_info_cxt below.
                function: unsafe { std::mem::zeroed() },
                ioparam: 0,
                typmod,
                type_oid,
            };
            let (mut func, ioparam) = (0 as Oid, &mut input.ioparam as *mut Oid);
            let func_out = &mut func as *mut Oid;
            // SAFETY: a catalog lookup of the column type's input function.
            guard(|| unsafe { pg_sys::getTypeInputInfo(type_oid, func_out, ioparam) })?;
            let finfo = &mut input.function as *mut pg_sys::FmgrInfo;
            // SAFETY: fills `finfo`; its extra data lives in the query's memory.
            guard(|| unsafe { pg_sys::fmgr_info_cxt(func, finfo, query_memory) })?;
            inputs.push(input);
        }
        // SAFETY: a child of the query's memory (AllocSetContextCreate with the default
        // sizes; the name is a static string, as PostgreSQL requires), reset per row.
        let row_memory = guard(|| unsafe {
            pg_sys::AllocSetContextCreateInternal(
                query_memory,
                c"bgworker record rows".as_ptr(),
                0,
                8 * 1024,
                8 * 1024 * 1024,
            )
        })?;
        CURRENT_CALL.with(|c| {
            c.set(Current {
                result_started: true,
                ..current
            })
        });
        Ok(RecordSet {
            generation: current.generation,
            desc,
            store,
            inputs,
            row_memory,
            values: vec![0; natts],
            nulls: vec![true; natts],
            text: Vec::new(),
        })
    }

    /// How many columns the caller asked for.
    pub fn columns(&self) -> usize {
        self.inputs.len()
    }

    /// The type of column `index` (from 0) the caller asked for.
    pub fn column_type(&self, index: usize) -> Option<Oid> {
        self.inputs.get(index).map(|i| i.type_oid)
    }

    /// Adds a row of values in text format (`None` for NULL), read with each column type's
    /// input function (an ERROR for text the type does not accept).
    pub fn push_text<'v>(&mut self, values: impl Iterator<Item = Option<&'v [u8]>>) -> Result<()> {
        self.check_call()?;
        let memory = self.row_memory;
        // SAFETY: resets what the previous row's input functions allocated (already copied
        // into the tuplestore).
        guard(|| unsafe { pg_sys::MemoryContextReset(memory) })?;
        let mut given = 0;
        for (i, value) in values.enumerate() {
            given += 1;
            let Some(input) = self.inputs.get_mut(i) else {
                continue;
            };
            let text = match value {
                Some(bytes) => {
                    check_text(bytes)?;
                    self.text.clear();
                    self.text.extend_from_slice(bytes);
                    self.text.push(0);
                    self.text.as_ptr() as *mut std::ffi::c_char
                }
                None => std::ptr::null_mut(),
            };
            // Input functions may cache in fn_extra: the pointer comes from `&mut`.
            let (finfo, ioparam, typmod) = (
                &mut input.function as *mut pg_sys::FmgrInfo,
                input.ioparam,
                input.typmod,
            );
            // SAFETY: the column type's input function on a NUL-terminated string (or NULL,
            // for domain checks), allocating in the row's memory; `finfo` is exclusively ours
            // for the call.
            let datum = guard(|| unsafe {
                let old = std::mem::replace(
                    &mut *std::ptr::addr_of_mut!(pg_sys::CurrentMemoryContext),
                    memory,
                );
                let d = pg_sys::InputFunctionCall(finfo, text, ioparam, typmod);
                pg_sys::CurrentMemoryContext = old;
                d
            })?;
            self.values[i] = datum;
            self.nulls[i] = value.is_none();
        }
        if given != self.inputs.len() {
            return Err(PgError::new(
                SqlState::DATATYPE_MISMATCH,
                format!(
                    "a row of {given} values does not match the {} columns asked for",
                    self.inputs.len()
                ),
            )
            .into());
        }
        let (store, desc) = (self.store, self.desc);
        let (values, nulls) = (self.values.as_mut_ptr(), self.nulls.as_mut_ptr());
        // SAFETY: one value and flag per column of `desc`; the tuplestore copies the row.
        guard(|| unsafe { pg_sys::tuplestore_putvalues(store, desc, values, nulls) })?;
        Ok(())
    }

    /// Refuses use outside the call it was made for: the executor frees its descriptor,
    /// tuplestore and memory after that call.
    fn check_call(&self) -> Result<()> {
        let current = CURRENT_CALL.with(Cell::get);
        if current.fcinfo.is_null() || current.generation != self.generation {
            return Err(Error::WrongContext(
                "a RecordSet is used only during the call that made it".into(),
            ));
        }
        Ok(())
    }

    /// Ends the result: what the body returns.
    pub fn finish(self) -> SetOfRecord {
        SetOfRecord(())
    }
}
