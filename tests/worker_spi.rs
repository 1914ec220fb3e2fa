//! examples/worker_spi.rs behaves like PostgreSQL's own worker_spi (its TAP test's cases).

use std::time::Duration;

use bgworker_tests::{example, run_extension_script, Cluster};

const WAIT: Duration = Duration::from_secs(30);

fn cluster(settings: &[(&str, &str)]) -> Cluster {
    let mut b = Cluster::builder().library(example("worker_spi"));
    for (k, v) in settings {
        b = b.setting(k, v);
    }
    let cluster = b.start();
    run_extension_script(&mut cluster.connect(), "worker_spi");
    cluster
}

fn version(client: &mut postgres::Client) -> i32 {
    client
        .query_one("SELECT current_setting('server_version_num')::int", &[])
        .unwrap()
        .get(0)
}

fn total(client: &mut postgres::Client, schema: &str) -> Option<i32> {
    client
        .query_opt(
            &format!("SELECT value FROM {schema}.counted WHERE type = 'total'"),
            &[],
        )
        .ok()
        .flatten()
        .and_then(|r| r.get(0))
}

fn wait_for_schema(cluster: &Cluster, client: &mut postgres::Client, schema: &str) {
    assert!(
        cluster.poll(WAIT, || {
            client
                .query_one("SELECT count(*) FROM pg_tables WHERE schemaname = $1 AND tablename = 'counted'", &[&schema])
                .unwrap()
                .get::<_, i64>(0)
                == 1
        }),
        "{schema}.counted was not created"
    );
}

