//! SQL-callable functions: datum conversions through fmgr and through SPI, errors, quoting.

use bgworker::datum::Numeric;
use bgworker::prelude::*;
use bgworker::Position;

macro_rules! echo {
    ($($name:ident, $spi_name:ident: $t:ty;)*) => {$(
        bgworker::sql_function! {
            fn $name(value: $t) -> $t {
                Ok(value)
            }
        }
        bgworker::sql_function! {
            fn $spi_name(value: $t) -> $t {
                xact::within_current(|spi| spi.query_one::<$t>("SELECT $1", &[&value]))
            }
        }
    )*};
}

echo! {
    echo_bool, spi_echo_bool: bool;
    echo_int2, spi_echo_int2: i16;
    echo_int4, spi_echo_int4: i32;
    echo_int8, spi_echo_int8: i64;
    echo_float4, spi_echo_float4: f32;
    echo_float8, spi_echo_float8: f64;
    echo_oid, spi_echo_oid: u32;
    echo_text, spi_echo_text: String;
    echo_numeric, spi_echo_numeric: Numeric;
    echo_bytea, spi_echo_bytea: Vec<u8>;
    echo_int4_array, spi_echo_int4_array: Vec<Option<i32>>;
    echo_text_array, spi_echo_text_array: Vec<Option<String>>;
    echo_float8_array, spi_echo_float8_array: Vec<f64>;
    echo_numeric_array, spi_echo_numeric_array: Vec<Numeric>;
    echo_nullable_int8, spi_echo_nullable_int8: Option<i64>;
}

/// A row read into a struct by a hand-written FromRow.
struct Pair {
    id: i32,
    label: Option<String>,
}

impl FromRow for Pair {
    fn from_row(row: &Row) -> Result<Self> {
        Ok(Pair {
            id: row.get(0)?,
            label: row.get(1)?,
        })
    }
}

bgworker::sql_function! {
    /// Reads `SELECT id, label` rows of a query into structs and formats them.
    fn read_pairs(sql: String) -> String {
        let pairs: Vec<Pair> = xact::within_current(|spi| spi.query(&sql, &[]))?;
        Ok(pairs
            .iter()
            .map(|p| format!("{}={}", p.id, p.label.as_deref().unwrap_or("NULL")))
            .collect::<Vec<_>>()
            .join(","))
    }
}

bgworker::sql_function! {
    /// Reads the first column of a query as int4: a clear error for other types.
    fn read_as_int4(sql: String) -> Option<i32> {
        xact::within_current(|spi| spi.query_opt::<i32>(&sql, &[]))
    }
}

bgworker::sql_function! {
    /// Reads a query's rows as `(int4, float8[])` and says where a conversion error was,
    /// from the error's fields (not its message): `column N name`, then `, element N` for a
    /// value inside the array.
    fn conversion_error_at(sql: String) -> String {
        match xact::within_current(|spi| spi.query::<(i32, Vec<f64>)>(&sql, &[])) {
            Ok(rows) => Ok(format!("{} rows", rows.len())),
            Err(Error::Conversion {
                at: Some(Position::Column { number, name }),
                element,
                ..
            }) => Ok(match element {
                Some(e) => format!("column {number} {name}, element {e}"),
                None => format!("column {number} {name}"),
            }),
            Err(Error::Conversion { at, .. }) => Ok(format!("elsewhere: {at:?}")),
            Err(e) => Err(e),
        }
    }
}

bgworker::sql_function! {
    fn quote_ident_rs(ident: String) -> String {
        spi::quote_identifier(&ident)
    }
}

bgworker::sql_function! {
    fn quote_literal_rs(value: String) -> String {
        spi::quote_literal(&value)
    }
}

bgworker::sql_function! {
    /// Raises an ERROR with the given SQLSTATE, message and hint.
    fn fail_with(code: String, message: String) -> () {
        let state = SqlState::new(&code).ok_or_else(|| Error::msg(format!("bad SQLSTATE {code:?}")))?;
        Err(PgError::new(state, message).with_hint("raised by fail_with").into())
    }
}

bgworker::sql_function! {
    /// Panics with the given message.
    fn panic_with(message: String) -> () {
        panic!("{message}");
    }
}

bgworker::sql_function! {
    /// Runs a statement inside a subtransaction and reports whether it failed; the calling
    /// transaction goes on either way.
    fn try_statement(sql: String) -> String {
        xact::within_current(|spi| match spi.subtransaction(|spi| spi.execute(&sql, &[])) {
            Ok(n) => Ok(format!("ok {n}")),
            Err(e) => Ok(format!("failed {}", e.sqlstate())),
        })
    }
}

// Declarations: a SQL name, options and a default; arguments named like SQL keywords.
bgworker::sql_function! {
    #[sql(name = "add_step")]
    #[sql(immutable, parallel_safe)]
    fn add_with_default(x: i32, step: i32 = "1") -> i32 {
        x.checked_add(step).ok_or_else(|| Error::msg("integer out of range"))
    }
}

bgworker::sql_function! {
    fn keyword_args(user: String, limit: i32, r#type: Option<String>) -> String {
        Ok(format!("{user}/{limit}/{}", r#type.as_deref().unwrap_or("none")))
    }
}

bgworker::composite_type! {
    /// A number and, for some, its name.
    #[sql(name = "numbered")]
    pub struct Numbered {
        pub n: i32,
        pub name: Option<String>,
    }
}

bgworker::sql_function! {
    /// `n` and its name, when it has one.
    fn numbered(n: i32) -> Numbered {
        let name = (n == 3).then(|| "three".to_string());
        Ok(Numbered { n, name })
    }
}
