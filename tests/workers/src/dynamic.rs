//! Workers launched from SQL (`launch(kind, arg)`), each proving one part of the API.

use std::time::Duration;

use bgworker::datum::SqlType;
use bgworker::prelude::*;
use bgworker::worker::{Builder, Connection, Database, Role, Status};

fn connect_default() -> Result<()> {
    let db = crate::DATABASE
        .get()
        .unwrap_or_else(|| "postgres".to_string());
    worker::connect(Connection::new(Database::Name(&db)))
}

/// Connects, then waits (showing a named wait event) until told to stop.
pub struct Sleeper;

impl Worker for Sleeper {
    const NAME: &'static str = "test sleeper";
    const TYPE: &'static str = "test_sleeper";
    const DATABASE_CONNECTION: bool = true;

    fn main(_arg: i64) -> Result<()> {
        connect_default()?;
        let event = latch::WaitEvent::named(c"TestSleeperMain")?;
        log!("sleeper ready");
        while !signals::shutdown_requested() {
            latch::wait_for(None, None, event)?;
        }
        log!("sleeper stopping on request");
        Ok(())
    }
}
bgworker::export_worker!(Sleeper, "test_sleeper_main");

fn peak_rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

/// Transactions and SPI in a worker loop: errors, subtransactions, prepared statements,
/// cursors. Writes what happened to `worker_log (step int, note text)`.
pub struct SqlLoop;

impl Worker for SqlLoop {
    const NAME: &'static str = "test sql loop";
    const TYPE: &'static str = "test_sql_loop";
    const DATABASE_CONNECTION: bool = true;

    fn main(_arg: i64) -> Result<()> {
        connect_default()?;
        let note = |step: i32, text: &str| {
            xact::transaction(|spi| {
                spi.execute("INSERT INTO worker_log VALUES ($1, $2)", &[&step, &text])
            })
        };

        // 1. A syntax error: the transaction fails, the worker goes on.
        match xact::transaction(|spi| spi.execute("SELEC 1", &[])) {
            Ok(_) => note(1, "syntax error not reported")?,
            Err(e) => {
                log!("sql loop caught: {e}");
                note(1, &format!("caught {}", e.sqlstate()))?
            }
        };

        // 2. A subtransaction fails on a unique violation; the transaction commits the rest.
        xact::transaction(|spi| {
            let failed = spi.subtransaction(|spi| {
                spi.execute(
                    "INSERT INTO worker_log VALUES ($1, $2)",
                    &[&2, &"inside subxact"],
                )?;
                spi.execute("INSERT INTO unique_t VALUES (1)", &[])
            });
            let outcome = match failed {
                Ok(_) => "subxact committed".to_string(),
                Err(e) => format!("subxact rolled back: {}", e.sqlstate()),
            };
            spi.execute("INSERT INTO worker_log VALUES ($1, $2)", &[&2, &outcome])
        })?;

        // 3. A prepared statement used in three later transactions.
        let insert = xact::transaction(|spi| {
            spi.prepare(
                "INSERT INTO worker_log VALUES ($1, $2)",
                &[i32::OID, String::OID],
            )
        })?;
        for i in 0..3 {
            xact::transaction(|spi| {
                spi.execute_prepared(&insert, &[&3, &format!("prepared {i}")])
            })?;
        }
        // A wrongly typed parameter is refused before reaching PostgreSQL.
        if let Err(e) = xact::transaction(|spi| spi.execute_prepared(&insert, &[&3i64, &"x"])) {
            note(3, &format!("refused: {e}"))?;
        }

        // 4. A cursor over two million rows, read in batches.
        let before = peak_rss_kb();
        let (rows, sum) = xact::transaction(|spi| {
            let mut cursor = spi.cursor(
                "SELECT g::int8, repeat('x', 100) FROM generate_series(1, 2000000) g",
                &[],
            )?;
            let (mut rows, mut sum) = (0i64, 0i64);
            loop {
                let batch: Vec<(i64, String)> = cursor.fetch(1000)?;
                if batch.is_empty() {
                    break;
                }
                rows += batch.len() as i64;
                sum += batch.iter().map(|(g, _)| g).sum::<i64>();
            }
            Ok((rows, sum))
        })?;
        let grown = peak_rss_kb().saturating_sub(before);
        note(
            4,
            &format!("cursor rows={rows} sum={sum} peak_rss_growth_kb={grown}"),
        )?;

        // 5. Activity is reported while running and idle afterwards.
        xact::transaction(|spi| {
            spi.report_activity("sql loop step five");
            spi.execute("INSERT INTO worker_log VALUES (5, 'reported')", &[])
        })?;
        log!("sql loop done");
        while !signals::shutdown_requested() {
            latch::wait(None)?;
        }
        Ok(())
    }
}
bgworker::export_worker!(SqlLoop, "test_sql_loop_main");

