//! The passes over a table as SQL aggregates, so that the executor feeds rows straight to
//! the solver (no SPI result sets), and PostgreSQL's parallel workers can share a pass:
//!
//! * `alps.qr(VARIADIC "any")`: the R factor of `[1, columns]` over the complete rows,
//!   returned as float8[] `{rows, skipped, R...}`;
//! * `alps.irls(float8[] spec, VARIADIC "any")`: one weighted IRLS pass, returned as
//!   `{deviance, extreme, rows, R...}`.
//!
//! Partial states combine by stacking their R factors (another QR), so the aggregates are
//! parallel safe. The columns must be float8 (the worker casts them).

use std::ffi::c_void;

use alps_models::logistic::{WeightSpec, WeightedAccumulator};
use alps_models::Triangle;
use bgworker::datum::{FromSql, ToSql};
use bgworker::pg_sys::{self, Datum, FunctionCallInfo};
use bgworker::{Error, Result};

/// Rows buffered before a QR update.
const BUFFER_ROWS: usize = 1024;

enum Pass {
    Plain {
        triangle: Triangle,
        buffer: Vec<f64>,
        buffered: usize,
    },
    Weighted(WeightedAccumulator),
}

/// An aggregate's state, owned by Rust and freed with the aggregate's memory context.
struct State {
    columns: usize,
    skipped: u64,
    row: Vec<f64>,
    pass: Pass,
}

impl State {
    fn plain(columns: usize) -> State {
        State {
            columns,
            skipped: 0,
            row: vec![0.0; columns],
            pass: Pass::Plain {
                triangle: Triangle::new(columns + 1),
                buffer: vec![0.0; BUFFER_ROWS * (columns + 1)],
                buffered: 0,
            },
        }
    }

    fn weighted(columns: usize, spec: WeightSpec) -> State {
        State {
            columns,
            skipped: 0,
            row: vec![0.0; columns],
            pass: Pass::Weighted(WeightedAccumulator::new(spec)),
        }
    }

    fn add_row(&mut self) {
        match &mut self.pass {
            Pass::Plain {
                triangle,
                buffer,
                buffered,
            } => {
                let width = self.columns + 1;
                let out = &mut buffer[*buffered * width..(*buffered + 1) * width];
                out[0] = 1.0;
                out[1..].copy_from_slice(&self.row);
                *buffered += 1;
                if *buffered == BUFFER_ROWS {
                    flush(triangle, buffer, buffered, width);
                }
            }
            Pass::Weighted(acc) => acc.add(&self.row),
        }
    }

    fn merge(&mut self, other: &mut State) {
        self.skipped += other.skipped;
        match (&mut self.pass, &mut other.pass) {
            (
                Pass::Plain {
                    triangle: a,
                    buffer: ab,
                    buffered: an,
                },
                Pass::Plain {
                    triangle: b,
                    buffer: bb,
                    buffered: bn,
                },
            ) => {
                let width = self.columns + 1;
                flush(a, ab, an, width);
                flush(b, bb, bn, width);
                a.merge(b);
            }
            (Pass::Weighted(a), Pass::Weighted(b)) => a.merge(b),
            _ => {}
        }
    }

    fn result(self) -> Vec<f64> {
        match self.pass {
            Pass::Plain {
                mut triangle,
                buffer,
                mut buffered,
            } => {
                let width = self.columns + 1;
                let mut buffer = buffer;
                flush(&mut triangle, &mut buffer, &mut buffered, width);
                let mut v = vec![triangle.rows() as f64, self.skipped as f64];
                v.extend(triangle.to_vec());
                v
            }
            Pass::Weighted(acc) => acc.to_vec(),
        }
    }
}

fn flush(triangle: &mut Triangle, buffer: &mut [f64], buffered: &mut usize, width: usize) {
    if *buffered > 0 {
        let rows =
            ndarray::ArrayView2::from_shape((*buffered, width), &buffer[..*buffered * width])
                .expect("buffer shape");
        triangle.add(rows);
        *buffered = 0;
    }
}

