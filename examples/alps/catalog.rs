//! ALPS's bookkeeping: its schema, which tables need training, and the stored models.

use std::time::Instant;

use alps_models::{linear, logistic, Rows};
use bgworker::prelude::*;

use crate::data::{modelled_columns, Column, TableRows};
use crate::predict::{self, Model};

/// Creates the `alps` schema and its catalog tables when missing.
pub fn ensure() -> Result<()> {
    xact::transaction(|spi| {
        spi.report_activity("alps: creating catalog");
        // ALPS runs its own objects with its own rights: a schema someone else owns could
        // hold their look-alikes of them.
        let owner_is_superuser: Option<bool> = spi.query_opt(
            "SELECT r.rolsuper FROM pg_namespace n JOIN pg_roles r ON r.oid = n.nspowner
              WHERE n.nspname = 'alps'",
            &[],
        )?;
        if owner_is_superuser == Some(false) {
            return Err(Error::msg(
                "schema \"alps\" exists and belongs to a role that is not a superuser; \
                 ALPS will not use it (drop it, or give it to a superuser)",
            ));
        }
        spi.execute("CREATE SCHEMA IF NOT EXISTS alps", &[])?;
        crate::aggregate::create(spi)?;
        spi.execute(
            "CREATE TABLE IF NOT EXISTS alps.models (
                schema_name text, table_name text, column_name text, kind text,
                features text[], coefficients float8[], means float8[], scales float8[],
                rows_used int8, rows_skipped int8, iterations int, converged bool, separated bool,
                penalty float8, trained_at timestamptz, training_seconds float8, relation text,
                PRIMARY KEY (schema_name, table_name, column_name))",
            &[],
        )?;
        spi.execute(
            "CREATE TABLE IF NOT EXISTS alps.tables (
                relid oid PRIMARY KEY, schema_name text, table_name text,
                analyses int8, expected_changes int8, trained_at timestamptz)",
            &[],
        )?;
        // What the last cycle did with each table, for people watching.
        spi.execute(
            "ALTER TABLE alps.tables
                ADD COLUMN IF NOT EXISTS outcome text,
                ADD COLUMN IF NOT EXISTS outcome_at timestamptz,
                ADD COLUMN IF NOT EXISTS training_seconds float8,
                ADD COLUMN IF NOT EXISTS writing_seconds float8,
                ADD COLUMN IF NOT EXISTS rows_written int8",
            &[],
        )?;
        spi.execute(
            "CREATE OR REPLACE VIEW alps.status AS
             SELECT schema_name, table_name, outcome, outcome_at, trained_at, training_seconds,
                    writing_seconds, rows_written
               FROM alps.tables ORDER BY schema_name, table_name",
            &[],
        )?;
        Ok(())
    })
}

fn schema_list(value: Option<String>) -> Option<Vec<String>> {
    let list: Vec<String> = value?
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    (!list.is_empty()).then_some(list)
}

/// A table and what the statistics say about it.
struct Candidate {
    relid: u32,
    schema: String,
    table: String,
    analyses: i64,
    changes: i64,
    seen_analyses: Option<i64>,
    expected_changes: Option<i64>,
}

impl FromRow for Candidate {
    fn from_row(row: &Row) -> Result<Self> {
        Ok(Candidate {
            relid: row.get(0)?,
            schema: row.get(1)?,
            table: row.get(2)?,
            analyses: row.get(3)?,
            changes: row.get(4)?,
            seen_analyses: row.get(5)?,
            expected_changes: row.get(6)?,
        })
    }
}

