//! SQL declarations written from the Rust code: no hand-written `CREATE FUNCTION`.
//!
//! [`sql_function!`](crate::sql_function!) and [`sql_aggregate!`](crate::sql_aggregate!)
//! know each function's SQL signature (argument and result types from the Rust types,
//! strictness from whether any argument is an `Option`, and the [`Options`] given). At
//! compile time they render the `CREATE` statement and store it in the library as a
//! *record*: a string `\0BGWSQL1|<order>|<name>|<statement>\0` in a symbol the library
//! exports. The install script is then read out of the built `.so`, with no program to
//! build or run:
//!
//! ```text
//! tr '\0' '\n' < libmy_ext.so | sed -n 's/^BGWSQL1|//p' | LC_ALL=C sort | cut -d'|' -f3-
//! ```
//!
//! which is what `bgworker/pgxs.mk`'s `bgw_sql` does (`make sql` in this repository and in
//! the starter template), splicing the result into the hand-written parts of the script.
//!
//! ```no_run
//! bgworker::sql_function! {
//!     #[sql(immutable, parallel_safe)]
//!     fn add_one(x: i32) -> i32 {
//!         x.checked_add(1).ok_or_else(|| bgworker::Error::msg("integer out of range"))
//!     }
//! }
//! // The library now carries:
//! // CREATE FUNCTION "add_one"("x" integer) RETURNS integer
//! //   AS 'MODULE_PATHNAME', 'add_one' LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE;
//! ```

use crate::datum::SqlType;

/// The marker that starts every declaration record in a library.
///
/// ```
/// assert_eq!(bgworker::sql::RECORD_MARKER, "BGWSQL1|");
/// ```
pub const RECORD_MARKER: &str = "BGWSQL1|";

/// How a Rust argument or result type is spelled in a SQL declaration.
///
/// Implemented for every [`SqlType`], for `Option` of one (a nullable argument: the function
/// is then not `STRICT`), for `Vec` of one (an array), and for `()` (`void`).
///
/// ```
/// use bgworker::sql::SignatureType;
/// assert_eq!(<Option<i64> as SignatureType>::SQL.name(), "bigint");
/// assert!(<Option<i64> as SignatureType>::SQL.nullable());
/// assert!(<Vec<String> as SignatureType>::SQL.array());
/// ```
pub trait SignatureType {
    /// The spelling.
    const SQL: TypeSpelling;
}

/// A type as a declaration writes it: a name, maybe `[]`, maybe NULL.
///
/// ```
/// let t = <Vec<Option<f64>> as bgworker::sql::SignatureType>::SQL;
/// assert_eq!((t.name(), t.array(), t.nullable()), ("double precision", true, false));
/// ```
#[derive(Clone, Copy, Debug)]
pub struct TypeSpelling {
    name: &'static str,
    array: bool,
    nullable: bool,
}

impl TypeSpelling {
    /// The SQL name of the type (of the element, for an array).
    pub const fn name(&self) -> &'static str {
        self.name
    }
    /// Whether it is an array of `name`.
    pub const fn array(&self) -> bool {
        self.array
    }
    /// Whether the Rust type takes NULL (`Option`).
    pub const fn nullable(&self) -> bool {
        self.nullable
    }
    /// A type by its SQL name (`internal`, for aggregate support functions).
    #[doc(hidden)]
    pub const fn named(name: &'static str) -> TypeSpelling {
        TypeSpelling::of(name)
    }
    const fn of(name: &'static str) -> TypeSpelling {
        TypeSpelling {
            name,
            array: false,
            nullable: false,
        }
    }
}

impl<T: SqlType> SignatureType for T {
    const SQL: TypeSpelling = TypeSpelling {
        array: T::ARRAY,
        ..TypeSpelling::of(T::NAME)
    };
}

impl<T: SqlType> SignatureType for Option<T> {
    const SQL: TypeSpelling = TypeSpelling {
        nullable: true,
        ..<T as SignatureType>::SQL
    };
}

