//! Registration, dynamic launch and handles, waiting, connections and transactions in real
//! worker processes.

use std::time::Duration;

use bgworker_tests::{process_alive, test_cluster};

const WAIT: Duration = Duration::from_secs(30);
const CRASH_RESTART: &str = "terminating any other active server processes";

#[test]
fn dynamic_launch_handles_and_terminate_while_waiting() {
    let cluster = test_cluster(&[]);
    let mut client = cluster.connect();
    let status: String = client
        .query_one("SELECT launch_and_stop()", &[])
        .unwrap()
        .get(0);
    assert_eq!(
        status,
        "started=true pid_known=true stopped=Stopped after=Stopped"
    );

    // A launched sleeper shows in pg_stat_activity with its type and wait event.
    let pid: i32 = client
        .query_one("SELECT launch('sleeper')", &[])
        .unwrap()
        .get(0);
    let version: i32 = client
        .query_one("SELECT current_setting('server_version_num')::int", &[])
        .unwrap()
        .get(0);
    let expected = if version >= 170000 {
        "TestSleeperMain"
    } else {
        "Extension"
    };
    // Started means forked; it shows its wait event once connected and waiting.
    let mut wait_event: Option<String> = None;
    cluster.poll(WAIT, || {
        wait_event = client
            .query_opt(
                "SELECT wait_event FROM pg_stat_activity WHERE pid = $1 AND backend_type = 'test_sleeper'",
                &[&pid],
            )
            .unwrap()
            .and_then(|r| r.get(0));
        wait_event.as_deref() == Some(expected)
    });
    assert_eq!(wait_event.as_deref(), Some(expected));

    // pg_terminate_backend while it waits: it stops promptly, through its own loop.
    client
        .query_one("SELECT pg_terminate_backend($1)", &[&pid])
        .unwrap();
    assert!(cluster.poll(Duration::from_secs(10), || !process_alive(pid)));
    cluster.wait_for_log("sleeper stopping on request", WAIT);
}

#[test]
fn a_full_worker_pool_is_a_typed_error_naming_the_setting() {
    // The logical replication launcher takes one of the three slots.
    let cluster = test_cluster(&[("max_worker_processes", "3")]);
    let mut client = cluster.connect();
    let mut launched = 0;
    loop {
        let pid: Option<i32> = client
            .query_one("SELECT launch('sleeper')", &[])
            .unwrap()
            .get(0);
        match pid {
            Some(_) => launched += 1,
            None => break,
        }
        assert!(launched < 10, "launches never ran out of slots");
    }
    assert!(launched >= 1);
    let error: String = client
        .query_one("SELECT launch_error('sleeper')", &[])
        .unwrap()
        .get(0);
    assert!(error.starts_with("53000:"), "{error}");
    assert!(error.contains("max_worker_processes"), "{error}");
    // The cluster is unharmed and still answers.
    let one: i32 = client.query_one("SELECT 1", &[]).unwrap().get(0);
    assert_eq!(one, 1);
    assert!(!cluster.log().contains(CRASH_RESTART));
}

#[test]
fn registration_mistakes_are_errors_not_truncation() {
    let cluster = test_cluster(&[]);
    let mut client = cluster.connect();
    let errors: Vec<String> = client
        .query_one("SELECT registration_errors()", &[])
        .unwrap()
        .get(0);
    assert_eq!(errors.len(), 3);
    assert!(
        errors[0].contains("bgw_name") && errors[0].contains("200 bytes"),
        "{}",
        errors[0]
    );
    assert!(errors[1].contains("NUL"), "{}", errors[1]);
    // Static registration from a backend is skipped, as in C (see tests/soundness).
    assert_eq!(errors[2], "no error");
}

#[test]
fn a_missing_database_ends_only_that_worker() {
    let cluster = test_cluster(&[("test_workers.database", "no_such_db")]);
    let mut client = cluster.connect();
    // The worker starts, then fails to connect.
    let _pid: Option<i32> = client
        .query_one("SELECT launch('sleeper')", &[])
        .unwrap()
        .get(0);
    cluster.wait_for_log("database \"no_such_db\" does not exist", WAIT);
    assert!(!cluster.log().contains(CRASH_RESTART));
    let one: i32 = client.query_one("SELECT 1", &[]).unwrap().get(0);
    assert_eq!(one, 1);
}

#[test]
fn connects_by_name_as_a_role_with_an_application_name() {
    let cluster = test_cluster(&[]);
    let mut client = cluster.connect();
    for sql in [
        "CREATE ROLE app LOGIN",
        "CREATE DATABASE appdb",
        "CREATE DATABASE closed ALLOW_CONNECTIONS false",
    ] {
        client.batch_execute(sql).unwrap();
    }
    let pid: i32 = client
        .query_one("SELECT launch('connect_as', 'appdb|app|')", &[])
        .unwrap()
        .get(0);
    cluster.wait_for_log("connected as app to appdb", WAIT);
    let row = client
        .query_one("SELECT datname::text, usename::text, application_name FROM pg_stat_activity WHERE pid = $1", &[&pid])
        .unwrap();
    let (db, user, app): (String, String, String) = (row.get(0), row.get(1), row.get(2));
    assert_eq!(
        (db.as_str(), user.as_str(), app.as_str()),
        ("appdb", "app", "connect-as test")
    );

    // datallowconn = false refuses the worker unless it asks to bypass it.
    client
        .query_one("SELECT launch('connect_as', 'closed||')", &[])
        .ok();
    cluster.wait_for_log("is not currently accepting connections", WAIT);
    client
        .query_one("SELECT launch('connect_as', 'closed||allowconn')", &[])
        .unwrap();
    cluster.wait_for_log("connected as postgres to closed", WAIT);
}

