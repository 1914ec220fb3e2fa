//! The background example against dblink (PostgreSQL's contrib), side by side in one run:
//! a `SELECT 1` round trip on a warm pooled worker against a kept dblink connection, a
//! fresh worker against a new dblink connection, and 1,000,000 rows back.

use std::time::Instant;

use bgworker_tests::{example, run_extension_script, status_kb, Cluster};
use postgres::Client;

use super::median;

/// Seconds per call of `ours` and of `peer`, each run `calls` times per round: the median
/// of `rounds` rounds, alternating between the two so that both see the same machine.
fn per_call(
    client: &mut Client,
    ours: &str,
    peer: &str,
    calls: usize,
    rounds: usize,
) -> (f64, f64) {
    let statements = [client.prepare(ours).unwrap(), client.prepare(peer).unwrap()];
    for statement in &statements {
        client.query(statement, &[]).unwrap(); // warm-up
    }
    let mut times = [Vec::new(), Vec::new()];
    for _ in 0..rounds {
        for (statement, times) in statements.iter().zip(times.iter_mut()) {
            let start = Instant::now();
            for _ in 0..calls {
                client.query(statement, &[]).unwrap();
            }
            times.push(start.elapsed().as_secs_f64() / calls as f64);
        }
    }
    let [ours, peer] = times;
    (median(ours), median(peer))
}

fn set_pool(client: &mut Client, workers: &str) {
    client
        .batch_execute(&format!(
            "ALTER SYSTEM SET pg_background.pool_max_workers = {workers}"
        ))
        .unwrap();
    client.batch_execute("SELECT pg_reload_conf()").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    // The next statement of this session reads the reloaded value.
    client.batch_execute("SELECT 1").unwrap();
}

pub fn run(rounds: usize) {
    let cluster = Cluster::builder()
        .library(example("background"))
        .setting("max_worker_processes", "16")
        .start();
    let mut client = cluster.connect();
    run_extension_script(&mut client, "background");
    client.batch_execute("CREATE EXTENSION dblink").unwrap();
    client.batch_execute("LOAD 'background'").unwrap();
    let conninfo = format!(
        "host=127.0.0.1 port={} dbname=postgres user=postgres",
        cluster.port()
    );
    client
        .execute("SELECT dblink_connect('kept', $1)", &[&conninfo])
        .unwrap();

    println!("## background against dblink\n");
    println!(
        "Median of {rounds} rounds ({} for fresh workers and new connections), alternating between the two, one client, in the same run.\n",
        3 * rounds
    );
    println!("| what | background | dblink | ratio (target ≤ 1.0) |");
    println!("|---|---|---|---|");

    let kept = "SELECT * FROM dblink('kept', 'SELECT 1') AS (x int)";
    let (ours, peer) = per_call(
        &mut client,
        "SELECT * FROM pg_background_result(pg_background_launch('SELECT 1')) AS (x int)",
        kept,
        2000,
        rounds,
    );
    println!(
        "| `SELECT 1` round trip: warm pooled worker / kept connection | {:.1} µs | {:.1} µs | {:.2} |",
        ours * 1e6,
        peer * 1e6,
        ours / peer
    );

    // The same worker held by this session: each call hands it one more string and reads
    // its result (two statements of the caller, as against dblink's one).
    let handle = client
        .query_one(
            "SELECT (h).pid, (h).cookie FROM pg_background_launch_v2('SELECT 1') h",
            &[],
        )
        .unwrap();
    let (pid, cookie): (i32, i64) = (handle.get(0), handle.get(1));
    client
        .query(
            "SELECT * FROM pg_background_result_v2($1, $2) AS (x int)",
            &[&pid, &cookie],
        )
        .unwrap();
    let (held, peer) = per_call(
        &mut client,
        &format!(
            "SELECT pg_background_run_v2({pid}, {cookie}, 'SELECT 1'), \
               (SELECT x FROM pg_background_result_v2({pid}, {cookie}) AS (x int))"
        ),
        kept,
        2000,
        rounds,
    );
    client
        .execute("SELECT pg_background_detach_v2($1, $2)", &[&pid, &cookie])
        .unwrap();
    println!(
        "| `SELECT 1` on a worker this session holds (`run_v2` + `result_v2` in one statement) / kept connection | {:.1} µs | {:.1} µs | {:.2} |",
        held * 1e6,
        peer * 1e6,
        held / peer
    );

    set_pool(&mut client, "0");
    fresh_against_new_connection(&mut client, &conninfo, rounds, "not preloaded");
    set_pool(&mut client, "8");

    let (rows, peer_rows) = per_call(
        &mut client,
        "SELECT count(*) FROM pg_background_result(pg_background_launch( \
           'SELECT g FROM generate_series(1, 1000000) g')) AS (g int)",
        "SELECT count(*) FROM dblink('kept', 'SELECT g FROM generate_series(1, 1000000) g') AS (g int)",
        1,
        rounds,
    );
    println!(
        "| 1,000,000 rows back (warm pooled worker / kept connection) | {:.3} s | {:.3} s | {:.2} |",
        rows,
        peer_rows,
        rows / peer_rows
    );

    // Memory of a pooled worker across many jobs: its private (anonymous) resident set.
    let pid: i32 = client
        .query_one(
            "SELECT * FROM pg_background_result(pg_background_launch('SELECT pg_backend_pid()')) AS (p int)",
            &[],
        )
        .unwrap()
        .get(0);
    let before = status_kb(pid, "RssAnon");
    for _ in 0..5000 {
        client
            .query(
                "SELECT * FROM pg_background_result(pg_background_launch('SELECT 1')) AS (x int)",
                &[],
            )
            .unwrap();
    }
    let after = status_kb(pid, "RssAnon");
    println!(
        "\nA pooled worker's private memory (`RssAnon`) before and after 5,000 more jobs: {before} kB, {after} kB.\n"
    );
    cluster.assert_no_crash();
    drop(client);
    drop(cluster);

    // Preloaded, a fresh worker finds the library loaded (no dlopen, no _PG_init).
    let cluster = Cluster::builder()
        .preload(example("background"))
        .setting("max_worker_processes", "16")
        .setting("pg_background.pool_max_workers", "0")
        .start();
    let mut client = cluster.connect();
    run_extension_script(&mut client, "background");
    client.batch_execute("CREATE EXTENSION dblink").unwrap();
    let conninfo = format!(
        "host=127.0.0.1 port={} dbname=postgres user=postgres",
        cluster.port()
    );
    println!("| what | background | dblink | ratio (target ≤ 1.0) |");
    println!("|---|---|---|---|");
    fresh_against_new_connection(&mut client, &conninfo, rounds, "preloaded");
    cluster.assert_no_crash();
}

/// A job on a fresh worker (the pool off) against a dblink query on a new connection.
fn fresh_against_new_connection(client: &mut Client, conninfo: &str, rounds: usize, how: &str) {
    // A process start varies more from call to call than a round trip: three times the
    // rounds (still only 100 calls each, about 0.2 s).
    let (fresh, new_connection) = per_call(
        client,
        "SELECT * FROM pg_background_result(pg_background_launch('SELECT 1')) AS (x int)",
        &format!("SELECT * FROM dblink('{conninfo}', 'SELECT 1') AS (x int)"),
        100,
        3 * rounds,
    );
    println!(
        "| `SELECT 1` with a fresh worker ({how}) / a new connection | {:.2} ms | {:.2} ms | {:.2} |",
        fresh * 1e3,
        new_connection * 1e3,
        fresh / new_connection
    );
}
