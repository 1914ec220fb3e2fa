//! examples/alps in a real cluster: the user's session on mtcars end to end, NULLs, hostile
//! identifiers, locks held by applications, tables changing under it, and idempotence.

use std::time::Duration;

use bgworker_tests::{example, run_extension_script, Cluster};
use postgres::Client;

const WAIT: Duration = Duration::from_secs(60);

fn alps_cluster(settings: &[(&str, &str)]) -> Cluster {
    let mut b = Cluster::builder()
        .preload(example("alps"))
        .setting("alps.naptime", "1")
        .setting("alps.lock_timeout", "200ms");
    for (k, v) in settings {
        b = b.setting(k, v);
    }
    let cluster = b.start();
    cluster.wait_for_log("alps started in database \"postgres\"", WAIT);
    run_extension_script(&mut cluster.connect(), "alps");
    cluster
}

fn mtcars(client: &mut Client) {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap();
    let sql = std::fs::read_to_string(root.join("contrib/alps/mtcars.sql")).unwrap();
    client.batch_execute(&sql).unwrap();
}

fn column_exists(client: &mut Client, schema: &str, table: &str, column: &str) -> bool {
    client
        .query_one(
            "SELECT count(*) FROM information_schema.columns WHERE table_schema = $1 AND table_name = $2 AND column_name = $3",
            &[&schema, &table, &column],
        )
        .unwrap()
        .get::<_, i64>(0)
        == 1
}

/// A digest of the user's own columns, to prove ALPS never changes them.
fn user_digest(client: &mut Client, table: &str, columns: &str) -> String {
    client
        .query_one(
            &format!("SELECT md5(string_agg(({columns})::text, '|' ORDER BY ctid)) FROM {table}"),
            &[],
        )
        .unwrap()
        .get(0)
}

