//! The passes over a table as SQL aggregates, so that the executor feeds rows straight to
//! the solver (no SPI result sets), and PostgreSQL's parallel workers can share a pass:
//!
//! * `alps.qr(VARIADIC "any")`: the R factor of `[1, columns]` over the complete rows,
//!   returned as float8[] `{rows, skipped, R...}`;
//! * `alps.irls(float8[] spec, VARIADIC "any")`: one weighted IRLS pass, returned as
//!   `{deviance, extreme, rows, R...}`.
//!
//! Partial states combine by stacking their R factors (another QR), so the aggregates are
//! parallel safe. The columns must be float8 (the worker casts them). The buffers live in
//! the aggregate's memory context, so that PostgreSQL's memory accounting sees them.

use alps_models::logistic::WeightSpec;
use alps_models::Triangle;
use bgworker::aggregate::{Aggregate, Args, Buffer, Memory, ParallelAggregate};
use bgworker::datum::SqlType;
use bgworker::{Error, Result};

/// Rows buffered before a QR update, at most; a group's buffer starts at `FIRST_ROWS` and
/// doubles as it fills, so that many small groups stay small.
const BUFFER_ROWS: usize = 1024;
const FIRST_ROWS: usize = 16;

/// A streaming QR factor (see [`Triangle`]) and its row buffer, kept in the aggregate's
/// memory between calls; a transient `Triangle` does each update.
struct Store {
    width: usize,
    rows: u64,
    /// Rows of R held (at most `width`).
    kept: usize,
    /// R's rows (`width * width` places), then the shift (`width - 1`).
    r: Buffer<f64>,
    buffer: Buffer<f64>,
    buffered: usize,
}

impl Store {
    fn new(memory: &Memory, width: usize) -> Result<Store> {
        Ok(Store {
            width,
            rows: 0,
            kept: 0,
            r: memory.buffer(width * width + width.saturating_sub(1))?,
            buffer: memory.buffer(FIRST_ROWS * width)?,
            buffered: 0,
        })
    }

    fn empty() -> Store {
        Store {
            width: 0,
            rows: 0,
            kept: 0,
            r: Buffer::empty(),
            buffer: Buffer::empty(),
            buffered: 0,
        }
    }

    fn restore(memory: &Memory, width: usize, rows: u64, parts: &[f64]) -> Result<Store> {
        let mut store = Store::new(memory, width)?;
        store.save(&Triangle::from_parts(width, rows, parts));
        Ok(store)
    }

    /// A copy in another aggregate's memory (a combine function's).
    fn copy_into(&mut self, memory: &Memory) -> Result<Store> {
        self.flush();
        Store::restore(memory, self.width, self.rows, &self.triangle().to_vec())
    }

    fn triangle(&self) -> Triangle {
        let w = self.width;
        let r = self.r.as_slice();
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
        let r = self.r.as_mut_slice();
        r[..kept * w].copy_from_slice(&v[..kept * w]);
        r[w * w..].copy_from_slice(&v[kept * w..]);
        self.kept = kept;
        self.rows = t.rows();
    }

    /// The next row's place in the buffer (growing or flushing it when full); the caller
    /// fills it.
    fn slot(&mut self, memory: &Memory) -> Result<&mut [f64]> {
        let w = self.width;
        if (self.buffered + 1) * w > self.buffer.len() {
            let rows = self.buffer.len() / w;
            if rows < BUFFER_ROWS {
                let mut grown = memory.buffer((rows * 2).min(BUFFER_ROWS) * w)?;
                grown.as_mut_slice()[..self.buffered * w]
                    .copy_from_slice(&self.buffer.as_slice()[..self.buffered * w]);
                self.buffer = grown;
            } else {
                self.flush();
            }
        }
        let at = self.buffered * w;
        self.buffered += 1;
        Ok(&mut self.buffer.as_mut_slice()[at..at + w])
    }

