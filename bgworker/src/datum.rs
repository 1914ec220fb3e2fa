//! Converting between Rust values and PostgreSQL Datums: [`ToSql`] and [`FromSql`].
//!
//! Each Rust type reads exactly the SQL types it can hold without loss:
//!
//! | Rust | SQL |
//! |---|---|
//! | `bool` | `boolean` |
//! | `i16`, `i32`, `i64` | `smallint`, `integer`, `bigint` |
//! | `f32`, `f64` | `real`, `double precision` |
//! | `u32` | `oid` |
//! | `String`, `&str` | `text` (and, for reading, `varchar`, `char(n)`, `name`) |
//! | [`Numeric`] | `numeric`, kept as its exact decimal text |
//! | `Vec<u8>`, `&[u8]` | `bytea` |
//! | `Vec<T>`, `&[T]` | one-dimensional arrays of the above (`Vec<Option<T>>` for NULL elements) |
//! | `Option<T>` | NULL or a value |
//!
//! Reading a value as a type that cannot hold it is an error naming both types; cast in SQL
//! (`SELECT n::float8`) when a lossy conversion is what you want.
//!
//! ```no_run
//! use bgworker::datum::Numeric;
//! bgworker::xact::transaction(|spi| {
//!     let (exact, tags): (Numeric, Vec<Option<String>>) =
//!         spi.query_one("SELECT $1::numeric * 2, ARRAY['a', NULL]", &[&Numeric::new("0.1")])?;
//!     assert_eq!(exact.as_str(), "0.2");
//!     Ok(())
//! })?;
//! # Ok::<(), bgworker::Error>(())
//! ```

use std::ffi::c_char;

use crate::cstr::{copy_cstring, take_palloc_cstring, to_cstring};
use crate::error::{Error, Result};
use crate::guard::guard;
use crate::pg_sys::{self, Datum};

/// An object identifier (a role's, a type's, a table's): PostgreSQL's `Oid`.
pub use crate::pg_sys::Oid;

/// A Rust value that can be passed to PostgreSQL as a statement parameter or function result.
///
/// ```no_run
/// use bgworker::datum::ToSql;
/// let n: &dyn ToSql = &42i32;
/// assert_eq!(n.sql_type(), bgworker::pg_sys::INT4OID);
/// ```
///
/// # Safety
/// PostgreSQL reads the Datum as a value of `sql_type()`: `to_datum` must return exactly that
/// type's representation (by value, or a pointer to a valid palloc'd value of it) or `None`.
/// A Datum of another shape makes the server read arbitrary memory, which is why the trait is
/// `unsafe` to implement. The implementations here cover the types in the
/// [module documentation](self); convert other Rust types into one of those.
///
/// ```compile_fail
/// // Safe code cannot hand PostgreSQL a Datum of its own making.
/// struct Celsius(f64);
/// impl bgworker::datum::ToSql for Celsius {
///     fn sql_type(&self) -> bgworker::pg_sys::Oid { bgworker::pg_sys::TEXTOID }
///     fn to_datum(&self) -> bgworker::Result<Option<bgworker::pg_sys::Datum>> { Ok(Some(1)) }
/// }
/// ```
pub unsafe trait ToSql {
    /// The SQL type's OID.
    fn sql_type(&self) -> Oid;
    /// The Datum, or `None` for NULL. Values passed by reference are allocated in the
    /// current memory context.
    fn to_datum(&self) -> Result<Option<Datum>>;
}