impl SignatureType for () {
    const SQL: TypeSpelling = TypeSpelling::of("void");
}

/// What a declaration says besides the types: the SQL name and schema, volatility, parallel
/// safety. Written inside `#[sql(...)]` in the macros, as a list of these methods' names:
/// `#[sql(stable, parallel_safe, schema = "@extschema@", name = "wake")]`.
///
/// ```
/// const O: bgworker::sql::Options = bgworker::sql::Options::new().stable().parallel_safe();
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Options {
    name: Option<&'static str>,
    schema: Option<&'static str>,
    volatility: &'static str,
    parallel: &'static str,
    in_script: bool,
}

impl Options {
    /// PostgreSQL's defaults: `VOLATILE`, `PARALLEL UNSAFE`, named like the Rust function.
    pub const fn new() -> Options {
        Options {
            name: None,
            schema: None,
            volatility: "VOLATILE",
            parallel: "UNSAFE",
            in_script: true,
        }
    }
    /// The SQL name, when it differs from the Rust name (which stays the C symbol).
    pub const fn name(self, name: &'static str) -> Options {
        Options {
            name: Some(name),
            ..self
        }
    }
    /// The schema to create it in: a name, or `@extschema@` for the extension's schema.
    pub const fn schema(self, schema: &'static str) -> Options {
        Options {
            schema: Some(schema),
            ..self
        }
    }
    /// `IMMUTABLE`: same arguments, same result, no database access.
    pub const fn immutable(self) -> Options {
        Options {
            volatility: "IMMUTABLE",
            ..self
        }
    }
    /// `STABLE`: same result within a statement.
    pub const fn stable(self) -> Options {
        Options {
            volatility: "STABLE",
            ..self
        }
    }
    /// `PARALLEL SAFE`: may run in parallel workers.
    pub const fn parallel_safe(self) -> Options {
        Options {
            parallel: "SAFE",
            ..self
        }
    }
    /// `PARALLEL RESTRICTED`: runs only in the parallel group's leader.
    pub const fn parallel_restricted(self) -> Options {
        Options {
            parallel: "RESTRICTED",
            ..self
        }
    }
    /// Left out of the install script: the library creates it itself at run time (with
    /// [`Declaration::to_sql`]), as a worker does for objects it manages.
    pub const fn created_at_run_time(self) -> Options {
        Options {
            in_script: false,
            ..self
        }
    }
    /// The same options without a SQL name (an aggregate's support functions are named
    /// after their C symbols, whatever the aggregate is called).
    #[doc(hidden)]
    pub const fn unnamed(self) -> Options {
        Options { name: None, ..self }
    }

    /// Whether the declaration goes into the install script.
    pub const fn in_script(&self) -> bool {
        self.in_script
    }
}

impl Default for Options {
    fn default() -> Options {
        Options::new()
    }
}

/// One argument: its name, type and SQL default.
#[doc(hidden)]
#[derive(Clone, Copy, Debug)]
pub struct Argument {
    pub name: &'static str,
    pub sql_type: TypeSpelling,
    pub default: Option<&'static str>,
}

