//! ALPS on a busy OLTP database: pgbench (scale 10, 4 clients) against a database where ALPS
//! works, as issue 12 asks. Measures what one ALPS cycle on `pgbench_accounts` writes (rows
//! and WAL bytes) with `alps.min_change = 0` (every moved prediction rewritten, as before) and
//! with the default, and pgbench's TPS with ALPS working against ALPS leaving the tables
//! alone, in alternating runs of one session.

use std::process::Command;
use std::time::{Duration, Instant};

use bgworker_tests::{example, run_extension_script, Cluster};
use postgres::Client;

use crate::median;

const WAIT: Duration = Duration::from_secs(600);

fn pgbench(cluster: &Cluster, args: &[&str]) -> String {
    let bin = bgworker::testing::pg_config("--bindir");
    let port = cluster.port().to_string();
    let out = Command::new(format!("{bin}/pgbench"))
        .args(["-h", "127.0.0.1", "-p", &port, "-U", "postgres"])
        .args(args)
        .arg("postgres")
        .output()
        .expect("run pgbench");
    assert!(
        out.status.success(),
        "pgbench {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn tps(output: &str) -> f64 {
    output
        .lines()
        .find_map(|l| l.strip_prefix("tps = "))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no tps in pgbench output:\n{output}"))
}

fn wal_lsn(client: &mut Client) -> i64 {
    client
        .query_one("SELECT (pg_current_wal_lsn() - '0/0'::pg_lsn)::int8", &[])
        .unwrap()
        .get(0)
}

/// When ALPS last finished with pgbench_accounts (NULL before the first time).
fn accounts_outcome_at(client: &mut Client) -> Option<String> {
    client
        .query_opt(
            "SELECT outcome_at::text FROM alps.status WHERE table_name = 'pgbench_accounts'",
            &[],
        )
        .unwrap()
        .and_then(|r| r.get(0))
}

fn reload(client: &mut Client, setting: &str, value: &str) {
    client
        .batch_execute(&format!("ALTER SYSTEM SET {setting} = '{value}'"))
        .unwrap();
    client.batch_execute("SELECT pg_reload_conf()").unwrap();
    std::thread::sleep(Duration::from_millis(1500));
}

/// One ALPS cycle on pgbench_accounts after `changes` pgbench transactions: (rows written,
/// WAL bytes of the cycle, seconds).
fn cycle(cluster: &Cluster, client: &mut Client, changes: &str) -> (i64, i64, f64) {
    pgbench(cluster, &["-n", "-c", "4", "-j", "2", "-t", changes]);
    client.batch_execute("ANALYZE pgbench_accounts").unwrap();
    let before = accounts_outcome_at(client);
    let lsn = wal_lsn(client);
    let start = Instant::now();
    client.batch_execute("SELECT alps.wake()").unwrap();
    assert!(cluster.poll(WAIT, || accounts_outcome_at(client) != before));
    let seconds = start.elapsed().as_secs_f64();
    let wal = wal_lsn(client) - lsn;
    let written: i64 = client
        .query_one(
            "SELECT coalesce(rows_written, 0) FROM alps.status WHERE table_name = 'pgbench_accounts'",
            &[],
        )
        .unwrap()
        .get(0);
    (written, wal, seconds)
}

pub fn run(rounds: usize, seconds: u32) {
    let cluster = Cluster::builder()
        .preload(example("alps"))
        .setting("alps.naptime", "1")
        .setting("alps.include_tables", "public.pgbench_accounts")
        .setting("max_wal_size", "4GB")
        .start();
    cluster.wait_for_log("alps started in database \"postgres\"", WAIT);
    let mut client = cluster.connect();
    run_extension_script(&mut client, "alps");
    pgbench(&cluster, &["-i", "-s", "10", "-q"]);
    client.batch_execute("VACUUM ANALYZE").unwrap();

    // The first training writes a prediction into every row; then one cycle each way.
    let first = cycle(&cluster, &mut client, "100");
    reload(&mut client, "alps.min_change", "0");
    let exact = cycle(&cluster, &mut client, "1000");
    reload(&mut client, "alps.min_change", "0.001");
    let thousandth = cycle(&cluster, &mut client, "1000");
    reload(&mut client, "alps.min_change", "0.01");
    let tolerant = cycle(&cluster, &mut client, "1000");

    println!("## ALPS on a pgbench database\n");
    println!("`pgbench -i -s 10` (1,000,000 accounts), ALPS with `alps.include_tables =");
    println!("public.pgbench_accounts` (its other columns are keys, which ALPS leaves alone by");
    println!("default). One ALPS cycle after 4,000 pgbench transactions (`-c 4 -t 1000`) and an");
    println!(
        "ANALYZE; WAL bytes are `pg_current_wal_lsn()` around the cycle, with pgbench idle.\n"
    );
    println!("| cycle | rows rewritten | WAL bytes | seconds |");
    println!("|---|---|---|---|");
    for (name, (rows, wal, secs)) in [
        ("first training (every row gets its predictions)", first),
        ("retrain, `alps.min_change = 0` (as before issue 12)", exact),
        ("retrain, `alps.min_change = 0.001`", thousandth),
        ("retrain, `alps.min_change = 0.01` (default)", tolerant),
    ] {
        println!("| {name} | {rows} | {wal} | {secs:.2} |");
    }
    println!();

    // TPS: ALPS retraining pgbench_accounts after an ANALYZE every few seconds, against ALPS
    // told to leave it alone (the same ANALYZE loop runs in both).
    let mut with = Vec::new();
    let mut without = Vec::new();
    for round in 0..rounds * 2 {
        let working = round % 2 == 0;
        reload(
            &mut client,
            "alps.exclude_tables",
            if working {
                ""
            } else {
                "public.pgbench_accounts"
            },
        );
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let analyzer = {
            let stop = stop.clone();
            let mut side = cluster.connect();
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let _ = side.batch_execute("ANALYZE pgbench_accounts; SELECT alps.wake()");
                    std::thread::sleep(Duration::from_secs(3));
                }
            })
        };
        let out = pgbench(
            &cluster,
            &["-n", "-c", "4", "-j", "2", "-T", &seconds.to_string()],
        );
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        analyzer.join().unwrap();
        if working {
            with.push(tps(&out));
        } else {
            without.push(tps(&out));
        }
    }
    let (w, wo) = (median(with.clone()), median(without.clone()));
    println!("pgbench `-c 4 -j 2 -T {seconds}`, {rounds} alternating runs each, an ANALYZE of");
    println!("pgbench_accounts and `alps.wake()` every 3 s during every run.\n");
    println!("| | TPS per run | median | ratio |");
    println!("|---|---|---|---|");
    let list = |v: &[f64]| {
        v.iter()
            .map(|t| format!("{t:.0}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!(
        "| ALPS leaving the tables alone | {} | {wo:.0} | 1.000 |",
        list(&without)
    );
    println!(
        "| ALPS retraining pgbench_accounts | {} | {w:.0} | {:.3} |",
        list(&with),
        w / wo
    );
    println!();
}