extern "C" fn free_state(arg: *mut c_void) {
    // SAFETY: registered once per state with the Box's pointer; runs when the aggregate's
    // memory context is reset or deleted.
    drop(unsafe { Box::from_raw(arg as *mut State) });
}

/// The aggregate's memory context, or an error outside an aggregate.
///
/// # Safety
/// `fcinfo` must be the call information of the current call.
unsafe fn aggregate_context(fcinfo: FunctionCallInfo) -> Result<pg_sys::MemoryContext> {
    let mut context: pg_sys::MemoryContext = std::ptr::null_mut();
    let out = &mut context as *mut pg_sys::MemoryContext;
    // SAFETY: a plain query of the call context.
    let kind = bgworker::guard(|| unsafe { pg_sys::AggCheckCallContext(fcinfo, out) })?;
    if kind == 0 {
        return Err(Error::msg(
            "alps aggregate support function called outside an aggregate",
        ));
    }
    Ok(context)
}

/// Moves `state` into a Box whose life ends with `context`.
///
/// # Safety
/// `context` must be the aggregate's memory context.
unsafe fn keep(context: pg_sys::MemoryContext, state: State) -> Result<*mut State> {
    let ptr = Box::into_raw(Box::new(state));
    let size = std::mem::size_of::<pg_sys::MemoryContextCallback>();
    // SAFETY: allocating the callback record in the context it watches, as PostgreSQL requires.
    let callback = bgworker::guard(|| unsafe { pg_sys::MemoryContextAlloc(context, size) })?
        as *mut pg_sys::MemoryContextCallback;
    // SAFETY: `callback` is fresh memory of the right size; registration cannot fail.
    unsafe {
        (*callback).func = Some(free_state);
        (*callback).arg = ptr as *mut c_void;
        (*callback).next = std::ptr::null_mut();
        pg_sys::MemoryContextRegisterResetCallback(context, callback);
    }
    Ok(ptr)
}

/// # Safety
/// `fcinfo` must be the call information of an `alps.qr`/`alps.irls` transition call.
unsafe fn step(fcinfo: FunctionCallInfo, weighted: bool) -> Result<Datum> {
    // SAFETY: forwarded from the caller for the whole function.
    unsafe {
        let context = aggregate_context(fcinfo)?;
        let nargs = (*fcinfo).nargs as usize;
        let args = (*fcinfo).args.as_ptr();
        let first = if weighted { 2 } else { 1 };
        let columns = nargs.saturating_sub(first);
        let state = if (*args).isnull {
            for i in first..nargs {
                let (flinfo, n) = ((*fcinfo).flinfo, i as i32);
                // SAFETY: inspects the call's expression tree, which can raise an ERROR.
                let oid = bgworker::guard(|| pg_sys::get_fn_expr_argtype(flinfo, n))?;
                if oid != pg_sys::FLOAT8OID {
                    return Err(Error::msg("alps aggregates take double precision columns"));
                }
            }
            let state = if weighted {
                let spec_arg = *args.add(1);
                let values = <Vec<f64> as FromSql>::from_datum(
                    spec_arg.value,
                    spec_arg.isnull,
                    pg_sys::FLOAT8ARRAYOID,
                )?;
                let spec = WeightSpec::from_slice(&values)
                    .ok_or_else(|| Error::msg("bad alps.irls specification"))?;
                State::weighted(columns, spec)
            } else {
                State::plain(columns)
            };
            keep(context, state)?
        } else {
            (*args).value as *mut State
        };
        let s = &mut *state;
        let mut complete = true;
        for c in 0..columns {
            let a = *args.add(first + c);
            if a.isnull {
                complete = false;
                break;
            }
            s.row[c] = f64::from_bits(a.value as u64);
        }
        if complete {
            s.add_row();
        } else {
            s.skipped += 1;
        }
        Ok(state as Datum)
    }
}

/// # Safety
/// `fcinfo` must be the call information of a final function call.
unsafe fn finish(fcinfo: FunctionCallInfo) -> Result<Datum> {
    // SAFETY: forwarded from the caller.
    unsafe {
        aggregate_context(fcinfo)?;
        let arg = *(*fcinfo).args.as_ptr();
        if arg.isnull {
            (*fcinfo).isnull = true;
            return Ok(0);
        }
        // The state stays owned by the context; take its contents, leave an empty shell.
        let state = &mut *(arg.value as *mut State);
        let taken = std::mem::replace(state, State::plain(0));
        Ok(taken.result().to_datum()?.unwrap_or(0))
    }
}