/// What a declaration creates.
#[derive(Clone, Copy, Debug)]
enum Kind {
    /// A function: typed arguments, a result type.
    Function {
        args: &'static [Argument],
        returns: TypeSpelling,
    },
    /// An aggregate's support function: arguments as SQL text (`internal`, `"any"`); only
    /// the aggregate's owner needs to run it, so PUBLIC may not.
    Support {
        args: &'static str,
        returns: TypeSpelling,
        strict: bool,
    },
    /// A composite type, declared before the functions that use it.
    Composite { fields: &'static [Argument] },
    /// An aggregate over its support functions (already declared under the C symbols).
    Aggregate {
        args: &'static str,
        transition: &'static str,
        finish: &'static str,
        parallel: Option<(&'static str, &'static str, &'static str)>,
    },
}

/// A `CREATE FUNCTION` or `CREATE AGGREGATE` statement, as the macros describe it. Rendered
/// at compile time into the library's declaration records, and at run time by
/// [`Declaration::to_sql`].
///
/// ```no_run
/// bgworker::sql_function! {
///     #[sql(created_at_run_time)]
///     fn made_by_the_worker() -> i32 { Ok(1) }
/// }
/// // In the worker: run the statement with the library's path.
/// # let library = String::new();
/// let sql = made_by_the_worker::DECLARATION.to_sql(&library, true);
/// assert!(sql.starts_with("CREATE OR REPLACE FUNCTION"));
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Declaration {
    symbol: &'static str,
    options: Options,
    kind: Kind,
}

impl Declaration {
    /// A function with typed arguments (what [`sql_function!`](crate::sql_function!) uses).
    #[doc(hidden)]
    pub const fn function(
        symbol: &'static str,
        options: Options,
        args: &'static [Argument],
        returns: TypeSpelling,
    ) -> Declaration {
        Declaration {
            symbol,
            options,
            kind: Kind::Function { args, returns },
        }
    }

    /// A composite type of these fields (what [`composite_type!`](crate::composite_type!)
    /// uses).
    #[doc(hidden)]
    pub const fn composite(
        symbol: &'static str,
        options: Options,
        fields: &'static [Argument],
    ) -> Declaration {
        Declaration {
            symbol,
            options,
            kind: Kind::Composite { fields },
        }
    }

    /// An aggregate's support function, `args` in SQL.
    #[doc(hidden)]
    pub const fn support(
        symbol: &'static str,
        options: Options,
        args: &'static str,
        returns: TypeSpelling,
        strict: bool,
    ) -> Declaration {
        Declaration {
            symbol,
            options,
            kind: Kind::Support {
                args,
                returns,
                strict,
            },
        }
    }

    /// An aggregate with state type `internal`; `transition`, `finish` and the parallel
    /// triple (combine, serial, deserial) are the SQL names of its support functions.
    #[doc(hidden)]
    pub const fn aggregate(
        symbol: &'static str,
        options: Options,
        args: &'static str,
        transition: &'static str,
        finish: &'static str,
        parallel: Option<(&'static str, &'static str, &'static str)>,
    ) -> Declaration {
        Declaration {
            symbol,
            options,
            kind: Kind::Aggregate {
                args,
                transition,
                finish,
                parallel,
            },
        }
    }

    /// The statement, with `module_pathname` for the library (quoted here) or, if empty,
    /// `'MODULE_PATHNAME'` (what extension scripts say); `or_replace` for a library that
    /// creates its functions itself and must update them after a reinstall. Aggregates are
    /// never `OR REPLACE`d (check their existence first).
    pub fn to_sql(&self, module_pathname: &str, or_replace: bool) -> String {
        let style = Style {
            module_pathname,
            or_replace,
            record: false,
        };
        let mut buf = vec![0u8; self.render(&mut [], style)];
        self.render(&mut buf, style);
        String::from_utf8(buf).expect("declarations are UTF-8")
    }

    /// The SQL name, qualified by the schema if one was given (unquoted).
    pub fn qualified_name(&self) -> String {
        match self.options.schema {
            Some(schema) => format!("{schema}.{}", self.sql_name()),
            None => self.sql_name().to_string(),
        }
    }

    /// Whether it creates an aggregate (which `CREATE OR REPLACE` cannot update).
    pub const fn is_aggregate(&self) -> bool {
        matches!(self.kind, Kind::Aggregate { .. })
    }

    /// The options it was declared with.
    pub const fn options(&self) -> Options {
        self.options
    }

    /// The SQL name (unquoted, without the schema).
    pub const fn name(&self) -> &'static str {
        self.sql_name()
    }

    const fn sql_name(&self) -> &'static str {
        match self.options.name {
            Some(name) => name,
            None => strip_raw(self.symbol),
        }
    }

    /// The record's length in bytes (for the static array that holds it).
    #[doc(hidden)]
    pub const fn record_len(&self) -> usize {
        if !self.options.in_script {
            return 0;
        }
        self.render(&mut [], Style::RECORD)
    }

    /// The record, as the library stores it.
    #[doc(hidden)]
    pub const fn record<const N: usize>(&self) -> [u8; N] {
        let mut out = [0u8; N];
        if !self.options.in_script {
            return out;
        }
        self.check();
        let written = self.render(&mut out, Style::RECORD);
        assert!(written == N, "record length mismatch");
        out
    }

    /// Fails the build on text the install script's line-based extraction cannot carry (a
    /// newline or NUL anywhere, `|` in the name) or on a name PostgreSQL would truncate.
    const fn check(&self) {
        check_text(self.symbol, true);
        check_text(self.sql_name(), true);
        if let Some(schema) = self.options.schema {
            check_text(schema, true);
        }
        match self.kind {
            Kind::Function { args, .. } => {
                let mut i = 0;
                while i < args.len() {
                    check_text(args[i].name, true);
                    if let Some(default) = args[i].default {
                        check_text(default, false);
                    }
                    i += 1;
                }
            }
            Kind::Composite { fields } => {
                let mut i = 0;
                while i < fields.len() {
                    check_text(fields[i].name, true);
                    i += 1;
                }
            }
            Kind::Support { args, .. } | Kind::Aggregate { args, .. } => check_text(args, false),
        }
    }

    /// Writes the statement into `out` as far as it fits; returns its full length.
    const fn render(&self, out: &mut [u8], style: Style) -> usize {
        let mut w = Writer { out, len: 0 };
        if style.record {
            w.push("\0");
            w.push(RECORD_MARKER);
            w.push(match self.kind {
                Kind::Composite { .. } => "0|",
                Kind::Aggregate { .. } => "2|",
                _ => "1|",
            });
            w.push(self.sql_name());
            w.push("|");
        }
        match self.kind {
            Kind::Composite { .. } => w.push("CREATE TYPE "),
            Kind::Aggregate { .. } => w.push("CREATE AGGREGATE "),
            _ if style.or_replace => w.push("CREATE OR REPLACE FUNCTION "),
            _ => w.push("CREATE FUNCTION "),
        }
        self.in_schema(&mut w, self.sql_name());
        match self.kind {
            Kind::Function { args, returns } => {
                w.push("(");
                let mut i = 0;
                let mut strict = true;
                while i < args.len() {
                    if i > 0 {
                        w.push(", ");
                    }
                    w.quoted(strip_raw(args[i].name));
                    w.push(" ");
                    w.sql_type(args[i].sql_type);
                    if let Some(default) = args[i].default {
                        w.push(" DEFAULT ");
                        w.push(default);
                    }
                    strict = strict && !args[i].sql_type.nullable;
                    i += 1;
                }
                w.push(") RETURNS ");
                w.sql_type(returns);
                // With no arguments there is nothing to be NULL; say nothing.
                self.c_body(&mut w, style, strict && !args.is_empty());
            }
            Kind::Composite { fields } => {
                w.push(" AS (");
                let mut i = 0;
                while i < fields.len() {
                    if i > 0 {
                        w.push(", ");
                    }
                    w.quoted(strip_raw(fields[i].name));
                    w.push(" ");
                    w.sql_type(fields[i].sql_type);
                    i += 1;
                }
                w.push(");");
            }
            Kind::Support {
                args,
                returns,
                strict,
            } => {
                w.push("(");
                w.push(args);
                w.push(") RETURNS ");
                w.sql_type(returns);
                self.c_body(&mut w, style, strict);
                w.push(" REVOKE ALL ON FUNCTION ");
                self.in_schema(&mut w, self.sql_name());
                w.push("(");
                w.push(args);
                w.push(") FROM PUBLIC;");
            }
            Kind::Aggregate {
                args,
                transition,
                finish,
                parallel,
            } => {
                w.push("(");
                w.push(args);
                w.push(") (SFUNC = ");
                self.in_schema(&mut w, transition);
                w.push(", STYPE = internal, FINALFUNC = ");
                self.in_schema(&mut w, finish);
                // `finish(&mut self)` may change the state: PostgreSQL must not call it
                // again on the same state (a moving window frame).
                w.push(", FINALFUNC_MODIFY = READ_WRITE");
                if let Some((combine, serial, deserial)) = parallel {
                    w.push(", COMBINEFUNC = ");
                    self.in_schema(&mut w, combine);
                    w.push(", SERIALFUNC = ");
                    self.in_schema(&mut w, serial);
                    w.push(", DESERIALFUNC = ");
                    self.in_schema(&mut w, deserial);
                }
                w.push(", PARALLEL = ");
                w.push(self.options.parallel);
                w.push(");");
            }
        }
        if style.record {
            w.push("\0");
        }
        w.len
    }

    /// A name in the declaration's schema.
    const fn in_schema(&self, w: &mut Writer, name: &str) {
        if let Some(schema) = self.options.schema {
            // `@extschema@` is replaced by CREATE EXTENSION; any other schema is a name.
            if str_eq(schema, "@extschema@") {
                w.push(schema);
            } else {
                w.quoted(schema);
            }
            w.push(".");
        }
        w.quoted(name);
    }

    /// ` AS 'path', 'symbol' LANGUAGE c ...;`
    const fn c_body(&self, w: &mut Writer, style: Style, strict: bool) {
        w.push(" AS ");
        if style.module_pathname.is_empty() {
            w.push("'MODULE_PATHNAME'");
        } else {
            w.literal(style.module_pathname);
        }
        w.push(", '");
        w.push(self.symbol);
        w.push("' LANGUAGE c ");
        w.push(self.options.volatility);
        if strict {
            w.push(" STRICT");
        }
        w.push(" PARALLEL ");
        w.push(self.options.parallel);
        w.push(";");
    }
}

#[derive(Clone, Copy)]
struct Style<'a> {
    module_pathname: &'a str,
    or_replace: bool,
    record: bool,
}

