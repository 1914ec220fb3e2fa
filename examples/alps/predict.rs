//! Storing models (`alps.models` and one MADlib-style relation per model) and writing the
//! `<column>__predicted` columns in bounded batches.

use alps_models::linear::LinearFit;
use alps_models::logistic::LogisticFit;
use bgworker::prelude::*;

use crate::catalog::{polite, TrainError};
use crate::data::Column;

/// A fitted model of one column.
pub enum Model {
    Linear(LinearFit),
    Logistic(LogisticFit),
}

impl Model {
    fn kind(&self) -> &'static str {
        match self {
            Model::Linear(_) => "linregr",
            Model::Logistic(_) => "logit",
        }
    }

    fn supports(&self) -> &[usize] {
        match self {
            Model::Linear(m) => &m.supports,
            Model::Logistic(m) => &m.supports,
        }
    }

    fn coef(&self) -> &[f64] {
        match self {
            Model::Linear(m) => &m.coef,
            Model::Logistic(m) => &m.coef,
        }
    }

    fn scaling(&self) -> &alps_models::Scaling {
        match self {
            Model::Linear(m) => &m.scaling,
            Model::Logistic(m) => &m.scaling,
        }
    }
}

/// PostgreSQL truncates identifiers at 63 bytes; longer names are shortened with a hash so
/// that distinct models never share a relation.
fn relation_name(schema: &str, table: &str, column: &str, kind: &str) -> String {
    let full = format!("{schema}_{table}_{column}_{kind}");
    if full.len() <= 63 {
        return full;
    }
    // FNV-1a: stable across runs and builds.
    let hash = full.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    });
    let suffix = format!("_{:08x}_{kind}", hash as u32);
    let mut cut = 63 - suffix.len();
    while !full.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}{suffix}", &full[..cut])
}

/// The column a model's predictions go to.
pub fn predicted_name(column: &str) -> String {
    format!("{column}__predicted")
}

/// Records the model in `alps.models` and (re)creates its relation.
#[allow(clippy::too_many_arguments)]
pub fn store_model(
    spi: &mut Spi,
    schema: &str,
    table: &str,
    column: &str,
    model: &Model,
    names: &[&str],
    skipped: u64,
    seconds: f64,
) -> Result<()> {
    let relation = relation_name(schema, table, column, model.kind());
    let quoted = format!("alps.{}", spi::quote_identifier(&relation)?);
    let mut features = vec!["(Intercept)".to_string()];
    features.extend(model.supports().iter().map(|&j| names[j].to_string()));
    let skipped = skipped as i64;
    let (means, scales) = (
        model.scaling().means.clone(),
        model.scaling().scales.clone(),
    );
    let (rows, iterations, converged, separated, penalty) = match model {
        Model::Linear(m) => (m.rows as i64, 0, true, false, 0.0),
        Model::Logistic(m) => (
            m.rows as i64,
            m.iterations as i32,
            m.converged,
            m.separated,
            m.penalty,
        ),
    };
    spi.execute(
        "INSERT INTO alps.models VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, now(), $15, $16)
         ON CONFLICT (schema_name, table_name, column_name) DO UPDATE SET
            kind = $4, features = $5, coefficients = $6, means = $7, scales = $8, rows_used = $9,
            rows_skipped = $10, iterations = $11, converged = $12, separated = $13, penalty = $14,
            trained_at = now(), training_seconds = $15, relation = $16",
        &[
            &schema, &table, &column, &model.kind(), &features, &model.coef().to_vec(), &means, &scales, &rows,
            &skipped, &iterations, &converged, &separated, &penalty, &seconds, &relation,
        ],
    )?;
    let exists: bool = spi.query_one("SELECT to_regclass($1) IS NOT NULL", &[&quoted])?;
    if exists {
        spi.execute(&format!("DROP TABLE {quoted}"), &[])?;
    }
    match model {
        Model::Linear(m) => {
            spi.execute(
                &format!(
                    "CREATE TABLE {quoted} (coef float8[], r2 float8, std_err float8[], t_stats float8[],
                        p_values float8[], condition_no float8, num_rows_processed int8,
                        num_missing_rows_skipped int8, features text[])"
                ),
                &[],
            )?;
            spi.execute(
                &format!("INSERT INTO {quoted} VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"),
                &[
                    &m.coef,
                    &m.r2,
                    &m.std_err,
                    &m.t_stats,
                    &m.p_values,
                    &m.condition_no,
                    &rows,
                    &skipped,
                    &features,
                ],
            )?;
        }
        Model::Logistic(m) => {
            spi.execute(
                &format!(
                    "CREATE TABLE {quoted} (coef float8[], log_likelihood float8, std_err float8[], z_stats float8[],
                        p_values float8[], odds_ratios float8[], condition_no float8, num_iterations int,
                        num_rows_processed int8, num_missing_rows_skipped int8, features text[])"
                ),
                &[],
            )?;
            spi.execute(
                &format!(
                    "INSERT INTO {quoted} VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
                ),
                &[
                    &m.coef,
                    &m.log_likelihood,
                    &m.std_err,
                    &m.z_stats,
                    &m.p_values,
                    &m.odds_ratios,
                    &m.condition_no,
                    &(m.iterations as i32),
                    &rows,
                    &skipped,
                    &features,
                ],
            )?;
        }
    }
    Ok(())
}