/// # Safety
/// `fcinfo` must be the call information of a combine function call.
unsafe fn combine(fcinfo: FunctionCallInfo) -> Result<Datum> {
    // SAFETY: forwarded from the caller.
    unsafe {
        let context = aggregate_context(fcinfo)?;
        let args = (*fcinfo).args.as_ptr();
        let (a, b) = (*args, *args.add(1));
        match (a.isnull, b.isnull) {
            (true, true) => {
                (*fcinfo).isnull = true;
                Ok(0)
            }
            (false, true) => Ok(a.value),
            (true, false) => {
                // The second state belongs to another context: copy it into ours.
                let theirs = &mut *(b.value as *mut State);
                let copy = std::mem::replace(theirs, State::plain(0));
                Ok(keep(context, copy)? as Datum)
            }
            (false, false) => {
                let ours = &mut *(a.value as *mut State);
                let theirs = &mut *(b.value as *mut State);
                ours.merge(theirs);
                Ok(a.value)
            }
        }
    }
}

/// Serializes a partial state for parallel workers: `{kind, columns, skipped, payload...}`
/// where the payload is what `result` returns (plus the spec for IRLS).
///
/// # Safety
/// `fcinfo` must be the call information of a serial function call.
unsafe fn serialize(fcinfo: FunctionCallInfo) -> Result<Datum> {
    // SAFETY: forwarded from the caller.
    unsafe {
        let arg = *(*fcinfo).args.as_ptr();
        let state = &mut *(arg.value as *mut State);
        let taken = std::mem::replace(state, State::plain(0));
        let (kind, columns, skipped) = (
            matches!(taken.pass, Pass::Weighted(_)),
            taken.columns,
            taken.skipped,
        );
        let spec = match &taken.pass {
            Pass::Weighted(acc) => acc.spec().to_vec(),
            Pass::Plain { .. } => Vec::new(),
        };
        let mut out = vec![
            f64::from(u8::from(kind)),
            columns as f64,
            skipped as f64,
            spec.len() as f64,
        ];
        out.extend(spec);
        out.extend(taken.result());
        let bytes: Vec<u8> = out.iter().flat_map(|v| v.to_le_bytes()).collect();
        Ok(bytes.to_datum()?.unwrap_or(0))
    }
}

/// # Safety
/// `fcinfo` must be the call information of a deserial function call.
unsafe fn deserialize(fcinfo: FunctionCallInfo) -> Result<Datum> {
    // SAFETY: forwarded from the caller.
    unsafe {
        let context = aggregate_context(fcinfo)?;
        let arg = *(*fcinfo).args.as_ptr();
        let bytes = <Vec<u8> as FromSql>::from_datum(arg.value, arg.isnull, pg_sys::BYTEAOID)?;
        let v: Vec<f64> = bytes
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
            .collect();
        let bad = || Error::msg("bad serialized alps aggregate state");
        let (weighted, columns, skipped, spec_len) = (
            *v.first().ok_or_else(bad)? == 1.0,
            v[1] as usize,
            v[2] as u64,
            v[3] as usize,
        );
        let spec = &v[4..4 + spec_len];
        let payload = &v[4 + spec_len..];
        let state = if weighted {
            let spec = WeightSpec::from_slice(spec).ok_or_else(bad)?;
            let acc = WeightedAccumulator::restore(spec, payload).ok_or_else(bad)?;
            State {
                columns,
                skipped,
                row: vec![0.0; columns],
                pass: Pass::Weighted(acc),
            }
        } else {
            let mut state = State::plain(columns);
            state.skipped = skipped;
            if let Pass::Plain { triangle, .. } = &mut state.pass {
                *triangle = Triangle::from_parts(columns + 1, payload[0] as u64, &payload[2..]);
            }
            state
        };
        Ok(keep(context, state)? as Datum)
    }
}

