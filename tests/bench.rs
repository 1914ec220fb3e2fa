//! `make bench`: benchmarks, each figure a ratio against a peer measured in the same run.
//! Prints a Markdown report; BENCHMARKS.md records one, with the machine it ran on.

use std::time::Duration;

use bgworker_tests::{example, status_kb, test_cluster, Cluster};

#[path = "bench_background.rs"]
mod background;
#[path = "bench_pgbench.rs"]
mod pgbench;
use postgres::Client;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn spi_overhead(rounds: usize, statements: i64) {
    let cluster = test_cluster(&[]);
    let mut client = cluster.connect();
    client
        .batch_execute("CREATE TABLE bench_results (mode text, n int8, seconds float8, sum int8)")
        .unwrap();
    // mode: 1 = safe API (0 = raw calls), + 2 = read-write statements (0 = read-only).
    let run = |client: &mut postgres::Client, mode: i64| {
        let arg = statements * 4 + mode;
        let before: i64 = client
            .query_one("SELECT count(*) FROM bench_results", &[])
            .unwrap()
            .get(0);
        client
            .query_one("SELECT launch('spi_bench', $1)", &[&format!("arg={arg}")])
            .unwrap();
        assert!(cluster.poll(Duration::from_secs(300), || {
            client
                .query_one("SELECT count(*) FROM bench_results", &[])
                .unwrap()
                .get::<_, i64>(0)
                > before
        }));
    };
    // One warm-up of each, then alternate so that drift affects all equally.
    for mode in 0..4 {
        run(&mut client, mode);
    }
    client.batch_execute("TRUNCATE bench_results").unwrap();
    for _ in 0..rounds {
        for mode in 0..4 {
            run(&mut client, mode);
        }
    }
    let rows = client
        .query("SELECT mode, seconds, sum FROM bench_results", &[])
        .unwrap();
    let times = |mode: &str| -> Vec<f64> {
        rows.iter()
            .filter(|r| r.get::<_, String>(0) == mode)
            .map(|r| r.get(1))
            .collect()
    };
    assert!(
        rows.iter().all(|r| r.get::<_, i64>(2) == statements),
        "every loop read every row"
    );
    println!("## SPI: safe API against raw pg-sys calls\n");
    println!("{statements} x `SELECT 1` in one transaction inside a worker, reading the value and freeing");
    println!("each result; median of {rounds} alternating rounds. Read-write is SPI's `read_only = false`");
    println!(
        "(a new snapshot and a command counter increment per statement: the safe API's default,"
    );
    println!("so that statements see their transaction's writes); read-only is `read_only = true`");
    println!("(`spi.set_read_only(true)`).\n");
    println!("| statements | raw pg-sys (C style) | safe API (`spi.query_one`) | ratio safe/raw |");
    println!("|---|---|---|---|");
    for (name, suffix) in [("read-only", "ro"), ("read-write", "rw")] {
        let raw = median(times(&format!("raw {suffix}")));
        let safe = median(times(&format!("safe {suffix}")));
        println!(
            "| {name} | {raw:.4} s ({:.2} µs/stmt) | {safe:.4} s ({:.2} µs/stmt) | {:.3} |",
            raw / statements as f64 * 1e6,
            safe / statements as f64 * 1e6,
            safe / raw
        );
    }
    println!();
}

fn scan_seconds(client: &mut Client) -> f64 {
    let sql = "SELECT sum(x1), sum(x2), sum(x3), sum(x4), sum(x5), sum(x6), sum(x7), sum(x8), sum(x9), sum(x10), \
               sum(y), count(b) FROM bench.t";
    client
        .batch_execute("SET max_parallel_workers_per_gather = 0")
        .unwrap();
    client.query(sql, &[]).unwrap(); // warm the cache
    let times: Vec<f64> = (0..5)
        .map(|_| {
            let t = std::time::Instant::now();
            client.query(sql, &[]).unwrap();
            t.elapsed().as_secs_f64()
        })
        .collect();
    median(times)
}

