//! The SPI benchmark worker: the same loop of trivial statements written on the safe API and
//! on raw pg-sys calls, timed inside the worker. `make bench` drives it (tests/bench.rs).

use std::ffi::CStr;
use std::time::Instant;

use bgworker::pg_sys;
use bgworker::prelude::*;

const QUERY: &CStr = c"SELECT 1";

/// main_arg = statements * 4 + mode: 1 for the safe API (0 for raw calls), plus 2 for
/// read-write statements (SPI's `read_only = false`, the safe API's default; 0 for
/// read-only ones).
pub struct SpiBench;

impl Worker for SpiBench {
    const NAME: &'static str = "spi bench";
    const DATABASE_CONNECTION: bool = true;

    fn main(arg: i64) -> Result<()> {
        worker::connect(worker::Connection::new(worker::Database::Name("postgres")))?;
        let (n, safe, read_write) = (arg / 4, arg % 2 == 1, arg % 4 >= 2);
        let (seconds, sum) = if safe {
            safe_loop(n, !read_write)?
        } else {
            raw_loop(n, !read_write)?
        };
        let mode = format!(
            "{} {}",
            if safe { "safe" } else { "raw" },
            if read_write { "rw" } else { "ro" }
        );
        xact::transaction(|spi| {
            spi.execute(
                "INSERT INTO bench_results VALUES ($1, $2, $3, $4)",
                &[&mode, &n, &seconds, &sum],
            )
        })?;
        Ok(())
    }
}
bgworker::export_worker!(SpiBench, "test_spi_bench_main");

fn safe_loop(n: i64, read_only: bool) -> Result<(f64, i64)> {
    xact::transaction(|spi| {
        spi.set_read_only(read_only);
        let start = Instant::now();
        let mut sum = 0i64;
        for _ in 0..n {
            let v: i32 = spi.query_one("SELECT 1", &[])?;
            sum += v as i64;
        }
        Ok((start.elapsed().as_secs_f64(), sum))
    })
}

/// The loop as a C worker writes it: no conversions, no checks, one error boundary around
/// the whole transaction.
fn raw_loop(n: i64, read_only: bool) -> Result<(f64, i64)> {
    let mut out = (0.0f64, 0i64);
    let out_ptr = &mut out as *mut (f64, i64);
    // SAFETY: the canonical transaction sequence with SPI; raw_body owns nothing that needs
    // dropping, so the boundary around it is sound.
    bgworker::guard(|| unsafe { raw_body(n, read_only, out_ptr) })?;
    Ok(out)
}

/// # Safety
/// Must run in a worker connected to a database, outside a transaction.
unsafe fn raw_body(n: i64, read_only: bool, out: *mut (f64, i64)) {
    // SAFETY: see raw_loop.
    unsafe {
        pg_sys::SetCurrentStatementStartTimestamp();
        pg_sys::StartTransactionCommand();
        pg_sys::SPI_connect();
        pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
        let start = Instant::now();
        let mut sum = 0i64;
        for _ in 0..n {
            pg_sys::SPI_execute(QUERY.as_ptr(), read_only, 0);
            let table = pg_sys::SPI_tuptable;
            let mut is_null = false;
            let d = pg_sys::SPI_getbinval(*(*table).vals, (*table).tupdesc, 1, &mut is_null);
            sum += d as i32 as i64;
            pg_sys::SPI_freetuptable(table);
        }
        *out = (start.elapsed().as_secs_f64(), sum);
        pg_sys::SPI_finish();
        pg_sys::PopActiveSnapshot();
        pg_sys::CommitTransactionCommand();
    }
}
