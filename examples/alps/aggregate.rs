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

use alps_models::logistic::WeightSpec;
use alps_models::Triangle;
use bgworker::datum::{FromSql, ToSql};
use bgworker::pg_sys::{self, Datum, FunctionCallInfo};
use bgworker::{Error, Result};

/// Rows buffered before a QR update, at most; a group's buffer starts at `FIRST_ROWS` and
/// doubles as it fills, so that many small groups stay small.
const BUFFER_ROWS: usize = 1024;
const FIRST_ROWS: usize = 16;

/// f64 storage palloc'd in the aggregate's memory context, so that PostgreSQL's memory
/// accounting sees it (hash aggregation spills, or an out-of-memory is an ERROR, as for any
/// aggregate); it goes away with the context.
struct PgSlice {
    ptr: *mut f64,
    len: usize,
}

impl PgSlice {
    const EMPTY: PgSlice = PgSlice {
        ptr: std::ptr::null_mut(),
        len: 0,
    };

    /// `len` zeroes in `context`.
    ///
    /// # Safety
    /// `context` must be a live memory context that outlives every use of the slice.
    unsafe fn zeroed(context: pg_sys::MemoryContext, len: usize) -> Result<PgSlice> {
        if len == 0 {
            return Ok(PgSlice::EMPTY);
        }
        let bytes = len
            .checked_mul(std::mem::size_of::<f64>())
            .ok_or_else(|| Error::msg("alps aggregate state too large"))?;
        let flags = (pg_sys::MCXT_ALLOC_HUGE | pg_sys::MCXT_ALLOC_ZERO) as i32;
        // SAFETY: allocates in a live context (the caller's promise); failure is an ERROR.
        let ptr = bgworker::guard(|| unsafe {
            pg_sys::MemoryContextAllocExtended(context, bytes, flags)
        })?;
        Ok(PgSlice {
            ptr: ptr as *mut f64,
            len,
        })
    }