    fn flush(&mut self) {
        if self.buffered == 0 {
            return;
        }
        let w = self.width;
        let mut t = self.triangle();
        let rows = ndarray::ArrayView2::from_shape(
            (self.buffered, w),
            &self.buffer.as_slice()[..self.buffered * w],
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

/// An aggregate's state: counters, the IRLS pass's specification, and buffers in the
/// aggregate's memory.
struct State {
    columns: usize,
    skipped: u64,
    row: Buffer<f64>,
    store: Store,
    pass: Pass,
}

impl State {
    fn plain(memory: &Memory, columns: usize) -> Result<State> {
        Ok(State {
            columns,
            skipped: 0,
            row: memory.buffer(columns)?,
            store: Store::new(memory, columns + 1)?,
            pass: Pass::Plain,
        })
    }

    fn weighted(memory: &Memory, columns: usize, spec: WeightSpec) -> Result<State> {
        let width = spec.supports.len() + 2;
        Ok(State {
            columns,
            skipped: 0,
            row: memory.buffer(columns)?,
            store: Store::new(memory, width)?,
            pass: Pass::Weighted {
                spec,
                deviance: 0.0,
                extreme: 0,
            },
        })
    }

    /// Takes the contents, leaving an empty shell (the context still owns the state).
    fn take(&mut self) -> State {
        std::mem::replace(
            self,
            State {
                columns: 0,
                skipped: 0,
                row: Buffer::empty(),
                store: Store::empty(),
                pass: Pass::Plain,
            },
        )
    }

    /// Reads the row's columns (from argument `first` on); adds it if none is NULL.
    fn add(&mut self, memory: &Memory, args: &Args, first: usize) -> Result<()> {
        let row = self.row.as_mut_slice();
        for (c, value) in row.iter_mut().enumerate() {
            match args.get::<Option<f64>>(first + c)? {
                Some(v) => *value = v,
                None => {
                    self.skipped += 1;
                    return Ok(());
                }
            }
        }
        let slot = self.store.slot(memory)?;
        let row = self.row.as_slice();
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

    /// A copy in another aggregate's memory (its buffers are copied, the spec moved).
    fn adopt(&mut self, memory: &Memory) -> Result<State> {
        Ok(State {
            columns: self.columns,
            skipped: self.skipped,
            row: memory.buffer(self.columns)?,
            store: self.store.copy_into(memory)?,
            pass: std::mem::replace(&mut self.pass, Pass::Plain),
        })
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

    /// A partial state for parallel workers: `{kind, columns, skipped, spec length, spec...,
    /// result...}`, as little-endian f64s.
    fn serialize(&mut self) -> Vec<u8> {
        let taken = self.take();
        let (weighted, columns, skipped) = (
            matches!(taken.pass, Pass::Weighted { .. }),
            taken.columns,
            taken.skipped,
        );
        let spec = match &taken.pass {
            Pass::Weighted { spec, .. } => spec.to_vec(),
            Pass::Plain => Vec::new(),
        };
        let mut out = vec![
            f64::from(u8::from(weighted)),
            columns as f64,
            skipped as f64,
            spec.len() as f64,
        ];
        out.extend(spec);
        out.extend(taken.result());
        out.iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    fn deserialize(memory: &Memory, bytes: &[u8]) -> Result<State> {
        let bad = || Error::msg("bad serialized alps aggregate state");
        if !bytes.len().is_multiple_of(8) {
            return Err(bad());
        }
        let v: Vec<f64> = bytes
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")))
            .collect();
        if v.len() < 4 {
            return Err(bad());
        }
        let (weighted, columns, skipped, spec_len) =
            (v[0] == 1.0, v[1] as usize, v[2] as u64, v[3] as usize);
        let spec = v.get(4..4 + spec_len).ok_or_else(bad)?;
        let payload = &v[4 + spec_len..];
        let mut state = if weighted {
            let spec = WeightSpec::from_slice(spec).ok_or_else(bad)?;
            if payload.len() < 3 {
                return Err(bad());
            }
            let width = spec.supports.len() + 2;
            let mut state = State::weighted(memory, columns, spec)?;
            state.store = Store::restore(memory, width, payload[2] as u64, &payload[3..])?;
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
            let mut state = State::plain(memory, columns)?;
            state.store = Store::restore(memory, columns + 1, payload[0] as u64, &payload[2..])?;
            state
        };
        state.skipped = skipped;
        Ok(state)
    }
}

/// Checks that every column argument (from `first` on) is float8.
fn check_columns(args: &Args, first: usize) -> Result<usize> {
    for i in first..args.len() {
        if args.sql_type(i)? != f64::OID {
            return Err(Error::msg("alps aggregates take double precision columns"));
        }
    }
    Ok(args.len().saturating_sub(first))
}

/// `alps.qr`'s state.
pub struct Qr(State);
/// `alps.irls`'s state.
pub struct Irls(State);

impl Aggregate for Qr {
    type Output = Vec<f64>;
    fn init(memory: &Memory, args: &Args) -> Result<Qr> {
        Ok(Qr(State::plain(memory, check_columns(args, 0)?)?))
    }
    fn step(&mut self, memory: &Memory, args: &Args) -> Result<()> {
        self.0.add(memory, args, 0)
    }
    fn finish(&mut self) -> Result<Vec<f64>> {
        Ok(self.0.take().result())
    }
}

impl Aggregate for Irls {
    type Output = Vec<f64>;
    fn init(memory: &Memory, args: &Args) -> Result<Irls> {
        let columns = check_columns(args, 1)?;
        let values: Vec<f64> = args.get(0)?;
        let spec = WeightSpec::from_slice(&values)
            .ok_or_else(|| Error::msg("bad alps.irls specification"))?;
        Ok(Irls(State::weighted(memory, columns, spec)?))
    }
    fn step(&mut self, memory: &Memory, args: &Args) -> Result<()> {
        self.0.add(memory, args, 1)
    }
    fn finish(&mut self) -> Result<Vec<f64>> {
        Ok(self.0.take().result())
    }
}

/// Both aggregates combine, copy and serialize their states the same way.
macro_rules! parallel {
    ($($t:ident),*) => {$(
        impl ParallelAggregate for $t {
            fn combine(&mut self, other: &mut Self, _memory: &Memory) -> Result<()> {
                self.0.merge(&mut other.0);
                Ok(())
            }
            fn duplicate(&mut self, memory: &Memory) -> Result<Self> {
                Ok($t(self.0.adopt(memory)?))
            }
            fn serialize(&mut self) -> Result<Vec<u8>> {
                Ok(self.0.serialize())
            }
            fn deserialize(memory: &Memory, bytes: &[u8]) -> Result<Self> {
                Ok($t(State::deserialize(memory, bytes)?))
            }
        }
    )*};
}
parallel!(Qr, Irls);

bgworker::sql_aggregate! {
    #[sql(schema = "alps", parallel_safe, created_at_run_time)]
    aggregate qr(r#"VARIADIC "any""#): Qr, parallel
}

bgworker::sql_aggregate! {
    #[sql(schema = "alps", parallel_safe, created_at_run_time)]
    aggregate irls(r#"float8[], VARIADIC "any""#): Irls, parallel
}

/// Creates (or refreshes, after a reinstall moved the library) the aggregates and their
/// support functions, from the declarations `sql_aggregate!` wrote.
pub fn create(spi: &mut bgworker::spi::Spi) -> Result<()> {
    let library = bgworker::worker::current_library()?;
    for declaration in qr::DECLARATIONS.iter().chain(irls::DECLARATIONS) {
        if declaration.is_aggregate() {
            let exists: bool = spi.query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_proc \
                 WHERE proname = $1 AND pronamespace = 'alps'::regnamespace)",
                &[&declaration.name()],
            )?;
            if exists {
                continue;
            }
        }
        spi.execute(&declaration.to_sql(&library, true), &[])?;
    }
    // The aggregates are plain arithmetic over their arguments, and table owners run them
    // when ALPS reads their tables as them, so PUBLIC may use them (and the schema). Their
    // support functions are revoked from PUBLIC by their declarations: PostgreSQL checks
    // those against the aggregate's owner, not the caller.
    spi.execute("GRANT USAGE ON SCHEMA alps TO PUBLIC", &[])?;
    Ok(())
}
