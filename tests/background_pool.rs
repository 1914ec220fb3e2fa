//! The background example's warm pool (`bgworker::session::pool`): reuse per database and
//! role, nothing of one job visible to the next, idle retirement, the admission queue, a
//! pooled worker killed mid-job, `max_worker_processes` filled by others, and the
//! cross-session job view.

use std::time::Duration;

use bgworker_tests::{
    code, connect_as, example, message, run_extension_script, status_kb, test_functions,
    test_workers, Cluster,
};

fn cluster(settings: &[(&str, &str)]) -> Cluster {
    let mut builder = Cluster::builder()
        .library(example("background"))
        .setting("max_worker_processes", "16");
    for (k, v) in settings {
        builder = builder.setting(k, v);
    }
    let cluster = builder.start();
    let mut client = cluster.connect();
    run_extension_script(&mut client, "background");
    client
        .batch_execute(
            "CREATE ROLE alice LOGIN; CREATE ROLE bob LOGIN; \
             SELECT grant_pg_background_privileges('alice'); \
             SELECT grant_pg_background_privileges('bob'); \
             CREATE TABLE shared_log (who text); GRANT ALL ON shared_log TO alice, bob",
        )
        .unwrap();
    cluster
}

/// Runs `sql` in a background job and reads its single text result; the job's worker pid.
fn job(client: &mut postgres::Client, sql: &str) -> (i32, Vec<String>) {
    let row = client
        .query_one(
            "SELECT (h).pid, (h).cookie FROM (SELECT pg_background_launch_v2($1) AS h) s",
            &[&sql],
        )
        .unwrap();
    let (pid, cookie): (i32, i64) = (row.get(0), row.get(1));
    let values = client
        .query(
            "SELECT * FROM pg_background_result_v2($1, $2) AS (r text)",
            &[&pid, &cookie],
        )
        .unwrap()
        .iter()
        .map(|r| r.get::<_, Option<String>>(0).unwrap_or_default())
        .collect();
    client
        .execute("SELECT pg_background_detach_v2($1, $2)", &[&pid, &cookie])
        .unwrap();
    (pid, values)
}

/// Waits until the pooled worker `pid` is idle again (it resets after each job).
fn wait_idle(cluster: &Cluster, pid: i32) {
    let mut observer = cluster.connect();
    assert!(cluster.poll(Duration::from_secs(10), || {
        observer
            .query_one(
                "SELECT count(*) = 1 FROM pg_background_jobs WHERE pid = $1 AND state = 'idle'",
                &[&pid],
            )
            .unwrap()
            .get::<_, bool>(0)
    }));
}

#[test]
fn a_warm_worker_serves_the_next_job_of_its_role_and_nothing_leaks_between_jobs() {
    let cluster = cluster(&[]);
    let mut alice = connect_as(&cluster, "alice");
    let (first, _) = job(
        &mut alice,
        "CREATE TEMP TABLE scratch (x int); SET work_mem = '7MB'; \
         PREPARE p AS SELECT 1; SELECT pg_advisory_lock(42); \
         SELECT 'set up'",
    );
    // Another session of the same role gets the same warm worker, reset.
    wait_idle(&cluster, first);
    let mut alice2 = connect_as(&cluster, "alice");
    let (second, seen) = job(
        &mut alice2,
        "SELECT concat_ws(',', \
           (SELECT count(*) FROM pg_class WHERE relname = 'scratch' AND relpersistence = 't'), \
           current_setting('work_mem'), \
           (SELECT count(*) FROM pg_prepared_statements), \
           (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()), \
           current_user)",
    );
    assert_eq!(second, first, "the warm worker was reused");
    assert_eq!(seen, vec!["0,4MB,0,0,alice".to_string()]);
    // The advisory lock is free for everyone.
    let mut observer = cluster.connect();
    let free: bool = observer
        .query_one("SELECT pg_try_advisory_lock(42)", &[])
        .unwrap()
        .get(0);
    assert!(free);

    // Another role never gets alice's worker.
    let mut bob = connect_as(&cluster, "bob");
    let (bobs, who) = job(&mut bob, "SELECT current_user::text");
    assert_ne!(bobs, first);
    assert_eq!(who, vec!["bob".to_string()]);

    // A transaction block left open by one job is rolled back, not committed, for the next.
    wait_idle(&cluster, first);
    let (left_open, _) = job(
        &mut alice,
        "BEGIN; INSERT INTO shared_log VALUES ('open block')",
    );
    assert_eq!(left_open, first);
    wait_idle(&cluster, first);
    let (_, count) = job(&mut alice, "SELECT count(*)::text FROM shared_log");
    assert_eq!(count, vec!["0".to_string()]);

    // Both workers are in the view, idle, with the jobs they served (alice's four, bob's
    // one; a worker counts a job once it has reset after it).
    assert!(cluster.poll(Duration::from_secs(10), || {
        observer
            .query_one(
                "SELECT count(*) = 2 AND bool_and(state = 'idle') AND sum(jobs_done) = 5 \
                 FROM pg_background_jobs",
                &[],
            )
            .unwrap()
            .get::<_, Option<bool>>(0)
            == Some(true)
    }));
    cluster.assert_no_crash();
}

