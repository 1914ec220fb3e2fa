//! The background example's handles (pg_background's v2 API) and what pg_background never
//! shipped: `pg_background_run_v2` on a worker the caller holds, a cancel that keeps the
//! worker, fire-and-forget jobs whose output nobody reads, and who may touch a job.

use std::time::Duration;

use bgworker_tests::{
    code, connect_as, example, message, run_extension_script, test_functions, test_workers, Cluster,
};

fn cluster() -> Cluster {
    let cluster = Cluster::builder()
        .library(example("background"))
        .library(test_workers())
        .setting("max_worker_processes", "16")
        .start();
    let mut client = cluster.connect();
    run_extension_script(&mut client, "background");
    client.batch_execute(&test_functions()).unwrap();
    client
        .batch_execute(
            "CREATE ROLE alice LOGIN; CREATE ROLE bob LOGIN; GRANT bob TO postgres; \
             SELECT grant_pg_background_privileges('alice'); \
             SELECT grant_pg_background_privileges('bob'); \
             GRANT EXECUTE ON FUNCTION panic_with(text) TO alice; \
             CREATE TABLE done (job text); GRANT ALL ON done TO alice",
        )
        .unwrap();
    cluster
}

/// Launches `sql` with `pg_background_launch_v2`: (pid, cookie).
fn launch(client: &mut postgres::Client, sql: &str) -> (i32, i64) {
    let row = client
        .query_one(
            "SELECT (h).pid, (h).cookie FROM (SELECT pg_background_launch_v2($1) AS h) s",
            &[&sql],
        )
        .unwrap();
    (row.get(0), row.get(1))
}

#[test]
fn run_v2_keeps_the_workers_session_between_strings() {
    let cluster = cluster();
    let mut alice = connect_as(&cluster, "alice");
    let (pid, cookie) = launch(&mut alice, "CREATE TEMP TABLE mine AS SELECT 1 AS a");
    let result = "SELECT * FROM pg_background_result_v2($1, $2) AS (r text)";
    let tag: String = alice.query_one(result, &[&pid, &cookie]).unwrap().get(0);
    assert_eq!(tag, "SELECT 1");

    // Two strings queued before either result is read: results come back in order.
    let run = "SELECT pg_background_run_v2($1, $2, $3)";
    alice
        .execute(run, &[&pid, &cookie, &"INSERT INTO mine VALUES (2)"])
        .unwrap();
    alice
        .execute(
            run,
            &[
                &pid,
                &cookie,
                &"SET work_mem = '7MB'; SELECT sum(a)::int FROM mine",
            ],
        )
        .unwrap();
    let tag: String = alice.query_one(result, &[&pid, &cookie]).unwrap().get(0);
    assert_eq!(tag, "INSERT 0 1");
    let sum: i32 = alice
        .query_one(
            "SELECT * FROM pg_background_result_v2($1, $2) AS (s int)",
            &[&pid, &cookie],
        )
        .unwrap()
        .get(0);
    assert_eq!(sum, 3);
    let e = alice.query(result, &[&pid, &cookie]).unwrap_err();
    assert!(message(&e).contains("already been consumed"), "{e}");

    // A transaction block open across runs: nothing is visible until the COMMIT string.
    alice
        .execute(
            run,
            &[
                &pid,
                &cookie,
                &"BEGIN; INSERT INTO done VALUES ('in a block')",
            ],
        )
        .unwrap();
    alice.query(result, &[&pid, &cookie]).unwrap();
    let mut observer = cluster.connect();
    let count = |c: &mut postgres::Client| -> i64 {
        c.query_one("SELECT count(*) FROM done WHERE job = 'in a block'", &[])
            .unwrap()
            .get(0)
    };
    assert_eq!(count(&mut observer), 0);
    alice
        .execute(run, &[&pid, &cookie, &"SHOW work_mem; COMMIT"])
        .unwrap();
    let rows = alice.query(result, &[&pid, &cookie]).unwrap();
    assert_eq!(rows.len(), 1, "SHOW's row; COMMIT's tag is not a row then");
    assert_eq!(
        rows[0].get::<_, String>(0),
        "7MB",
        "the SET of an earlier run"
    );
    assert_eq!(count(&mut observer), 1);

    // Still the same worker, shown idle between strings (it reports so right after its
    // ready-for-query, which the client may have read first).
    assert!(cluster.poll(Duration::from_secs(10), || {
        observer
            .query_one(
                "SELECT count(*) = 1 FROM pg_stat_activity WHERE pid = $1 AND state = 'idle'",
                &[&pid],
            )
            .unwrap()
            .get::<_, bool>(0)
    }));
    alice
        .execute("SELECT pg_background_detach_v2($1, $2)", &[&pid, &cookie])
        .unwrap();
    cluster.assert_no_crash();
}

