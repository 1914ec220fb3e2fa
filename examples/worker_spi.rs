//! worker_spi: PostgreSQL's `src/test/modules/worker_spi`, in Rust.
//!
//! Each worker owns a schema `schemaN` holding a table `counted`. Every
//! `worker_spi.naptime` seconds it folds all `delta` rows into the single `total` row, in
//! one statement, and logs the new count. With `shared_preload_libraries = 'worker_spi'`,
//! `worker_spi.total_workers` workers start at boot; `worker_spi_launch(n)` starts more from
//! SQL, optionally into another database, as another role, with connection bypass flags.

use std::time::Duration;

use bgworker::prelude::*;
use bgworker::worker::{Connection, Database, Role, Status};

bgworker::pg_module_magic!();

static NAPTIME: GucInt = GucInt::new(
    c"worker_spi.naptime",
    c"Duration between each check (in seconds).",
    10,
    1,
    i32::MAX,
)
.context(GucContext::Sighup)
.unit(Unit::Seconds);
static TOTAL_WORKERS: GucInt = GucInt::new(
    c"worker_spi.total_workers",
    c"Number of workers.",
    2,
    1,
    100,
)
.context(GucContext::Postmaster);
static DATABASE: GucString = GucString::new(
    c"worker_spi.database",
    c"Database to connect to.",
    Some(c"postgres"),
)
.context(GucContext::Sighup);
static ROLE: GucString =
    GucString::new(c"worker_spi.role", c"Role to connect with.", None).context(GucContext::Sighup);

/// Connection settings of a dynamically launched worker, carried in `bgw_extra`.
struct Target {
    database: u32,
    role: u32,
    allow_connections: bool,
    role_login_check: bool,
}

impl Target {
    fn to_bytes(&self) -> Vec<u8> {
        let flags = u32::from(self.allow_connections) | u32::from(self.role_login_check) << 1;
        [self.database, self.role, flags]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect()
    }

    fn from_bytes(b: &[u8]) -> Target {
        let word = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        Target {
            database: word(0),
            role: word(4),
            allow_connections: word(8) & 1 != 0,
            role_login_check: word(8) & 2 != 0,
        }
    }
}

struct WorkerSpi;

impl Worker for WorkerSpi {
    const NAME: &'static str = "worker_spi worker";
    const TYPE: &'static str = "worker_spi";
    const DATABASE_CONNECTION: bool = true;

    fn main(index: i64) -> Result<()> {
        let target = Target::from_bytes(&worker::extra().unwrap_or_default());
        let (database, role) = (DATABASE.get().unwrap_or_default(), ROLE.get());
        let mut connection = if target.database != 0 {
            let role = if target.role != 0 {
                Role::Oid(target.role)
            } else {
                Role::Superuser
            };
            Connection::new(Database::Oid(target.database)).role(role)
        } else {
            let role = role.as_deref().map_or(Role::Superuser, Role::Name);
            Connection::new(Database::Name(&database)).role(role)
        };
        if target.allow_connections {
            connection = connection.bypass_allow_connections();
        }
        if target.role_login_check {
            connection = connection.bypass_role_login_check();
        }
        worker::connect(connection)?;

        let schema = spi::quote_identifier(&format!("schema{index}"))?;
        let table = format!("{schema}.{}", spi::quote_identifier("counted")?);
        initialize(&format!("schema{index}"), &schema)?;
        log!(
            "{} initialized with {table}",
            worker::current_worker_name().unwrap_or_default()
        );

        let count = format!(
            "WITH deleted AS (DELETE FROM {table} WHERE type = 'delta' RETURNING value), \
                  total AS (SELECT coalesce(sum(value), 0) AS sum FROM deleted) \
             UPDATE {table} SET value = {table}.value + total.sum \
             FROM total WHERE type = 'total' RETURNING {table}.value"
        );
        let wait_event = latch::WaitEvent::named(c"WorkerSpiMain")?;
        while !signals::shutdown_requested() {
            let naptime = Duration::from_secs(NAPTIME.get() as u64);
            latch::wait_for(Some(naptime), None, wait_event)?;
            if signals::shutdown_requested() {
                break;
            }
            signals::reload_if_pending()?;
            // A failed round (say, an overflowing total) is logged; the next one tries again.
            match xact::transaction(|spi| spi.execute_returning::<i32>(&count, &[])) {
                Ok(totals) => {
                    if let Some(value) = totals.first() {
                        log!("count in {table} is now {value}");
                    }
                }
                Err(e) => warning!("counting in {table} failed: {e}"),
            }
        }
        Ok(())
    }
}
bgworker::export_worker!(WorkerSpi, "worker_spi_main");