#[test]
fn idle_workers_retire_after_the_idle_timeout() {
    let cluster = cluster(&[("pg_background.pool_idle_timeout", "1s")]);
    let mut alice = connect_as(&cluster, "alice");
    let (pid, _) = job(&mut alice, "SELECT 1");
    let mut observer = cluster.connect();
    assert!(cluster.poll(Duration::from_secs(20), || {
        observer
            .query_one(
                "SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = $1",
                &[&pid],
            )
            .unwrap()
            .get::<_, bool>(0)
    }));
    let (next, _) = job(&mut alice, "SELECT 1");
    assert_ne!(next, pid, "a new worker after the old one retired");
    cluster.assert_no_crash();
}

#[test]
fn an_idle_pooled_worker_exits_when_terminated_and_does_not_hold_up_a_fast_stop() {
    let mut cluster = cluster(&[("pg_background.pool_idle_timeout", "600s")]);
    let mut alice = connect_as(&cluster, "alice");
    let (pid, _) = job(&mut alice, "SELECT 1");
    wait_idle(&cluster, pid);
    let mut observer = cluster.connect();
    observer
        .execute("SELECT pg_terminate_backend($1)", &[&pid])
        .unwrap();
    assert!(
        cluster.poll(Duration::from_secs(20), || !bgworker_tests::process_alive(
            pid
        )),
        "idle pooled worker {pid} ignored SIGTERM"
    );
    let (next, _) = job(&mut alice, "SELECT 1");
    assert_ne!(next, pid);
    wait_idle(&cluster, next);
    drop((alice, observer));
    cluster.assert_no_crash();
    // A fast stop terminates the idle worker instead of waiting for its idle timeout.
    let took = cluster.stop("fast");
    assert!(took < Duration::from_secs(30), "fast stop took {took:?}");
}