#[test]
fn a_cancel_stops_the_running_string_and_keeps_the_worker() {
    let cluster = cluster();
    let mut alice = connect_as(&cluster, "alice");
    let (pid, cookie) = launch(
        &mut alice,
        "SELECT pg_sleep(30); INSERT INTO done VALUES ('after the sleep')",
    );
    let mut observer = cluster.connect();
    assert!(cluster.poll(Duration::from_secs(10), || {
        observer
            .query_one(
                "SELECT count(*) = 1 FROM pg_stat_activity WHERE pid = $1 AND state = 'active'",
                &[&pid],
            )
            .unwrap()
            .get::<_, bool>(0)
    }));
    alice
        .execute("SELECT pg_background_cancel_v2($1, $2)", &[&pid, &cookie])
        .unwrap();
    let done: bool = alice
        .query_one(
            "SELECT pg_background_wait_v2_timeout($1, $2, 10000)",
            &[&pid, &cookie],
        )
        .unwrap()
        .get(0);
    assert!(done);
    let e = alice
        .query(
            "SELECT * FROM pg_background_result_v2($1, $2) AS (r text)",
            &[&pid, &cookie],
        )
        .unwrap_err();
    assert_eq!(code(&e), "57014", "{e}");
    let state: String = alice
        .query_one(
            "SELECT state FROM pg_background_list_v2() AS (pid int4, cookie int8, \
               launched_at timestamptz, user_id oid, queue_size int4, state text, \
               sql_preview text, last_error text, consumed bool) WHERE pid = $1",
            &[&pid],
        )
        .unwrap()
        .get(0);
    assert_eq!(state, "canceled");

    // The worker is still there and runs the next string.
    alice
        .execute(
            "SELECT pg_background_run_v2($1, $2, 'SELECT 42')",
            &[&pid, &cookie],
        )
        .unwrap();
    let answer: i32 = alice
        .query_one(
            "SELECT * FROM pg_background_result_v2($1, $2) AS (x int)",
            &[&pid, &cookie],
        )
        .unwrap()
        .get(0);
    assert_eq!(answer, 42);
    let inserted: i64 = observer
        .query_one("SELECT count(*) FROM done", &[])
        .unwrap()
        .get(0);
    assert_eq!(
        inserted, 0,
        "the string after the canceled statement did not run"
    );
    alice
        .execute("SELECT pg_background_detach_v2($1, $2)", &[&pid, &cookie])
        .unwrap();
    let stats = alice
        .query_one(
            "SELECT workers_launched, workers_canceled, workers_active FROM pg_background_stats_v2()",
            &[],
        )
        .unwrap();
    assert_eq!(
        (
            stats.get::<_, i64>(0),
            stats.get::<_, i64>(1),
            stats.get::<_, i32>(2)
        ),
        (1, 1, 0)
    );
    cluster.assert_no_crash();
}