struct Training {
    y_seconds: f64,
    b_seconds: f64,
    b_iterations: i32,
    total_seconds: f64,
    rss_kb: u64,
    anon_kb: u64,
}

/// Wakes ALPS and waits for training number `n` of bench.t, sampling the worker's private
/// memory (RssAnon: not the shared buffers it reads through) every 20 ms meanwhile.
fn train(cluster: &Cluster, client: &mut Client, n: usize) -> Training {
    let line = "models on bench.t in";
    let pid: i32 = client
        .query_one(
            "SELECT pid FROM pg_stat_activity WHERE backend_type = 'alps'",
            &[],
        )
        .unwrap()
        .get(0);
    client.batch_execute("ANALYZE bench.t").unwrap();
    client.query_one("SELECT alps.wake()", &[]).unwrap();
    let mut peak_anon = 0;
    assert!(
        cluster.poll(Duration::from_secs(1800), || {
            peak_anon = peak_anon.max(status_kb(pid, "RssAnon"));
            std::thread::sleep(Duration::from_millis(20));
            cluster.log_count(line) >= n
        }),
        "ALPS did not train bench.t"
    );
    let get = |client: &mut Client, column: &str| -> (f64, i32) {
        let row = client
            .query_one("SELECT training_seconds, iterations FROM alps.models WHERE table_name = 't' AND column_name = $1", &[&column])
            .unwrap();
        (row.get(0), row.get(1))
    };
    let (y_seconds, _) = get(client, "y");
    let (b_seconds, b_iterations) = get(client, "b");
    let total_line = cluster
        .log()
        .lines()
        .rfind(|l| l.contains(line))
        .unwrap()
        .to_string();
    let total_seconds: f64 = total_line
        .split(" in ")
        .nth(1)
        .and_then(|s| s.split(' ').next()?.parse().ok())
        .unwrap_or(0.0);
    Training {
        y_seconds,
        b_seconds,
        b_iterations,
        total_seconds,
        rss_kb: status_kb(pid, "VmHWM"),
        anon_kb: peak_anon,
    }
}