#[test]
fn a_full_pool_makes_launches_wait_and_a_full_queue_refuses_them() {
    let cluster = cluster(&[
        ("pg_background.pool_max_workers", "1"),
        ("pg_background.max_queued_jobs", "1"),
    ]);
    let mut alice = connect_as(&cluster, "alice");
    let row = alice
        .query_one(
            "SELECT (h).pid, (h).cookie FROM (SELECT pg_background_launch_v2('SELECT 1') AS h) s",
            &[],
        )
        .unwrap();
    let (held, cookie): (i32, i64) = (row.get(0), row.get(1));

    // A second session waits in the admission queue...
    let conn = format!("{} user=alice", cluster.connection_string("postgres"));
    let waiter = std::thread::spawn(move || {
        let mut c = postgres::Client::connect(&conn, postgres::NoTls).unwrap();
        let started = std::time::Instant::now();
        let row = c
            .query_one(
                "SELECT (h).pid, (h).cookie FROM (SELECT pg_background_launch_v2( \
                   'INSERT INTO shared_log VALUES (''queued job'') RETURNING who') AS h) s",
                &[],
            )
            .unwrap();
        let (pid, cookie): (i32, i64) = (row.get(0), row.get(1));
        let who: String = c
            .query_one(
                "SELECT * FROM pg_background_result_v2($1, $2) AS (who text)",
                &[&pid, &cookie],
            )
            .unwrap()
            .get(0);
        (pid, who, started.elapsed())
    });
    let mut observer = cluster.connect();
    assert!(cluster.poll(Duration::from_secs(10), || {
        observer
            .query_one(
                "SELECT count(*) = 1 FROM pg_stat_activity WHERE query LIKE '%queued job%' \
                 AND backend_type = 'client backend' AND state = 'active' \
                 AND pid <> pg_backend_pid()",
                &[],
            )
            .unwrap()
            .get::<_, bool>(0)
    }));
    std::thread::sleep(Duration::from_millis(500));

    // ...and a third finds the queue full.
    let mut third = connect_as(&cluster, "bob");
    let e = third
        .query("SELECT pg_background_launch_v2('SELECT 1')", &[])
        .unwrap_err();
    assert_eq!(code(&e), "53400", "{e}");
    let hint = e
        .as_db_error()
        .unwrap()
        .hint()
        .unwrap_or_default()
        .to_string();
    assert!(hint.contains("pg_background.max_queued_jobs"), "{hint}");

    // Once the first job is detached, the waiting one runs on the same worker.
    std::thread::sleep(Duration::from_millis(300));
    alice
        .execute("SELECT pg_background_detach_v2($1, $2)", &[&held, &cookie])
        .unwrap();
    let (pid, who, waited) = waiter.join().unwrap();
    assert_eq!(pid, held);
    assert_eq!(who, "queued job");
    assert!(waited >= Duration::from_millis(500), "{waited:?}");
    cluster.assert_no_crash();
}

#[test]
fn a_pooled_worker_killed_mid_job_is_an_error_and_is_replaced() {
    let cluster = cluster(&[]);
    let mut alice = connect_as(&cluster, "alice");
    let row = alice
        .query_one(
            "SELECT (h).pid, (h).cookie FROM (SELECT pg_background_launch_v2('SELECT pg_sleep(30)') AS h) s",
            &[],
        )
        .unwrap();
    let (pid, cookie): (i32, i64) = (row.get(0), row.get(1));
    let mut admin = cluster.connect();
    assert!(cluster.poll(Duration::from_secs(10), || {
        admin
            .query_one(
                "SELECT count(*) = 1 FROM pg_stat_activity WHERE pid = $1 AND state = 'active'",
                &[&pid],
            )
            .unwrap()
            .get::<_, bool>(0)
    }));
    admin
        .execute("SELECT pg_terminate_backend($1)", &[&pid])
        .unwrap();
    let e = alice
        .query(
            "SELECT * FROM pg_background_result_v2($1, $2) AS (r text)",
            &[&pid, &cookie],
        )
        .unwrap_err();
    assert!(
        ["57P01", "08006"].contains(&code(&e).as_str()),
        "terminated: {e}"
    );
    alice
        .execute("SELECT pg_background_detach_v2($1, $2)", &[&pid, &cookie])
        .unwrap();
    let (next, out) = job(&mut alice, "SELECT 'after'");
    assert_ne!(next, pid);
    assert_eq!(out, vec!["after".to_string()]);
    cluster.assert_no_crash();
}

