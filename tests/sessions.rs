//! Issue 10's foundation: `bgworker::session`. A worker runs SQL strings for a backend in a
//! session of its own; rows, command tags, NOTICEs and ERRORs come back through a message
//! queue and become the calling function's own result.

use std::time::Duration;

use bgworker_tests::test_cluster;

#[test]
fn rows_tags_and_typed_columns_come_back() {
    let cluster = test_cluster(&[]);
    let mut client = cluster.connect();
    let rows = client
        .query(
            "SELECT * FROM session_run('SELECT g, g || ''x'', NULL::text FROM generate_series(1, 3) g') \
             AS (n int, label text, nothing text)",
            &[],
        )
        .unwrap();
    let got: Vec<(i32, String, Option<String>)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        got,
        vec![
            (1, "1x".to_string(), None),
            (2, "2x".to_string(), None),
            (3, "3x".to_string(), None)
        ]
    );

    // No result set: the command tags, one per statement.
    let tags: Vec<String> = client
        .query(
            "SELECT * FROM session_run('CREATE TABLE made_by_bg (x int); \
             INSERT INTO made_by_bg VALUES (1), (2)') AS (tag text)",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(tags, vec!["CREATE TABLE", "INSERT 0 2"]);
    let n: i64 = client
        .query_one("SELECT count(*) FROM made_by_bg", &[])
        .unwrap()
        .get(0);
    assert_eq!(n, 2, "the worker's transaction committed");

    // A utility command that cannot run inside a transaction block works alone.
    let tag: String = client
        .query_one(
            "SELECT * FROM session_run('VACUUM made_by_bg') AS (tag text)",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(tag, "VACUUM");

    // A column definition list of the wrong width is a clear error.
    let e = client
        .query("SELECT * FROM session_run('SELECT 1, 2') AS (a int)", &[])
        .unwrap_err();
    let db = e.as_db_error().expect("a server error");
    assert_eq!(db.code().code(), "42804", "{db:?}");
    cluster.assert_no_crash();
}

#[test]
fn errors_and_notices_arrive_as_the_callers_own() {
    let cluster = test_cluster(&[]);
    let mut client = cluster.connect();
    let e = client
        .query("SELECT * FROM session_run('SELECT 1/0') AS (x int)", &[])
        .unwrap_err();
    let db = e.as_db_error().expect("a server error");
    assert_eq!(db.code().code(), "22012");
    assert_eq!(db.message(), "division by zero");
    assert!(
        db.where_()
            .unwrap_or_default()
            .contains("background session worker"),
        "{db:?}"
    );

    // The failed string rolled back as a whole (an implicit transaction block).
    client.batch_execute("CREATE TABLE kept (x int)").unwrap();
    let e = client
        .query(
            "SELECT * FROM session_run('INSERT INTO kept VALUES (1); SELECT 1/0') AS (x int)",
            &[],
        )
        .unwrap_err();
    assert_eq!(e.as_db_error().unwrap().code().code(), "22012");
    let n: i64 = client
        .query_one("SELECT count(*) FROM kept", &[])
        .unwrap()
        .get(0);
    assert_eq!(n, 0);

    // NOTICEs are forwarded, with their text.
    let notices = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let seen = notices.clone();
    let mut config: postgres::Config = cluster.connection_string("postgres").parse().unwrap();
    config.notice_callback(move |n| seen.lock().unwrap().push(n.message().to_string()));
    let mut listening = config.connect(postgres::NoTls).unwrap();
    listening
        .query(
            "SELECT * FROM session_run('DO $$ BEGIN RAISE NOTICE ''hello from the worker''; END $$') \
             AS (tag text)",
            &[],
        )
        .unwrap();
    assert_eq!(
        *notices.lock().unwrap(),
        vec!["hello from the worker".to_string()]
    );
    cluster.assert_no_crash();
}

#[test]
fn a_session_keeps_its_state_between_strings() {
    let cluster = test_cluster(&[]);
    let mut client = cluster.connect();
    // A temporary table and a setting survive from one string to the next, and so does an
    // open transaction block.
    let row = client
        .query_one(
            "SELECT * FROM session_script(ARRAY[ \
               'CREATE TEMP TABLE mine (x int)', \
               'SET application_name = ''kept''', \
               'BEGIN', \
               'INSERT INTO mine VALUES (1), (2)', \
               'SELECT count(*), current_setting(''application_name''), \
                       now() = statement_timestamp() FROM mine']) \
             AS (n bigint, app text, same_xact_start bool)",
            &[],
        )
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 2);
    assert_eq!(row.get::<_, String>(1), "kept");
    assert!(
        !row.get::<_, bool>(2),
        "still in the transaction BEGIN opened"
    );

    // After an ERROR inside a block, only ROLLBACK is accepted, then the session goes on.
    let tag: String = client
        .query_one(
            "SELECT * FROM session_script(ARRAY['BEGIN', 'SELECT 1/0', 'SELECT 1', 'ROLLBACK']) \
             AS (tag text)",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(tag, "ROLLBACK");
    let warnings = cluster.log();
    assert!(
        warnings.contains(
            "current transaction is aborted, commands ignored until end of transaction block"
        ),
        "the statement after the error was refused"
    );
    cluster.assert_no_crash();
}

#[test]
fn a_result_much_larger_than_the_queue_streams_through() {
    let cluster = test_cluster(&[]);
    let mut client = cluster.connect();
    let row = client
        .query_one(
            "SELECT count(*), sum(n), max(length(pad)) FROM session_run( \
               'SELECT g, repeat(''x'', 100) FROM generate_series(1, 200000) g') \
             AS (n int, pad text)",
            &[],
        )
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 200_000);
    assert_eq!(row.get::<_, i64>(1), 200_000 * 200_001 / 2);
    assert_eq!(row.get::<_, i32>(2), 100);
    // The workers are gone once their callers are done with them.
    assert!(cluster.poll(Duration::from_secs(20), || {
        client
            .query_one(
                "SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type = 'test_session'",
                &[],
            )
            .unwrap()
            .get::<_, bool>(0)
    }));
    cluster.assert_no_crash();
}