fn reference(name: &str) -> serde_json::Value {
    let path = format!("{}/data/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn the_mtcars_session_end_to_end() {
    let cluster = alps_cluster(&[]);
    let mut client = cluster.connect();
    mtcars(&mut client);
    let user_columns = "model, mpg, cyl, disp, hp, drat, wt, qsec, vs, am, gear, carb";
    let before = user_digest(&mut client, "rdata.mtcars", user_columns);
    client.batch_execute("ANALYZE rdata.mtcars").unwrap();
    let woke: bool = client.query_one("SELECT alps.wake()", &[]).unwrap().get(0);
    assert!(woke);

    let names = [
        "mpg", "cyl", "disp", "hp", "drat", "wt", "qsec", "vs", "am", "gear", "carb",
    ];
    assert!(
        cluster.poll(WAIT, || names.iter().all(|n| column_exists(
            &mut client,
            "rdata",
            "mtcars",
            &format!("{n}__predicted")
        ))),
        "every column gets a __predicted column"
    );
    cluster.wait_for_log("alps: trained 11 models on rdata.mtcars", WAIT);
    let kinds: Vec<(String, String)> = client
        .query(
            "SELECT column_name::text, data_type::text FROM information_schema.columns
              WHERE table_schema = 'rdata' AND table_name = 'mtcars' AND column_name LIKE '%\\_\\_predicted'",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert!(kinds.contains(&("am__predicted".into(), "boolean".into())));
    assert!(kinds.contains(&("mpg__predicted".into(), "double precision".into())));

    // The user's data is untouched; predictions are there for every row.
    assert_eq!(
        user_digest(&mut client, "rdata.mtcars", user_columns),
        before
    );
    let filled: i64 = client
        .query_one(
            "SELECT count(coalesce(am, am__predicted)) FROM rdata.mtcars",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(filled, 32);

    // The linear model of mpg matches statsmodels; the prediction is its fitted value.
    let want = &reference("mtcars_ols.json")["all_others"]["mpg"];
    let row = client
        .query_one(
            "SELECT coef, r2, features, num_rows_processed FROM alps.rdata_mtcars_mpg_linregr",
            &[],
        )
        .unwrap();
    let (coef, r2, features, rows): (Vec<f64>, f64, Vec<String>, i64) =
        (row.get(0), row.get(1), row.get(2), row.get(3));
    assert_eq!(rows, 32);
    assert_eq!(features[0], "(Intercept)");
    for (c, f) in coef.iter().zip(&features) {
        let w = want["coef"][f].as_f64().unwrap();
        assert!((c - w).abs() <= 1e-6 * w.abs(), "mpg coef {f}: {c} vs {w}");
    }
    assert!((r2 - want["r2"].as_f64().unwrap()).abs() < 1e-9);

    // am is separated by the others: detected, refit with L2 = 1, odds ratios meaningful.
    let row = client
        .query_one(
            "SELECT separated, penalty, converged FROM alps.models WHERE table_name = 'mtcars' AND column_name = 'am'",
            &[],
        )
        .unwrap();
    let (separated, penalty, converged): (bool, f64, bool) = (row.get(0), row.get(1), row.get(2));
    assert!(separated && penalty == 1.0 && converged);
    let row = client
        .query_one(
            "SELECT odds_ratios, coef, features FROM alps.rdata_mtcars_am_logit",
            &[],
        )
        .unwrap();
    let (odds, coef, features): (Vec<f64>, Vec<f64>, Vec<String>) =
        (row.get(0), row.get(1), row.get(2));
    assert_eq!(odds.len(), 11);
    let ridge = &reference("mtcars_logit.json")["ridge"]["fits"]["am"];
    for (i, f) in features.iter().enumerate().skip(1) {
        let w = ridge["coef_raw"][f].as_f64().unwrap();
        assert!(
            (coef[i] - w).abs() <= 1e-6 * w.abs(),
            "am coef {f}: {} vs {w}",
            coef[i]
        );
        assert!((odds[i] - w.exp()).abs() <= 1e-6 * w.exp());
    }
    // The ridge model classifies the training rows as the reference does.
    let expected: Vec<bool> = ridge["predicted_class"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap() == 1)
        .collect();
    let predicted: Vec<bool> = client
        .query("SELECT am__predicted FROM rdata.mtcars ORDER BY id", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(predicted, expected);

    // New rows, analysed: predicted too (with an unknown transmission).
    client
        .batch_execute(
            "INSERT INTO rdata.mtcars (model, mpg, cyl, disp, hp, drat, wt, qsec, vs, am, gear, carb)
             VALUES ('Prototype', 30.1, 4, 90, 70, 4.1, 1.9, 19, 1, NULL, 5, 1);
             ANALYZE rdata.mtcars; SELECT alps.wake();",
        )
        .unwrap();
    assert!(cluster.poll(WAIT, || {
        client
            .query_one(
                "SELECT am__predicted IS NOT NULL FROM rdata.mtcars WHERE model = 'Prototype'",
                &[],
            )
            .unwrap()
            .get::<_, bool>(0)
    }));
    let rows: i64 = client
        .query_one("SELECT rows_skipped FROM alps.models WHERE table_name = 'mtcars' AND column_name = 'mpg'", &[])
        .unwrap()
        .get(0);
    assert_eq!(rows, 1, "the row with a NULL am is skipped for training");
}

#[test]
fn nulls_in_targets_and_supports() {
    let cluster = alps_cluster(&[]);
    let mut client = cluster.connect();
    client
        .batch_execute(
            "CREATE TABLE t (id int PRIMARY KEY, x float8, z int, y numeric, b bool);
             INSERT INTO t SELECT g, g % 17, (g * 7) % 11, 2 * (g % 17) - 3 * ((g * 7) % 11) + 1 + (g % 3) * 0.1,
                                  (g % 17) > 8
               FROM generate_series(1, 200) g;
             UPDATE t SET y = NULL WHERE id % 10 = 0;
             UPDATE t SET x = NULL WHERE id % 25 = 1;
             ANALYZE t; SELECT alps.wake();",
        )
        .unwrap();
    cluster.wait_for_log("alps: trained 4 models on public.t", WAIT);
    let row = client
        .query_one("SELECT rows_used, rows_skipped FROM alps.models WHERE table_name = 't' AND column_name = 'y'", &[])
        .unwrap();
    let (used, skipped): (i64, i64) = (row.get(0), row.get(1));
    // 20 rows without y, 8 without x (none of them also without y).
    assert_eq!((used, skipped), (172, 28));
    // A NULL support is imputed with its training mean: every row gets a prediction.
    let missing: i64 = client
        .query_one("SELECT count(*) FROM t WHERE y__predicted IS NULL", &[])
        .unwrap()
        .get(0);
    assert_eq!(missing, 0);
    let missing_b: i64 = client
        .query_one("SELECT count(*) FROM t WHERE b__predicted IS NULL", &[])
        .unwrap()
        .get(0);
    assert_eq!(missing_b, 0);
    // The id column (primary key) is neither target nor support.
    assert!(!column_exists(&mut client, "public", "t", "id__predicted"));
    let features: Vec<String> = client
        .query_one(
            "SELECT features FROM alps.models WHERE table_name = 't' AND column_name = 'y'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(features, vec!["(Intercept)", "x", "z", "b"]);
}

#[test]
fn without_imputation_rows_with_null_supports_get_no_prediction() {
    let cluster = alps_cluster(&[("alps.impute", "none")]);
    let mut client = cluster.connect();
    client
        .batch_execute(
            "CREATE TABLE t (x float8, y float8);
             INSERT INTO t SELECT g, 3 * g + (g % 5) FROM generate_series(1, 100) g;
             INSERT INTO t VALUES (NULL, 1);
             ANALYZE t; SELECT alps.wake();",
        )
        .unwrap();
    cluster.wait_for_log("alps: trained 2 models on public.t", WAIT);
    let nulls: i64 = client
        .query_one("SELECT count(*) FROM t WHERE y__predicted IS NULL", &[])
        .unwrap()
        .get(0);
    assert_eq!(nulls, 1);
}

#[test]
fn hostile_identifiers_work_and_harm_nothing() {
    let cluster = alps_cluster(&[]);
    let mut client = cluster.connect();
    client
        .batch_execute(
            r#"CREATE SCHEMA "we""ird sch.ema";
               CREATE TABLE canary (v int); INSERT INTO canary VALUES (42);
               CREATE TABLE "we""ird sch.ema"."Robert'); DROP TABLE canary;--" (
                   "x y" float8, "ü☃" float8, "a""b" int, "select" float8, "flag; DELETE FROM canary" bool);
               INSERT INTO "we""ird sch.ema"."Robert'); DROP TABLE canary;--"
                 SELECT g, (g * 13) % 7, g % 4, 2 * g - ((g * 13) % 7) + (g * g) % 11, (g * 7) % 5 >= 2
                   FROM generate_series(1, 120) g;
               ANALYZE "we""ird sch.ema"."Robert'); DROP TABLE canary;--";
               SELECT alps.wake();"#,
        )
        .unwrap();
    cluster.wait_for_log(
        "alps: trained 5 models on we\"ird sch.ema.Robert'); DROP TABLE canary;--",
        WAIT,
    );
    for column in ["x y", "ü☃", "a\"b", "select", "flag; DELETE FROM canary"] {
        assert!(
            column_exists(
                &mut client,
                "we\"ird sch.ema",
                "Robert'); DROP TABLE canary;--",
                &format!("{column}__predicted")
            ),
            "{column}__predicted"
        );
    }
    let canary: i32 = client
        .query_one("SELECT v FROM canary", &[])
        .unwrap()
        .get(0);
    assert_eq!(canary, 42);
    let relations: i64 = client
        .query_one("SELECT count(*) FROM pg_tables WHERE schemaname = 'alps' AND tablename LIKE 'we\"ird sch.ema_Robert%'", &[])
        .unwrap()
        .get(0);
    assert_eq!(
        relations, 5,
        "one model relation per column, names quoted (and shortened when too long)"
    );
}

#[test]
fn a_locked_table_waits_for_the_next_cycle_without_an_error_storm() {
    let cluster = alps_cluster(&[]);
    let mut client = cluster.connect();
    client
        .batch_execute(
            "CREATE TABLE busy (x float8, y float8);
             INSERT INTO busy SELECT g, g * 2 + (g % 3) FROM generate_series(1, 100) g;
             ANALYZE busy;",
        )
        .unwrap();
    let mut app = cluster.connect();
    let mut tx = app.transaction().unwrap();
    tx.batch_execute("LOCK TABLE busy IN ACCESS EXCLUSIVE MODE")
        .unwrap();
    client.batch_execute("SELECT alps.wake()").unwrap();
    cluster.wait_for_log(
        "alps: table public.busy is locked by another session; trying again next cycle",
        WAIT,
    );
    // Other work goes on: the application's session is never blocked by ALPS.
    tx.batch_execute("INSERT INTO busy VALUES (1000, 2000)")
        .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let complaints = cluster.log_count("is locked by another session");
    assert!(
        complaints <= 6,
        "{complaints} complaints in ~3 s of naptime 1"
    );
    assert!(!cluster.log().contains("ERROR"), "{}", cluster.log());
    tx.commit().unwrap();
    client.batch_execute("ANALYZE busy").unwrap();
    cluster.wait_for_log("alps: trained 2 models on public.busy", WAIT);
    let missing: i64 = client
        .query_one("SELECT count(*) FROM busy WHERE y__predicted IS NULL", &[])
        .unwrap()
        .get(0);
    assert_eq!(missing, 0);
}

#[test]
fn a_table_dropped_or_altered_under_it_is_skipped_and_the_worker_goes_on() {
    let cluster = alps_cluster(&[]);
    let mut client = cluster.connect();
    let pid = || -> i32 {
        cluster
            .connect()
            .query_one(
                "SELECT pid FROM pg_stat_activity WHERE backend_type = 'alps'",
                &[],
            )
            .unwrap()
            .get(0)
    };
    let worker = pid();
    for round in 0..3 {
        client
            .batch_execute(&format!(
                "CREATE TABLE doomed{round} (x float8, y float8, z float8);
                 INSERT INTO doomed{round} SELECT g, g % 97, (g * 31) % 89 FROM generate_series(1, 100000) g;
                 ANALYZE doomed{round}; SELECT alps.wake();"
            ))
            .unwrap();
        std::thread::sleep(Duration::from_millis(150 * round as u64));
        // Whatever ALPS is doing with it, the table changes shape or disappears.
        if round % 2 == 0 {
            client
                .batch_execute(&format!("DROP TABLE doomed{round}"))
                .unwrap();
        } else {
            client
                .batch_execute(&format!("ALTER TABLE doomed{round} DROP COLUMN z"))
                .unwrap();
        }
    }
    // Then a healthy table is trained, by the same worker process.
    client
        .batch_execute(
            "CREATE TABLE healthy (x float8, y float8);
             INSERT INTO healthy SELECT g, 5 * g + (g % 7) FROM generate_series(1, 100) g;
             ANALYZE healthy; SELECT alps.wake();",
        )
        .unwrap();
    cluster.wait_for_log("alps: trained 2 models on public.healthy", WAIT);
    assert_eq!(pid(), worker, "the worker was never restarted");
    assert!(!cluster
        .log()
        .contains("terminating any other active server processes"));
}

#[test]
fn a_second_analyze_without_changes_rewrites_nothing() {
    let cluster = alps_cluster(&[]);
    let mut client = cluster.connect();
    client
        .batch_execute(
            "CREATE TABLE calm (x float8, y float8, b bool);
             INSERT INTO calm SELECT g, 0.5 * g + (g % 9), g % 3 = 0 FROM generate_series(1, 5000) g;",
        )
        .unwrap();
    // Statistics of other sessions reach the views with a delay (up to seconds); here the
    // user's load must be counted before ALPS trains, or a late count looks like a change.
    let version: i32 = client
        .query_one("SELECT current_setting('server_version_num')::int", &[])
        .unwrap()
        .get(0);
    if version >= 150000 {
        client
            .batch_execute("SELECT pg_stat_force_next_flush()")
            .unwrap();
    }
    assert!(cluster.poll(WAIT, || {
        client
            .query_one(
                "SELECT n_tup_ins FROM pg_stat_user_tables WHERE relname = 'calm'",
                &[],
            )
            .unwrap()
            .get::<_, i64>(0)
            == 5000
    }));
    client
        .batch_execute("ANALYZE calm; SELECT alps.wake();")
        .unwrap();
    cluster.wait_for_log("alps: trained 3 models on public.calm", WAIT);
    let snapshot = |client: &mut Client| -> (String, i64) {
        let digest: String = client
            .query_one(
                "SELECT md5(string_agg(ctid::text || xmin::text, ',' ORDER BY ctid)) FROM calm",
                &[],
            )
            .unwrap()
            .get(0);
        let trained: i64 = client
            .query_one(
                "SELECT count(*) FROM alps.models WHERE table_name = 'calm'",
                &[],
            )
            .unwrap()
            .get(0);
        (digest, trained)
    };
    let before = snapshot(&mut client);
    let trainings = cluster.log_count("alps: trained 3 models on public.calm");
    // ANALYZE again (twice, also covering an autoanalyze after ALPS's own writes).
    for _ in 0..2 {
        client
            .batch_execute("ANALYZE calm; SELECT alps.wake();")
            .unwrap();
        std::thread::sleep(Duration::from_secs(3));
    }
    assert_eq!(snapshot(&mut client), before, "no row was rewritten");
    assert_eq!(
        cluster.log_count("alps: trained 3 models on public.calm"),
        trainings,
        "no retraining"
    );

    // A real change does bring a retrain, and an unchanged model still rewrites no old rows.
    client
        .batch_execute(
            "INSERT INTO calm VALUES (1e6, NULL, NULL); ANALYZE calm; SELECT alps.wake();",
        )
        .unwrap();
    if version >= 150000 {
        client
            .batch_execute("SELECT pg_stat_force_next_flush()")
            .unwrap();
    } else {
        // 14's statistics collector takes a backend's counts at the end of a transaction at
        // least 500 ms after its previous report; an idle session never sends them.
        client.batch_execute("SELECT pg_sleep(0.6)").unwrap();
    }
    assert!(cluster.poll(WAIT, || cluster
        .log_count("alps: trained 3 models on public.calm")
        > trainings));
    // The new row is skipped for training (NULLs), so the models are bit-identical and only
    // the new row gets predictions.
    assert!(
        cluster.log().contains("on public.calm in "),
        "{}",
        cluster.log()
    );
    let last = cluster
        .log()
        .lines()
        .rfind(|l| l.contains("models on public.calm"))
        .unwrap()
        .to_string();
    assert!(last.ends_with("; 1 rows predicted anew"), "{last}");
}

#[test]
fn schemas_can_be_included_or_excluded_and_keys_are_never_modelled() {
    let cluster = alps_cluster(&[
        ("alps.include_schemas", "inc, skipme"),
        ("alps.exclude_schemas", "skipme"),
    ]);
    let mut client = cluster.connect();
    for schema in ["inc", "skipme", "public"] {
        client
            .batch_execute(&format!(
                "CREATE SCHEMA IF NOT EXISTS {schema};
                 CREATE TABLE {schema}.t (
                     id serial, ident int GENERATED ALWAYS AS IDENTITY, x float8, y float8,
                     twice float8 GENERATED ALWAYS AS (x * 2) STORED);
                 INSERT INTO {schema}.t (x, y) SELECT g, 3 * g + (g % 4) FROM generate_series(1, 100) g;
                 ANALYZE {schema}.t;"
            ))
            .unwrap();
    }
    client.batch_execute("SELECT alps.wake()").unwrap();
    cluster.wait_for_log("alps: trained 2 models on inc.t", WAIT);
    std::thread::sleep(Duration::from_secs(3));
    let log = cluster.log();
    assert!(
        !log.contains("on skipme.t"),
        "an excluded schema wins over its inclusion"
    );
    assert!(
        !log.contains("on public.t"),
        "only included schemas are trained"
    );
    for column in ["id", "ident", "twice"] {
        assert!(
            !column_exists(&mut client, "inc", "t", &format!("{column}__predicted")),
            "{column} modelled"
        );
    }
    assert!(column_exists(&mut client, "inc", "t", "x__predicted"));
    assert!(column_exists(&mut client, "inc", "t", "y__predicted"));
}

/// Makes this session's statistics visible to ALPS now: 15+ flush on request; 14's
/// collector takes a backend's counts at the end of a transaction at least 500 ms after its
/// previous report, and an idle session never sends them.
fn flush_stats(client: &mut Client) {
    let version: i32 = client
        .query_one("SELECT current_setting('server_version_num')::int", &[])
        .unwrap()
        .get(0);
    if version >= 150000 {
        client
            .batch_execute("SELECT pg_stat_force_next_flush()")
            .unwrap();
    } else {
        client.batch_execute("SELECT pg_sleep(0.6)").unwrap();
        client.batch_execute("SELECT 1").unwrap();
    }
}

/// alps.tables' view of one table: (outcome, rows_written).
fn status(client: &mut Client, table: &str) -> Option<(Option<String>, Option<i64>)> {
    client
        .query_opt(
            "SELECT outcome, rows_written FROM alps.status WHERE schema_name = 'public' AND table_name = $1",
            &[&table],
        )
        .unwrap()
        .map(|r| (r.get(0), r.get(1)))
}

#[test]
fn a_retrain_rewrites_only_rows_whose_prediction_moved() {
    let cluster = alps_cluster(&[]);
    let mut client = cluster.connect();
    client
        .batch_execute(
            "CREATE TABLE drift (x float8, z float8, y float8);
             INSERT INTO drift SELECT g, (g * 7) % 13, 2 * g + (g * 7) % 13 + (g % 5) FROM generate_series(1, 2000) g;
             ANALYZE drift;",
        )
        .unwrap();
    client.batch_execute("SELECT alps.wake()").unwrap();
    assert!(cluster.poll(WAIT, || status(&mut client, "drift")
        .is_some_and(|(o, _)| o.as_deref() == Some("trained"))));
    let (_, first) = status(&mut client, "drift").unwrap();
    assert_eq!(first, Some(2000), "the first training writes every row");
    let trained_once = cluster.log_count("alps: trained 3 models on public.drift");

    // One changed row moves every model a little: no prediction moves by a hundredth of a
    // standard deviation, so nothing is rewritten.
    client
        .batch_execute("UPDATE drift SET y = y + 1 WHERE x = 1000")
        .unwrap();
    flush_stats(&mut client);
    client
        .batch_execute("ANALYZE drift; SELECT alps.wake();")
        .unwrap();
    assert!(cluster.poll(WAIT, || cluster
        .log_count("alps: trained 3 models on public.drift")
        > trained_once));
    let (_, second) = status(&mut client, "drift").unwrap();
    assert!(
        second.unwrap_or(-1) <= 1,
        "rewrote {second:?} rows for a model that barely moved"
    );

    // With alps.min_change = 0 every moved prediction is rewritten, as before.
    client
        .batch_execute("ALTER SYSTEM SET alps.min_change = 0")
        .unwrap();
    client.batch_execute("SELECT pg_reload_conf()").unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let trained_twice = cluster.log_count("alps: trained 3 models on public.drift");
    client
        .batch_execute("UPDATE drift SET y = y + 1 WHERE x = 1001")
        .unwrap();
    flush_stats(&mut client);
    client
        .batch_execute("ANALYZE drift; SELECT alps.wake();")
        .unwrap();
    assert!(cluster.poll(WAIT, || cluster
        .log_count("alps: trained 3 models on public.drift")
        > trained_twice));
    let (_, exact) = status(&mut client, "drift").unwrap();
    assert!(
        exact.unwrap_or(0) > 1000,
        "exact mode rewrote only {exact:?} rows"
    );
}

#[test]
fn tables_of_keys_are_left_alone_unless_included_and_excluded_tables_always() {
    let cluster = alps_cluster(&[
        ("alps.include_tables", "public.keys_wanted"),
        ("alps.exclude_tables", "public.excluded"),
    ]);
    let mut client = cluster.connect();
    client
        .batch_execute(
            "CREATE TABLE history (tid int, bid int, aid int, delta int, mtime timestamptz);
             INSERT INTO history SELECT g % 10, g % 7, g, (g * 37) % 101 - 50, now() FROM generate_series(1, 500) g;
             CREATE TABLE keys_wanted (tid int, bid int, aid int, delta int);
             INSERT INTO keys_wanted SELECT g % 10, g % 7, g, (g * 37) % 101 - 50 FROM generate_series(1, 500) g;
             CREATE TABLE excluded (x float8, y float8);
             INSERT INTO excluded SELECT g, 2 * g + (g % 3) FROM generate_series(1, 100) g;
             CREATE TABLE served (x float8, y float8);
             INSERT INTO served SELECT g, 2 * g + (g % 3) FROM generate_series(1, 100) g;
             ANALYZE history, keys_wanted, excluded, served;
             SELECT alps.wake();",
        )
        .unwrap();
    assert!(cluster.poll(WAIT, || {
        status(&mut client, "served").is_some()
            && status(&mut client, "history").is_some()
            && status(&mut client, "keys_wanted").is_some()
    }));
    let (outcome, written) = status(&mut client, "history").unwrap();
    assert!(
        outcome
            .as_deref()
            .unwrap_or_default()
            .starts_with("skipped: fewer than two columns"),
        "{outcome:?}"
    );
    assert_eq!(written, Some(0));
    assert!(!column_exists(
        &mut client,
        "public",
        "history",
        "delta__predicted"
    ));
    assert_eq!(
        status(&mut client, "keys_wanted").unwrap().0.as_deref(),
        Some("trained")
    );
    assert!(column_exists(
        &mut client,
        "public",
        "keys_wanted",
        "delta__predicted"
    ));
    assert_eq!(
        status(&mut client, "served").unwrap().0.as_deref(),
        Some("trained")
    );
    assert!(status(&mut client, "excluded").is_none());
    assert!(!column_exists(
        &mut client,
        "public",
        "excluded",
        "y__predicted"
    ));
}

/// What the ALPS worker shows in pg_stat_activity.
fn alps_activity(client: &mut Client) -> String {
    client
        .query_opt(
            "SELECT query FROM pg_stat_activity WHERE backend_type = 'alps'",
            &[],
        )
        .unwrap()
        .map(|r| r.get(0))
        .unwrap_or_default()
}

#[test]
fn training_and_writing_show_their_progress() {
    let cluster = alps_cluster(&[("alps.lock_timeout", "20s")]);
    let mut client = cluster.connect();
    let mut blocker = cluster.connect();
    client
        .batch_execute(
            "CREATE TABLE slow (x float8, y float8, b bool, x__predicted float8, y__predicted float8, b__predicted bool);
             INSERT INTO slow (x, y, b) SELECT g, 2 * g + (g % 3), (g * 7) % 10 < 5 FROM generate_series(1, 3000) g;
             ANALYZE slow;",
        )
        .unwrap();
    // Reading the table waits for this lock: the worker shows which pass it is in.
    blocker
        .batch_execute("BEGIN; LOCK TABLE slow IN ACCESS EXCLUSIVE MODE")
        .unwrap();
    client.batch_execute("SELECT alps.wake()").unwrap();
    assert!(
        cluster.poll(WAIT, || alps_activity(&mut client)
            .starts_with("alps: training public.slow: pass 1 (of at most 21)")),
        "{}",
        alps_activity(&mut client)
    );
    blocker.batch_execute("ROLLBACK").unwrap();
    assert!(cluster.poll(WAIT, || status(&mut client, "slow").is_some()));

    // Writing waits for a locked row (one whose prediction moves a lot): the worker shows
    // how far it got.
    blocker
        .batch_execute("BEGIN; SELECT 1 FROM slow WHERE x = 2500 FOR UPDATE")
        .unwrap();
    client
        .batch_execute("UPDATE slow SET y = 3 * y WHERE x <> 2500")
        .unwrap();
    flush_stats(&mut client);
    client
        .batch_execute("ANALYZE slow; SELECT alps.wake();")
        .unwrap();
    assert!(
        cluster.poll(WAIT, || alps_activity(&mut client)
            .starts_with("alps: writing predictions of public.slow: pages 0 to ")),
        "{}",
        alps_activity(&mut client)
    );
    blocker.batch_execute("ROLLBACK").unwrap();
    let rows: i64 = client
        .query_one("SELECT count(*) FROM alps.status WHERE table_name = 'slow' AND training_seconds >= 0 AND writing_seconds >= 0", &[])
        .unwrap()
        .get(0);
    assert!(cluster.poll(WAIT, || {
        client
            .query_one(
                "SELECT count(*) FROM slow WHERE abs(y__predicted - y) < y * 0.5",
                &[],
            )
            .map(|r| r.get::<_, i64>(0) > 2000)
            .unwrap_or(false)
    }));
    assert_eq!(rows, 1);
}

#[test]
fn aggregate_states_are_counted_by_postgresql_and_spill_like_any_other() {
    let cluster = alps_cluster(&[]);
    let mut client = cluster.connect();
    client
        .batch_execute(
            "SET work_mem = '4MB'; SET enable_sort = off; SET max_parallel_workers_per_gather = 0;",
        )
        .unwrap();
    // 200 groups of 600 consecutive rows and 8 columns: too few groups for PostgreSQL's
    // estimate to spill on their number, but the states (tens of kilobytes each once their
    // buffers have grown) need far more than work_mem together.
    let query = "SELECT g / 600 AS k,
                        alps.qr(g::float8, (g % 13)::float8, (g % 17)::float8, (g % 19)::float8,
                                (g % 23)::float8, (g % 29)::float8, (g % 31)::float8,
                                (2 * g + g % 7)::float8) AS q
                   FROM generate_series(0, 119999) g GROUP BY 1";
    let text = client
        .simple_query(&format!("EXPLAIN (ANALYZE, FORMAT JSON) {query}"))
        .unwrap()
        .into_iter()
        .find_map(|m| match m {
            postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
            _ => None,
        })
        .unwrap();
    let plan: serde_json::Value = serde_json::from_str(&text).unwrap();
    let node = &plan[0]["Plan"];
    assert_eq!(node["Node Type"], "Aggregate", "{plan}");
    assert_eq!(node["Strategy"], "Hashed", "{plan}");
    // The states need far more than work_mem: PostgreSQL sees them and spills.
    let batches = node["HashAgg Batches"].as_i64().unwrap_or(0);
    assert!(batches > 1, "no spill: {plan}");
    // And the spilled aggregation is still right: every group saw its 600 rows.
    let right: i64 = client
        .query_one(
            &format!("SELECT count(*) FROM ({query}) s WHERE q[1] = 600"),
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(right, 200);
}
