//! examples/hello_world.rs in a real cluster: what a user of the worker sees.

use std::time::{Duration, Instant};

use bgworker_tests::{example, process_alive, Cluster};

const WAIT: Duration = Duration::from_secs(30);

fn hello_cluster(naptime: &str) -> Cluster {
    Cluster::builder()
        .preload(example("hello_world"))
        .setting("hello_world.naptime", naptime)
        .start()
}

fn worker_pid(cluster: &Cluster) -> i32 {
    let mut client = cluster.connect();
    let mut pid = None;
    cluster.poll(WAIT, || {
        pid = client
            .query_opt(
                "SELECT pid FROM pg_stat_activity WHERE backend_type = 'hello_world'",
                &[],
            )
            .unwrap()
            .map(|row| row.get::<_, i32>(0));
        pid.is_some()
    });
    pid.expect("the hello_world worker is listed in pg_stat_activity")
}

#[test]
fn logs_hello_world_and_is_listed_in_pg_stat_activity() {
    let cluster = hello_cluster("1");
    cluster.wait_for_log("LOG:  Hello World!", WAIT);
    let mut client = cluster.connect();
    let rows = client
        .query(
            "SELECT backend_type FROM pg_stat_activity WHERE backend_type = 'hello_world'",
            &[],
        )
        .unwrap();
    assert_eq!(rows.len(), 1, "exactly one hello_world worker");
    assert!(cluster
        .log()
        .contains("hello world worker started, naptime 1 s"));
    // With a one-second naptime, greetings keep coming.
    let before = cluster.log_count("Hello World!");
    assert!(cluster.poll(WAIT, || cluster.log_count("Hello World!") >= before + 2));
}

#[test]
fn sighup_applies_a_new_naptime() {
    let cluster = hello_cluster("3600");
    cluster.wait_for_log("hello world worker started, naptime 3600 s", WAIT);
    // With an hour between greetings, any greeting within the test means the reload worked.
    assert_eq!(cluster.log_count("Hello World!"), 0);
    let mut client = cluster.connect();
    client
        .batch_execute("ALTER SYSTEM SET hello_world.naptime = 1")
        .unwrap();
    client.batch_execute("SELECT pg_reload_conf()").unwrap();
    cluster.wait_for_log("hello world naptime is now 1 s", WAIT);
    assert!(
        cluster.poll(WAIT, || cluster.log_count("Hello World!") >= 3),
        "greetings every second after the reload"
    );
}

#[test]
fn fast_stop_is_prompt_even_with_a_long_naptime() {
    let mut cluster = hello_cluster("3600");
    let pid = worker_pid(&cluster);
    let took = cluster.stop("fast");
    // The worker sleeps for an hour; only the SIGTERM handling lets the stop finish.
    assert!(
        took < Duration::from_secs(10),
        "pg_ctl stop -m fast took {took:?}"
    );
    assert!(!process_alive(pid));
    let log = cluster.log();
    assert!(
        !log.lines()
            .any(|l| l.contains("\"hello_world\"") && l.contains("exit code 1")),
        "a clean stop exits with code 0:\n{log}"
    );
}

#[test]
fn no_worker_outlives_a_killed_postmaster() {
    let mut cluster = hello_cluster("3600");
    let pid = worker_pid(&cluster);
    let postmaster = cluster.postmaster_pid();
    // SAFETY: sending a signal to a process we started.
    assert_eq!(unsafe { libc_kill(postmaster, 9) }, 0);
    cluster.forget_server();
    let start = Instant::now();
    assert!(
        cluster.poll(Duration::from_secs(10), || !process_alive(pid)),
        "worker {pid} still alive {:?} after SIGKILL of the postmaster",
        start.elapsed()
    );
}

extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}