#[test]
fn jobs_wait_for_worker_processes_held_by_others_then_run() {
    // Five worker processes: the logical replication launcher takes one, two unpooled
    // jobs two, alice's two held jobs the last two.
    let cluster = cluster(&[("max_worker_processes", "5")]);
    let mut admin = cluster.connect();
    admin.batch_execute("LOAD 'background'").unwrap();
    admin
        .batch_execute("ALTER SYSTEM SET pg_background.pool_max_workers = 0")
        .unwrap();
    admin.batch_execute("SELECT pg_reload_conf()").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    // Two unpooled workers of the superuser fill two of the four slots.
    let mut hog = cluster.connect();
    let hogs: Vec<i32> = (0..2)
        .map(|_| {
            hog.query_one("SELECT pg_background_launch('SELECT 1')", &[])
                .unwrap()
                .get(0)
        })
        .collect();
    // Their workers exit when detached, two seconds from now.
    let releaser = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(2));
        for pid in hogs {
            hog.execute("SELECT pg_background_detach($1)", &[&pid])
                .unwrap();
        }
    });
    admin
        .batch_execute("ALTER SYSTEM RESET pg_background.pool_max_workers")
        .unwrap();
    admin.batch_execute("SELECT pg_reload_conf()").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let mut alice = connect_as(&cluster, "alice");
    let mut held = Vec::new();
    for _ in 0..2 {
        let row = alice
            .query_one(
                "SELECT (h).pid, (h).cookie FROM (SELECT pg_background_launch_v2('SELECT 1') AS h) s",
                &[],
            )
            .unwrap();
        held.push((row.get::<_, i32>(0), row.get::<_, i64>(1)));
    }
    // Every slot is taken: bob's job waits for one, then runs.
    let mut bob = connect_as(&cluster, "bob");
    let started = std::time::Instant::now();
    let (_, who) = job(&mut bob, "SELECT current_user::text");
    assert_eq!(who, vec!["bob".to_string()]);
    let waited = started.elapsed();
    if waited < Duration::from_millis(1000) {
        // What held the worker processes, to tell which one was free.
        let workers: Vec<String> = admin
            .query(
                "SELECT pid || ' ' || backend_type || ' ' || coalesce(usename, '') || ' ' || \
                        coalesce(state, '') FROM pg_stat_activity \
                  WHERE backend_type NOT IN ('client backend', 'checkpointer', \
                        'background writer', 'walwriter', 'io worker')",
                &[],
            )
            .map(|rows| rows.iter().map(|r| r.get(0)).collect())
            .unwrap_or_default();
        panic!("bob waited for a slot: {waited:?}; workers: {workers:?}");
    }
    releaser.join().unwrap();
    for (pid, cookie) in held {
        alice
            .execute("SELECT pg_background_detach_v2($1, $2)", &[&pid, &cookie])
            .unwrap();
    }
    cluster.assert_no_crash();
}

#[test]
fn the_job_view_shows_each_role_its_own_jobs_and_a_superuser_all() {
    let cluster = cluster(&[]);
    let mut alice = connect_as(&cluster, "alice");
    let mut bob = connect_as(&cluster, "bob");
    for (client, sql) in [
        (&mut alice, "SELECT pg_sleep(5) /* alice's job */"),
        (&mut bob, "SELECT pg_sleep(5) /* bob's job */"),
    ] {
        client
            .query_one("SELECT pg_background_launch_v2($1)", &[&sql])
            .unwrap();
    }
    let mut admin = cluster.connect();
    assert!(cluster.poll(Duration::from_secs(10), || {
        admin
            .query_one(
                "SELECT count(*) = 2 FROM pg_background_jobs WHERE state = 'busy'",
                &[],
            )
            .unwrap()
            .get::<_, bool>(0)
    }));
    let alices: Vec<String> = alice
        .query("SELECT query FROM pg_background_jobs", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        alices,
        vec!["SELECT pg_sleep(5) /* alice's job */".to_string()]
    );
    let submitter: i32 = admin
        .query_one(
            "SELECT submitter FROM pg_background_jobs WHERE query LIKE '%bob''s job%'",
            &[],
        )
        .unwrap()
        .get(0);
    let bobs_backend: i32 = bob
        .query_one("SELECT pg_backend_pid()", &[])
        .unwrap()
        .get(0);
    assert_eq!(submitter, bobs_backend);
    cluster.assert_no_crash();
}

