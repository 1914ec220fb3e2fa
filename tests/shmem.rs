//! Shared memory: a named struct with an LWLock and an atomic, seen by every process; a
//! message queue in a dynamic segment between a backend and a worker, with detach handling.

use std::time::Duration;

use bgworker_tests::test_cluster;

#[test]
fn named_shared_memory_is_shared_by_every_backend() {
    let cluster = test_cluster(&[]);
    let mut a = cluster.connect();
    let mut b = cluster.connect();
    let first: Vec<i64> = a.query_one("SELECT shmem_bump(5)", &[]).unwrap().get(0);
    assert_eq!(first, vec![5, 5, 1]);
    let second: Vec<i64> = b.query_one("SELECT shmem_bump(2)", &[]).unwrap().get(0);
    assert_eq!(second, vec![7, 7, 2]);
    // Concurrent bumps from several sessions lose nothing.
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let conn = cluster.connection_string("postgres");
            std::thread::spawn(move || {
                let mut c = postgres::Client::connect(&conn, postgres::NoTls).unwrap();
                for _ in 0..250 {
                    c.query_one("SELECT shmem_bump(1)", &[]).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let total: Vec<i64> = a.query_one("SELECT shmem_read()", &[]).unwrap().get(0);
    assert_eq!(total, vec![1007, 1007, 1002]);
}

#[test]
fn message_queue_round_trip_and_detach() {
    let cluster = test_cluster(&[]);
    let mut client = cluster.connect();
    let answer: Option<String> = client
        .query_one("SELECT mq_echo('hello, worker')", &[])
        .unwrap()
        .get(0);
    assert_eq!(answer.as_deref(), Some("HELLO, WORKER"));
    let big = "x".repeat(100_000);
    let answer: Option<String> = client
        .query_one("SELECT mq_echo($1)", &[&big])
        .unwrap()
        .get(0);
    assert_eq!(
        answer.map(|a| a.len()),
        Some(100_000),
        "messages larger than the queue still arrive"
    );
    // The worker leaves without answering: the receive notices instead of waiting forever.
    let answer: Option<String> = client
        .query_one("SELECT mq_echo('vanish please')", &[])
        .unwrap()
        .get(0);
    assert_eq!(answer, None);
    cluster.wait_for_log(
        "mq echo: leaving without an answer",
        std::time::Duration::from_secs(10),
    );
}

#[test]
fn a_backend_latch_stored_in_shared_memory_is_set_by_another_backend() {
    let cluster = test_cluster(&[]);
    let mut a = cluster.connect();
    let mut b = cluster.connect();
    let pid: i32 = a
        .query_one("SELECT remember_my_latch()", &[])
        .unwrap()
        .get(0);
    let waiter = std::thread::spawn(move || {
        let started = std::time::Instant::now();
        let woke: String = a
            .query_one("SELECT wait_my_latch(60000)", &[])
            .unwrap()
            .get(0);
        (woke, started.elapsed(), a)
    });
    assert!(cluster.poll(Duration::from_secs(20), || {
        b.query_one(
            "SELECT wait_event = 'Extension' FROM pg_stat_activity WHERE pid = $1",
            &[&pid],
        )
        .map(|r| r.get::<_, Option<bool>>(0) == Some(true))
        .unwrap_or(false)
    }));
    let woken: bool = b.query_one("SELECT wake_remembered()", &[]).unwrap().get(0);
    assert!(woken);
    let (woke, waited, a) = waiter.join().unwrap();
    assert_eq!(woke, "latch");
    assert!(waited < Duration::from_secs(50), "{waited:?}");

    // Once that backend has gone (its latch disowned as it exits), the waker sets nothing.
    drop(a);
    let gone = cluster.poll(Duration::from_secs(20), || {
        !b.query_one("SELECT wake_remembered()", &[])
            .unwrap()
            .get::<_, bool>(0)
    });
    assert!(gone, "a waker of an exited backend must do nothing");
    cluster.assert_no_crash();
}
