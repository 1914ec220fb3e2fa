//! Composite types (`CREATE TYPE name AS (...)`) as Rust structs:
//! [`composite_type!`](crate::composite_type!) declares both, and the struct is a SQL
//! function's result of that type.
//!
//! ```no_run
//! bgworker::composite_type! {
//!     /// A job's handle: which worker, and a cookie that a reused pid cannot guess.
//!     #[sql(name = "job_handle")]
//!     pub struct JobHandle {
//!         pub pid: i32,
//!         pub cookie: i64,
//!     }
//! }
//! bgworker::sql_function! {
//!     fn make_handle(pid: i32) -> JobHandle {
//!         Ok(JobHandle { pid, cookie: 42 })
//!     }
//! }
//! // The library declares: CREATE TYPE "job_handle" AS ("pid" integer, "cookie" bigint);
//! # fn main() {}
//! ```

use crate::datum::ToSql;
use crate::error::{Error, PgError, Result, SqlState};
use crate::guard::guard;
use crate::pg_sys::{self, Datum, Oid};

/// The OID of the composite type `name`, as `search_path` finds it (an extension's types
/// are in its schema, which its functions' callers have on the path or name explicitly).
#[doc(hidden)]
pub fn type_oid(name: &str) -> Result<Oid> {
    let text = crate::cstr::to_cstring(name, "type name")?;
    let ptr = text.as_ptr();
    // SAFETY: a catalog lookup through the search path; InvalidOid when not found.
    let oid = guard(|| unsafe { pg_sys::TypenameGetTypid(ptr) })?;
    if oid == pg_sys::InvalidOid {
        return Err(PgError::new(
            SqlState::UNDEFINED_OBJECT,
            format!("type \"{name}\" does not exist (or is not on the search_path)"),
        )
        .into());
    }
    Ok(oid)
}

/// A row of composite type `oid` from its fields' values, as a Datum.
#[doc(hidden)]
pub fn to_datum(oid: Oid, fields: &[&dyn ToSql]) -> Result<Option<Datum>> {
    let mut values = Vec::with_capacity(fields.len());
    let mut nulls = Vec::with_capacity(fields.len());
    for field in fields {
        match field.to_datum()? {
            Some(d) => {
                values.push(d);
                nulls.push(false);
            }
            None => {
                values.push(0);
                nulls.push(true);
            }
        }
    }
    // SAFETY: the type cache's descriptor of the row type, reference-counted until
    // released below.
    let desc = guard(|| unsafe { pg_sys::lookup_rowtype_tupdesc(oid, -1) })?;
    // SAFETY: a valid descriptor.
    let natts = unsafe { (*desc).natts } as usize;
    let mut fits = natts == fields.len();
    for (i, field) in fields.iter().enumerate().take(natts) {
        // SAFETY: i < natts.
        let attr = unsafe { pg_sys::pgsys_tupdesc_attr(desc, i as i32) };
        // SAFETY: a valid attribute.
        let (ty, dropped) = unsafe { ((*attr).atttypid, (*attr).attisdropped) };
        fits = fits && !dropped && ty == field.sql_type();
    }
    let (v, n) = (values.as_mut_ptr(), nulls.as_mut_ptr());
    // SAFETY: builds the tuple only when the descriptor has exactly these fields' types
    // (checked above), then gives the descriptor back to the type cache.
    let datum = guard(|| unsafe {
        let datum = if fits {
            let tuple = pg_sys::heap_form_tuple(desc, v, n);
            pg_sys::HeapTupleHeaderGetDatum((*tuple).t_data)
        } else {
            0
        };
        pg_sys::DecrTupleDescRefCount(desc);
        datum
    })?;
    if !fits {
        return Err(Error::msg(format!(
            "the composite type with OID {oid} does not have the Rust struct's fields"
        )));
    }
    Ok(Some(datum))
}

/// Declares a composite type and a Rust struct of the same fields: the struct is a
/// [`ToSql`] value of that type (a SQL function's result), and the library carries the
/// type's `CREATE TYPE` (see [`sql`](crate::sql)), before any function that uses it. The
/// SQL name is `#[sql(name = "...")]`, else the struct's name (`#[sql()]`); the type is
/// found through `search_path` when a value is made.
///
/// ```no_run
/// bgworker::composite_type! {
///     /// Progress of a job.
///     #[sql(name = "job_progress")]
///     pub struct Progress {
///         pub percent: i32,
///         pub message: Option<String>,
///     }
/// }
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! composite_type {
    (
        $(#[doc = $doc:literal])*
        #[sql($($opts:tt)*)]
        $vis:vis struct $name:ident { $($fvis:vis $field:ident : $ty:ty),* $(,)? }
    ) => {
        $(#[doc = $doc])*
        #[derive(Clone, Debug, PartialEq)]
        $vis struct $name { $($fvis $field: $ty),* }

        const _: () = {
            const OPTIONS: $crate::sql::Options = $crate::__sql_options!($($opts)*);
            const DECLARATION: $crate::sql::Declaration = $crate::sql::Declaration::composite(
                stringify!($name),
                OPTIONS,
                &[$($crate::sql::Argument {
                    name: stringify!($field),
                    sql_type: <$ty as $crate::sql::SignatureType>::SQL,
                    default: None,
                }),*],
            );
            const LEN: usize = DECLARATION.record_len();
            #[used]
            #[export_name = concat!("bgworker_sql_type_", stringify!($name))]
            static RECORD: [u8; LEN] = DECLARATION.record::<LEN>();

            impl $crate::sql::SignatureType for $name {
                const SQL: $crate::sql::TypeSpelling =
                    $crate::sql::TypeSpelling::named(DECLARATION.name());
            }

            // SAFETY: `to_datum` builds a row of the type `sql_type` names, after checking
            // that its fields have exactly the struct's types.
            unsafe impl $crate::datum::ToSql for $name {
                fn sql_type(&self) -> $crate::pg_sys::Oid {
                    $crate::composite::type_oid(DECLARATION.name())
                        .unwrap_or($crate::pg_sys::InvalidOid)
                }
                fn to_datum(&self) -> $crate::Result<Option<$crate::pg_sys::Datum>> {
                    let oid = $crate::composite::type_oid(DECLARATION.name())?;
                    $crate::composite::to_datum(oid, &[$(&self.$field),*])
                }
            }
        };
    };
}
