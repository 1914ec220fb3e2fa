//! Issue 9, item 2: nothing an example installs that starts work or changes state is
//! executable by PUBLIC; what is, is plain computation.

use std::time::Duration;

use bgworker_tests::{example, run_extension_script, Cluster};

#[test]
fn only_harmless_functions_are_executable_by_public() {
    let cluster = Cluster::builder()
        .preload(example("alps"))
        .library(example("worker_spi"))
        .setting("alps.naptime", "1")
        .start();
    cluster.wait_for_log(
        "alps started in database \"postgres\"",
        Duration::from_secs(60),
    );
    let mut client = cluster.connect();
    run_extension_script(&mut client, "alps");
    run_extension_script(&mut client, "worker_spi");
    client.batch_execute("CREATE ROLE plain LOGIN").unwrap();
    // ALPS creates its aggregates in its schema when it starts.
    assert!(cluster.poll(Duration::from_secs(30), || {
        client
            .query_one(
                "SELECT count(*) FROM pg_proc WHERE pronamespace = 'alps'::regnamespace",
                &[],
            )
            .map(|r| r.get::<_, i64>(0) >= 9)
            .unwrap_or(false)
    }));
    let rows = client
        .query(
            "SELECT p.oid::regprocedure::text, has_function_privilege('plain', p.oid, 'EXECUTE')
               FROM pg_proc p
              WHERE p.pronamespace = 'alps'::regnamespace OR p.proname = 'worker_spi_launch'
              ORDER BY 1",
            &[],
        )
        .unwrap();
    let mut seen = Vec::new();
    for row in rows {
        let (function, executable): (String, bool) = (row.get(0), row.get(1));
        // The aggregates only compute over the values they are given.
        let harmless = function.starts_with("alps.qr(") || function.starts_with("alps.irls(");
        assert_eq!(executable, harmless, "{function}");
        seen.push(function);
    }
    for expected in ["alps.wake()", "worker_spi_launch(", "alps.qr_step("] {
        assert!(seen.iter().any(|f| f.starts_with(expected)), "{seen:?}");
    }
    // And the server says so to the role.
    client.batch_execute("SET ROLE plain").unwrap();
    let e = client.query_one("SELECT alps.wake()", &[]).unwrap_err();
    assert_eq!(e.code().map(|c| c.code()), Some("42501"), "{e}");
    cluster.assert_no_crash();
}