impl Style<'static> {
    const RECORD: Style<'static> = Style {
        module_pathname: "",
        or_replace: false,
        record: true,
    };
}

/// Appends to a byte buffer at compile time; counts what does not fit (so a first pass
/// with an empty buffer measures).
struct Writer<'a> {
    out: &'a mut [u8],
    len: usize,
}

impl Writer<'_> {
    const fn byte(&mut self, b: u8) {
        if self.len < self.out.len() {
            self.out[self.len] = b;
        }
        self.len += 1;
    }

    const fn push(&mut self, s: &str) {
        let bytes = s.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            self.byte(bytes[i]);
            i += 1;
        }
    }

    /// `s` doubled inside `quote`s.
    const fn enclosed(&mut self, s: &str, quote: u8) {
        self.byte(quote);
        let bytes = s.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == quote {
                self.byte(quote);
            }
            self.byte(bytes[i]);
            i += 1;
        }
        self.byte(quote);
    }

    /// An identifier, always quoted: a Rust name may be a SQL keyword (`user`, `limit`).
    const fn quoted(&mut self, s: &str) {
        self.enclosed(s, b'"')
    }

    /// A string literal; `E'...'` with doubled backslashes when it has any, so that it
    /// reads the same whatever `standard_conforming_strings` says.
    const fn literal(&mut self, s: &str) {
        let bytes = s.as_bytes();
        let mut backslash = false;
        let mut i = 0;
        while i < bytes.len() {
            backslash = backslash || bytes[i] == b'\\';
            i += 1;
        }
        if !backslash {
            return self.enclosed(s, b'\'');
        }
        self.push("E'");
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'\'' || bytes[i] == b'\\' {
                self.byte(bytes[i]);
            }
            self.byte(bytes[i]);
            i += 1;
        }
        self.byte(b'\'');
    }

    const fn sql_type(&mut self, t: TypeSpelling) {
        self.push(t.name);
        if t.array {
            self.push("[]");
        }
    }
}