/// The SQL of one model's prediction; its numbers become parameters `$3...` (after the two
/// ctid bounds).
fn expression(model: &Model, columns: &[Column], impute: bool, params: &mut Vec<f64>) -> String {
    let coef = model.coef();
    let means = &model.scaling().means;
    let add = |v: f64, params: &mut Vec<f64>| {
        params.push(v);
        format!("${}::float8", params.len() + 2)
    };
    let mut sql = add(coef[0], params);
    for (i, &j) in model.supports().iter().enumerate() {
        let value = if impute {
            let mean = add(means[i], params);
            format!("coalesce({}, {mean})", columns[j].as_float8())
        } else {
            columns[j].as_float8()
        };
        let c = add(coef[i + 1], params);
        sql = format!("{sql} + {c} * {value}");
    }
    match model {
        Model::Linear(_) => format!("({sql})"),
        Model::Logistic(_) => format!("(({sql}) > 0)"),
    }
}

/// Adds missing `__predicted` columns, then rewrites, batch by batch, the rows whose
/// prediction changed. Returns how many rows it wrote.
pub fn write(
    relid: u32,
    qualified: &str,
    columns: &[Column],
    models: &[(usize, Model)],
    scales: &[f64],
) -> Result<u64, TrainError> {
    let impute = crate::IMPUTE.get_name() == "mean";
    // Names that would not fit PostgreSQL's 63 bytes are left alone rather than truncated
    // into a name that might belong to something else.
    let models: Vec<&(usize, Model)> = models
        .iter()
        .filter(|(target, _)| {
            let fits = predicted_name(&columns[*target].name).len() <= 63;
            if !fits {
                log!(
                    "alps: column name {:?} is too long for a __predicted column",
                    columns[*target].name
                );
            }
            fits
        })
        .collect();
    if models.is_empty() {
        return Ok(0);
    }
    // The columns, under lock_timeout: ALTER TABLE needs the strongest lock.
    let mut targets = Vec::new();
    for (target, model) in &models {
        let name = predicted_name(&columns[*target].name);
        let kind = match model {
            Model::Linear(_) => "double precision",
            Model::Logistic(_) => "boolean",
        };
        targets.push((spi::quote_identifier(&name)?, name, kind));
    }
    xact::transaction(|spi| {
        polite(spi)?;
        for (quoted, name, kind) in &targets {
            let exists: Option<i32> = spi.query_opt(
                "SELECT 1 FROM pg_attribute WHERE attrelid = $1 AND attname = $2 AND NOT attisdropped",
                &[&relid, name],
            )?;
            if exists.is_none() {
                spi.report_activity(&format!("alps: adding {name}"));
                let alter = format!("ALTER TABLE {qualified} ADD COLUMN {quoted} {kind}");
                spi.as_table_owner(relid, |spi| spi.execute(&alter, &[]))?;
            }
        }
        Ok(())
    })?;

    // A row is rewritten only when one of its predictions moved by more than
    // alps.min_change standard deviations of its column (a boolean one: when it flipped):
    // a retrained model that moved a little rewrites nothing.
    let min_change = crate::MIN_CHANGE.get();
    let mut params = Vec::new();
    let mut sets = Vec::new();
    let mut changed = Vec::new();
    for ((quoted, _, _), (target, model)) in targets.iter().zip(&models) {
        let e = expression(model, columns, impute, &mut params);
        sets.push(format!("{quoted} = {e}"));
        let threshold = min_change * scales.get(*target).copied().unwrap_or(0.0);
        if matches!(model, Model::Linear(_)) && threshold > 0.0 {
            params.push(threshold);
            let t = format!("${}::float8", params.len() + 2);
            changed.push(format!(
                "(({quoted} IS NULL) <> ({e} IS NULL) OR abs({quoted} - {e}) > {t})"
            ));
        } else {
            changed.push(format!("{quoted} IS DISTINCT FROM {e}"));
        }
    }
    let update = format!(
        "UPDATE ONLY {qualified} SET {} WHERE ctid >= $1::tid AND ctid < $2::tid AND ({})",
        sets.join(", "),
        changed.join(" OR ")
    );
    let pages: i64 = xact::transaction(|spi| {
        spi.query_one(
            "SELECT pg_relation_size($1::regclass) / current_setting('block_size')::int8",
            &[&relid],
        )
    })?;
    let step = crate::BATCH_PAGES.get() as i64;
    let mut written = 0u64;
    let mut start = 0i64;
    while start < pages {
        if signals::shutdown_requested() {
            break;
        }
        let (from, to) = (format!("({start},0)"), format!("({},0)", start + step));
        let mut args: Vec<&dyn ToSql> = vec![&from, &to];
        args.extend(params.iter().map(|p| p as &dyn ToSql));
        written += xact::transaction(|spi| {
            polite(spi)?;
            // ALPS's writes are its own business: the table's ordinary triggers do not fire
            // for them. A superuser-only setting, so it is set before the switch below.
            spi.execute("SET LOCAL session_replication_role = replica", &[])?;
            spi.report_activity(&format!(
                "alps: writing predictions of {qualified}: pages {start} to {} of {pages}, {written} rows rewritten so far",
                (start + step).min(pages)
            ));
            // What still runs (CHECK constraints, index expressions, ENABLE ALWAYS
            // triggers) is the owner's code: it runs as the owner.
            spi.as_table_owner(relid, |spi| spi.execute(&update, &args))
        })?;
        start += step;
    }
    Ok(written)
}