#[test]
fn record_sets_refuse_bad_text_and_use_outside_their_call() {
    let cluster = test_cluster(&[]);
    let mut client = cluster.connect();
    for (bytes, column) in [("\\xf4", "text"), ("\\x31320034", "int")] {
        let e = client
            .query(
                &format!("SELECT * FROM push_raw('{bytes}'::bytea) AS (v {column})"),
                &[],
            )
            .unwrap_err();
        assert_eq!(
            e.as_db_error().expect("a server error").code().code(),
            "22021",
            "{e}"
        );
    }
    let n: i32 = client
        .query_one("SELECT * FROM push_raw('\\x3132'::bytea) AS (v int)", &[])
        .unwrap()
        .get(0);
    assert_eq!(n, 12);

    let notices = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let seen = notices.clone();
    let mut config: postgres::Config = cluster.connection_string("postgres").parse().unwrap();
    config.notice_callback(move |n| seen.lock().unwrap().push(n.message().to_string()));
    let mut c = config.connect(postgres::NoTls).unwrap();
    for phase in ["twice", "keep", "stash", "use"] {
        c.query(
            &format!("SELECT * FROM misuse_record_set('{phase}') AS (v text)"),
            &[],
        )
        .unwrap();
    }
    let notices = notices.lock().unwrap().join("\n");
    let line = |prefix: &str| {
        notices
            .lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_default()
            .to_string()
    };
    assert!(line("second: ").contains("started already"), "{notices}");
    assert!(
        line("stale: ").contains("only during the call that made it"),
        "{notices}"
    );
    cluster.assert_no_crash();
}

/// A session worker ends right after PostgreSQL's exit callbacks: its temporary table is
/// dropped and the postmaster gets its exit code, but the C library's exit handlers, which
/// every server process inherits from the postmaster and which only free memory, do not
/// run (OpenSSL's alone took about 0.5 ms of each fresh worker's exit).
#[test]
fn a_session_worker_ends_after_postgres_cleanup_without_library_teardown() {
    let cluster = test_cluster(&[("test_workers.exit_handler", "on")]);
    let ran_handlers = |pid: i32| {
        cluster.log_count(&format!(
            "test_workers: C exit handlers ran in process [{pid}]"
        ))
    };
    let gone = |client: &mut postgres::Client, pid: i32| {
        cluster.poll(Duration::from_secs(10), || {
            client
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE pid = $1",
                    &[&pid],
                )
                .unwrap()
                .get::<_, i64>(0)
                == 0
        })
    };

    // A backend runs them, so the handler shows when a process does.
    let backend: i32 = {
        let mut c = cluster.connect();
        c.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0)
    };
    assert!(
        cluster.poll(Duration::from_secs(10), || ran_handlers(backend) == 1),
        "a backend's exit handlers did not log:\n{}",
        cluster.log()
    );

    let mut client = cluster.connect();
    let worker: i32 = client
        .query_one(
            "SELECT * FROM session_script(ARRAY['CREATE TEMP TABLE t (x int)', \
               'SELECT pg_backend_pid()']) AS (pid int)",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(gone(&mut client, worker), "the session worker did not exit");
    let temp: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_class WHERE relpersistence = 't'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(temp, 0, "the worker's temporary table outlived it");

    // Terminated mid-string, a worker still exits with code 1 for the postmaster.
    let config: postgres::Config = cluster.connection_string("postgres").parse().unwrap();
    let sleeper = std::thread::spawn(move || {
        let mut c = config.connect(postgres::NoTls).unwrap();
        c.query(
            "SELECT * FROM session_run('SELECT pg_sleep(60)') AS (x text)",
            &[],
        )
        .unwrap_err()
    });
    let mut terminated = 0;
    assert!(cluster.poll(Duration::from_secs(10), || {
        let row = client
            .query_opt(
                "SELECT pid FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(60)' \
                   AND backend_type = 'test_session'",
                &[],
            )
            .unwrap();
        row.map(|r| terminated = r.get(0)).is_some()
    }));
    client
        .query_one("SELECT pg_terminate_backend($1)", &[&terminated])
        .unwrap();
    let e = sleeper.join().unwrap();
    assert!(e.as_db_error().is_some(), "{e}");
    assert!(gone(&mut client, terminated));
    let exit = format!("(PID {terminated}) exited with exit code 1");
    assert!(
        cluster.poll(Duration::from_secs(10), || cluster.log_count(&exit) == 1),
        "{}",
        cluster.log()
    );

    for pid in [worker, terminated] {
        assert_eq!(ran_handlers(pid), 0, "process {pid}:\n{}", cluster.log());
    }
    // Outside a worker it is refused: a backend's extensions may rely on their handlers.
    let e = client
        .query_one("SELECT skip_teardown_in_backend()", &[])
        .unwrap_err();
    assert!(
        e.as_db_error()
            .unwrap()
            .message()
            .contains("only a background worker"),
        "{e}"
    );
    cluster.assert_no_crash();
}

