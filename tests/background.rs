//! The background example: pg_background's version 1 API (launch, result, detach) on
//! `bgworker::session`, running as the caller with the caller's settings.

use std::time::{Duration, Instant};

use bgworker_tests::{example, run_extension_script, Cluster};

fn cluster() -> Cluster {
    let cluster = Cluster::builder()
        .library(example("background"))
        .setting("max_worker_processes", "16")
        .start();
    let mut client = cluster.connect();
    run_extension_script(&mut client, "background");
    client
        .batch_execute(
            "CREATE ROLE alice LOGIN; CREATE SCHEMA alice_space AUTHORIZATION alice; \
             SELECT grant_pg_background_privileges('alice')",
        )
        .unwrap();
    cluster
}

fn as_alice(cluster: &Cluster) -> postgres::Client {
    bgworker_tests::connect_as(cluster, "alice")
}

#[test]
fn results_tags_and_errors_come_back_once() {
    let cluster = cluster();
    let mut client = cluster.connect();
    let rows: Vec<(i32, String)> = client
        .query(
            "SELECT * FROM pg_background_result(pg_background_launch( \
               'SELECT g, md5(g::text) FROM generate_series(1, 3) g')) AS (n int, hash text)",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0], (1, "c4ca4238a0b923820dcc509a6f75849b".to_string()));

    client.batch_execute("CREATE TABLE big (x int)").unwrap();
    let tag: String = client
        .query_one(
            "SELECT * FROM pg_background_result(pg_background_launch('VACUUM big')) AS (result text)",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(tag, "VACUUM");

    let e = client
        .query(
            "SELECT * FROM pg_background_result(pg_background_launch('SELECT 1/0')) AS (x int)",
            &[],
        )
        .unwrap_err();
    let db = e.as_db_error().expect("a server error");
    assert_eq!(
        (db.code().code(), db.message()),
        ("22012", "division by zero")
    );

    // A result is read once; then (or after a detach) the pid is unknown.
    let pid: i32 = client
        .query_one("SELECT pg_background_launch('SELECT 1')", &[])
        .unwrap()
        .get(0);
    client
        .query("SELECT * FROM pg_background_result($1) AS (x int)", &[&pid])
        .unwrap();
    let e = client
        .query("SELECT * FROM pg_background_result($1) AS (x int)", &[&pid])
        .unwrap_err();
    let db = e.as_db_error().unwrap();
    assert_eq!(db.code().code(), "42704");
    assert_eq!(
        db.message(),
        format!("PID {pid} is not attached to this session")
    );
    let pid: i32 = client
        .query_one("SELECT pg_background_launch('SELECT pg_sleep(0.1)')", &[])
        .unwrap()
        .get(0);
    client
        .execute("SELECT pg_background_detach($1)", &[&pid])
        .unwrap();
    assert!(client
        .execute("SELECT pg_background_detach($1)", &[&pid])
        .is_err());
    cluster.assert_no_crash();
}

#[test]
fn a_job_runs_as_its_caller_and_cannot_become_anyone_else() {
    let cluster = cluster();
    let mut alice = as_alice(&cluster);
    let row = alice
        .query_one(
            "SELECT * FROM pg_background_result(pg_background_launch( \
               'SELECT current_user::text, session_user::text, \
                       (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)')) \
             AS (cu text, su text, super bool)",
            &[],
        )
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "alice");
    assert_eq!(row.get::<_, String>(1), "alice");
    assert!(!row.get::<_, bool>(2));
    for attempt in [
        "SET SESSION AUTHORIZATION postgres",
        "SET ROLE postgres",
        "RESET ROLE; CREATE ROLE mallory SUPERUSER",
    ] {
        let e = alice
            .query(
                &format!(
                    "SELECT * FROM pg_background_result(pg_background_launch($${attempt}$$)) AS (r text)"
                ),
                &[],
            )
            .unwrap_err();
        let code = e
            .as_db_error()
            .expect("a server error")
            .code()
            .code()
            .to_string();
        assert_eq!(code, "42501", "{attempt}: {e}");
    }
    // PUBLIC was not granted the functions.
    let mut client = cluster.connect();
    client.batch_execute("CREATE ROLE bob LOGIN").unwrap();
    let conn = format!("{} user=bob", cluster.connection_string("postgres"));
    let mut bob = postgres::Client::connect(&conn, postgres::NoTls).unwrap();
    let e = bob
        .query("SELECT pg_background_launch('SELECT 1')", &[])
        .unwrap_err();
    assert_eq!(e.as_db_error().unwrap().code().code(), "42501");
    cluster.assert_no_crash();
}

