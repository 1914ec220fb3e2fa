//! Custom configuration variables (`DefineCustom*Variable`).
//!
//! Declare a variable as a `static`, define it in `_PG_init`, read it anywhere with `get()`.
//! PostgreSQL owns the storage's updates: it writes the value when the configuration is
//! loaded or reloaded, always from the backend's single thread, and the variable is read
//! from that same thread.
//!
//! ```no_run
//! use bgworker::guc::{Context, GucInt, Unit};
//! static NAPTIME: GucInt = GucInt::new(c"my_ext.naptime", c"Seconds between rounds.", 10, 1, 3600)
//!     .context(Context::Sighup)
//!     .unit(Unit::Seconds);
//!
//! bgworker::pg_init!({
//!     NAPTIME.define()?;
//!     bgworker::guc::reserve_prefix(c"my_ext")
//! });
//! ```

use std::cell::UnsafeCell;
use std::ffi::{c_char, CStr};

use crate::error::Result;
use crate::guard::guard;
use crate::pg_sys;

/// Who may change a variable, and when it takes effect (`GucContext`).
///
/// ```
/// use bgworker::guc::{Context, GucBool};
/// static VERBOSE: GucBool = GucBool::new(c"my_ext.verbose", c"Log more.", false)
///     .context(Context::Superuser)
///     .long_desc(c"Logs every step.");
/// assert_eq!(VERBOSE.name(), "my_ext.verbose");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Context {
    /// Only at server start (`PGC_POSTMASTER`).
    Postmaster,
    /// In the configuration file; a reload (SIGHUP) applies it (`PGC_SIGHUP`).
    Sighup,
    /// At connection start (`PGC_BACKEND`).
    Backend,
    /// By superusers, also with `SET` (`PGC_SUSET`).
    Superuser,
    /// By anyone with `SET` (`PGC_USERSET`).
    User,
}

impl Context {
    fn to_pg(self) -> pg_sys::GucContext {
        match self {
            Context::Postmaster => pg_sys::GucContext_PGC_POSTMASTER,
            Context::Sighup => pg_sys::GucContext_PGC_SIGHUP,
            Context::Backend => pg_sys::GucContext_PGC_BACKEND,
            Context::Superuser => pg_sys::GucContext_PGC_SUSET,
            Context::User => pg_sys::GucContext_PGC_USERSET,
        }
    }
}

/// The unit of an integer or real variable, so users can write `'5min'` or `'64MB'`.
///
/// ```
/// use bgworker::guc::{GucInt, Unit};
/// static BUDGET: GucInt = GucInt::new(c"my_ext.budget", c"Memory budget.", 1024, 64, 1 << 20).unit(Unit::Kilobytes);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// No unit.
    None,
    /// Milliseconds.
    Milliseconds,
    /// Seconds.
    Seconds,
    /// Minutes.
    Minutes,
    /// Bytes.
    Bytes,
    /// Kilobytes.
    Kilobytes,
    /// Megabytes.
    Megabytes,
}

/// What every kind of variable has besides its value.
#[derive(Clone, Copy)]
struct Meta {
    name: &'static CStr,
    short_desc: &'static CStr,
    long_desc: Option<&'static CStr>,
    context: Context,
    flags: i32,
}

impl Meta {
    const fn new(name: &'static CStr, short_desc: &'static CStr) -> Meta {
        Meta {
            name,
            short_desc,
            long_desc: None,
            context: Context::User,
            flags: 0,
        }
    }

    fn long_desc_ptr(&self) -> *const c_char {
        self.long_desc.map_or(std::ptr::null(), CStr::as_ptr)
    }

    /// Whether defining the variable here would fail: PostgreSQL ends the session (FATAL)
    /// when a postmaster-context variable is defined after startup, which is what happens
    /// when a backend loads the library for its SQL functions. C libraries skip their
    /// definitions then; so does `define`, and `get` returns the default.
    fn skipped_here(&self) -> bool {
        // SAFETY: a plain server global, true in every process but the postmaster.
        let under_postmaster = unsafe { pg_sys::IsUnderPostmaster };
        matches!(self.context, Context::Postmaster)
            && !crate::entry::preloading()
            && under_postmaster
    }
}

/// What differs between the kinds of variable: the C variable PostgreSQL writes, the
/// parameters besides the common ones, and the `DefineCustom*Variable` call that takes them.
trait Kind: Sync + 'static {
    /// The C type of the variable (`int`, `double`, `bool`, `char *`).
    type Value: Copy;

    /// Refuses parameters PostgreSQL would misread; checked before anything is defined.
    fn validate(&self, _meta: &Meta) -> Result<()> {
        Ok(())
    }

    /// Defines the variable, which PostgreSQL stores into `*value` from then on.
    fn define(&'static self, meta: Meta, value: *mut Self::Value) -> Result<()>;
}