/// One round: every table analysed since its last training (by others' changes) is trained.
pub fn cycle() -> Result<()> {
    let include = schema_list(crate::INCLUDE_SCHEMAS.get());
    let exclude = schema_list(crate::EXCLUDE_SCHEMAS.get()).unwrap_or_default();
    let include_tables = schema_list(crate::INCLUDE_TABLES.get()).unwrap_or_default();
    let exclude_tables = schema_list(crate::EXCLUDE_TABLES.get()).unwrap_or_default();
    let candidates: Vec<Candidate> = xact::transaction(|spi| {
        spi.report_activity("alps: looking for analysed tables");
        spi.query(
            "SELECT c.oid, n.nspname::text, c.relname::text,
                    coalesce(s.analyze_count + s.autoanalyze_count, 0)::int8,
                    coalesce(s.n_tup_ins + s.n_tup_upd + s.n_tup_del, 0)::int8,
                    t.analyses, t.expected_changes
               FROM pg_class c
               JOIN pg_namespace n ON n.oid = c.relnamespace
               LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid
               LEFT JOIN alps.tables t ON t.relid = c.oid
              WHERE c.relkind = 'r'
                AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'alps')
                AND n.nspname !~ '^pg_(toast|temp)'
                AND ($1::text[] IS NULL OR n.nspname = ANY ($1))
                AND NOT (n.nspname = ANY ($2))
              ORDER BY 2, 3",
            &[&include, &exclude],
        )
    })?;
    for c in candidates {
        if signals::shutdown_requested() {
            break;
        }
        let name = format!("{}.{}", c.schema, c.table);
        if exclude_tables.contains(&name) {
            continue;
        }
        let due = match (c.seen_analyses, c.expected_changes) {
            _ if c.analyses == 0 => false,
            (None, _) => true,
            (Some(seen), Some(expected)) => c.analyses > seen && c.changes > expected,
            (Some(seen), None) => c.analyses > seen,
        };
        // An ANALYZE that only saw ALPS's own writes leaves `changes` at `expected`: nothing
        // to learn. Others' changes may reach the statistics a little after their ANALYZE;
        // the table is then picked up by a later cycle.
        if !due {
            continue;
        }
        match train_table(&c, include_tables.contains(&name)) {
            Ok(()) => {}
            Err(TrainError::Locked) => log!(
                "alps: table {}.{} is locked by another session; trying again next cycle",
                c.schema,
                c.table
            ),
            Err(TrainError::Failed(e)) => {
                warning!("alps: skipping table {}.{}: {e}", c.schema, c.table);
                note_outcome(&c, &format!("failed: {e}"))?;
            }
        }
    }
    Ok(())
}

/// Why a table was not (fully) trained.
pub enum TrainError {
    /// A lock could not be had within `alps.lock_timeout`.
    Locked,
    /// Anything else (the table was dropped, altered, ...).
    Failed(Error),
}

impl From<Error> for TrainError {
    fn from(e: Error) -> TrainError {
        if e.sqlstate() == SqlState::LOCK_NOT_AVAILABLE {
            TrainError::Locked
        } else {
            TrainError::Failed(e)
        }
    }
}

/// Sets the transaction-local settings ALPS works under.
pub fn polite(spi: &mut Spi) -> Result<()> {
    let timeout = format!("{}ms", crate::LOCK_TIMEOUT.get());
    spi.execute("SELECT set_config('lock_timeout', $1, true)", &[&timeout])?;
    // The same scan order every time, so an unchanged table gives bit-identical models.
    spi.execute("SET LOCAL synchronize_seqscans = off", &[])?;
    // Compiling the passes with LLVM costs more memory (it grows with the optimisation tiers
    // that larger tables reach) than it saves time: the work is in the aggregate.
    spi.execute("SET LOCAL jit = off", &[])?;
    // Background work takes one core unless told otherwise, as autovacuum does.
    let workers = crate::MAX_PARALLEL_WORKERS.get().to_string();
    spi.execute(
        "SELECT set_config('max_parallel_workers_per_gather', $1, true)",
        &[&workers],
    )?;
    Ok(())
}

fn train_table(c: &Candidate, included: bool) -> Result<(), TrainError> {
    let started = Instant::now();
    let qualified = format!(
        "{}.{}",
        spi::quote_identifier(&c.schema)?,
        spi::quote_identifier(&c.table)?
    );
    let (columns, models, skipped, scales) = xact::transaction(|spi| {
        polite(spi)?;
        spi.report_activity(&format!("alps: training {}.{}", c.schema, c.table));
        let columns = modelled_columns(spi, c.relid, included)?;
        if columns.len() < 2 {
            return Ok((columns, Vec::new(), 0, Vec::new()));
        }
        // Reading the table runs its owner's code (row security policies, functions in
        // column types): as the owner, never as ALPS's superuser.
        spi.as_table_owner(c.relid, |spi| {
            train_as_owner(spi, c, &qualified, columns, started)
        })
    })?;
    if models.is_empty() {
        let outcome = if columns.len() < 2 {
            "skipped: fewer than two columns with values to model (keys, identifiers and \
             generated columns do not count)"
        } else {
            "skipped: no column could be modelled"
        };
        return record(c, 0, outcome, started.elapsed().as_secs_f64(), 0.0);
    }
    let seconds = started.elapsed().as_secs_f64();
    let names: Vec<&str> = columns.iter().map(|col| col.name.as_str()).collect();
    xact::transaction(|spi| {
        for (target, model, own_seconds) in &models {
            predict::store_model(
                spi,
                &c.schema,
                &c.table,
                names[*target],
                model,
                &names,
                skipped,
                *own_seconds,
            )?;
        }
        Ok(())
    })?;
    let models: Vec<(usize, Model)> = models.into_iter().map(|(t, m, _)| (t, m)).collect();
    let writing = Instant::now();
    let written = predict::write(c.relid, &qualified, &columns, &models, &scales)?;
    let writing = writing.elapsed().as_secs_f64();
    log!(
        "alps: trained {} models on {}.{} in {:.3} s; {} rows predicted anew",
        models.len(),
        c.schema,
        c.table,
        seconds,
        written
    );
    record(c, written, "trained", seconds, writing)
}