#[test]
fn only_the_launching_role_with_the_cookie_touches_a_job() {
    let cluster = cluster();
    let mut client = cluster.connect();
    let (pid, cookie) = launch(&mut client, "SELECT 'secret'::text");
    client.batch_execute("SET ROLE bob").unwrap();
    for call in [
        "SELECT * FROM pg_background_result_v2($1, $2) AS (r text)",
        "SELECT pg_background_cancel_v2($1, $2)",
        "SELECT pg_background_wait_v2($1, $2)",
        "SELECT pg_background_detach_v2($1, $2)",
        "SELECT pg_background_run_v2($1, $2, 'SELECT 1')",
    ] {
        let e = client.query(call, &[&pid, &cookie]).unwrap_err();
        assert_eq!(code(&e), "42501", "{call}: {e}");
    }
    let listed: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_background_list_v2() AS (pid int4, cookie int8, \
               launched_at timestamptz, user_id oid, queue_size int4, state text, \
               sql_preview text, last_error text, consumed bool)",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(listed, 0, "bob does not see the superuser's job");
    client.batch_execute("RESET ROLE").unwrap();

    let e = client
        .query(
            "SELECT * FROM pg_background_result_v2($1, $2) AS (r text)",
            &[&pid, &cookie.wrapping_add(1)],
        )
        .unwrap_err();
    assert_eq!(code(&e), "55000", "{e}");
    let secret: String = client
        .query_one(
            "SELECT * FROM pg_background_result_v2($1, $2) AS (r text)",
            &[&pid, &cookie],
        )
        .unwrap()
        .get(0);
    assert_eq!(secret, "secret");

    // Another session does not know the pid at all; PUBLIC has none of the functions.
    let mut alice = connect_as(&cluster, "alice");
    let e = alice
        .query("SELECT pg_background_detach_v2($1, $2)", &[&pid, &cookie])
        .unwrap_err();
    assert_eq!(code(&e), "42704", "{e}");
    client.batch_execute("CREATE ROLE carol LOGIN").unwrap();
    let mut carol = connect_as(&cluster, "carol");
    let e = carol
        .query("SELECT pg_background_launch_v2('SELECT 1')", &[])
        .unwrap_err();
    assert_eq!(code(&e), "42501", "{e}");
    client
        .batch_execute("SELECT revoke_pg_background_privileges('alice')")
        .unwrap();
    let e = alice
        .query("SELECT pg_background_submit_v2('SELECT 1')", &[])
        .unwrap_err();
    assert_eq!(code(&e), "42501", "{e}");
    cluster.assert_no_crash();
}

#[test]
fn submitted_output_is_dropped_and_errors_and_panics_are_reported() {
    let cluster = cluster();
    let mut alice = connect_as(&cluster, "alice");
    // 300,000 rows through a 16 kB queue that nobody reads: the worker drops them.
    let row = alice
        .query_one(
            "SELECT (h).pid, (h).cookie FROM (SELECT pg_background_submit_v2( \
               'SELECT g FROM generate_series(1, 300000) g; INSERT INTO done VALUES (''submitted'')', \
               16384) AS h) s",
            &[],
        )
        .unwrap();
    let (pid, cookie): (i32, i64) = (row.get(0), row.get(1));
    let over: bool = alice
        .query_one(
            "SELECT pg_background_wait_v2_timeout($1, $2, 30000)",
            &[&pid, &cookie],
        )
        .unwrap()
        .get(0);
    assert!(over);
    let done: i64 = alice
        .query_one("SELECT count(*) FROM done WHERE job = 'submitted'", &[])
        .unwrap()
        .get(0);
    assert_eq!(done, 1);
    let e = alice
        .query(
            "SELECT * FROM pg_background_result_v2($1, $2) AS (r text)",
            &[&pid, &cookie],
        )
        .unwrap_err();
    assert_eq!(code(&e), "55000", "{e}");

    // An ERROR is the result's, and the job's last_error; a panic in a function the job
    // calls is an ERROR of that string, and the worker goes on.
    let (pid, cookie) = launch(&mut alice, "SELECT 1/0");
    let e = alice
        .query(
            "SELECT * FROM pg_background_result_v2($1, $2) AS (r int)",
            &[&pid, &cookie],
        )
        .unwrap_err();
    assert_eq!(code(&e), "22012", "{e}");
    alice
        .execute(
            "SELECT pg_background_run_v2($1, $2, 'SELECT panic_with(''boom'')')",
            &[&pid, &cookie],
        )
        .unwrap();
    let e = alice
        .query(
            "SELECT * FROM pg_background_result_v2($1, $2) AS (r text)",
            &[&pid, &cookie],
        )
        .unwrap_err();
    assert!(message(&e).contains("boom"), "{e}");
    let last_error: String = alice
        .query_one(
            "SELECT last_error FROM pg_background_list_v2() AS (pid int4, cookie int8, \
               launched_at timestamptz, user_id oid, queue_size int4, state text, \
               sql_preview text, last_error text, consumed bool) WHERE pid = $1",
            &[&pid],
        )
        .unwrap()
        .get(0);
    assert!(last_error.contains("boom"), "{last_error}");
    alice
        .execute(
            "SELECT pg_background_run_v2($1, $2, 'SELECT 7')",
            &[&pid, &cookie],
        )
        .unwrap();
    let seven: i32 = alice
        .query_one(
            "SELECT * FROM pg_background_result_v2($1, $2) AS (x int)",
            &[&pid, &cookie],
        )
        .unwrap()
        .get(0);
    assert_eq!(seven, 7);
    alice
        .execute("SELECT pg_background_detach_v2($1, $2)", &[&pid, &cookie])
        .unwrap();
    let failed: i64 = alice
        .query_one("SELECT workers_failed FROM pg_background_stats_v2()", &[])
        .unwrap()
        .get(0);
    assert_eq!(failed, 1);
    cluster.assert_no_crash();
}