/// Calls `pg_sys::$function` with the common arguments around the kind's own (`default`
/// and the bounds or options), as every `DefineCustom*Variable` takes them, and no hooks.
macro_rules! define_custom {
    ($function:ident, $meta:expr, $value:expr, $($kind_arg:expr),+) => {{
        let (m, value): (Meta, _) = ($meta, $value);
        // SAFETY: the strings are static and the value is the storage of a `'static`
        // variable; PostgreSQL keeps the pointers and writes the value from this thread only.
        // Each kind's own arguments are plain values or, for an enum, a leaked table.
        guard(|| unsafe {
            pg_sys::$function(
                m.name.as_ptr(),
                m.short_desc.as_ptr(),
                m.long_desc_ptr(),
                value,
                $($kind_arg,)+
                m.context.to_pg(),
                m.flags,
                None,
                None,
                None,
            )
        })?;
        Ok(())
    }};
}

/// The state every kind of variable has: the common metadata, the kind's own parameters
/// and the storage PostgreSQL writes. The public types wrap one each.
struct Var<K: Kind> {
    meta: Meta,
    kind: K,
    value: UnsafeCell<K::Value>,
}

// SAFETY: the value is written only by PostgreSQL in the backend's single thread (see the
// module documentation; a string's pointer is owned and replaced by PostgreSQL); Rust code
// only reads it, from that thread (`read` asserts it). The metadata and the kind's
// parameters are immutable once built.
unsafe impl<K: Kind> Sync for Var<K> {}

impl<K: Kind> Var<K> {
    const fn new(meta: Meta, kind: K, initial: K::Value) -> Var<K> {
        Var {
            meta,
            kind,
            value: UnsafeCell::new(initial),
        }
    }

    /// The body of every `define`: checks, then defines unless this process must skip it.
    fn define(&'static self) -> Result<()> {
        self.kind.validate(&self.meta)?;
        if self.meta.skipped_here() {
            return Ok(());
        }
        self.kind.define(self.meta, self.value.get())
    }

    /// The value PostgreSQL last stored.
    fn read(&self) -> K::Value {
        crate::guard::assert_main_thread();
        // SAFETY: see the Sync impl; volatile because PostgreSQL writes it behind our back.
        unsafe { std::ptr::read_volatile(self.value.get()) }
    }
}

/// The parameters of an integer or real variable.
#[derive(Clone, Copy)]
struct Bounded<T> {
    default: T,
    min: T,
    max: T,
}

impl Kind for Bounded<i32> {
    type Value = i32;

    fn define(&'static self, m: Meta, value: *mut i32) -> Result<()> {
        let Bounded { default, min, max } = *self;
        define_custom!(DefineCustomIntVariable, m, value, default, min, max)
    }
}

impl Kind for Bounded<f64> {
    type Value = f64;

    fn define(&'static self, m: Meta, value: *mut f64) -> Result<()> {
        let Bounded { default, min, max } = *self;
        define_custom!(DefineCustomRealVariable, m, value, default, min, max)
    }
}

/// The parameter of a boolean variable: its default.
struct BoolKind(bool);

impl Kind for BoolKind {
    type Value = bool;

    fn define(&'static self, m: Meta, value: *mut bool) -> Result<()> {
        let default = self.0;
        define_custom!(DefineCustomBoolVariable, m, value, default)
    }
}

/// The parameter of a text variable: its default (`None` for NULL).
struct StringKind(Option<&'static CStr>);

impl Kind for StringKind {
    type Value = *mut c_char;

    fn define(&'static self, m: Meta, value: *mut *mut c_char) -> Result<()> {
        let default = self.0.map_or(std::ptr::null(), CStr::as_ptr);
        define_custom!(DefineCustomStringVariable, m, value, default)
    }
}

/// The parameters of an enumerated variable.
struct EnumKind {
    default: i32,
    options: &'static [(&'static CStr, i32)],
}

impl Kind for EnumKind {
    type Value = i32;

    fn validate(&self, meta: &Meta) -> Result<()> {
        if !self.options.iter().any(|(_, v)| *v == self.default) {
            return Err(crate::Error::msg(format!(
                "{}: the default is not one of the options",
                meta.name.to_str().unwrap_or("")
            )));
        }
        Ok(())
    }