macro_rules! support_function {
    ($name:ident, $body:expr) => {
        const _: () = {
            #[export_name = concat!("pg_finfo_", stringify!($name))]
            extern "C" fn finfo() -> *const pg_sys::Pg_finfo_record {
                &bgworker::fmgr::FINFO_V1
            }
            #[export_name = stringify!($name)]
            extern "C" fn call(fcinfo: FunctionCallInfo) -> Datum {
                // SAFETY: PostgreSQL calls it as the support function it was declared as.
                let run = || unsafe { $body(fcinfo) };
                // SAFETY: PostgreSQL calls it directly; the frame owns nothing.
                unsafe { bgworker::entry::run_returning(run) }
            }
        };
    };
}

support_function!(alps_qr_step, |f| step(f, false));
support_function!(alps_irls_step, |f| step(f, true));
support_function!(alps_agg_final, finish);
support_function!(alps_agg_combine, combine);
support_function!(alps_agg_serialize, serialize);
support_function!(alps_agg_deserialize, deserialize);

/// Creates (or refreshes, after a reinstall moved the library) the aggregates.
pub fn create(spi: &mut bgworker::spi::Spi) -> Result<()> {
    let library = bgworker::spi::quote_literal(&bgworker::worker::current_library()?)?;
    let function = |name: &str, args: &str, returns: &str, symbol: &str, strict: bool| {
        format!(
            "CREATE OR REPLACE FUNCTION alps.{name}({args}) RETURNS {returns} AS {library}, '{symbol}' \
             LANGUAGE C PARALLEL SAFE{}",
            if strict { " STRICT" } else { "" }
        )
    };
    for sql in [
        function(
            "qr_step",
            "internal, VARIADIC \"any\"",
            "internal",
            "alps_qr_step",
            false,
        ),
        function(
            "irls_step",
            "internal, float8[], VARIADIC \"any\"",
            "internal",
            "alps_irls_step",
            false,
        ),
        function("agg_final", "internal", "float8[]", "alps_agg_final", false),
        function(
            "agg_combine",
            "internal, internal",
            "internal",
            "alps_agg_combine",
            false,
        ),
        function(
            "agg_serialize",
            "internal",
            "bytea",
            "alps_agg_serialize",
            true,
        ),
        function(
            "agg_deserialize",
            "bytea, internal",
            "internal",
            "alps_agg_deserialize",
            true,
        ),
    ] {
        spi.execute(&sql, &[])?;
    }
    let aggregate = |name: &str, args: &str, step: &str| {
        format!(
            "CREATE AGGREGATE alps.{name}({args}) (SFUNC = alps.{step}, STYPE = internal, \
             FINALFUNC = alps.agg_final, COMBINEFUNC = alps.agg_combine, \
             SERIALFUNC = alps.agg_serialize, DESERIALFUNC = alps.agg_deserialize, PARALLEL = SAFE)"
        )
    };
    for (name, args, step) in [
        ("qr", "VARIADIC \"any\"", "qr_step"),
        ("irls", "float8[], VARIADIC \"any\"", "irls_step"),
    ] {
        let exists: bool =
            spi.query_one("SELECT EXISTS (SELECT 1 FROM pg_proc WHERE proname = $1 AND pronamespace = 'alps'::regnamespace)", &[&name])?;
        if !exists {
            spi.execute(&aggregate(name, args, step), &[])?;
        }
    }
    // Who may call what: the aggregates are plain arithmetic over their arguments, and table
    // owners run them when ALPS reads their tables as them, so PUBLIC may use them (and the
    // schema). Their support functions are ALPS's business only: PostgreSQL checks those
    // against the aggregate's owner, not the caller.
    spi.execute(
        "REVOKE ALL ON FUNCTION alps.qr_step(internal, VARIADIC \"any\"),
            alps.irls_step(internal, float8[], VARIADIC \"any\"), alps.agg_final(internal),
            alps.agg_combine(internal, internal), alps.agg_serialize(internal),
            alps.agg_deserialize(bytea, internal) FROM PUBLIC",
        &[],
    )?;
    spi.execute("GRANT USAGE ON SCHEMA alps TO PUBLIC", &[])?;
    Ok(())
}