/// Creates the schema, its table and the index on first start.
fn initialize(name: &str, schema: &str) -> Result<()> {
    xact::transaction(|spi| {
        spi.report_activity("initializing worker_spi schema");
        let exists: i64 = spi.query_one(
            "SELECT count(*) FROM pg_namespace WHERE nspname = $1",
            &[&name],
        )?;
        if exists == 0 {
            spi.execute(
                &format!(
                    "CREATE SCHEMA {schema} \
                     CREATE TABLE counted (type text CHECK (type IN ('total', 'delta')), value integer) \
                     CREATE UNIQUE INDEX counted_unique_total ON counted (type) WHERE type = 'total'"
                ),
                &[],
            )?;
        }
        Ok(())
    })
}

bgworker::sql_function! {
    /// Starts a dynamic worker for `schema<index>`; its pid, or NULL when no slot is free.
    fn worker_spi_launch(
        index: i32,
        dboid: u32 = "0",
        roleoid: u32 = "0",
        flags: Vec<String> = "'{}'",
    ) -> Option<i32> {
        let mut target = Target { database: dboid, role: roleoid, allow_connections: false, role_login_check: false };
        for flag in &flags {
            match flag.as_str() {
                "ALLOWCONN" => target.allow_connections = true,
                "ROLELOGINCHECK" if cfg!(any(pg17, pg18)) => target.role_login_check = true,
                "ROLELOGINCHECK" => {
                    return Err(PgError::new(SqlState::FEATURE_NOT_SUPPORTED, "flag ROLELOGINCHECK needs PostgreSQL 17 or later").into())
                }
                other => {
                    return Err(PgError::new(SqlState::INVALID_PARAMETER_VALUE, format!("incorrect flag value found in array: \"{other}\""))
                        .with_hint("Valid flags are ALLOWCONN and ROLELOGINCHECK.")
                        .into())
                }
            }
        }
        let launched = WorkerSpi::builder()
            .name(format!("worker_spi dynamic worker {index}"))
            .type_name("worker_spi dynamic")
            .main_arg(index.into())
            .extra(target.to_bytes())
            .launch();
        let handle = match launched {
            Ok(handle) => handle,
            Err(Error::NoFreeWorkerSlot) => return Ok(None),
            Err(e) => return Err(e),
        };
        match handle.wait_for_startup()? {
            Status::Started(pid) => Ok(Some(pid)),
            Status::PostmasterDied => Err(PgError::new(SqlState::INSUFFICIENT_RESOURCES, "cannot start background processes without postmaster")
                .with_hint("Kill all remaining database processes and restart the database.")
                .into()),
            _ => Err(PgError::new(SqlState::INSUFFICIENT_RESOURCES, "could not start background process")
                .with_hint("More details may be available in the server log.")
                .into()),
        }
    }
}

bgworker::pg_init!({
    NAPTIME.define()?;
    DATABASE.define()?;
    ROLE.define()?;
    let preloading = bgworker::entry::preloading();
    if preloading {
        TOTAL_WORKERS.define()?;
    }
    guc::reserve_prefix(c"worker_spi")?;
    if preloading {
        for index in 1..=TOTAL_WORKERS.get() {
            WorkerSpi::builder()
                .name(format!("worker_spi worker {index}"))
                .main_arg(index.into())
                .register()?;
        }
    }
    Ok(())
});