/// Inserts a row inside a transaction, then panics in it.
pub struct PanicInXact;

impl Worker for PanicInXact {
    const NAME: &'static str = "test panic in xact";
    const DATABASE_CONNECTION: bool = true;

    fn main(_arg: i64) -> Result<()> {
        connect_default()?;
        xact::transaction(|spi| {
            spi.execute("INSERT INTO worker_log VALUES (9, 'before panic')", &[])?;
            panic!("panic inside a transaction");
        })
    }
}
bgworker::export_worker!(PanicInXact, "test_panic_in_xact_main");

/// Connects as given in `bgw_extra` ("database\0role\0flags"), reports who it is, waits.
pub struct ConnectAs;

impl Worker for ConnectAs {
    const NAME: &'static str = "test connect as";
    const TYPE: &'static str = "test_connect_as";
    const DATABASE_CONNECTION: bool = true;

    fn main(_arg: i64) -> Result<()> {
        let extra = worker::extra().unwrap_or_default();
        let parts: Vec<String> = extra
            .split(|b| *b == 0)
            .take(3)
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .collect();
        let (db, role, flags) = (&parts[0], &parts[1], &parts[2]);
        let mut c = Connection::new(Database::Name(db)).application_name("connect-as test");
        if !role.is_empty() {
            c = c.role(Role::Name(role));
        }
        if flags.contains("allowconn") {
            c = c.bypass_allow_connections();
        }
        worker::connect(c)?;
        let (user, database): (String, String) = xact::transaction(|spi| {
            spi.query_one("SELECT current_user::text, current_database()::text", &[])
        })?;
        log!("connected as {user} to {database}");
        while !signals::shutdown_requested() {
            latch::wait(None)?;
        }
        Ok(())
    }
}
bgworker::export_worker!(ConnectAs, "test_connect_as_main");

/// Shows why waits return: latch, timeout, socket.
pub struct LatchProbe;

impl Worker for LatchProbe {
    const NAME: &'static str = "test latch probe";

    fn main(_arg: i64) -> Result<()> {
        latch::set();
        let first = latch::wait(Some(Duration::from_secs(30)))?;
        let second = latch::wait(Some(Duration::from_millis(50)))?;
        let mut fds = [0i32; 2];
        // SAFETY: creating a pipe into a two-element array.
        if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
            return Err(Error::msg("pipe failed"));
        }
        // SAFETY: writing one byte to the pipe we just made.
        unsafe { libc::write(fds[1], b"x".as_ptr().cast(), 1) };
        let socket = latch::Socket {
            fd: fds[0],
            readable: true,
            writable: false,
        };
        let third = latch::wait_for(
            Some(Duration::from_secs(30)),
            Some(socket),
            latch::WaitEvent::EXTENSION,
        )?;
        log!("latch probe: {first:?} {second:?} {third:?}");
        Ok(())
    }
}
bgworker::export_worker!(LatchProbe, "test_latch_probe_main");