fn python_peer(cluster: &Cluster) -> Option<serde_json::Value> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap();
    let venv = bgworker::testing::cargo_profile_dir()
        .parent()
        .unwrap()
        .join("bench-venv");
    let python = venv.join("bin/python");
    if !python.exists() {
        eprintln!(
            "bench: creating {} with psycopg, numpy and statsmodels (PyPI)",
            venv.display()
        );
        let ok = std::process::Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .ok()?
            .success()
            && std::process::Command::new(&python)
                .args([
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "psycopg[binary]",
                    "numpy",
                    "statsmodels",
                ])
                .status()
                .ok()?
                .success();
        if !ok {
            eprintln!("bench: could not install the Python peer; skipping it");
            return None;
        }
    }
    let out = std::process::Command::new(&python)
        .arg(root.join("tests/bench_peer.py"))
        .arg(cluster.connection_string("postgres"))
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!(
            "bench: python peer failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

fn alps(with_4m: bool) {
    let cluster = Cluster::builder()
        .preload(example("alps"))
        .setting("alps.naptime", "3600")
        // As measured before: PostgreSQL's parallel workers share the passes.
        .setting("alps.max_parallel_workers", "2")
        .setting("autovacuum", "off")
        .setting("shared_buffers", "1GB")
        .setting("max_wal_size", "4GB")
        .start();
    let mut client = cluster.connect();
    cluster.wait_for_log("alps started", Duration::from_secs(60));
    bgworker_tests::run_extension_script(&mut client, "alps");
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap();
    client
        .batch_execute(&std::fs::read_to_string(root.join("tests/data/gen_bench.sql")).unwrap())
        .unwrap();
    client.batch_execute("VACUUM bench.t").unwrap();
    let scan_1m = scan_seconds(&mut client);
    let t1 = train(&cluster, &mut client, 1);
    let peer = python_peer(&cluster);

    println!("## ALPS on bench.t (1,000,000 rows; 10 float8 features, y float8, b boolean)\n");
    println!("Peer: one `SELECT sum(x1), ..., sum(y), count(b) FROM bench.t` sequential scan (no parallel");
    println!(
        "workers; median of 5, warm cache), measured in the same run. ALPS trains all 12 models of"
    );
    println!(
        "the table; the linear models share one pass, each IRLS step of `b` is one more pass.\n"
    );
    println!("| measure | seconds | ratio to scan | target |");
    println!("|---|---|---|---|");
    println!("| scan (peer) | {scan_1m:.3} | 1.00 | |");
    println!(
        "| train `y` (shared pass + solve) | {:.3} | {:.2} | <= 2 |",
        t1.y_seconds,
        t1.y_seconds / scan_1m
    );
    println!(
        "| train `b` (IRLS, {} iterations) | {:.3} | {:.2} | <= {} |",
        t1.b_iterations,
        t1.b_seconds,
        t1.b_seconds / scan_1m,
        t1.b_iterations + 1
    );
    println!(
        "| all 12 models of the table (training) | {:.3} | {:.2} | |",
        t1.total_seconds,
        t1.total_seconds / scan_1m
    );
    if let Some(p) = &peer {
        let f = |k: &str| p[k].as_f64().unwrap_or(f64::NAN);
        let read = f("read_seconds") + f("to_numpy_seconds");
        println!(
            "| Python: psycopg read + numpy ({} rows) | {:.3} | {:.2} | |",
            p["rows"],
            read,
            read / scan_1m
        );
        println!(
            "| Python: + statsmodels OLS `y` | {:.3} | {:.2} | |",
            read + f("ols_seconds"),
            (read + f("ols_seconds")) / scan_1m
        );
        println!(
            "| Python: + statsmodels Logit `b` ({} iterations) | {:.3} | {:.2} | |",
            p["logit_iterations"],
            read + f("logit_seconds"),
            (read + f("logit_seconds")) / scan_1m
        );
        println!(
            "\nALPS `y` training vs the Python read + OLS: {:.2}x",
            t1.y_seconds / (read + f("ols_seconds"))
        );
    }
    println!(
        "\nALPS worker memory at 1M rows: peak private (RssAnon, sampled every 20 ms) {} kB; VmHWM {} kB (includes the shared buffers it read)", t1.anon_kb, t1.rss_kb
    );
    if with_4m {
        client
            .batch_execute(
                "INSERT INTO bench.t SELECT id + k * 1000000, x1, x2, x3, x4, x5, x6, x7, x8, x9, x10, y, b
                   FROM bench.t, generate_series(1, 3) k WHERE id <= 1000000",
            )
            .unwrap();
        client.batch_execute("VACUUM bench.t").unwrap();
        let scan_4m = scan_seconds(&mut client);
        let t4 = train(&cluster, &mut client, 2);
        println!(
            "ALPS worker memory at 4M rows: peak private (RssAnon) {} kB; VmHWM {} kB",
            t4.anon_kb, t4.rss_kb
        );
        println!(
            "At 4M rows: scan {scan_4m:.3} s; train `y` {:.3} s ({:.2}x); train `b` {:.3} s ({:.2}x, {} iterations)",
            t4.y_seconds,
            t4.y_seconds / scan_4m,
            t4.b_seconds,
            t4.b_seconds / scan_4m,
            t4.b_iterations
        );
    }
    println!();
}

fn main() {
    let which: Vec<String> = std::env::args().skip(1).collect();
    let all = which.is_empty();
    println!("# bgworker benchmarks\n");
    if all || which.iter().any(|w| w == "spi") {
        spi_overhead(7, 100_000);
    }
    if all || which.iter().any(|w| w == "alps") {
        alps(!which.iter().any(|w| w == "--no-4m"));
    }
    if all || which.iter().any(|w| w == "pgbench") {
        pgbench::run(3, 20);
    }
    if all || which.iter().any(|w| w == "background") {
        background::run(5);
    }
}