#[test]
fn a_job_sees_the_callers_settings_and_keeps_its_statement_timeout() {
    let cluster = cluster();
    let mut alice = as_alice(&cluster);
    alice
        .batch_execute(
            "SET search_path = alice_space, public; SET TimeZone = 'Asia/Tokyo'; \
             SET DateStyle = 'SQL, DMY'; SET application_name = 'alices job'",
        )
        .unwrap();
    let row = alice
        .query_one(
            "SELECT * FROM pg_background_result(pg_background_launch( \
               'SELECT current_setting(''search_path''), current_setting(''TimeZone''), \
                       current_setting(''DateStyle''), current_setting(''application_name'')')) \
             AS (path text, tz text, style text, app text)",
            &[],
        )
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "alice_space, public");
    assert_eq!(row.get::<_, String>(1), "Asia/Tokyo");
    assert_eq!(row.get::<_, String>(2), "SQL, DMY");
    assert_eq!(row.get::<_, String>(3), "alices job");

    // Settings a client's startup may set but SET may not (log_disconnections) stay with
    // the caller's session; the rest of its startup options go to the job.
    let mut config: postgres::Config = cluster.connection_string("postgres").parse().unwrap();
    config.options("-c log_disconnections=on -c work_mem=7MB");
    let mut started_with_options = config.connect(postgres::NoTls).unwrap();
    let work_mem: String = started_with_options
        .query_one(
            "SELECT * FROM pg_background_result(pg_background_launch(                'SELECT current_setting(''work_mem'')')) AS (w text)",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(work_mem, "7MB");

    // A superuser's setting (log_statement) survives a SET ROLE to someone who could not
    // set it: the job takes it with the rights it was set with, as a parallel worker would.
    let mut admin = cluster.connect();
    admin
        .batch_execute("SET log_statement = 'all'; SET ROLE alice")
        .unwrap();
    let row = admin
        .query_one(
            "SELECT * FROM pg_background_result(pg_background_launch( \
               'SELECT current_user::text, current_setting(''log_statement'')')) \
             AS (who text, logged text)",
            &[],
        )
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "alice");
    assert_eq!(row.get::<_, String>(1), "all");

    alice
        .batch_execute("SET statement_timeout = '300ms'")
        .unwrap();
    let started = Instant::now();
    let e = alice
        .query(
            "SELECT * FROM pg_background_result(pg_background_launch('SELECT pg_sleep(20)')) AS (r text)",
            &[],
        )
        .unwrap_err();
    assert_eq!(
        e.as_db_error().expect("a server error").code().code(),
        "57014",
        "{e}"
    );
    assert!(started.elapsed() < Duration::from_secs(15));
    cluster.assert_no_crash();
}

#[test]
fn workers_show_in_pg_stat_activity_and_big_results_stream() {
    let cluster = cluster();
    let mut client = cluster.connect();
    let pid: i32 = client
        .query_one("SELECT pg_background_launch('SELECT pg_sleep(1.5)')", &[])
        .unwrap()
        .get(0);
    let mut observer = cluster.connect();
    let seen = cluster.poll(Duration::from_secs(10), || {
        observer
            .query_one(
                "SELECT count(*) = 1 FROM pg_stat_activity WHERE pid = $1 \
                 AND backend_type = 'pg_background' AND state = 'active' \
                 AND query = 'SELECT pg_sleep(1.5)'",
                &[&pid],
            )
            .unwrap()
            .get::<_, bool>(0)
    });
    assert!(seen, "the job's worker, query and state are visible");
    client
        .query(
            "SELECT * FROM pg_background_result($1) AS (r text)",
            &[&pid],
        )
        .unwrap();

    let row = client
        .query_one(
            "SELECT count(*), sum(n)::text FROM pg_background_result(pg_background_launch( \
               'SELECT g FROM generate_series(1, 1000000) g')) AS (n bigint)",
            &[],
        )
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 1_000_000);
    assert_eq!(
        row.get::<_, String>(1),
        (1_000_000i64 * 1_000_001 / 2).to_string()
    );
    cluster.assert_no_crash();
}

#[test]
fn a_caller_that_disconnects_leaves_no_worker_behind() {
    // Without the pool, the worker exits; with it, it goes back to the pool, idle.
    let cluster = cluster();
    let mut admin = cluster.connect();
    admin.batch_execute("LOAD 'background'").unwrap();
    admin
        .batch_execute("ALTER SYSTEM SET pg_background.pool_max_workers = 0")
        .unwrap();
    admin.batch_execute("SELECT pg_reload_conf()").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let mut client = cluster.connect();
    client
        .query_one(
            "SELECT pg_background_launch('SELECT g, repeat(''x'', 200) FROM generate_series(1, 300000) g')",
            &[],
        )
        .unwrap();
    drop(client); // nobody will read the result
    let mut observer = cluster.connect();
    assert!(cluster.poll(Duration::from_secs(60), || {
        observer
            .query_one(
                "SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type = 'pg_background'",
                &[],
            )
            .unwrap()
            .get::<_, bool>(0)
    }));

    admin
        .batch_execute("ALTER SYSTEM RESET pg_background.pool_max_workers")
        .unwrap();
    admin.batch_execute("SELECT pg_reload_conf()").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let mut client = cluster.connect();
    let pid: i32 = client
        .query_one(
            "SELECT pg_background_launch('SELECT g, repeat(''x'', 200) FROM generate_series(1, 300000) g')",
            &[],
        )
        .unwrap()
        .get(0);
    drop(client);
    assert!(cluster.poll(Duration::from_secs(60), || {
        observer
            .query_one(
                "SELECT coalesce(bool_and(state = 'idle' AND submitter IS NULL), false) \
                 FROM pg_background_jobs WHERE pid = $1",
                &[&pid],
            )
            .unwrap()
            .get::<_, bool>(0)
    }));
    cluster.assert_no_crash();
}
