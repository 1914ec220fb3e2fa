//! `make bench`: benchmarks, each figure a ratio against a peer measured in the same run.
//! Prints a Markdown report; BENCHMARKS.md records one, with the machine it ran on.

use std::time::Duration;

use bgworker_tests::test_cluster;

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
    let run = |client: &mut postgres::Client, safe: bool| {
        let arg = statements * 2 + i64::from(safe);
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
    // One warm-up of each, then alternate so that drift affects both equally.
    run(&mut client, false);
    run(&mut client, true);
    client.batch_execute("TRUNCATE bench_results").unwrap();
    for _ in 0..rounds {
        run(&mut client, false);
        run(&mut client, true);
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
    let (raw, safe) = (median(times("raw")), median(times("safe")));
    println!("## SPI: safe API against raw pg-sys calls\n");
    println!("{statements} x `SELECT 1` in one transaction inside a worker, reading the value and freeing");
    println!("each result; median of {rounds} alternating rounds.\n");
    println!("| loop | median seconds | per statement | ratio to raw |");
    println!("|---|---|---|---|");
    for (name, t) in [
        ("raw pg-sys (C style)", raw),
        ("safe API (`spi.query_one`)", safe),
    ] {
        println!(
            "| {name} | {t:.4} | {:.2} µs | {:.3} |",
            t / statements as f64 * 1e6,
            t / raw
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
}