    fn get(&self) -> &[f64] {
        if self.len == 0 {
            return &[];
        }
        // SAFETY: `len` f64 of palloc'd memory, alive with the aggregate's context.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }

    fn get_mut(&mut self) -> &mut [f64] {
        if self.len == 0 {
            return &mut [];
        }
        // SAFETY: as above; `&mut self` makes the access exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }

    /// Gives the memory back before the context ends (a buffer that grew).
    fn free(self) {
        if self.len > 0 {
            let ptr = self.ptr;
            // SAFETY: palloc'd by `zeroed` and not used again.
            let _ = bgworker::guard(|| unsafe { pg_sys::pfree(ptr.cast()) });
        }
    }
}

/// A streaming QR factor (see [`Triangle`]) and its row buffer, kept in palloc'd storage
/// between calls; a transient `Triangle` does each update.
struct Store {
    width: usize,
    rows: u64,
    /// Rows of R held (at most `width`).
    kept: usize,
    /// R's rows (`width * width` places), then the shift (`width - 1`).
    r: PgSlice,
    buffer: PgSlice,
    buffered: usize,
}

impl Store {
    const EMPTY: Store = Store {
        width: 0,
        rows: 0,
        kept: 0,
        r: PgSlice::EMPTY,
        buffer: PgSlice::EMPTY,
        buffered: 0,
    };

    /// # Safety
    /// As for [`PgSlice::zeroed`].
    unsafe fn new(context: pg_sys::MemoryContext, width: usize) -> Result<Store> {
        // SAFETY: forwarded.
        unsafe {
            Ok(Store {
                width,
                rows: 0,
                kept: 0,
                r: PgSlice::zeroed(context, width * width + width.saturating_sub(1))?,
                buffer: PgSlice::zeroed(context, FIRST_ROWS * width)?,
                buffered: 0,
            })
        }
    }

    /// # Safety
    /// As for [`PgSlice::zeroed`].
    unsafe fn restore(
        context: pg_sys::MemoryContext,
        width: usize,
        rows: u64,
        parts: &[f64],
    ) -> Result<Store> {
        // SAFETY: forwarded.
        let mut store = unsafe { Store::new(context, width) }?;
        store.save(&Triangle::from_parts(width, rows, parts));
        Ok(store)
    }

    /// A copy in another context (a combine function's).
    ///
    /// # Safety
    /// As for [`PgSlice::zeroed`].
    unsafe fn copy_into(&mut self, context: pg_sys::MemoryContext) -> Result<Store> {
        self.flush();
        // SAFETY: forwarded.
        unsafe { Store::restore(context, self.width, self.rows, &self.triangle().to_vec()) }
    }

    fn triangle(&self) -> Triangle {
        let w = self.width;
        let r = self.r.get();
        let parts: Vec<f64> = r[..self.kept * w]
            .iter()
            .chain(&r[w * w..])
            .copied()
            .collect();
        Triangle::from_parts(w, self.rows, &parts)
    }

    fn save(&mut self, t: &Triangle) {
        let w = self.width;
        let v = t.to_vec();
        let shift = w.saturating_sub(1);
        let kept = (v.len() - shift) / w;
        let r = self.r.get_mut();
        r[..kept * w].copy_from_slice(&v[..kept * w]);
        r[w * w..].copy_from_slice(&v[kept * w..]);
        self.kept = kept;
        self.rows = t.rows();
    }

    /// The next row's place in the buffer (growing or flushing it when full); the caller
    /// fills it.
    fn slot(&mut self, context: pg_sys::MemoryContext) -> Result<&mut [f64]> {
        let w = self.width;
        if (self.buffered + 1) * w > self.buffer.len {
            let rows = self.buffer.len / w;
            if rows < BUFFER_ROWS {
                // SAFETY: the aggregate's context, alive for the call and the state.
                let mut grown =
                    unsafe { PgSlice::zeroed(context, (rows * 2).min(BUFFER_ROWS) * w) }?;
                grown.get_mut()[..self.buffered * w]
                    .copy_from_slice(&self.buffer.get()[..self.buffered * w]);
                std::mem::replace(&mut self.buffer, grown).free();
            } else {
                self.flush();
            }
        }
        let at = self.buffered * w;
        self.buffered += 1;
        Ok(&mut self.buffer.get_mut()[at..at + w])
    }

    fn flush(&mut self) {
        if self.buffered == 0 {
            return;
        }
        let w = self.width;
        let mut t = self.triangle();
        let rows = ndarray::ArrayView2::from_shape(
            (self.buffered, w),
            &self.buffer.get()[..self.buffered * w],
        )
        .expect("buffer shape");
        t.add(rows);
        self.save(&t);
        self.buffered = 0;
    }

    fn merge(&mut self, other: &mut Store) {
        self.flush();
        other.flush();
        let mut t = self.triangle();
        t.merge(&other.triangle());
        self.save(&t);
    }

    /// R and the shift, as [`Triangle::to_vec`] writes them.
    fn flushed_parts(&mut self) -> Vec<f64> {
        self.flush();
        self.triangle().to_vec()
    }
}

enum Pass {
    Plain,
    Weighted {
        spec: WeightSpec,
        deviance: f64,
        extreme: u64,
    },
}

/// An aggregate's state. Its data lives in the aggregate's memory context (see
/// [`PgSlice`]); the struct itself, freed with that context, holds only counters and the
/// IRLS pass's specification.
struct State {
    columns: usize,
    skipped: u64,
    row: PgSlice,
    store: Store,
    pass: Pass,
}

impl State {
    const EMPTY: State = State {
        columns: 0,
        skipped: 0,
        row: PgSlice::EMPTY,
        store: Store::EMPTY,
        pass: Pass::Plain,
    };

    /// # Safety
    /// As for [`PgSlice::zeroed`].
    unsafe fn plain(context: pg_sys::MemoryContext, columns: usize) -> Result<State> {
        // SAFETY: forwarded.
        unsafe {
            Ok(State {
                columns,
                skipped: 0,
                row: PgSlice::zeroed(context, columns)?,
                store: Store::new(context, columns + 1)?,
                pass: Pass::Plain,
            })
        }
    }

    /// # Safety
    /// As for [`PgSlice::zeroed`].
    unsafe fn weighted(
        context: pg_sys::MemoryContext,
        columns: usize,
        spec: WeightSpec,
    ) -> Result<State> {
        let width = spec.supports.len() + 2;
        // SAFETY: forwarded.
        unsafe {
            Ok(State {
                columns,
                skipped: 0,
                row: PgSlice::zeroed(context, columns)?,
                store: Store::new(context, width)?,
                pass: Pass::Weighted {
                    spec,
                    deviance: 0.0,
                    extreme: 0,
                },
            })
        }
    }

    fn add_row(&mut self, context: pg_sys::MemoryContext) -> Result<()> {
        let slot = self.store.slot(context)?;
        let row = self.row.get();
        match &mut self.pass {
            Pass::Plain => {
                slot[0] = 1.0;
                slot[1..].copy_from_slice(row);
            }
            Pass::Weighted {
                spec,
                deviance,
                extreme,
            } => {
                let (d, e) = spec.weigh(row, slot);
                *deviance += d;
                *extreme += u64::from(e);
            }
        }
        Ok(())
    }

    fn merge(&mut self, other: &mut State) {
        self.skipped += other.skipped;
        self.store.merge(&mut other.store);
        if let (
            Pass::Weighted {
                deviance, extreme, ..
            },
            Pass::Weighted {
                deviance: d,
                extreme: e,
                ..
            },
        ) = (&mut self.pass, &other.pass)
        {
            *deviance += d;
            *extreme += e;
        }
    }

    /// `alps.qr`: `{rows, skipped, R..., shift...}`; `alps.irls`:
    /// `{deviance, extreme, rows, R..., shift...}` (what the models library reads back).
    fn result(mut self) -> Vec<f64> {
        // Flushing the buffer may add rows: count them after.
        let r = self.store.flushed_parts();
        let rows = self.store.rows as f64;
        let mut v = match &self.pass {
            Pass::Plain => vec![rows, self.skipped as f64],
            Pass::Weighted {
                deviance, extreme, ..
            } => vec![*deviance, *extreme as f64, rows],
        };
        v.extend(r);
        v
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
                State::weighted(context, columns, spec)?
            } else {
                State::plain(context, columns)?
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
            s.row.get_mut()[c] = f64::from_bits(a.value as u64);
        }
        if complete {
            s.add_row(context)?;
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
        let taken = std::mem::replace(state, State::EMPTY);
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
                let copy = State {
                    columns: theirs.columns,
                    skipped: theirs.skipped,
                    row: PgSlice::zeroed(context, theirs.columns)?,
                    store: theirs.store.copy_into(context)?,
                    pass: std::mem::replace(&mut theirs.pass, Pass::Plain),
                };
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
        let taken = std::mem::replace(state, State::EMPTY);
        let (kind, columns, skipped) = (
            matches!(taken.pass, Pass::Weighted { .. }),
            taken.columns,
            taken.skipped,
        );
        let spec = match &taken.pass {
            Pass::Weighted { spec, .. } => spec.to_vec(),
            Pass::Plain => Vec::new(),
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
        let mut state = if weighted {
            let spec = WeightSpec::from_slice(spec).ok_or_else(bad)?;
            if payload.len() < 3 {
                return Err(bad());
            }
            let width = spec.supports.len() + 2;
            let mut state = State::weighted(context, columns, spec)?;
            state.store = Store::restore(context, width, payload[2] as u64, &payload[3..])?;
            if let Pass::Weighted {
                deviance, extreme, ..
            } = &mut state.pass
            {
                *deviance = payload[0];
                *extreme = payload[1] as u64;
            }
            state
        } else {
            if payload.len() < 2 {
                return Err(bad());
            }
            let mut state = State::plain(context, columns)?;
            state.store = Store::restore(context, columns + 1, payload[0] as u64, &payload[2..])?;
            state
        };
        state.skipped = skipped;
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
