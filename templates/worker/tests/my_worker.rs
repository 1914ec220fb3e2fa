//! my_worker in a real, throwaway PostgreSQL: the library preloaded, the extension's script
//! run as CREATE EXTENSION would, and what a user sees checked through a client.

use std::path::Path;
use std::time::Duration;

use bgworker::testing::{cargo_profile_dir, run_extension_script, Cluster};

fn cluster() -> Cluster {
    Cluster::builder()
        .preload(cargo_profile_dir().join("libmy_worker.so"))
        .setting("my_worker.naptime", "1")
        .start()
}

#[test]
fn the_worker_ticks_and_shows_in_pg_stat_activity() {
    let cluster = cluster();
    cluster.wait_for_log("my_worker: tick 1", Duration::from_secs(30));
    let mut client = cluster.connect();
    let workers: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'my_worker'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(workers, 1);
    cluster.assert_no_crash();
}

#[test]
fn the_sql_functions_work_as_declared() {
    let cluster = cluster();
    let mut client = cluster.connect();
    let control = Path::new(env!("CARGO_MANIFEST_DIR")).join("my_worker.control");
    run_extension_script(&mut client, &control);
    let row = client
        .query_one("SELECT my_worker_hello('you'), my_worker_hello()", &[])
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "hello, you");
    assert_eq!(row.get::<_, String>(1), "hello, stranger");

    let pid: Option<i32> = client
        .query_one("SELECT my_worker_launch()", &[])
        .unwrap()
        .get(0);
    assert!(pid.is_some());
    assert!(cluster.poll(Duration::from_secs(30), || {
        client
            .query_one("SELECT my_worker_ticks() > 0", &[])
            .unwrap()
            .get::<_, bool>(0)
    }));
    cluster.assert_no_crash();
}