    fn define(&'static self, m: Meta, value: *mut i32) -> Result<()> {
        // PostgreSQL keeps the table for the life of the process: leak one copy, once.
        let table: Vec<pg_sys::config_enum_entry> = self
            .options
            .iter()
            .map(|(name, value)| pg_sys::config_enum_entry {
                name: name.as_ptr(),
                val: *value,
                hidden: false,
            })
            .chain(std::iter::once(pg_sys::config_enum_entry {
                name: std::ptr::null(),
                val: 0,
                hidden: false,
            }))
            .collect();
        let table: &'static [pg_sys::config_enum_entry] = Box::leak(table.into_boxed_slice());
        let (default, options) = (self.default, table.as_ptr());
        define_custom!(DefineCustomEnumVariable, m, value, default, options)
    }
}

/// The methods every public variable type has, over its [`Var`].
macro_rules! common_methods {
    () => {
        /// Sets who may change the variable (default: [`Context::User`]).
        pub const fn context(mut self, context: Context) -> Self {
            self.0.meta.context = context;
            self
        }

        /// Sets the long description shown by `SHOW ALL` and the docs.
        pub const fn long_desc(mut self, long_desc: &'static CStr) -> Self {
            self.0.meta.long_desc = Some(long_desc);
            self
        }

        /// The variable's full name.
        pub fn name(&self) -> &'static str {
            self.0.meta.name.to_str().unwrap_or("")
        }

        /// Registers the variable with PostgreSQL. Call once, from `_PG_init`. A
        /// postmaster-context variable is only defined while preloading (elsewhere PostgreSQL
        /// would end the session).
        pub fn define(&'static self) -> Result<()> {
            self.0.define()
        }
    };
}

/// The `unit` builder of the numeric variables.
macro_rules! unit_method {
    () => {
        /// Sets the unit (so `'5min'` works for a seconds variable).
        pub const fn unit(mut self, unit: Unit) -> Self {
            self.0.meta.flags = unit_flags(unit);
            self
        }
    };
}

/// An integer variable (`DefineCustomIntVariable`).
///
/// ```
/// static WORKERS: bgworker::guc::GucInt =
///     bgworker::guc::GucInt::new(c"my_ext.workers", c"How many workers.", 2, 1, 100);
/// ```
pub struct GucInt(Var<Bounded<i32>>);

impl GucInt {
    /// A variable with a default and inclusive bounds.
    pub const fn new(
        name: &'static CStr,
        short_desc: &'static CStr,
        default: i32,
        min: i32,
        max: i32,
    ) -> GucInt {
        let kind = Bounded { default, min, max };
        GucInt(Var::new(Meta::new(name, short_desc), kind, default))
    }

    common_methods!();
    unit_method!();

    /// The current value.
    pub fn get(&self) -> i32 {
        self.0.read()
    }
}

const fn unit_flags(unit: Unit) -> i32 {
    match unit {
        Unit::None => 0,
        Unit::Milliseconds => pg_sys::GUC_UNIT_MS as i32,
        Unit::Seconds => pg_sys::GUC_UNIT_S as i32,
        Unit::Minutes => pg_sys::GUC_UNIT_MIN as i32,
        Unit::Bytes => pg_sys::GUC_UNIT_BYTE as i32,
        Unit::Kilobytes => pg_sys::GUC_UNIT_KB as i32,
        Unit::Megabytes => pg_sys::GUC_UNIT_MB as i32,
    }
}

/// A floating-point variable (`DefineCustomRealVariable`).
///
/// ```
/// static L2: bgworker::guc::GucReal =
///     bgworker::guc::GucReal::new(c"my_ext.l2", c"Penalty.", 1.0, 0.0, 1e6);
/// ```
pub struct GucReal(Var<Bounded<f64>>);

impl GucReal {
    /// A variable with a default and inclusive bounds.
    pub const fn new(
        name: &'static CStr,
        short_desc: &'static CStr,
        default: f64,
        min: f64,
        max: f64,
    ) -> GucReal {
        let kind = Bounded { default, min, max };
        GucReal(Var::new(Meta::new(name, short_desc), kind, default))
    }

    common_methods!();
    unit_method!();

    /// The current value.
    pub fn get(&self) -> f64 {
        self.0.read()
    }
}

/// A boolean variable (`DefineCustomBoolVariable`).
///
/// ```
/// static ENABLED: bgworker::guc::GucBool =
///     bgworker::guc::GucBool::new(c"my_ext.enabled", c"Whether to run.", true);
/// ```
pub struct GucBool(Var<BoolKind>);