#[test]
fn worker_timeout_and_progress() {
    let cluster = cluster();
    let mut alice = connect_as(&cluster, "alice");
    alice
        .batch_execute("SET pg_background.worker_timeout = '300ms'")
        .unwrap();
    let (pid, cookie) = launch(&mut alice, "SELECT pg_sleep(20)");
    let e = alice
        .query(
            "SELECT * FROM pg_background_result_v2($1, $2) AS (r text)",
            &[&pid, &cookie],
        )
        .unwrap_err();
    assert_eq!(code(&e), "57014", "{e}");
    assert!(message(&e).contains("statement timeout"), "{e}");
    alice
        .batch_execute("RESET pg_background.worker_timeout")
        .unwrap();

    let (pid, cookie) = launch(
        &mut alice,
        "SELECT pg_background_progress(40, 'a message longer than sixty-four bytes is cut at a character boundary: ééééé')",
    );
    alice
        .query_one("SELECT pg_background_wait_v2($1, $2)", &[&pid, &cookie])
        .unwrap();
    let row = alice
        .query_one(
            "SELECT progress_pct, progress_msg FROM pg_background_get_progress_v2($1, $2)",
            &[&pid, &cookie],
        )
        .unwrap();
    assert_eq!(row.get::<_, i32>(0), 40);
    let message: String = row.get(1);
    assert!(
        message.len() <= 64 && message.starts_with("a message longer"),
        "{message}"
    );
    // Outside a background worker, progress has nowhere to go.
    let e = alice
        .query("SELECT pg_background_progress(1)", &[])
        .unwrap_err();
    assert_eq!(code(&e), "0A000", "{e}");
    cluster.assert_no_crash();
}

#[test]
fn a_job_launched_by_a_security_definer_function_keeps_its_owners_rights() {
    let cluster = cluster();
    let mut client = cluster.connect();
    // alice's function, run by the superuser: the job is alice's and cannot RESET ROLE to
    // the superuser session it came from.
    client
        .batch_execute(
            "CREATE FUNCTION alices_job(sql text) RETURNS SETOF text LANGUAGE sql \
               SECURITY DEFINER SET search_path = public \
               AS $$ SELECT * FROM pg_background_result(pg_background_launch(sql)) AS (r text) $$; \
             ALTER FUNCTION alices_job(text) OWNER TO alice",
        )
        .unwrap();
    let who: String = client
        .query_one("SELECT * FROM alices_job('SELECT current_user::text')", &[])
        .unwrap()
        .get(0);
    assert_eq!(who, "alice");
    for attempt in ["RESET ROLE; SELECT current_user::text", "SET ROLE postgres"] {
        let e = client
            .query("SELECT * FROM alices_job($1)", &[&attempt])
            .unwrap_err();
        assert_eq!(code(&e), "42501", "{attempt}: {e}");
    }
    cluster.assert_no_crash();
}