/// The passes over a table and the fits, run as the table's owner.
fn train_as_owner(
    spi: &mut Spi,
    c: &Candidate,
    qualified: &str,
    columns: Vec<Column>,
    started: Instant,
) -> Result<Trained> {
    let options = logistic::Options {
        max_iterations: crate::MAX_ITERATIONS.get() as usize,
        tolerance: crate::TOLERANCE.get(),
        l2: crate::LOGIT_L2.get(),
    };
    let select: Vec<String> = columns.iter().map(Column::as_float8).collect();
    let mut rows = TableRows {
        spi,
        label: format!("{}.{}", c.schema, c.table),
        passes: 0,
        // One shared pass, then at most max_iterations per logistic model.
        max_passes: 1 + columns.iter().filter(|col| col.boolean).count() * options.max_iterations,
        columns: select.join(", "),
        table: qualified.to_string(),
        width: columns.len(),
        batch: 10_000,
        skipped: 0,
    };
    let triangle = rows.triangle(columns.len())?;
    let scales = triangle.scaling().scales;
    // The pass is shared by every model of the table: each one's time includes it.
    let shared_pass = started.elapsed().as_secs_f64();
    let skipped = rows.skipped;
    let mut models = Vec::new();
    for (target, column) in columns.iter().enumerate() {
        let own = Instant::now();
        let fitted = if column.boolean {
            logistic::fit(&mut rows, &triangle, target, options)?.map(Model::Logistic)
        } else {
            linear::fit(&triangle, target).map(Model::Linear)
        };
        let seconds = shared_pass + own.elapsed().as_secs_f64();
        match fitted {
            Ok(model) => models.push((target, model, seconds)),
            Err(e) => log!(
                "alps: no model for {}.{}.{}: {e}",
                c.schema,
                c.table,
                column.name
            ),
        }
    }
    Ok((columns, models, skipped, scales))
}

/// A table's modelled columns, its fitted models (target, model, seconds), how many rows
/// were skipped, and each column's standard deviation.
type Trained = (Vec<Column>, Vec<(usize, Model, f64)>, u64, Vec<f64>);

/// Remembers why a table could not be trained, without marking it trained (so that it is
/// tried again).
fn note_outcome(c: &Candidate, outcome: &str) -> Result<()> {
    xact::transaction(|spi| {
        spi.execute(
            "INSERT INTO alps.tables (relid, schema_name, table_name, outcome, outcome_at)
             VALUES ($1, $2, $3, $4, now())
             ON CONFLICT (relid) DO UPDATE SET outcome = $4, outcome_at = now()",
            &[&c.relid, &c.schema, &c.table, &outcome],
        )
    })?;
    Ok(())
}

/// Remembers what the statistics said when the table was trained, plus ALPS's own writes,
/// so that an ANALYZE caused only by those writes does not retrain it.
fn record(
    c: &Candidate,
    written: u64,
    outcome: &str,
    training: f64,
    writing: f64,
) -> Result<(), TrainError> {
    let (relid, analyses) = (c.relid, c.analyses);
    xact::transaction(|spi| {
        // Our own writes are in the statistics by now (transactions flush them); whatever
        // else arrived since the cycle started was there before this training, too.
        let now: Option<i64> = spi.query_opt(
            "SELECT (n_tup_ins + n_tup_upd + n_tup_del)::int8 FROM pg_stat_user_tables WHERE relid = $1",
            &[&relid],
        )?;
        let expected = now.unwrap_or(0).max(c.changes + written as i64);
        let trained = outcome == "trained";
        spi.execute(
            "INSERT INTO alps.tables (relid, schema_name, table_name, analyses, expected_changes,
                                     trained_at, outcome, outcome_at, training_seconds,
                                     writing_seconds, rows_written)
             VALUES ($1, $2, $3, $4, $5, CASE WHEN $6 THEN now() END, $7, now(), $8, $9, $10)
             ON CONFLICT (relid) DO UPDATE
                SET analyses = $4, expected_changes = $5,
                    trained_at = CASE WHEN $6 THEN now() ELSE alps.tables.trained_at END,
                    schema_name = $2, table_name = $3, outcome = $7, outcome_at = now(),
                    training_seconds = $8, writing_seconds = $9, rows_written = $10",
            &[
                &relid,
                &c.schema,
                &c.table,
                &analyses,
                &expected,
                &trained,
                &outcome,
                &training,
                &writing,
                &(written as i64),
            ],
        )
    })?;
    Ok(())
}