/// Rows, the NOTICEs raised between them and an ERROR after them arrive in the order the
/// worker sent them, through a queue much smaller than the result, although a worker
/// publishes results (row descriptions, rows, command tags) a quarter of the queue at a time
/// and every other message at once.
#[test]
fn rows_notices_and_errors_arrive_in_the_order_they_were_sent() {
    let cluster = test_cluster(&[]);
    let mut client = cluster.connect();
    client
        .batch_execute(
            "CREATE FUNCTION say(g int) RETURNS int LANGUAGE plpgsql AS $$ \
             BEGIN IF g % 250 = 0 THEN RAISE NOTICE 'after %', g - 1; END IF; RETURN g; END $$",
        )
        .unwrap();
    let messages = |client: &mut postgres::Client, sql: &str| -> Vec<String> {
        client
            .query_one("SELECT session_messages($1)", &[&sql])
            .unwrap()
            .get(0)
    };

    let mut expected = vec!["columns".to_string()];
    for g in 1..=3000 {
        if g % 250 == 0 {
            expected.push(format!("notice after {}", g - 1));
        }
        expected.push(format!("row {g}"));
    }
    expected.extend(["complete SELECT 3000".into(), "ready".into()]);
    assert_eq!(
        messages(&mut client, "SELECT say(g) FROM generate_series(1, 3000) g"),
        expected
    );

    let mut expected = vec!["columns".to_string()];
    expected.extend((1..2000).map(|g| format!("row {g}")));
    expected.extend(["error division by zero".into(), "ready".into()]);
    assert_eq!(
        messages(
            &mut client,
            "SELECT g + 0 * (1 / (2000 - g)) FROM generate_series(1, 3000) g"
        ),
        expected
    );
    cluster.assert_no_crash();
}

/// A parallel query's worker NOTICEs reach the session worker (its leader) while the leader
/// waits for room in its full reply queue. Answering them there, inside a half-sent
/// message, used to cut the reply off (the caller waited forever) or crash the server
/// (pqmq detaches the queue it is still sending to). They now wait until the message is
/// out, and every row and NOTICE arrives.
#[test]
fn parallel_workers_notices_wait_while_a_reply_is_half_sent() {
    let cluster = test_cluster(&[
        ("max_worker_processes", "16"),
        ("max_parallel_workers", "8"),
    ]);
    let mut client = cluster.connect();
    client
        .batch_execute(
            "CREATE TABLE big AS SELECT g FROM generate_series(1, 50000) g; ANALYZE big; \
             CREATE FUNCTION noisy(g int) RETURNS int LANGUAGE plpgsql PARALLEL SAFE AS $$ \
             BEGIN IF g % 5000 = 0 THEN RAISE NOTICE 'at %', g; END IF; RETURN g; END $$; \
             SET statement_timeout = '60s'",
        )
        .unwrap();
    let sql = "SET parallel_setup_cost = 0; SET parallel_tuple_cost = 0; \
               SET min_parallel_table_scan_size = 0; SET max_parallel_workers_per_gather = 2; \
               SET parallel_leader_participation = off; \
               SELECT noisy(g) FROM big";
    for round in 0..3 {
        let seen: Vec<String> = client
            .query_one("SELECT session_messages($1)", &[&sql])
            .unwrap()
            .get(0);
        let rows = seen.iter().filter(|m| m.starts_with("row ")).count();
        let notices = seen.iter().filter(|m| m.starts_with("notice at ")).count();
        assert_eq!(
            (rows, notices),
            (50000, 10),
            "round {round}: {:?}",
            &seen[seen.len().saturating_sub(5)..]
        );
        assert_eq!(seen.last().map(String::as_str), Some("ready"));
    }
    // The query did run in parallel workers: the plan has a Gather.
    let plan: Vec<String> = client
        .query_one(
            "SELECT session_messages('SET parallel_setup_cost = 0; SET parallel_tuple_cost = 0; \
               SET min_parallel_table_scan_size = 0; EXPLAIN SELECT noisy(g) FROM big')",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(plan.iter().any(|l| l.contains("Gather")), "{plan:?}");
    cluster.assert_no_crash();
}