/// A Rust value that can be read from a Datum of a given SQL type.
///
/// ```no_run
/// use bgworker::datum::FromSql;
/// assert!(<i64 as FromSql>::accepts(bgworker::pg_sys::INT8OID));
/// assert!(!<i64 as FromSql>::accepts(bgworker::pg_sys::INT4OID));
/// ```
///
/// # Safety
/// `from_datum` is called with Datums of every type `accepts` accepts, and must read them as
/// what they are: accepting a type whose representation `from_datum` does not read correctly
/// makes it read arbitrary memory.
pub unsafe trait FromSql: Sized {
    /// Whether a Datum of SQL type `oid` can be read as this type.
    fn accepts(oid: Oid) -> bool;
    /// The SQL type(s) this type reads, for error messages (for example `integer`).
    fn sql_name() -> String;
    /// Reads the value. `oid` has been checked with [`FromSql::accepts`]; `is_null` tells
    /// whether the Datum is NULL (only `Option<T>` accepts that).
    ///
    /// # Safety
    /// Unless `is_null`, `datum` must be a valid Datum of type `oid`.
    unsafe fn from_datum(datum: Datum, is_null: bool, oid: Oid) -> Result<Self>;
}

/// A SQL type with a fixed OID, usable as an array element and inside `Option`.
///
/// ```
/// use bgworker::datum::SqlType;
/// assert_eq!(i32::OID, 23);
/// assert_eq!(String::OID, 25);
/// assert_eq!(f64::NAME, "double precision");
/// ```
///
/// # Safety
/// `OID` must be the type every value's [`ToSql::sql_type`] reports.
pub unsafe trait SqlType {
    /// The type's OID.
    const OID: Oid;
    /// The type's name in SQL declarations (`integer`, `double precision`); for an array,
    /// its element's.
    const NAME: &'static str;
    /// Whether the type is an array of `NAME`.
    const ARRAY: bool = false;
}