#[test]
fn waits_say_why_they_woke() {
    let cluster = test_cluster(&[]);
    let mut client = cluster.connect();
    client.query_one("SELECT launch('latch_probe')", &[]).ok();
    cluster.wait_for_log("latch probe: Latch Timeout Socket", WAIT);
}

#[test]
fn transactions_survive_errors_and_keep_prepared_plans() {
    let cluster = test_cluster(&[]);
    let mut client = cluster.connect();
    client
        .batch_execute("CREATE TABLE worker_log (step int, note text); CREATE TABLE unique_t (k int PRIMARY KEY); INSERT INTO unique_t VALUES (1)")
        .unwrap();
    let pid: i32 = client
        .query_one("SELECT launch('sql_loop')", &[])
        .unwrap()
        .get(0);
    cluster.wait_for_log("sql loop done", Duration::from_secs(120));
    let notes: Vec<(i32, String)> = client
        .query("SELECT step, note FROM worker_log ORDER BY step, note", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let at = |step: i32| {
        notes
            .iter()
            .filter(|(s, _)| *s == step)
            .map(|(_, n)| n.as_str())
            .collect::<Vec<_>>()
    };

    // 1: the syntax error came back as a value, and the next transaction worked.
    assert_eq!(at(1), vec!["caught 42601"]);
    assert!(cluster
        .log()
        .contains("sql loop caught: syntax error at or near \"SELEC\""));
    // 2: the failed subtransaction left nothing; the outer transaction committed.
    assert_eq!(at(2), vec!["subxact rolled back: 23505"]);
    // 3: one plan, three transactions; a wrong parameter type refused with both types named.
    let three = at(3);
    assert_eq!(&three[..3], &["prepared 0", "prepared 1", "prepared 2"]);
    assert!(
        three[3].contains("bigint") && three[3].contains("integer"),
        "{}",
        three[3]
    );
    // 4: two million rows through a cursor, in bounded memory.
    let four = at(4)[0];
    assert!(
        four.starts_with("cursor rows=2000000 sum=2000001000000 "),
        "{four}"
    );
    let growth: u64 = four.rsplit('=').next().unwrap().parse().unwrap();
    assert!(
        growth < 64 * 1024,
        "peak RSS grew by {growth} kB reading 2M rows (~230 MB of data)"
    );
    // 5: the worker reported its activity, and is idle now.
    assert_eq!(at(5), vec!["reported"]);
    let row = client
        .query_one(
            "SELECT state, query FROM pg_stat_activity WHERE pid = $1",
            &[&pid],
        )
        .unwrap();
    let (state, query): (Option<String>, Option<String>) = (row.get(0), row.get(1));
    assert_eq!(state.as_deref(), Some("idle"));
    // What the worker reported stays, across the statement that followed it.
    assert_eq!(query.as_deref(), Some("sql loop step five"));
}

#[test]
fn a_panic_inside_a_transaction_rolls_it_back_and_ends_one_worker() {
    let cluster = test_cluster(&[]);
    let mut client = cluster.connect();
    client
        .batch_execute("CREATE TABLE worker_log (step int, note text)")
        .unwrap();
    client.query_one("SELECT launch('panic_in_xact')", &[]).ok();
    cluster.wait_for_log("ERROR:  panic inside a transaction", WAIT);
    cluster.wait_for_log("exited with exit code 1", WAIT);
    let n: i64 = client
        .query_one("SELECT count(*) FROM worker_log", &[])
        .unwrap()
        .get(0);
    assert_eq!(n, 0, "the panicking transaction's insert was rolled back");
    assert!(!cluster.log().contains(CRASH_RESTART));
}

#[test]
fn custom_variables_of_every_kind() {
    let cluster = test_cluster(&[("test_workers.int", "30s"), ("test_workers.enum", "high")]);
    let mut client = cluster.connect();
    let shown: String = client.query_one("SELECT guc_values()", &[]).unwrap().get(0);
    assert_eq!(
        shown,
        "int=30 real=0.5 bool=true string=Some(\"default\") enum=high"
    );
    client
        .batch_execute("SET test_workers.real = 1.25; SET test_workers.string = 'changed'; SET test_workers.bool = off; SET test_workers.int = '1min'")
        .unwrap();
    let shown: String = client.query_one("SELECT guc_values()", &[]).unwrap().get(0);
    assert_eq!(
        shown,
        "int=60 real=1.25 bool=false string=Some(\"changed\") enum=high"
    );
    // Bounds, enum names, contexts and the reserved prefix are enforced by PostgreSQL.
    for bad in [
        "SET test_workers.int = 101",
        "SET test_workers.real = 3",
        "SET test_workers.enum = 'extreme'",
        "SET test_workers.start = 'panicker'",
    ] {
        assert!(client.batch_execute(bad).is_err(), "{bad} was accepted");
    }
    // A reserved prefix refuses unknown names from 15 on (MarkGUCPrefixReserved); 14 only
    // warns about placeholders when the library loads (EmitWarningsOnPlaceholders).
    let version: i32 = client
        .query_one("SELECT current_setting('server_version_num')::int", &[])
        .unwrap()
        .get(0);
    let unknown = client.batch_execute("SET test_workers.no_such_setting = 1");
    assert_eq!(unknown.is_err(), version >= 150000, "{unknown:?}");
    client.batch_execute("CREATE ROLE plain LOGIN").unwrap();
    let mut plain = postgres::Client::connect(
        &cluster
            .connection_string("postgres")
            .replace("user=postgres", "user=plain"),
        postgres::NoTls,
    )
    .unwrap();
    assert!(
        plain.batch_execute("SET test_workers.bool = on").is_err(),
        "superuser-only setting"
    );
    assert!(plain.batch_execute("SET test_workers.int = 3").is_ok());
}
