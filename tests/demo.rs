//! `make demo`: a throwaway cluster with the examples loaded, showing what each one does.

use std::time::Duration;

use bgworker_tests::{example, run_extension_script, Cluster};
use postgres::Client;

const WAIT: Duration = Duration::from_secs(60);

fn show(client: &mut Client, sql: &str) {
    println!("=> {sql}");
    for row in client.query(sql, &[]).expect("demo query") {
        let cells: Vec<String> = (0..row.len())
            .map(|i| {
                row.try_get::<_, Option<String>>(i)
                    .ok()
                    .flatten()
                    .or_else(|| {
                        row.try_get::<_, Option<bool>>(i)
                            .ok()
                            .flatten()
                            .map(|b| b.to_string())
                    })
                    .or_else(|| {
                        row.try_get::<_, Option<i32>>(i)
                            .ok()
                            .flatten()
                            .map(|v| v.to_string())
                    })
                    .or_else(|| {
                        row.try_get::<_, Option<i64>>(i)
                            .ok()
                            .flatten()
                            .map(|v| v.to_string())
                    })
                    .or_else(|| {
                        row.try_get::<_, Option<f64>>(i)
                            .ok()
                            .flatten()
                            .map(|v| format!("{v:.4}"))
                    })
                    .or_else(|| {
                        row.try_get::<_, Option<Vec<String>>>(i)
                            .ok()
                            .flatten()
                            .map(|v| format!("{{{}}}", v.join(",")))
                    })
                    .or_else(|| {
                        row.try_get::<_, Option<Vec<f64>>>(i)
                            .ok()
                            .flatten()
                            .map(|v| {
                                format!(
                                    "{{{}}}",
                                    v.iter()
                                        .map(|x| format!("{x:.3}"))
                                        .collect::<Vec<_>>()
                                        .join(",")
                                )
                            })
                    })
                    .unwrap_or_else(|| "NULL".to_string())
            })
            .collect();
        println!("   {}", cells.join(" | "));
    }
}