#[test]
fn eight_sessions_submit_a_thousand_jobs_each_and_every_job_runs_once() {
    let cluster = cluster(&[]);
    cluster
        .connect()
        .batch_execute(
            "CREATE TABLE ran (session int, n int, PRIMARY KEY (session, n)); \
             GRANT ALL ON ran TO alice",
        )
        .unwrap();
    let conn = format!("{} user=alice", cluster.connection_string("postgres"));
    let sessions: Vec<_> = (0..8)
        .map(|session: i32| {
            let conn = conn.clone();
            std::thread::spawn(move || {
                let mut c = postgres::Client::connect(&conn, postgres::NoTls).unwrap();
                let statement = c
                    .prepare(
                        "SELECT * FROM pg_background_result(pg_background_launch( \
                           format('INSERT INTO ran VALUES (%s, %s) RETURNING n * 2', $1::int, $2::int))) \
                         AS (doubled int)",
                    )
                    .unwrap();
                for n in 0..1000 {
                    let doubled: i32 = c.query_one(&statement, &[&session, &n]).unwrap().get(0);
                    assert_eq!(doubled, n * 2);
                }
            })
        })
        .collect();
    let mut observer = cluster.connect();
    let mut rss = Vec::new();
    for s in sessions {
        s.join().unwrap();
    }
    let row = observer
        .query_one(
            "SELECT count(*), count(DISTINCT (session, n)) FROM ran",
            &[],
        )
        .unwrap();
    assert_eq!((row.get::<_, i64>(0), row.get::<_, i64>(1)), (8000, 8000));
    for r in observer
        .query(
            "SELECT pid, jobs_done FROM pg_background_jobs ORDER BY pid",
            &[],
        )
        .unwrap()
    {
        let pid: i32 = r.get(0);
        rss.push((pid, r.get::<_, i64>(1), status_kb(pid, "RssAnon")));
    }
    let served: i64 = rss.iter().map(|r| r.1).sum();
    assert!(rss.len() <= 8, "at most pool_max_workers workers: {rss:?}");
    assert!(
        cluster.poll(Duration::from_secs(10), || {
            observer
                .query_one("SELECT sum(jobs_done) = 8000 FROM pg_background_jobs", &[])
                .unwrap()
                .get::<_, Option<bool>>(0)
                == Some(true)
        }),
        "every job counted once by a pooled worker ({served} so far)"
    );
    // A leak check, not a target: private memory per pooled worker stays small after about
    // 1,000 jobs each (a leak of even 1 kB per job would show as megabytes).
    println!("pooled workers (pid, jobs, RssAnon kB): {rss:?}");
    assert!(rss.iter().all(|r| r.2 < 16 * 1024), "{rss:?}");
    cluster.assert_no_crash();
}