#[test]
fn a_results_columns_and_error_are_read_without_consuming_it() {
    let cluster = cluster();
    // NOTICEs of alice's jobs are re-raised in her session when their result is read.
    let notices = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = notices.clone();
    let mut alice = {
        let conn = format!("{} user=alice", cluster.connection_string("postgres"));
        let mut config: postgres::Config = conn.parse().unwrap();
        config.notice_callback(move |n| seen.lock().unwrap().push(n.message().to_string()));
        config.connect(postgres::NoTls).unwrap()
    };
    let describe = "SELECT column_number, column_name, column_type::text, column_typmod \
                    FROM pg_background_describe_v2($1, $2)";
    let error = "SELECT sqlstate, message, context FROM pg_background_error_v2($1, $2)";

    // Columns, then an error check that finds none, then the rows, all still there.
    let (pid, cookie) = launch(
        &mut alice,
        "SELECT g AS one, ('x' || g)::varchar(5) AS v FROM generate_series(1, 2) g",
    );
    let columns: Vec<(i32, String, String, i32)> = alice
        .query(describe, &[&pid, &cookie])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    assert_eq!(
        columns,
        vec![
            (1, "one".into(), "integer".into(), -1),
            (2, "v".into(), "character varying".into(), 9),
        ]
    );
    let none = alice.query_one(error, &[&pid, &cookie]).unwrap();
    assert_eq!(none.get::<_, Option<String>>(0), None);
    // Looking twice reads nothing more.
    assert_eq!(alice.query(describe, &[&pid, &cookie]).unwrap().len(), 2);
    let rows: Vec<(i32, String)> = alice
        .query(
            "SELECT * FROM pg_background_result_v2($1, $2) AS (one int, v text)",
            &[&pid, &cookie],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(rows, vec![(1, "x1".into()), (2, "x2".into())]);

    // A string that fails after a NOTICE and a row: its ERROR as data, then the same ERROR
    // (and the NOTICE) from the result; the next string's result is its own.
    let run = "SELECT pg_background_run_v2($1, $2, $3)";
    alice
        .execute(
            run,
            &[
                &pid,
                &cookie,
                &"DO $$ BEGIN RAISE NOTICE 'about to fail'; END $$; \
                  SELECT 1 / g FROM generate_series(1, 0, -1) g",
            ],
        )
        .unwrap();
    alice
        .execute(run, &[&pid, &cookie, &"SELECT 'after'::text AS t"])
        .unwrap();
    let failed = alice.query_one(error, &[&pid, &cookie]).unwrap();
    assert_eq!(failed.get::<_, Option<String>>(0).as_deref(), Some("22012"));
    assert_eq!(
        failed.get::<_, Option<String>>(1).as_deref(),
        Some("division by zero")
    );
    let context: String = failed.get(2);
    assert!(
        context.contains(&format!("background session worker {pid}")),
        "{context}"
    );
    // Its columns were described before the failure.
    assert_eq!(alice.query(describe, &[&pid, &cookie]).unwrap().len(), 1);
    assert!(notices.lock().unwrap().is_empty(), "{notices:?}");
    // Another session of alice cannot use the handle; the launching one reads the result.
    let other = connect_as(&cluster, "alice")
        .query(error, &[&pid, &cookie])
        .unwrap_err();
    assert_eq!(code(&other), "42704", "{other}");
    let e = alice
        .query(
            "SELECT * FROM pg_background_result_v2($1, $2) AS (x int)",
            &[&pid, &cookie],
        )
        .unwrap_err();
    assert_eq!(code(&e), "22012", "{e}");
    assert_eq!(*notices.lock().unwrap(), vec!["about to fail".to_string()]);
    let after: String = alice
        .query_one(
            "SELECT * FROM pg_background_result_v2($1, $2) AS (t text)",
            &[&pid, &cookie],
        )
        .unwrap()
        .get(0);
    assert_eq!(after, "after");

    // A command has no columns; a result larger than the queue cannot be looked past, and
    // is still read whole after the refusal.
    alice
        .execute(run, &[&pid, &cookie, &"CREATE TEMP TABLE t (a int)"])
        .unwrap();
    assert!(alice.query(describe, &[&pid, &cookie]).unwrap().is_empty());
    let tag: String = alice
        .query_one(
            "SELECT * FROM pg_background_result_v2($1, $2) AS (r text)",
            &[&pid, &cookie],
        )
        .unwrap()
        .get(0);
    assert_eq!(tag, "CREATE TABLE");
    alice
        .execute("SELECT pg_background_detach_v2($1, $2)", &[&pid, &cookie])
        .unwrap();
    // A worker that goes away before describing its result is an ERROR, not "no columns".
    let (pid, cookie) = launch(
        &mut alice,
        "DO $$ BEGIN PERFORM pg_terminate_backend(pg_backend_pid()); END $$; SELECT 1",
    );
    let gone = alice.query(describe, &[&pid, &cookie]).unwrap_err();
    assert_eq!(code(&gone), "08006", "{gone}");
    alice
        .execute("SELECT pg_background_detach_v2($1, $2)", &[&pid, &cookie])
        .unwrap();
    let big = alice
        .query_one(
            "SELECT (h).pid, (h).cookie FROM pg_background_launch_v2( \
               'SELECT g FROM generate_series(1, 100000) g', 4096) h",
            &[],
        )
        .unwrap();
    let (pid, cookie): (i32, i64) = (big.get(0), big.get(1));
    let too_big = alice.query(error, &[&pid, &cookie]).unwrap_err();
    assert_eq!(code(&too_big), "54000", "{too_big}");
    let count: i64 = alice
        .query_one(
            "SELECT count(*) FROM pg_background_result_v2($1, $2) AS (g int)",
            &[&pid, &cookie],
        )
        .unwrap()
        .get(0);
    assert_eq!(count, 100_000);
    cluster.assert_no_crash();
}

#[test]
fn a_worker_idle_inside_a_transaction_block_ends_after_idle_in_transaction_session_timeout() {
    let cluster = cluster();
    let mut alice = connect_as(&cluster, "alice");
    // The job takes the caller's settings, this one included.
    alice
        .batch_execute("SET idle_in_transaction_session_timeout = '300ms'")
        .unwrap();
    let result = "SELECT * FROM pg_background_result_v2($1, $2) AS (r text)";
    let run = "SELECT pg_background_run_v2($1, $2, $3)";

    // Idle outside a block: the session stays.
    let (pid, cookie) = launch(&mut alice, "SELECT 'first'");
    alice.query(result, &[&pid, &cookie]).unwrap();
    std::thread::sleep(Duration::from_millis(1200));
    alice
        .execute(run, &[&pid, &cookie, &"SELECT 'still here'"])
        .unwrap();
    let still: String = alice.query_one(result, &[&pid, &cookie]).unwrap().get(0);
    assert_eq!(still, "still here");

    // Idle inside a block: ended, and the next string's result says why.
    alice
        .execute(
            run,
            &[&pid, &cookie, &"BEGIN; INSERT INTO done VALUES ('never')"],
        )
        .unwrap();
    alice.query(result, &[&pid, &cookie]).unwrap();
    std::thread::sleep(Duration::from_millis(1200));
    let gone = alice.execute(run, &[&pid, &cookie, &"COMMIT"]).unwrap_err();
    assert_eq!(code(&gone), "08006", "{gone}");
    let e = alice.query(result, &[&pid, &cookie]).unwrap_err();
    assert_eq!(code(&e), "25P03", "{e}");
    alice
        .execute("SELECT pg_background_detach_v2($1, $2)", &[&pid, &cookie])
        .unwrap();
    let inserted: i64 = alice
        .query_one("SELECT count(*) FROM done WHERE job = 'never'", &[])
        .unwrap()
        .get(0);
    assert_eq!(inserted, 0, "the block was rolled back");
    cluster.assert_no_crash();
}

#[test]
fn a_caller_setting_the_worker_cannot_take_fails_every_string_until_it_applies() {
    let cluster = cluster();
    let mut admin = cluster.connect();
    // A setting whose object is gone by the time the worker applies it.
    admin
        .batch_execute(
            "CREATE TEXT SEARCH CONFIGURATION gone_cfg (COPY = english); \
             SET default_text_search_config = 'public.gone_cfg'; \
             DROP TEXT SEARCH CONFIGURATION gone_cfg",
        )
        .unwrap();
    let (pid, cookie) = launch(&mut admin, "SELECT 'first'");
    let result = "SELECT * FROM pg_background_result_v2($1, $2) AS (r text)";
    let first = admin.query(result, &[&pid, &cookie]).unwrap_err();
    assert!(message(&first).contains("gone_cfg"), "{first}");
    // The next string does not run without the caller's setting either.
    admin
        .execute(
            "SELECT pg_background_run_v2($1, $2, $3)",
            &[
                &pid,
                &cookie,
                &"SELECT current_setting('default_text_search_config')",
            ],
        )
        .unwrap();
    let second = admin.query(result, &[&pid, &cookie]).unwrap_err();
    assert!(message(&second).contains("gone_cfg"), "{second}");
    admin
        .execute("SELECT pg_background_detach_v2($1, $2)", &[&pid, &cookie])
        .unwrap();
    cluster.assert_no_crash();
}

/// A worker blocked sending a result nobody reads still takes the interrupts that end a
/// session: `pg_terminate_backend` on every major, and on 17 and later `transaction_timeout`
/// (which, unlike termination, a worker waiting for room in its queue used to ignore).
#[test]
fn a_worker_blocked_on_an_unread_result_still_ends_when_its_session_must() {
    let cluster = cluster();
    let mut alice = connect_as(&cluster, "alice");
    let mut admin = cluster.connect();
    let million = "SELECT g FROM generate_series(1, 1000000) g";
    let blocked = |admin: &mut postgres::Client, pid: i32| {
        cluster.poll(Duration::from_secs(10), || {
            admin
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity \
                      WHERE pid = $1 AND wait_event = 'MessageQueuePutMessage'",
                    &[&pid],
                )
                .unwrap()
                .get::<_, i64>(0)
                == 1
        })
    };
    let gone = |admin: &mut postgres::Client, pid: i32, within: u64| {
        cluster.poll(Duration::from_secs(within), || {
            admin
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE pid = $1",
                    &[&pid],
                )
                .unwrap()
                .get::<_, i64>(0)
                == 0
        })
    };

    let (pid, _) = launch(&mut alice, million);
    assert!(
        blocked(&mut admin, pid),
        "the worker did not fill its queue"
    );
    admin
        .query_one("SELECT pg_terminate_backend($1)", &[&pid])
        .unwrap();
    assert!(gone(&mut admin, pid, 10), "a terminated worker stayed");

    let version: i32 = admin
        .query_one("SELECT current_setting('server_version_num')::int", &[])
        .unwrap()
        .get(0);
    if version >= 170000 {
        alice
            .batch_execute("SET transaction_timeout = '1s'")
            .unwrap();
        let (pid, _) = launch(&mut alice, million);
        assert!(
            blocked(&mut admin, pid),
            "the worker did not fill its queue"
        );
        assert!(
            gone(&mut admin, pid, 15),
            "a worker past its transaction_timeout stayed:\n{}",
            cluster.log()
        );
        assert!(
            cluster.log_count("transaction timeout") > 0,
            "{}",
            cluster.log()
        );
    }
    cluster.assert_no_crash();
}