#[test]
fn dynamic_worker_counts_deltas_into_the_total() {
    let cluster = cluster(&[("worker_spi.naptime", "3600")]);
    let mut client = cluster.connect();
    let started: bool = client
        .query_one("SELECT worker_spi_launch(4) IS NOT NULL", &[])
        .unwrap()
        .get(0);
    assert!(started);
    wait_for_schema(&cluster, &mut client, "schema4");
    client
        .batch_execute("INSERT INTO schema4.counted VALUES ('total', 0), ('delta', 1)")
        .unwrap();
    client.batch_execute("SELECT pg_reload_conf()").unwrap();
    assert!(cluster.poll(WAIT, || total(&mut client, "schema4") == Some(1)));
    let deltas: i64 = client
        .query_one(
            "SELECT count(*) FROM schema4.counted WHERE type = 'delta'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(deltas, 0);
    cluster.wait_for_log("count in schema4.counted is now 1", WAIT);
    let kind: String = client
        .query_one(
            "SELECT backend_type FROM pg_stat_activity WHERE backend_type LIKE 'worker_spi%'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(kind, "worker_spi dynamic");
}

#[test]
fn preloaded_workers_connect_to_the_configured_database_with_the_right_wait_event() {
    let mut cluster = cluster(&[]);
    cluster
        .connect()
        .batch_execute("CREATE DATABASE mydb")
        .unwrap();
    cluster.restart_with(&[
        ("shared_preload_libraries", "worker_spi"),
        ("worker_spi.database", "mydb"),
        ("worker_spi.total_workers", "3"),
        ("max_worker_processes", "32"),
    ]);
    let mut client = cluster.connect();
    let expected = if version(&mut client) >= 170000 {
        "WorkerSpiMain"
    } else {
        "Extension"
    };
    assert!(
        cluster.poll(WAIT, || {
            client
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'worker_spi' \
                     AND datname = 'mydb' AND wait_event = $1",
                    &[&expected],
                )
                .unwrap()
                .get::<_, i64>(0)
                == 3
        }),
        "three worker_spi workers waiting on {expected} in mydb"
    );
    if expected == "WorkerSpiMain" {
        let listed: i64 = client
            .query_one("SELECT count(*) FROM pg_wait_events WHERE type = 'Extension' AND name = 'WorkerSpiMain'", &[])
            .unwrap()
            .get(0);
        assert_eq!(listed, 1);
    }
    // The total_workers setting exists only because the library was preloaded.
    let shown: String = client
        .query_one("SHOW worker_spi.total_workers", &[])
        .unwrap()
        .get(0);
    assert_eq!(shown, "3");
}

#[test]
fn dynamic_workers_run_as_the_given_role_in_the_given_database() {
    let cluster = cluster(&[]);
    let mut client = cluster.connect();
    client.batch_execute("CREATE ROLE counter LOGIN").unwrap();
    client
        .batch_execute("CREATE DATABASE counting OWNER counter")
        .unwrap();
    let dboid: u32 = client
        .query_one(
            "SELECT oid FROM pg_database WHERE datname = 'counting'",
            &[],
        )
        .unwrap()
        .get(0);
    let roleoid: u32 = client
        .query_one("SELECT oid FROM pg_roles WHERE rolname = 'counter'", &[])
        .unwrap()
        .get(0);
    let pid: i32 = client
        .query_one("SELECT worker_spi_launch(7, $1, $2)", &[&dboid, &roleoid])
        .unwrap()
        .get(0);
    assert!(cluster.poll(WAIT, || {
        client
            .query_opt("SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND datname = 'counting' AND usename = 'counter'", &[&pid])
            .unwrap()
            .is_some()
    }));
    let mut counting = cluster.connect_to("counting");
    wait_for_schema(&cluster, &mut counting, "schema7");
    let owner: String = counting
        .query_one(
            "SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = 'schema7'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(owner, "counter");
}

#[test]
fn bypass_flags_let_workers_into_closed_databases_and_nologin_roles() {
    let cluster = cluster(&[]);
    let mut client = cluster.connect();
    client
        .batch_execute("CREATE DATABASE closed ALLOW_CONNECTIONS false")
        .unwrap();
    let dboid: u32 = client
        .query_one("SELECT oid FROM pg_database WHERE datname = 'closed'", &[])
        .unwrap()
        .get(0);
    // Without the flag the worker starts, then fails to connect; with it, it works.
    let _ = client.query_one("SELECT worker_spi_launch(11, $1)", &[&dboid]);
    cluster.wait_for_log(
        "database \"closed\" is not currently accepting connections",
        WAIT,
    );
    let pid: Option<i32> = client
        .query_one(
            "SELECT worker_spi_launch(12, $1, 0, '{ALLOWCONN}')",
            &[&dboid],
        )
        .unwrap()
        .get(0);
    assert!(pid.is_some());
    cluster.wait_for_log("worker_spi dynamic worker 12 initialized", WAIT);

    client
        .batch_execute("CREATE ROLE nologin_role NOLOGIN SUPERUSER")
        .unwrap();
    let postgres_oid: u32 = client
        .query_one(
            "SELECT oid FROM pg_database WHERE datname = 'postgres'",
            &[],
        )
        .unwrap()
        .get(0);
    let roleoid: u32 = client
        .query_one(
            "SELECT oid FROM pg_roles WHERE rolname = 'nologin_role'",
            &[],
        )
        .unwrap()
        .get(0);
    if version(&mut client) >= 170000 {
        let _ = client.query_one(
            "SELECT worker_spi_launch(13, $1, $2)",
            &[&postgres_oid, &roleoid],
        );
        cluster.wait_for_log("role \"nologin_role\" is not permitted to log in", WAIT);
        let pid: Option<i32> = client
            .query_one(
                "SELECT worker_spi_launch(14, $1, $2, '{ROLELOGINCHECK}')",
                &[&postgres_oid, &roleoid],
            )
            .unwrap()
            .get(0);
        assert!(pid.is_some());
        cluster.wait_for_log("worker_spi dynamic worker 14 initialized", WAIT);
    } else {
        let err = client
            .query_one(
                "SELECT worker_spi_launch(14, $1, $2, '{ROLELOGINCHECK}')",
                &[&postgres_oid, &roleoid],
            )
            .unwrap_err();
        assert!(
            err.as_db_error()
                .unwrap()
                .message()
                .contains("needs PostgreSQL 17"),
            "{err}"
        );
    }
    let err = client
        .query_one("SELECT worker_spi_launch(15, 0, 0, '{BOGUS}')", &[])
        .unwrap_err();
    assert!(err
        .as_db_error()
        .unwrap()
        .message()
        .contains("incorrect flag value found in array: \"BOGUS\""));
}

#[test]
fn bursts_are_counted_exactly_once_by_concurrent_workers() {
    let cluster = cluster(&[("worker_spi.naptime", "1")]);
    let mut client = cluster.connect();
    for i in [21, 22] {
        client
            .query_one("SELECT worker_spi_launch($1)", &[&i])
            .unwrap();
        wait_for_schema(&cluster, &mut client, &format!("schema{i}"));
        client
            .batch_execute(&format!(
                "INSERT INTO schema{i}.counted VALUES ('total', 0)"
            ))
            .unwrap();
    }
    // Several bursts while both workers run: every delta lands in its total exactly once.
    for round in 0..5 {
        client
            .batch_execute(&format!(
                "INSERT INTO schema21.counted SELECT 'delta', g FROM generate_series(1, 100) g; \
                 INSERT INTO schema22.counted SELECT 'delta', {round} + 1 FROM generate_series(1, 50) g"
            ))
            .unwrap();
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(cluster.poll(WAIT, || total(&mut client, "schema21") == Some(5 * 5050)));
    assert!(cluster.poll(WAIT, || total(&mut client, "schema22") == Some(50 * 15)));
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(
        total(&mut client, "schema21"),
        Some(5 * 5050),
        "nothing counted twice"
    );
    assert_eq!(total(&mut client, "schema22"), Some(50 * 15));
}

#[test]
fn a_naptime_change_by_alter_system_changes_the_cycle() {
    let cluster = cluster(&[("worker_spi.naptime", "3600")]);
    let mut client = cluster.connect();
    client
        .query_one("SELECT worker_spi_launch(31)", &[])
        .unwrap();
    wait_for_schema(&cluster, &mut client, "schema31");
    // The launch itself can wake the worker once; after that it sleeps for an hour.
    std::thread::sleep(Duration::from_millis(500));
    client
        .batch_execute("INSERT INTO schema31.counted VALUES ('total', 0), ('delta', 5)")
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        total(&mut client, "schema31"),
        Some(0),
        "nothing counted during a long nap"
    );
    client
        .batch_execute("ALTER SYSTEM SET worker_spi.naptime = 1")
        .unwrap();
    client.batch_execute("SELECT pg_reload_conf()").unwrap();
    assert!(cluster.poll(WAIT, || total(&mut client, "schema31") == Some(5)));
    // And from now on, every second, without further signals.
    client
        .batch_execute("INSERT INTO schema31.counted VALUES ('delta', 7)")
        .unwrap();
    assert!(
        cluster.poll(Duration::from_secs(10), || total(&mut client, "schema31")
            == Some(12))
    );
}

#[test]
fn an_exhausted_worker_pool_returns_null() {
    let cluster = cluster(&[
        ("max_worker_processes", "4"),
        ("worker_spi.naptime", "3600"),
    ]);
    let mut client = cluster.connect();
    let mut nulls = 0;
    for i in 40..50 {
        let pid: Option<i32> = client
            .query_one("SELECT worker_spi_launch($1)", &[&i])
            .unwrap()
            .get(0);
        if pid.is_none() {
            nulls += 1;
        }
    }
    assert!(
        nulls >= 6,
        "only {nulls} of 10 launches found no free slot with max_worker_processes = 4"
    );
    let one: i32 = client.query_one("SELECT 1", &[]).unwrap().get(0);
    assert_eq!(one, 1);
    assert!(!cluster
        .log()
        .contains("terminating any other active server processes"));
}

#[test]
fn launching_needs_a_grant() {
    let cluster = cluster(&[]);
    let mut client = cluster.connect();
    client.batch_execute("CREATE ROLE plain LOGIN").unwrap();
    let plain_conn = cluster
        .connection_string("postgres")
        .replace("user=postgres", "user=plain");
    let mut plain = postgres::Client::connect(&plain_conn, postgres::NoTls).unwrap();
    let err = plain
        .query_one("SELECT worker_spi_launch(1)", &[])
        .unwrap_err();
    assert_eq!(err.as_db_error().unwrap().code().code(), "42501", "{err}");
    client
        .batch_execute(
            "GRANT EXECUTE ON FUNCTION worker_spi_launch(int4, oid, oid, text[]) TO plain",
        )
        .unwrap();
    let pid: Option<i32> = plain
        .query_one("SELECT worker_spi_launch(1)", &[])
        .unwrap()
        .get(0);
    assert!(pid.is_some());
}