fn main() {
    println!("Starting a throwaway PostgreSQL cluster with hello_world, worker_spi and alps preloaded...");
    let cluster = Cluster::builder()
        .preload(example("hello_world"))
        .preload(example("worker_spi"))
        .preload(example("alps"))
        .library(example("background"))
        .setting("hello_world.naptime", "2")
        .setting("worker_spi.naptime", "1")
        .setting("worker_spi.total_workers", "1")
        .setting("alps.naptime", "2")
        .start();
    println!(
        "  port {}, data in {}\n",
        cluster.port(),
        cluster.data_dir().display()
    );
    let mut client = cluster.connect();

    println!("## hello_world: greets in the log every hello_world.naptime seconds\n");
    cluster.wait_for_log("Hello World!", WAIT);
    show(&mut client, "SELECT pid, backend_type, application_name FROM pg_stat_activity WHERE backend_type <> 'client backend' AND datname IS NULL AND application_name <> ''");
    for line in cluster
        .log()
        .lines()
        .filter(|l| l.contains("hello_world:"))
        .take(3)
    {
        println!("   {line}");
    }

    println!("\n## worker_spi: counts deltas into a total, in its own schema\n");
    run_extension_script(&mut client, "worker_spi");
    show(
        &mut client,
        "SELECT worker_spi_launch(2) IS NOT NULL AS launched",
    );
    cluster.poll(WAIT, || {
        client
            .query_one(
                "SELECT count(*) FROM pg_tables WHERE schemaname = 'schema2'",
                &[],
            )
            .unwrap()
            .get::<_, i64>(0)
            == 1
    });
    client
        .batch_execute(
            "INSERT INTO schema2.counted VALUES ('total', 0), ('delta', 3), ('delta', 4)",
        )
        .unwrap();
    cluster.wait_for_log("count in schema2.counted is now 7", WAIT);
    show(&mut client, "SELECT type, value FROM schema2.counted");

    println!("\n## ALPS: models of every column of mtcars, predictions next to them\n");
    cluster.wait_for_log("alps started", WAIT);
    run_extension_script(&mut client, "alps");
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap();
    client
        .batch_execute(&std::fs::read_to_string(root.join("contrib/alps/mtcars.sql")).unwrap())
        .unwrap();
    client
        .batch_execute("ANALYZE rdata.mtcars; SELECT alps.wake();")
        .unwrap();
    cluster.wait_for_log("alps: trained 11 models on rdata.mtcars", WAIT);
    show(&mut client, "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = 'rdata' AND table_name = 'mtcars' ORDER BY ordinal_position");
    show(&mut client, "SELECT model, am, am__predicted, round(mpg, 1)::text AS mpg, round(mpg__predicted::numeric, 1)::text AS mpg_predicted FROM rdata.mtcars ORDER BY id LIMIT 6");
    show(
        &mut client,
        "SELECT features, odds_ratios FROM alps.rdata_mtcars_am_logit",
    );
    show(&mut client, "SELECT column_name, kind, separated, penalty, rows_used FROM alps.models ORDER BY column_name");
    client
        .batch_execute(
            "INSERT INTO rdata.mtcars (model, mpg, cyl, disp, hp, drat, wt, qsec, vs, am, gear, carb)
             VALUES ('Prototype', 30.1, 4, 90, 70, 4.1, 1.9, 19, 1, NULL, 5, 1);
             ANALYZE rdata.mtcars; SELECT alps.wake();",
        )
        .unwrap();
    cluster.poll(WAIT, || {
        client
            .query_one(
                "SELECT am__predicted IS NOT NULL FROM rdata.mtcars WHERE model = 'Prototype'",
                &[],
            )
            .unwrap()
            .get::<_, bool>(0)
    });
    show(&mut client, "SELECT model, coalesce(am, am__predicted) AS manual FROM rdata.mtcars WHERE model = 'Prototype'");
    println!("\n## background: SQL in a worker that runs as the caller, results read later\n");
    run_extension_script(&mut client, "background");
    show(
        &mut client,
        "SELECT * FROM pg_background_result(pg_background_launch( \
           'SELECT current_user::text, count(*) FROM pg_class')) AS (who text, relations bigint)",
    );
    let handle = client
        .query_one(
            "SELECT (h).pid, (h).cookie FROM pg_background_launch_v2( \
               'CREATE TEMP TABLE scratch AS SELECT g FROM generate_series(1, 10) g') h",
            &[],
        )
        .unwrap();
    let (pid, cookie): (i32, i64) = (handle.get(0), handle.get(1));
    println!("   launched worker {pid} (cookie {cookie})");
    let call = |sql: &str| {
        sql.replace("$pid", &pid.to_string())
            .replace("$cookie", &cookie.to_string())
    };
    show(
        &mut client,
        &call("SELECT * FROM pg_background_result_v2($pid, $cookie) AS (tag text)"),
    );
    println!(
        "   the same worker runs another string in its session (its temp table is still there):"
    );
    show(&mut client, &call("SELECT pg_background_run_v2($pid, $cookie, 'SELECT sum(g), pg_backend_pid() FROM scratch')"));
    println!("   its result's columns and ERROR (none), looked at without reading it:");
    show(
        &mut client,
        &call("SELECT column_number, column_name, column_type::text FROM pg_background_describe_v2($pid, $cookie)"),
    );
    show(
        &mut client,
        &call("SELECT sqlstate, message FROM pg_background_error_v2($pid, $cookie)"),
    );
    show(
        &mut client,
        &call("SELECT * FROM pg_background_result_v2($pid, $cookie) AS (total bigint, worker int)"),
    );
    show(
        &mut client,
        &call("SELECT pg_background_run_v2($pid, $cookie, 'SELECT pg_sleep(60)')"),
    );
    show(
        &mut client,
        &call("SELECT pg_background_cancel_v2($pid, $cookie)"),
    );
    show(
        &mut client,
        &call("SELECT pg_background_wait_v2_timeout($pid, $cookie, 5000) AS over"),
    );
    show(&mut client, "SELECT pid, state, sql_preview FROM pg_background_list_v2() AS (pid int4, cookie int8, launched_at timestamptz, user_id oid, queue_size int4, state text, sql_preview text, last_error text, consumed bool)");
    show(
        &mut client,
        &call("SELECT pg_background_detach_v2($pid, $cookie)"),
    );
    show(&mut client, "SELECT workers_launched, workers_completed, workers_canceled, workers_active FROM pg_background_stats_v2()");

    println!("\n   The pool: warm workers per database and role, shared by every session, reset between jobs:");
    show(
        &mut client,
        "SELECT pid, state, jobs_done FROM pg_background_jobs",
    );
    let mut other = cluster.connect();
    show(&mut other, "SELECT * FROM pg_background_result(pg_background_launch('SELECT pg_backend_pid()')) AS (served_by int)");
    show(&mut other, "SELECT * FROM pg_background_result(pg_background_launch($$SELECT count(*) FROM pg_class WHERE relname = 'scratch'$$)) AS (temp_tables_left bigint)");
    show(
        &mut client,
        "SELECT pid, state, jobs_done FROM pg_background_jobs",
    );

    println!("\nStopping and removing the cluster.");
}