/// Panics (at compile time, where records are rendered) on text a declaration cannot hold.
const fn check_text(text: &str, name: bool) {
    let bytes = text.as_bytes();
    assert!(!name || bytes.len() < 64, "a SQL name is at most 63 bytes");
    let mut i = 0;
    while i < bytes.len() {
        assert!(
            bytes[i] != b'\n' && bytes[i] != 0,
            "a declaration cannot contain a newline or NUL"
        );
        assert!(
            !name || bytes[i] != b'|',
            "a SQL name in a declaration cannot contain '|'"
        );
        i += 1;
    }
}

const fn str_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// `r#type` is `type` in SQL.
const fn strip_raw(name: &'static str) -> &'static str {
    match name.as_bytes() {
        [b'r', b'#', rest @ ..] => match std::str::from_utf8(rest) {
            Ok(s) => s,
            Err(_) => name,
        },
        _ => name,
    }
}

/// Turns `#[sql(a, b = x)]` into `Options::new().a().b(x)` (stray commas, as when two
/// `#[sql(...)]` attributes are joined, are fine).
#[doc(hidden)]
#[macro_export]
macro_rules! __sql_options {
    (@acc [$($acc:tt)*]) => {
        $crate::sql::Options::new() $($acc)*
    };
    (@acc [$($acc:tt)*] , $($rest:tt)*) => {
        $crate::__sql_options!(@acc [$($acc)*] $($rest)*)
    };
    (@acc [$($acc:tt)*] $key:ident = $value:expr $(, $($rest:tt)*)?) => {
        $crate::__sql_options!(@acc [$($acc)* .$key($value)] $($($rest)*)?)
    };
    (@acc [$($acc:tt)*] $key:ident $(, $($rest:tt)*)?) => {
        $crate::__sql_options!(@acc [$($acc)* .$key()] $($($rest)*)?)
    };
    ($($options:tt)*) => {
        $crate::__sql_options!(@acc [] $($options)*)
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARGS: &[Argument] = &[Argument {
        name: "limit",
        sql_type: TypeSpelling::of("integer"),
        default: Some("10"),
    }];

    #[test]
    fn names_are_quoted_and_literals_survive_any_string_setting() {
        let options = Options::new().schema("my schema").stable();
        let d = Declaration::function("f", options, ARGS, TypeSpelling::of("text"));
        assert_eq!(
            d.to_sql("C:\\pg\\lib's", true),
            "CREATE OR REPLACE FUNCTION \"my schema\".\"f\"(\"limit\" integer DEFAULT 10) \
             RETURNS text AS E'C:\\\\pg\\\\lib''s', 'f' LANGUAGE c STABLE STRICT PARALLEL UNSAFE;"
        );
        let ext = Declaration::function(
            "g",
            Options::new().schema("@extschema@"),
            &[],
            TypeSpelling::of("void"),
        );
        assert!(ext
            .to_sql("", false)
            .starts_with("CREATE FUNCTION @extschema@.\"g\"() RETURNS void AS 'MODULE_PATHNAME'"));
    }

    #[test]
    fn records_carry_their_order_and_name() {
        const D: Declaration =
            Declaration::function("h", Options::new(), &[], TypeSpelling::of("void"));
        const LEN: usize = D.record_len();
        let record = D.record::<LEN>();
        assert!(record.starts_with(b"\0BGWSQL1|1|h|CREATE FUNCTION \"h\"()"));
        assert!(record.ends_with(b";\0"));
    }
}