macro_rules! sql_type {
    ($($t:ty => $oid:expr, $name:literal;)*) => {
        // SAFETY: the OID each of these types' ToSql reports.
        $(unsafe impl SqlType for $t { const OID: Oid = $oid; const NAME: &'static str = $name; })*
    };
}
sql_type! {
    bool => pg_sys::BOOLOID, "boolean";
    i16 => pg_sys::INT2OID, "smallint";
    i32 => pg_sys::INT4OID, "integer";
    i64 => pg_sys::INT8OID, "bigint";
    crate::time::Timestamp => pg_sys::TIMESTAMPTZOID, "timestamp with time zone";
    f32 => pg_sys::FLOAT4OID, "real";
    f64 => pg_sys::FLOAT8OID, "double precision";
    u32 => pg_sys::OIDOID, "oid";
    String => pg_sys::TEXTOID, "text";
    &str => pg_sys::TEXTOID, "text";
    Numeric => pg_sys::NUMERICOID, "numeric";
    Vec<u8> => pg_sys::BYTEAOID, "bytea";
    &[u8] => pg_sys::BYTEAOID, "bytea";
}

fn null_error<T>() -> Error {
    Error::conversion(format!(
        "unexpected NULL for Rust type {}; read it as Option<...>",
        std::any::type_name::<T>()
    ))
}

/// The conversion error for a value of SQL type `oid` that `T` does not accept (the caller
/// adds the position).
pub(crate) fn wrong_type<T: FromSql>(oid: Oid) -> Error {
    Error::conversion(format!(
        "type {} cannot be read as Rust type {}, which reads {}",
        type_name(oid),
        std::any::type_name::<T>(),
        T::sql_name()
    ))
}

macro_rules! by_value {
    ($t:ty, $oid:expr, $name:literal, |$d:ident| $from:expr, |$v:ident| $to:expr) => {
        // SAFETY: a by-value Datum of the type's own width.
        unsafe impl ToSql for $t {
            fn sql_type(&self) -> Oid {
                $oid
            }
            fn to_datum(&self) -> Result<Option<Datum>> {
                let $v = *self;
                Ok(Some($to))
            }
        }
        // SAFETY: accepts exactly the type it reads by value.
        unsafe impl FromSql for $t {
            fn accepts(oid: Oid) -> bool {
                oid == $oid
            }
            fn sql_name() -> String {
                $name.to_string()
            }
            unsafe fn from_datum($d: Datum, is_null: bool, _oid: Oid) -> Result<Self> {
                if is_null {
                    return Err(null_error::<$t>());
                }
                Ok($from)
            }
        }
    };
}

by_value!(bool, pg_sys::BOOLOID, "boolean", |d| d != 0, |v| v as Datum);
by_value!(i16, pg_sys::INT2OID, "smallint", |d| d as i16, |v| v
    as Datum);
by_value!(i32, pg_sys::INT4OID, "integer", |d| d as i32, |v| v as u32
    as Datum);
by_value!(i64, pg_sys::INT8OID, "bigint", |d| d as i64, |v| v as Datum);
by_value!(u32, pg_sys::OIDOID, "oid", |d| d as u32, |v| v as Datum);
by_value!(
    crate::time::Timestamp,
    pg_sys::TIMESTAMPTZOID,
    "timestamp with time zone",
    |d| crate::time::Timestamp::from_micros(d as i64),
    |v| v.micros() as Datum
);
by_value!(
    f32,
    pg_sys::FLOAT4OID,
    "real",
    |d| f32::from_bits(d as u32),
    |v| v.to_bits() as Datum
);
by_value!(
    f64,
    pg_sys::FLOAT8OID,
    "double precision",
    |d| f64::from_bits(d as u64),
    |v| v.to_bits() as Datum
);

/// A `numeric` value, kept exactly as PostgreSQL prints it (`"3.14159265358979323846"`,
/// `"NaN"`), so nothing is lost on the way through Rust.
///
/// ```
/// use bgworker::datum::Numeric;
/// let n = Numeric::new("12345678901234567890.123456789");
/// assert_eq!(n.as_str(), "12345678901234567890.123456789");
/// assert_eq!(Numeric::new("2.5").to_f64(), Some(2.5));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Numeric(String);

impl Numeric {
    /// A numeric from its decimal text; PostgreSQL validates it when it is used.
    pub fn new(text: impl Into<String>) -> Numeric {
        Numeric(text.into())
    }

    /// The decimal text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The nearest `f64`, when the text parses as one.
    pub fn to_f64(&self) -> Option<f64> {
        self.0.parse().ok()
    }
}

impl std::fmt::Display for Numeric {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

// SAFETY: returns a palloc'd value of the type it reports (or forwards to one that does).
unsafe impl ToSql for Numeric {
    fn sql_type(&self) -> Oid {
        pg_sys::NUMERICOID
    }
    fn to_datum(&self) -> Result<Option<Datum>> {
        let text = to_cstring(&self.0, "numeric")?;
        let arg = text.as_ptr() as Datum;
        // SAFETY: numeric_in(cstring, typioparam, typmod) with a valid C string; invalid text
        // raises an ERROR that guard returns.
        let d = guard(|| unsafe {
            pg_sys::DirectFunctionCall3Coll(
                Some(pg_sys::numeric_in),
                pg_sys::InvalidOid,
                arg,
                pg_sys::InvalidOid as Datum,
                -1i32 as u32 as Datum,
            )
        })?;
        Ok(Some(d))
    }
}

// SAFETY: reads exactly the types it accepts (varlenas, arrays, or forwards).
unsafe impl FromSql for Numeric {
    fn accepts(oid: Oid) -> bool {
        oid == pg_sys::NUMERICOID
    }
    fn sql_name() -> String {
        "numeric".to_string()
    }
    unsafe fn from_datum(datum: Datum, is_null: bool, _oid: Oid) -> Result<Self> {
        if is_null {
            return Err(null_error::<Self>());
        }
        // SAFETY: `datum` is a numeric (checked by the caller); numeric_out returns a
        // palloc'd C string.
        let out = guard(|| unsafe {
            pg_sys::DirectFunctionCall1Coll(Some(pg_sys::numeric_out), pg_sys::InvalidOid, datum)
        })?;
        // SAFETY: numeric_out's result is a palloc'd C string.
        Ok(Numeric(unsafe { take_palloc_cstring(out as *mut c_char) }))
    }
}

/// A varlena (text, bytea) Datum holding `bytes`, palloc'd in the current memory context.
fn varlena_datum(bytes: &[u8]) -> Result<Datum> {
    let (ptr, len) = (bytes.as_ptr() as *const c_char, bytes.len() as i32);
    // SAFETY: cstring_to_text_with_len copies `len` bytes into a new varlena; text and bytea
    // share the representation.
    let d = guard(|| unsafe { pg_sys::cstring_to_text_with_len(ptr, len) })?;
    Ok(d as Datum)
}

/// The bytes of a varlena Datum (detoasted if needed), copied into Rust.
///
/// # Safety
/// `datum` must be a valid varlena Datum.
unsafe fn varlena_bytes(datum: Datum) -> Result<Vec<u8>> {
    let raw = datum as *mut pg_sys::varlena;
    // SAFETY: a valid varlena; detoasting may read TOAST tables and can raise an ERROR.
    let plain = guard(|| unsafe { pg_sys::pg_detoast_datum_packed(raw) })?;
    // SAFETY: `plain` is an untoasted varlena now.
    let bytes = unsafe {
        let len = pg_sys::pgsys_varsize_any_exhdr(plain.cast());
        let data = pg_sys::pgsys_vardata_any(plain.cast());
        std::slice::from_raw_parts(data as *const u8, len).to_vec()
    };
    if plain != raw {
        // SAFETY: detoasting made a palloc'd copy that nothing else references.
        unsafe { pg_sys::pfree(plain.cast()) };
    }
    Ok(bytes)
}

// SAFETY: returns a palloc'd value of the type it reports (or forwards to one that does).
unsafe impl ToSql for str {
    fn sql_type(&self) -> Oid {
        pg_sys::TEXTOID
    }
    fn to_datum(&self) -> Result<Option<Datum>> {
        varlena_datum(self.as_bytes()).map(Some)
    }
}

// SAFETY: returns a palloc'd value of the type it reports (or forwards to one that does).
unsafe impl ToSql for &str {
    fn sql_type(&self) -> Oid {
        pg_sys::TEXTOID
    }
    fn to_datum(&self) -> Result<Option<Datum>> {
        varlena_datum(self.as_bytes()).map(Some)
    }
}

// SAFETY: returns a palloc'd value of the type it reports (or forwards to one that does).
unsafe impl ToSql for String {
    fn sql_type(&self) -> Oid {
        pg_sys::TEXTOID
    }
    fn to_datum(&self) -> Result<Option<Datum>> {
        varlena_datum(self.as_bytes()).map(Some)
    }
}

// SAFETY: reads exactly the types it accepts (varlenas, arrays, or forwards).
unsafe impl FromSql for String {
    fn accepts(oid: Oid) -> bool {
        matches!(
            oid,
            pg_sys::TEXTOID | pg_sys::VARCHAROID | pg_sys::BPCHAROID | pg_sys::NAMEOID
        )
    }
    fn sql_name() -> String {
        "text, varchar, char or name".to_string()
    }
    unsafe fn from_datum(datum: Datum, is_null: bool, oid: Oid) -> Result<Self> {
        if is_null {
            return Err(null_error::<Self>());
        }
        if oid == pg_sys::NAMEOID {
            // SAFETY: a name Datum points at a NUL-terminated NameData.
            return Ok(unsafe { copy_cstring(datum as *const c_char) });
        }
        // SAFETY: text-like types are varlenas.
        let bytes = unsafe { varlena_bytes(datum) }?;
        String::from_utf8(bytes)
            .map_err(|e| Error::conversion(format!("text is not valid UTF-8: {e}")))
    }
}

// SAFETY: returns a palloc'd value of the type it reports (or forwards to one that does).
unsafe impl ToSql for [u8] {
    fn sql_type(&self) -> Oid {
        pg_sys::BYTEAOID
    }
    fn to_datum(&self) -> Result<Option<Datum>> {
        varlena_datum(self).map(Some)
    }
}

// SAFETY: returns a palloc'd value of the type it reports (or forwards to one that does).
unsafe impl ToSql for &[u8] {
    fn sql_type(&self) -> Oid {
        pg_sys::BYTEAOID
    }
    fn to_datum(&self) -> Result<Option<Datum>> {
        varlena_datum(self).map(Some)
    }
}

// SAFETY: returns a palloc'd value of the type it reports (or forwards to one that does).
unsafe impl ToSql for Vec<u8> {
    fn sql_type(&self) -> Oid {
        pg_sys::BYTEAOID
    }
    fn to_datum(&self) -> Result<Option<Datum>> {
        varlena_datum(self).map(Some)
    }
}

// SAFETY: reads exactly the types it accepts (varlenas, arrays, or forwards).
unsafe impl FromSql for Vec<u8> {
    fn accepts(oid: Oid) -> bool {
        oid == pg_sys::BYTEAOID
    }
    fn sql_name() -> String {
        "bytea".to_string()
    }
    unsafe fn from_datum(datum: Datum, is_null: bool, _oid: Oid) -> Result<Self> {
        if is_null {
            return Err(null_error::<Self>());
        }
        // SAFETY: bytea is a varlena.
        unsafe { varlena_bytes(datum) }
    }
}

// SAFETY: returns a palloc'd value of the type it reports (or forwards to one that does).
unsafe impl<T: ToSql + SqlType> ToSql for Option<T> {
    fn sql_type(&self) -> Oid {
        T::OID
    }
    fn to_datum(&self) -> Result<Option<Datum>> {
        match self {
            Some(v) => v.to_datum(),
            None => Ok(None),
        }
    }
}

// SAFETY: reads exactly the types it accepts (varlenas, arrays, or forwards).
unsafe impl<T: FromSql> FromSql for Option<T> {
    fn accepts(oid: Oid) -> bool {
        T::accepts(oid)
    }
    fn sql_name() -> String {
        T::sql_name()
    }
    unsafe fn from_datum(datum: Datum, is_null: bool, oid: Oid) -> Result<Self> {
        if is_null {
            Ok(None)
        } else {
            // SAFETY: forwarded from the caller.
            unsafe { T::from_datum(datum, false, oid) }.map(Some)
        }
    }
}

/// An array element type: a base type or `Option` of one (for NULL elements).
///
/// ```
/// use bgworker::datum::ArrayElement;
/// assert_eq!(<Option<i64> as ArrayElement>::ELEMENT_OID, 20);
/// ```
///
/// # Safety
/// `ELEMENT_OID` must be the type of every non-NULL Datum the element's `to_datum` returns.
pub unsafe trait ArrayElement: ToSql {
    /// The element's SQL type.
    const ELEMENT_OID: Oid;
    /// The element type's SQL name.
    const ELEMENT_NAME: &'static str;
}

// SAFETY: SqlType's OID is the type of its values.
unsafe impl<T: ToSql + SqlType> ArrayElement for T {
    const ELEMENT_OID: Oid = T::OID;
    const ELEMENT_NAME: &'static str = T::NAME;
}

// SAFETY: as above; None is a NULL element.
unsafe impl<T: ToSql + SqlType> ArrayElement for Option<T> {
    const ELEMENT_OID: Oid = T::OID;
    const ELEMENT_NAME: &'static str = T::NAME;
}

pub(crate) struct TypeLayout {
    len: i16,
    pub(crate) by_val: bool,
    align: c_char,
}

/// A type's length, by-value flag and alignment, from the catalog.
pub(crate) fn type_layout(oid: Oid) -> Result<TypeLayout> {
    let mut layout = TypeLayout {
        len: 0,
        by_val: false,
        align: 0,
    };
    let (len, by_val, align) = (
        &mut layout.len as *mut i16,
        &mut layout.by_val as *mut bool,
        &mut layout.align as *mut c_char,
    );
    // SAFETY: the out pointers are valid for the call; an unknown type raises an ERROR.
    guard(|| unsafe { pg_sys::get_typlenbyvalalign(oid, len, by_val, align) })?;
    Ok(layout)
}

fn array_to_datum<T: ArrayElement>(items: &[T]) -> Result<Option<Datum>> {
    let element = T::ELEMENT_OID;
    // SAFETY: a catalog lookup that raises an ERROR only on catalog corruption.
    let array_type = guard(|| unsafe { pg_sys::get_array_type(element) })?;
    if array_type == pg_sys::InvalidOid {
        return Err(Error::conversion(format!(
            "type {element} has no array type"
        )));
    }
    let layout = type_layout(element)?;
    let mut values = Vec::with_capacity(items.len());
    let mut nulls = Vec::with_capacity(items.len());
    for item in items {
        match item.to_datum()? {
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
    let mut dims = [items.len() as i32];
    let mut lbs = [1i32];
    let (v, n, d, l) = (
        values.as_mut_ptr(),
        nulls.as_mut_ptr(),
        dims.as_mut_ptr(),
        lbs.as_mut_ptr(),
    );
    // SAFETY: the arrays have `items.len()` entries and outlive the call, which copies them.
    let array = guard(|| unsafe {
        pg_sys::construct_md_array(
            v,
            n,
            1,
            d,
            l,
            element,
            layout.len as i32,
            layout.by_val,
            layout.align,
        )
    })?;
    Ok(Some(array as Datum))
}

// SAFETY: returns a palloc'd value of the type it reports (or forwards to one that does).
unsafe impl<T: ArrayElement> ToSql for [T] {
    fn sql_type(&self) -> Oid {
        array_oid(T::ELEMENT_OID)
    }
    fn to_datum(&self) -> Result<Option<Datum>> {
        array_to_datum(self)
    }
}

// SAFETY: returns a palloc'd value of the type it reports (or forwards to one that does).
unsafe impl<T: ArrayElement> ToSql for &[T] {
    fn sql_type(&self) -> Oid {
        array_oid(T::ELEMENT_OID)
    }
    fn to_datum(&self) -> Result<Option<Datum>> {
        array_to_datum(self)
    }
}

/// Arrays of every element type with a Rust counterpart; the catalog would say the same
/// (`get_array_type`), but parameters need the OID before a transaction may exist.
const fn array_oid(element: Oid) -> Oid {
    match element {
        pg_sys::BOOLOID => pg_sys::BOOLARRAYOID,
        pg_sys::INT2OID => pg_sys::INT2ARRAYOID,
        pg_sys::INT4OID => pg_sys::INT4ARRAYOID,
        pg_sys::INT8OID => pg_sys::INT8ARRAYOID,
        pg_sys::FLOAT4OID => pg_sys::FLOAT4ARRAYOID,
        pg_sys::FLOAT8OID => pg_sys::FLOAT8ARRAYOID,
        pg_sys::OIDOID => pg_sys::OIDARRAYOID,
        pg_sys::TEXTOID => pg_sys::TEXTARRAYOID,
        pg_sys::NUMERICOID => pg_sys::NUMERICARRAYOID,
        pg_sys::BYTEAOID => pg_sys::BYTEAARRAYOID,
        _ => pg_sys::InvalidOid,
    }
}

/// `Vec<T>` reads a one-dimensional array (or an empty one); `Vec<u8>` is `bytea` instead.
///
/// ```no_run
/// let ids: Vec<i32> = bgworker::xact::within_current(|spi| spi.query_one("SELECT '{1,2}'::int4[]", &[]))?;
/// # Ok::<(), bgworker::Error>(())
/// ```
pub trait ArrayFromSql: FromSql {}
impl ArrayFromSql for bool {}
impl ArrayFromSql for i16 {}
impl ArrayFromSql for i32 {}
impl ArrayFromSql for i64 {}
impl ArrayFromSql for f32 {}
impl ArrayFromSql for f64 {}
impl ArrayFromSql for u32 {}
impl ArrayFromSql for String {}
impl ArrayFromSql for Numeric {}
impl ArrayFromSql for Vec<u8> {}
impl<T: ArrayFromSql> ArrayFromSql for Option<T> {}

// SAFETY: returns a palloc'd value of the type it reports (or forwards to one that does).
unsafe impl<T: ArrayFromSql> ToSql for Vec<T>
where
    T: ArrayElement,
{
    fn sql_type(&self) -> Oid {
        array_oid(T::ELEMENT_OID)
    }
    fn to_datum(&self) -> Result<Option<Datum>> {
        array_to_datum(self)
    }
}

// SAFETY: the array type of the element, as `Vec<T>`'s ToSql reports.
unsafe impl<T: ArrayFromSql + ArrayElement> SqlType for Vec<T> {
    const OID: Oid = array_oid(T::ELEMENT_OID);
    const NAME: &'static str = T::ELEMENT_NAME;
    const ARRAY: bool = true;
}

// SAFETY: reads exactly the types it accepts (varlenas, arrays, or forwards).
unsafe impl<T: ArrayFromSql> FromSql for Vec<T> {
    fn accepts(oid: Oid) -> bool {
        // SAFETY: a syscache lookup; unknown OIDs give InvalidOid rather than an ERROR.
        let element =
            guard(|| unsafe { pg_sys::get_element_type(oid) }).unwrap_or(pg_sys::InvalidOid);
        element != pg_sys::InvalidOid && T::accepts(element)
    }
    fn sql_name() -> String {
        format!("{}[]", T::sql_name())
    }
    unsafe fn from_datum(datum: Datum, is_null: bool, oid: Oid) -> Result<Self> {
        if is_null {
            return Err(null_error::<Self>());
        }
        // SAFETY: as in `accepts`.
        let element = guard(|| unsafe { pg_sys::get_element_type(oid) })?;
        let layout = type_layout(element)?;
        let raw = datum as *mut pg_sys::varlena;
        // SAFETY: an array Datum is a varlena; detoasting may raise an ERROR.
        let array = guard(|| unsafe { pg_sys::pg_detoast_datum(raw) })? as *mut pg_sys::ArrayType;
        // SAFETY: `array` is a detoasted ArrayType.
        let ndim = unsafe { (*array).ndim };
        if ndim > 1 {
            return Err(Error::conversion(format!(
                "array has {ndim} dimensions; Vec<{}> reads one",
                std::any::type_name::<T>()
            )));
        }
        let mut values: *mut Datum = std::ptr::null_mut();
        let mut nulls: *mut bool = std::ptr::null_mut();
        let mut count: i32 = 0;
        let (v, n, c) = (
            &mut values as *mut _,
            &mut nulls as *mut _,
            &mut count as *mut i32,
        );
        // SAFETY: out pointers valid for the call; the layout matches the element type.
        guard(|| unsafe {
            pg_sys::deconstruct_array(
                array,
                element,
                layout.len as i32,
                layout.by_val,
                layout.align,
                v,
                n,
                c,
            )
        })?;
        let mut out = Vec::with_capacity(count as usize);
        for i in 0..count as usize {
            // SAFETY: deconstruct_array filled `count` entries in both arrays.
            let (d, null) = unsafe { (*values.add(i), *nulls.add(i)) };
            // SAFETY: each element is a valid Datum of type `element` unless NULL.
            out.push(unsafe { T::from_datum(d, null, element) }.map_err(|e| e.in_element(i + 1))?);
        }
        Ok(out)
    }
}

/// The SQL name of a type, as `format_type_be` prints it (`integer`, `text[]`).
///
/// ```no_run
/// assert_eq!(bgworker::datum::type_name(23), "integer");
/// ```
pub fn type_name(oid: Oid) -> String {
    // SAFETY: format_type_be returns a palloc'd string, also for unknown OIDs.
    match guard(|| unsafe { pg_sys::format_type_be(oid) }) {
        // SAFETY: palloc'd C string.
        Ok(p) => unsafe { take_palloc_cstring(p) },
        Err(_) => format!("type {oid}"),
    }
}
