//! SQL-callable functions (fmgr version 1): [`sql_function!`](crate::sql_function!).
//!
//! Arguments and results go through the same [`FromSql`]/[`ToSql`] traits as SPI; an `Err`
//! or a panic in the body is raised as a SQL ERROR with its SQLSTATE.
//!
//! ```no_run
//! bgworker::sql_function! {
//!     fn greet(name: Option<String>) -> String {
//!         Ok(format!("hello, {}", name.as_deref().unwrap_or("stranger")))
//!     }
//! }
//! // The library declares: CREATE FUNCTION "greet"("name" text) RETURNS text
//! //   AS 'MODULE_PATHNAME', 'greet' LANGUAGE c VOLATILE PARALLEL UNSAFE;
//! ```

use crate::datum::{FromSql, ToSql};
use crate::error::{Error, Position, Result};
use crate::guard::guard;
use crate::pg_sys::{self, Datum, Oid};

/// The record `pg_finfo_<name>` returns: "this function uses calling convention 1".
#[doc(hidden)]
pub static FINFO_V1: pg_sys::Pg_finfo_record = pg_sys::Pg_finfo_record { api_version: 1 };

/// Declares a SQL-callable function. Write it as a Rust function returning a plain value
/// (`Option<T>` for a nullable result, `()` for `void`); it runs as `Result<T>` so `?` works.
/// The macro exports the C symbol `name` and its `pg_finfo_name` record, and writes the
/// function's `CREATE FUNCTION` into the library (see [`sql`](crate::sql)), also available
/// as `name::DECLARATION`.
///
/// * The SQL types come from the Rust types ([`SignatureType`](crate::sql::SignatureType)).
/// * The function is `STRICT` (NULL in, NULL out, body not called) unless an argument is an
///   `Option`.
/// * `#[sql(...)]` lists [`Options`](crate::sql::Options): `immutable`, `stable`,
///   `parallel_safe`, `parallel_restricted`, `schema = "..."`, `name = "..."`,
///   `created_at_run_time`.
/// * An argument may have a SQL default: `flags: Vec<String> = "'{}'"` (the string is SQL).
///
/// ```no_run
/// bgworker::sql_function! {
///     /// Adds one, refusing to overflow.
///     #[sql(immutable, parallel_safe)]
///     fn add_one(x: i32, step: i32 = "1") -> i32 {
///         x.checked_add(step).ok_or_else(|| bgworker::Error::msg("integer out of range"))
///     }
/// }
/// assert_eq!(
///     add_one::DECLARATION.to_sql("", false),
///     "CREATE FUNCTION \"add_one\"(\"x\" integer, \"step\" integer DEFAULT 1) \
///      RETURNS integer AS 'MODULE_PATHNAME', 'add_one' LANGUAGE c IMMUTABLE STRICT \
///      PARALLEL SAFE;"
/// );
/// ```
#[macro_export]
macro_rules! sql_function {
    ($(#[$($attr:tt)*])* fn $name:ident ($($args:tt)*) -> $ret:ty $body:block) => {
        $crate::__sql_function! { [] [] $(#[$($attr)*])* fn $name ($($args)*) -> $ret $body }
    };
}

/// [`sql_function!`]'s work: sorts `#[sql(...)]` from the other attributes, then expands.
#[doc(hidden)]
#[macro_export]
macro_rules! __sql_function {
    ([$($kept:tt)*] [$($opts:tt)*] #[sql($($o:tt)*)] $($rest:tt)*) => {
        $crate::__sql_function! { [$($kept)*] [$($opts)* , $($o)*] $($rest)* }
    };
    ([$($kept:tt)*] [$($opts:tt)*] #[$($a:tt)*] $($rest:tt)*) => {
        $crate::__sql_function! { [$($kept)* #[$($a)*]] [$($opts)*] $($rest)* }
    };
    ([$($attr:tt)*] [$($opts:tt)*]
     fn $name:ident($($arg:ident : $ty:ty $(= $default:literal)?),* $(,)?) -> $ret:ty $body:block) => {
        #[allow(missing_docs, non_snake_case)]
        #[doc = concat!("The SQL declaration of `", stringify!($name), "`.")]
        pub mod $name {
            #[allow(unused_imports)]
            use super::*;
            /// The `CREATE FUNCTION` statement's parts, for a library that creates its
            /// functions itself:
            ///
            /// ```text
            /// spi.execute(&name::DECLARATION.to_sql(&library_path, true), &[])?;
            /// ```
            pub const DECLARATION: $crate::sql::Declaration = $crate::sql::Declaration::function(
                stringify!($name),
                $crate::__sql_options!($($opts)*),
                &[$($crate::sql::Argument {
                    name: stringify!($arg),
                    sql_type: <$ty as $crate::sql::SignatureType>::SQL,
                    default: $crate::__sql_default!($($default)?),
                }),*],
                <$ret as $crate::sql::SignatureType>::SQL,
            );
        }

        const _: () = {
            const LEN: usize = $name::DECLARATION.record_len();
            #[used]
            #[export_name = concat!("bgworker_sql_", stringify!($name))]
            static RECORD: [u8; LEN] = $name::DECLARATION.record::<LEN>();

            #[export_name = concat!("pg_finfo_", stringify!($name))]
            extern "C" fn finfo() -> *const $crate::pg_sys::Pg_finfo_record {
                &$crate::fmgr::FINFO_V1
            }

            #[export_name = stringify!($name)]
            extern "C" fn call(fcinfo: $crate::pg_sys::FunctionCallInfo) -> $crate::pg_sys::Datum {
                $($attr)*
                #[allow(clippy::unnecessary_wraps)]
                fn body($($arg: $ty),*) -> $crate::Result<$ret> $body

                let run = || {
                    // SAFETY: PostgreSQL passes a valid fcinfo to every V1 function.
                    let mut call = unsafe { $crate::fmgr::Call::new(fcinfo, <[&str]>::len(&[$(stringify!($arg)),*]))? };
                    $( let $arg: $ty = call.arg()?; )*
                    call.ret(&body($($arg),*)?)
                };
                // SAFETY: PostgreSQL calls this function directly; the frame owns nothing.
                unsafe { $crate::entry::run_returning(run) }
            }
        };
    };
}

/// An argument's default: `None`, or the SQL text given.
#[doc(hidden)]
#[macro_export]
macro_rules! __sql_default {
    () => {
        None
    };
    ($default:literal) => {
        Some($default)
    };
}

/// Argument and result handling for [`sql_function!`](crate::sql_function!). Not for direct use.
#[doc(hidden)]
pub struct Call {
    fcinfo: pg_sys::FunctionCallInfo,
    next: usize,
    /// Makes this call the one `srf::RecordSet::for_current_call` finds, while it runs.
    _current: Option<crate::srf::CallScope>,
}

impl Call {
    /// # Safety
    /// `fcinfo` must be the call information PostgreSQL passed to a V1 function.
    pub unsafe fn new(fcinfo: pg_sys::FunctionCallInfo, rust_args: usize) -> Result<Call> {
        // SAFETY: guaranteed by the caller.
        let nargs = unsafe { (*fcinfo).nargs } as usize;
        if nargs != rust_args {
            return Err(Error::msg(format!(
                "the SQL declaration passes {nargs} arguments, the Rust function takes {rust_args}"
            )));
        }
        Ok(Call {
            fcinfo,
            next: 0,
            _current: Some(crate::srf::enter_call(fcinfo)),
        })
    }

    /// For returning a value from a function whose arguments are read otherwise (an
    /// aggregate's final function).
    ///
    /// # Safety
    /// As for [`Call::new`].
    pub(crate) unsafe fn result_of(fcinfo: pg_sys::FunctionCallInfo) -> Call {
        Call {
            fcinfo,
            next: 0,
            _current: Some(crate::srf::enter_call(std::ptr::null_mut())),
        }
    }

    fn arg_type(&self, index: usize) -> Result<Oid> {
        let (fcinfo, i) = (self.fcinfo, index as i32);
        // SAFETY: flinfo is valid for the call; returns InvalidOid when not known.
        let oid = guard(|| unsafe { pg_sys::get_fn_expr_argtype((*fcinfo).flinfo, i) })?;
        if oid != pg_sys::InvalidOid {
            return Ok(oid);
        }
        let mut types: *mut Oid = std::ptr::null_mut();
        let mut n = 0i32;
        let (t, c) = (&mut types as *mut *mut Oid, &mut n as *mut i32);
        // SAFETY: looks up the function's declared signature; out pointers valid.
        guard(|| unsafe {
            pg_sys::get_func_signature((*fcinfo).flinfo.as_ref().map_or(0, |f| f.fn_oid), t, c)
        })?;
        if index >= n as usize {
            return Err(Error::msg("argument type unknown"));
        }
        // SAFETY: `types` holds `n` entries.
        Ok(unsafe { *types.add(index) })
    }

    pub fn arg<T: FromSql>(&mut self) -> Result<T> {
        let index = self.next;
        self.next += 1;
        let oid = self.arg_type(index)?;
        if !T::accepts(oid) {
            return Err(crate::datum::wrong_type::<T>(oid).at(Position::Argument(index + 1)));
        }
        // SAFETY: `index` < nargs (checked in `new`); args is a flexible array of nargs.
        let arg = unsafe { *(*self.fcinfo).args.as_ptr().add(index) };
        // SAFETY: the Datum is of type `oid` unless NULL.
        unsafe { T::from_datum(arg.value, arg.isnull, oid) }
            .map_err(|e| e.at(Position::Argument(index + 1)))
    }

    /// The declared result type, resolved through domains to the type its values have.
    ///
    /// `expected` is the Rust value's type: when the call's expression says exactly that,
    /// the catalog is not consulted (the common case, on every call).
    fn declared_return_type(&self, expected: Oid) -> Result<Oid> {
        let fcinfo = self.fcinfo;
        // SAFETY: flinfo is valid for the call; returns InvalidOid when the call has no
        // expression (a direct call).
        let mut oid = guard(|| unsafe { pg_sys::get_fn_expr_rettype((*fcinfo).flinfo) })?;
        if oid == expected && oid != pg_sys::InvalidOid {
            return Ok(oid);
        }
        if oid == pg_sys::InvalidOid {
            // SAFETY: as above; fn_oid is the called function's OID.
            let fn_oid = unsafe { (*fcinfo).flinfo.as_ref().map_or(0, |f| f.fn_oid) };
            if fn_oid != pg_sys::InvalidOid {
                // SAFETY: a catalog lookup of an existing function.
                oid = guard(|| unsafe { pg_sys::get_func_rettype(fn_oid) })?;
            }
        }
        if oid == pg_sys::InvalidOid {
            return Err(Error::msg(
                "cannot tell the SQL result type this function was declared with",
            ));
        }
        // SAFETY: a catalog lookup; a type that is not a domain is returned as it is.
        Ok(guard(|| unsafe { pg_sys::getBaseType(oid) })?)
    }

    /// Returns `value` as the function's result, after checking that the SQL declaration's
    /// result type is the one the Rust value has: PostgreSQL would otherwise read the Datum
    /// as another type.
    pub fn ret<T: ToSql + ?Sized>(&self, value: &T) -> Result<Datum> {
        let given = value.sql_type();
        let declared = self.declared_return_type(given)?;
        // varchar is text's representation; text results are fine for it.
        let compatible =
            declared == given || (declared == pg_sys::VARCHAROID && given == pg_sys::TEXTOID);
        if !compatible {
            return Err(Error::conversion(format!(
                "the SQL declaration returns {}, but the Rust function returns {} ({})",
                crate::datum::type_name(declared),
                crate::datum::type_name(given),
                std::any::type_name::<T>()
            )));
        }
        match value.to_datum()? {
            Some(d) => Ok(d),
            None => {
                // SAFETY: setting the NULL flag of our own call.
                unsafe { (*self.fcinfo).isnull = true };
                Ok(0)
            }
        }
    }
}

// SAFETY: `void`'s Datum is ignored; 0 is what PG_RETURN_VOID returns.
unsafe impl ToSql for () {
    fn sql_type(&self) -> Oid {
        pg_sys::VOIDOID
    }
    fn to_datum(&self) -> Result<Option<Datum>> {
        Ok(Some(0))
    }
}