/// A statement that is not the last of its string has its result published when it ends:
/// the caller reads its columns while a later statement still runs (here it waits for a
/// lock the caller holds, so a caller that waited for the whole string would wait for
/// itself until its statement_timeout).
#[test]
fn a_statements_result_is_published_when_it_ends_before_the_rest_of_its_string() {
    let cluster = cluster();
    let mut client = cluster.connect();
    client
        .batch_execute("SELECT pg_advisory_lock(42); SET statement_timeout = '10s'")
        .unwrap();
    let (pid, cookie) = launch(
        &mut client,
        "SELECT 7 AS seven; SELECT pg_advisory_lock(42)",
    );
    let columns: Vec<String> = client
        .query(
            "SELECT column_name FROM pg_background_describe_v2($1, $2)",
            &[&pid, &cookie],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(columns, vec!["seven".to_string()]);
    // It goes on to the second statement, which waits for the lock.
    let waiting = cluster.poll(Duration::from_secs(10), || {
        client
            .query_one(
                "SELECT count(*) = 1 FROM pg_stat_activity WHERE pid = $1 AND wait_event = 'advisory'",
                &[&pid],
            )
            .unwrap()
            .get(0)
    });
    assert!(
        waiting,
        "the job's second statement never waited for the lock"
    );
    client
        .batch_execute("RESET statement_timeout; SELECT pg_advisory_unlock(42)")
        .unwrap();
    client
        .execute("SELECT pg_background_wait_v2($1, $2)", &[&pid, &cookie])
        .unwrap();
    client
        .execute("SELECT pg_background_detach_v2($1, $2)", &[&pid, &cookie])
        .unwrap();
    cluster.assert_no_crash();
}