fn builder_for(kind: &str) -> Result<Builder> {
    Ok(match kind {
        "sleeper" => Sleeper::builder(),
        "sql_loop" => SqlLoop::builder(),
        "panic_in_xact" => PanicInXact::builder(),
        "latch_probe" => LatchProbe::builder(),
        "connect_as" => ConnectAs::builder(),
        "mq_echo" => crate::shared::MqEcho::builder(),
        "spi_bench" => crate::bench::SpiBench::builder(),
        "locked_catch" => crate::soundness::LockedCatch::builder(),
        "unconnected" => crate::soundness::Unconnected::builder(),
        "commit_errors" => crate::soundness::CommitErrors::builder(),
        other => return Err(Error::msg(format!("unknown worker kind {other:?}"))),
    })
}

bgworker::sql_function! {
    /// Launches a worker and waits for it to start: its pid, or NULL when no slot is free.
    fn launch(kind: String, extra: Option<String> = "NULL") -> Option<i32> {
        let mut builder = builder_for(&kind)?;
        if let Some(arg) = extra.as_deref().and_then(|e| e.strip_prefix("arg=")) {
            let arg = arg.parse().map_err(|_| Error::msg(format!("bad main argument {arg:?}")))?;
            builder = builder.main_arg(arg);
            return launch_builder(builder);
        }
        if let Some(extra) = extra {
            builder = builder.extra(extra.replace('|', "\0").into_bytes());
        }
        launch_builder(builder)
    }
}

fn launch_builder(builder: Builder) -> Result<Option<i32>> {
    let handle = match builder.launch() {
        Ok(h) => h,
        Err(Error::NoFreeWorkerSlot) => return Ok(None),
        Err(e) => return Err(e),
    };
    match handle.wait_for_startup()? {
        Status::Started(pid) => Ok(Some(pid)),
        other => Err(Error::msg(format!("worker did not start: {other:?}"))),
    }
}

bgworker::sql_function! {
    /// Launches a worker and returns the error text when that fails (NULL on success).
    fn launch_error(kind: String) -> Option<String> {
        Ok(builder_for(&kind)?.launch().err().map(|e| format!("{}: {e}", e.sqlstate())))
    }
}

bgworker::sql_function! {
    /// Launches a sleeper, stops it through its handle, and reports every status seen.
    fn launch_and_stop() -> String {
        let handle = Sleeper::launch(0)?;
        let started = handle.wait_for_startup()?;
        let pid = handle.pid()?;
        handle.terminate()?;
        let stopped = handle.wait_for_shutdown()?;
        let after = handle.status()?;
        Ok(format!(
            "started={} pid_known={} stopped={stopped:?} after={after:?}",
            matches!(started, Status::Started(_)),
            pid.is_some()
        ))
    }
}

bgworker::sql_function! {
    /// Registration mistakes, reported as error texts.
    fn registration_errors() -> Vec<String> {
        let long = "x".repeat(200);
        let too_long = Builder::new(long).function("f").launch().err();
        let nul = Builder::new("a\0b").function("f").launch().err();
        let static_now = Builder::new("late").function("f").register().err();
        Ok([too_long, nul, static_now]
            .into_iter()
            .map(|e| e.map_or("no error".to_string(), |e| e.to_string()))
            .collect())
    }
}

bgworker::sql_function! {
    /// Starts the background example's pooled worker the way a backend running another
    /// build of that library would: for slot 0, generation 1 of a pool that is not this
    /// build's, serving `role` in `database`; its pid.
    fn start_pooled_worker_of_another_pool(database: Oid, role: Oid) -> i32 {
        let mut extra: Vec<u8> = [database, role, role, 0]
            .iter()
            .flat_map(|w| w.to_le_bytes())
            .collect();
        extra.extend_from_slice(&u64::MAX.to_le_bytes());
        let handle = Builder::new("pooled worker of another pool")
            .library("background")
            .function("pg_background_pooled_main")
            .database_connection()
            .main_arg(1 << 8 | 60 << 40)
            .extra(extra)
            .launch()?;
        match handle.wait_for_startup()? {
            Status::Started(pid) => Ok(pid),
            _ => Ok(0),
        }
    }
}
