//! What ALPS reads: which columns of a table it models, and their rows as batches of f64.

use alps_models::logistic::{WeightSpec, WeightedAccumulator, WeightedPass};
use alps_models::{Rows, Triangle};
use bgworker::prelude::*;
use ndarray::Array2;

/// A column ALPS models or uses as a support.
#[derive(Clone, Debug)]
pub struct Column {
    pub name: String,
    pub quoted: String,
    pub boolean: bool,
}

impl Column {
    /// The column as a float8 expression (booleans as 0/1).
    pub fn as_float8(&self) -> String {
        if self.boolean {
            format!("{}::int::float8", self.quoted)
        } else {
            format!("{}::float8", self.quoted)
        }
    }
}

/// The numeric and boolean columns of a table that carry values worth modelling: not keys
/// (primary keys; integer columns that are unique, reference another table, or are named
/// like identifiers: `id`, `..._id`, `aid`), identities, serials, generated columns, nor
/// ALPS's own `__predicted` columns. A table named in `alps.include_tables` keeps its
/// identifier-like integer columns (`keep_identifiers`): its owner asked for it.
pub fn modelled_columns(spi: &mut Spi, relid: u32, keep_identifiers: bool) -> Result<Vec<Column>> {
    let rows: Vec<(String, bool)> = spi.query(
        "SELECT a.attname::text, a.atttypid = 'bool'::regtype
           FROM pg_attribute a
          WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped
            AND a.atttypid IN ('int2'::regtype, 'int4'::regtype, 'int8'::regtype, 'float4'::regtype,
                               'float8'::regtype, 'numeric'::regtype, 'bool'::regtype)
            AND a.attidentity = '' AND a.attgenerated = ''
            AND right(a.attname, 11) <> '__predicted'
            AND NOT EXISTS (SELECT 1 FROM pg_index i
                             WHERE i.indrelid = a.attrelid AND i.indisprimary AND a.attnum = ANY (i.indkey))
            AND ($2 OR NOT (a.atttypid IN ('int2'::regtype, 'int4'::regtype, 'int8'::regtype) AND (
                     a.attname ~* '^(id|.*_id|[a-z]id)$'
                  OR EXISTS (SELECT 1 FROM pg_index i
                              WHERE i.indrelid = a.attrelid AND i.indisunique AND a.attnum = ANY (i.indkey))
                  OR EXISTS (SELECT 1 FROM pg_constraint k
                              WHERE k.conrelid = a.attrelid AND k.contype = 'f' AND a.attnum = ANY (k.conkey)))))
            AND NOT EXISTS (SELECT 1 FROM pg_attrdef d
                             WHERE d.adrelid = a.attrelid AND d.adnum = a.attnum
                               AND pg_get_expr(d.adbin, d.adrelid) LIKE 'nextval(%')
          ORDER BY a.attnum",
        &[&relid, &keep_identifiers],
    )?;
    rows.into_iter()
        .map(|(name, boolean)| {
            Ok(Column {
                quoted: spi::quote_identifier(&name)?,
                name,
                boolean,
            })
        })
        .collect()
}

/// One row read as floats (NULL as None).
struct Floats(Vec<Option<f64>>);

impl FromRow for Floats {
    fn from_row(row: &Row) -> Result<Self> {
        (0..row.len())
            .map(|i| row.get::<Option<f64>>(i))
            .collect::<Result<Vec<_>>>()
            .map(Floats)
    }
}

/// The complete rows of a table's modelled columns, read through a cursor in batches: every
/// pass reads the table again, in constant memory.
pub struct TableRows<'a> {
    pub spi: &'a mut Spi,
    /// The table as shown in `pg_stat_activity` (`schema.table`).
    pub label: String,
    /// Passes over the table so far, and the most there can be.
    pub passes: usize,
    pub max_passes: usize,
    /// The columns as float8 expressions, comma-separated.
    pub columns: String,
    /// The table, qualified and quoted.
    pub table: String,
    pub width: usize,
    pub batch: usize,
    /// Rows with a NULL in some column, counted by the last pass.
    pub skipped: u64,
}

impl TableRows<'_> {
    /// Shows the pass about to start in `pg_stat_activity`.
    fn next_pass(&mut self) {
        self.passes += 1;
        let text = format!(
            "alps: training {}: pass {} (of at most {})",
            self.label, self.passes, self.max_passes
        );
        self.spi.report_activity(&text);
    }
}

impl Rows for TableRows<'_> {
    type Error = Error;

    /// One aggregate query: the executor feeds the rows to the QR directly (and parallel
    /// workers may share the scan).
    fn triangle(&mut self, width: usize) -> Result<Triangle> {
        self.next_pass();
        let sql = format!("SELECT alps.qr({}) FROM ONLY {}", self.columns, self.table);
        let v: Option<Vec<f64>> = self.spi.query_one(&sql, &[])?;
        let v = v.unwrap_or_else(|| vec![0.0, 0.0]);
        self.skipped = v[1] as u64;
        Ok(Triangle::from_parts(width + 1, v[0] as u64, &v[2..]))
    }

    fn weighted_pass(&mut self, spec: &WeightSpec) -> Result<WeightedPass> {
        self.next_pass();
        let sql = format!(
            "SELECT alps.irls($1, {}) FROM ONLY {}",
            self.columns, self.table
        );
        let v: Option<Vec<f64>> = self.spi.query_one(&sql, &[&spec.to_vec()])?;
        let v = v.unwrap_or_else(|| vec![0.0, 0.0, 0.0]);
        WeightedAccumulator::pass_from_slice(spec.supports.len() + 2, &v)
            .ok_or_else(|| Error::msg("bad alps.irls result"))
    }

    fn for_each_batch(&mut self, f: &mut dyn FnMut(ndarray::ArrayView2<f64>)) -> Result<()> {
        self.skipped = 0;
        let sql = format!("SELECT {} FROM ONLY {}", self.columns, self.table);
        let mut cursor = self.spi.cursor(&sql, &[])?;
        let mut values = Vec::with_capacity(self.batch * self.width);
        loop {
            let rows: Vec<Floats> = cursor.fetch(self.batch)?;
            if rows.is_empty() {
                break;
            }
            values.clear();
            let mut complete = 0;
            for Floats(row) in &rows {
                if row.iter().all(Option::is_some) {
                    values.extend(row.iter().map(|v| v.unwrap_or_default()));
                    complete += 1;
                } else {
                    self.skipped += 1;
                }
            }
            let batch = Array2::from_shape_vec((complete, self.width), std::mem::take(&mut values))
                .map_err(|e| Error::msg(format!("batch shape: {e}")))?;
            f(batch.view());
            values = batch.into_raw_vec_and_offset().0;
            latch::check_for_interrupts()?;
        }
        Ok(())
    }
}