impl GucBool {
    /// A variable with a default.
    pub const fn new(name: &'static CStr, short_desc: &'static CStr, default: bool) -> GucBool {
        GucBool(Var::new(
            Meta::new(name, short_desc),
            BoolKind(default),
            default,
        ))
    }

    common_methods!();

    /// The current value.
    pub fn get(&self) -> bool {
        self.0.read()
    }
}

/// A text variable (`DefineCustomStringVariable`).
///
/// ```
/// static DATABASE: bgworker::guc::GucString =
///     bgworker::guc::GucString::new(c"my_ext.database", c"Database to connect to.", Some(c"postgres"));
/// ```
pub struct GucString(Var<StringKind>);

impl GucString {
    /// A variable with a default (`None` for NULL, shown as empty).
    pub const fn new(
        name: &'static CStr,
        short_desc: &'static CStr,
        default: Option<&'static CStr>,
    ) -> GucString {
        GucString(Var::new(
            Meta::new(name, short_desc),
            StringKind(default),
            std::ptr::null_mut(),
        ))
    }

    common_methods!();

    /// The current value; `None` when unset (NULL) or empty.
    pub fn get(&self) -> Option<String> {
        let ptr = self.0.read();
        if ptr.is_null() {
            return None;
        }
        // SAFETY: a non-NULL pointer is a NUL-terminated string owned by PostgreSQL, valid
        // until the next configuration change, and we copy it at once.
        let text = unsafe { crate::cstr::copy_cstring(ptr) };
        (!text.is_empty()).then_some(text)
    }
}

/// An enumerated variable (`DefineCustomEnumVariable`): one of a fixed set of names, read
/// as the number paired with the name.
///
/// ```
/// static IMPUTE: bgworker::guc::GucEnum = bgworker::guc::GucEnum::new(
///     c"my_ext.impute", c"How to fill missing values.", 0,
///     &[(c"mean", 0), (c"none", 1)],
/// );
/// ```
pub struct GucEnum(Var<EnumKind>);

impl GucEnum {
    /// A variable with a default value (one of the options' numbers) and its options.
    pub const fn new(
        name: &'static CStr,
        short_desc: &'static CStr,
        default: i32,
        options: &'static [(&'static CStr, i32)],
    ) -> GucEnum {
        let kind = EnumKind { default, options };
        GucEnum(Var::new(Meta::new(name, short_desc), kind, default))
    }

    common_methods!();

    /// The current value's number.
    pub fn get(&self) -> i32 {
        self.0.read()
    }

    /// The current value's name.
    pub fn get_name(&self) -> &'static str {
        let v = self.get();
        self.0
            .kind
            .options
            .iter()
            .find(|(_, n)| *n == v)
            .and_then(|(name, _)| name.to_str().ok())
            .unwrap_or("")
    }
}

/// Reserves a prefix: settings `prefix.anything` that no extension defined are reported
/// (from 15 on they are also removed, `MarkGUCPrefixReserved`; 14 warns,
/// `EmitWarningsOnPlaceholders`).
///
/// ```no_run
/// bgworker::guc::reserve_prefix(c"my_ext")?;
/// # Ok::<(), bgworker::Error>(())
/// ```
pub fn reserve_prefix(prefix: &'static CStr) -> Result<()> {
    let p = prefix.as_ptr();
    #[cfg(pg14)]
    // SAFETY: the prefix is a static NUL-terminated string.
    guard(|| unsafe { pg_sys::EmitWarningsOnPlaceholders(p) })?;
    #[cfg(not(pg14))]
    // SAFETY: as above.
    guard(|| unsafe { pg_sys::MarkGUCPrefixReserved(p) })?;
    Ok(())
}

/// Sets any configuration variable for this session (`SET name = value`), with PostgreSQL's
/// own checks.
///
/// ```no_run
/// bgworker::guc::set("application_name", "my worker")?;
/// # Ok::<(), bgworker::Error>(())
/// ```
pub fn set(name: &str, value: &str) -> Result<()> {
    let name = crate::cstr::to_cstring(name, "setting name")?;
    let value = crate::cstr::to_cstring(value, "setting value")?;
    let (n, v) = (name.as_ptr(), value.as_ptr());
    // SAFETY: both strings outlive the call; PostgreSQL copies them.
    guard(|| unsafe {
        pg_sys::SetConfigOption(
            n,
            v,
            pg_sys::GucContext_PGC_USERSET,
            pg_sys::GucSource_PGC_S_SESSION,
        )
    })?;
    Ok(())
}