/// The warm workers in the job view: (pid, role name, state).
fn warm_workers(client: &mut postgres::Client) -> Vec<(i32, String, String)> {
    client
        .query(
            "SELECT pid, role::regrole::text, state FROM pg_background_jobs WHERE warm ORDER BY pid",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}

#[test]
fn a_preloaded_library_starts_its_warm_workers_with_the_server() {
    let cluster = Cluster::builder()
        .preload(example("background"))
        .setting("max_worker_processes", "16")
        .setting(
            "pg_background.pool_warm_workers",
            r#"alice@postgres, alice@postgres, "Bob Smith"@postgres, carol@nowhere"#,
        )
        .setting("pg_background.pool_idle_timeout", "1")
        .setting("pg_background.pool_max_workers", "1")
        .start();
    let mut admin = cluster.connect();
    run_extension_script(&mut admin, "background");
    // The roles come after the server: warm workers retry (every 5 s) until they connect.
    admin
        .batch_execute(
            "CREATE ROLE alice LOGIN; CREATE ROLE \"Bob Smith\" LOGIN; CREATE ROLE carol LOGIN; \
             SELECT grant_pg_background_privileges('alice'); \
             SELECT grant_pg_background_privileges('carol')",
        )
        .unwrap();
    let ready = cluster.poll(Duration::from_secs(30), || {
        let warm = warm_workers(&mut admin);
        warm.len() == 3
            && warm
                .iter()
                .all(|(pid, _, state)| *pid > 0 && state == "idle")
    });
    let warm = warm_workers(&mut admin);
    assert!(ready, "{warm:?}");
    let roles: Vec<&str> = warm.iter().map(|(_, role, _)| role.as_str()).collect();
    assert_eq!(
        roles.iter().filter(|r| **r == "alice").count(),
        2,
        "{roles:?}"
    );
    assert!(roles.contains(&"\"Bob Smith\""), "{roles:?}");
    // A database that does not exist is a clear error, retried, and stops nothing else.
    cluster.wait_for_log(
        "database \"nowhere\" does not exist",
        Duration::from_secs(10),
    );

    // alice's jobs go to her warm workers; no worker is started for them.
    let alices: Vec<i32> = warm
        .iter()
        .filter(|(_, role, _)| role == "alice")
        .map(|(pid, _, _)| *pid)
        .collect();
    let mut alice = connect_as(&cluster, "alice");
    for _ in 0..3 {
        let (pid, values) = job(&mut alice, "SELECT current_user::text");
        assert!(alices.contains(&pid), "{pid} not in {alices:?}");
        assert_eq!(values, vec!["alice".to_string()]);
        wait_idle(&cluster, pid);
    }
    // The idle timeout (1 s) does not retire them.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(warm_workers(&mut admin), warm);
    assert_eq!(
        admin
            .query_one(
                "SELECT count(*) FROM pg_background_jobs WHERE NOT warm",
                &[]
            )
            .unwrap()
            .get::<_, i64>(0),
        0
    );

    // Warm workers come on top of the pool's size (1 here): carol's jobs get a worker.
    let mut carol = connect_as(&cluster, "carol");
    let (carols, values) = job(&mut carol, "SELECT current_user::text");
    assert_eq!(values, vec!["carol".to_string()]);
    assert!(!warm.iter().any(|(pid, _, _)| *pid == carols));

    // A warm worker terminated is started again.
    let gone = alices[0];
    admin
        .execute("SELECT pg_terminate_backend($1)", &[&gone])
        .unwrap();
    let replaced = cluster.poll(Duration::from_secs(30), || {
        let now = warm_workers(&mut admin);
        now.len() == 3
            && now
                .iter()
                .all(|(pid, _, state)| *pid != gone && *pid > 0 && state == "idle")
    });
    assert!(replaced, "{gone} {:?}", warm_workers(&mut admin));
    cluster.assert_no_crash();
}

#[test]
fn a_mistake_in_the_warm_worker_list_is_reported_and_the_server_starts() {
    let cluster = Cluster::builder()
        .preload(example("background"))
        .setting("pg_background.pool_warm_workers", "alice@postgres, bob")
        .start();
    cluster.wait_for_log(
        "pg_background.pool_warm_workers ignored: invalid warm worker list",
        Duration::from_secs(10),
    );
    let mut client = cluster.connect();
    run_extension_script(&mut client, "background");
    let warm: i64 = client
        .query_one("SELECT count(*) FROM pg_background_jobs", &[])
        .unwrap()
        .get(0);
    assert_eq!(warm, 0);
    let (_, values) = job(&mut client, "SELECT 'still works'");
    assert_eq!(values, vec!["still works".to_string()]);
    cluster.assert_no_crash();
}

#[test]
fn a_pooled_worker_that_cannot_connect_tells_its_client_why() {
    let cluster = cluster(&[]);
    let mut bob = connect_as(&cluster, "bob");
    // bob's session goes on; a new process may no longer log in as bob.
    cluster
        .connect()
        .batch_execute("ALTER ROLE bob NOLOGIN")
        .unwrap();
    // Again and again: the worker's exit races the launch's own messages to it.
    for _ in 0..10 {
        let e = bob
            .query(
                "SELECT * FROM pg_background_result(pg_background_launch('SELECT 1')) AS (x int)",
                &[],
            )
            .unwrap_err();
        assert!(
            message(&e).contains("not permitted to log in"),
            "{}",
            message(&e)
        );
    }
    cluster.assert_no_crash();
}

#[test]
fn a_worker_that_cannot_take_its_callers_role_reports_the_error() {
    let cluster = cluster(&[]);
    let mut admin = cluster.connect();
    admin
        .batch_execute("GRANT alice TO bob; LOAD 'background'")
        .unwrap();
    let mut bob = connect_as(&cluster, "bob");
    bob.batch_execute("SET ROLE alice").unwrap();
    // bob's session is alice now; a new worker may no longer become alice.
    admin.batch_execute("REVOKE alice FROM bob").unwrap();
    for pool in ["8", "0"] {
        admin
            .batch_execute(&format!(
                "ALTER SYSTEM SET pg_background.pool_max_workers = {pool}"
            ))
            .unwrap();
        admin.batch_execute("SELECT pg_reload_conf()").unwrap();
        std::thread::sleep(Duration::from_millis(300));
        let e = bob
            .query(
                "SELECT * FROM pg_background_result(pg_background_launch('SELECT 1')) AS (x int)",
                &[],
            )
            .unwrap_err();
        assert!(
            message(&e).contains("permission denied to set role"),
            "pool {pool}: {}",
            message(&e)
        );
    }
    cluster.assert_no_crash();
}

/// A cluster with the background example and the test library (neither preloaded), and a
/// role alice.
fn cluster_with_test_workers() -> Cluster {
    let cluster = Cluster::builder()
        .library(example("background"))
        .library(test_workers())
        .setting("max_worker_processes", "16")
        .start();
    let mut client = cluster.connect();
    run_extension_script(&mut client, "background");
    client.batch_execute(&test_functions()).unwrap();
    client.batch_execute("CREATE ROLE alice LOGIN").unwrap();
    cluster
}

/// The pid of the worker that ran one job.
fn job_worker_pid(client: &mut postgres::Client) -> i32 {
    client
        .query_one(
            "SELECT * FROM pg_background_result(pg_background_launch('SELECT pg_backend_pid()')) AS (p int)",
            &[],
        )
        .unwrap()
        .get(0)
}

/// A library upgraded while the server runs meets what the older build left in shared
/// memory under the pool's name (here: another layout under the name the pool had before
/// it carried its layout). Its pool is its own: jobs still go to pooled workers instead of
/// every launch failing until a restart.
#[test]
fn a_pool_left_in_shared_memory_by_another_build_does_not_stop_the_pool() {
    let cluster = cluster_with_test_workers();
    let mut client = cluster.connect();
    let occupied: bool = client
        .query_one("SELECT occupy_old_pool_name()", &[])
        .unwrap()
        .get(0);
    assert!(occupied);
    let mut pids = vec![job_worker_pid(&mut client), job_worker_pid(&mut client)];
    pids.dedup();
    let pooled: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_background_jobs WHERE pid = ANY($1)",
            &[&pids],
        )
        .unwrap()
        .get(0);
    assert_eq!(pooled, pids.len() as i64, "pooled workers served {pids:?}");
    cluster.assert_no_crash();
}

/// A pooled worker started by a backend of another build of the library (which keeps a pool
/// of its own, see the test above) runs this build's code, as every new process loads the
/// library file as it is now: it refuses to take a slot of this pool, whose jobs may belong
/// to other roles, and the pool goes on serving.
#[test]
fn a_pooled_worker_started_for_another_builds_pool_takes_no_slot_of_this_one() {
    let cluster = cluster_with_test_workers();
    let mut client = cluster.connect();
    job_worker_pid(&mut client);
    let pid: i32 = client
        .query_one(
            "SELECT start_pooled_worker_of_another_pool( \
               (SELECT oid FROM pg_database WHERE datname = current_database()), \
               'alice'::regrole)",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(pid > 0);
    cluster.wait_for_log(
        "this pooled worker was started for another build's pool",
        Duration::from_secs(20),
    );
    let alice_slots: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_background_jobs WHERE role = 'alice'::regrole",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(alice_slots, 0, "the worker took no slot");
    job_worker_pid(&mut client);
    cluster.assert_no_crash();
}
