//! Workers and SQL functions that exercise bgworker in the integration tests, including on
//! purpose the failure paths. Static workers start according to `test_workers.start`, a
//! comma-separated list read when the library is preloaded; the tests create the SQL
//! functions and aggregates from `test_workers.sql`, which `make sql` writes from their
//! declarations in this library.

mod aggregates;
mod bench;
mod dynamic;
mod exits;
mod failing;
mod functions;
mod sessions;
mod shared;
mod soundness;

use bgworker::prelude::*;

bgworker::pg_module_magic!();

static START: GucString =
    GucString::new(c"test_workers.start", c"Which test workers to start.", None)
        .context(GucContext::Postmaster);
/// The database dynamic test workers connect to.
pub static DATABASE: GucString = GucString::new(
    c"test_workers.database",
    c"Database of the test workers.",
    Some(c"postgres"),
)
.context(GucContext::Sighup);
static INT: GucInt =
    GucInt::new(c"test_workers.int", c"An integer.", 7, -5, 100).unit(Unit::Seconds);
static REAL: GucReal = GucReal::new(c"test_workers.real", c"A real.", 0.5, 0.0, 2.0);
static BOOL: GucBool =
    GucBool::new(c"test_workers.bool", c"A bool.", true).context(GucContext::Superuser);
static STRING: GucString = GucString::new(c"test_workers.string", c"A string.", Some(c"default"));
static ENUM: GucEnum = GucEnum::new(
    c"test_workers.enum",
    c"An enum.",
    1,
    &[(c"low", 0), (c"medium", 1), (c"high", 2)],
);

bgworker::sql_function! {
    fn guc_values() -> String {
        Ok(format!(
            "int={} real={} bool={} string={:?} enum={}",
            INT.get(),
            REAL.get(),
            BOOL.get(),
            STRING.get(),
            ENUM.get_name()
        ))
    }
}

bgworker::pg_init!({
    START.define()?;
    DATABASE.define()?;
    INT.define()?;
    REAL.define()?;
    BOOL.define()?;
    STRING.define()?;
    ENUM.define()?;
    exits::EXIT_HANDLER.define()?;
    guc::reserve_prefix(c"test_workers")?;
    if bgworker::entry::preloading() {
        shared::request()?;
        soundness::request()?;
        exits::register()?;
    }
    for name in START.get().unwrap_or_default().split(',').map(str::trim) {
        match name {
            "panicker" => failing::Panicker::register()?,
            "guard_caller" => failing::GuardCaller::register()?,
            "err_returner" => failing::ErrReturner::register()?,
            "restarter" => soundness::Restarter::register()?,
            "" => {}
            other => return Err(Error::msg(format!("unknown test worker \"{other}\""))),
        }
    }
    Ok(())
});
