//! hello_world: the smallest useful background worker.
//!
//! Load it with `shared_preload_libraries = 'hello_world'`. It logs `Hello World!` every
//! `hello_world.naptime` seconds, picks up a new naptime on reload (SIGHUP), and stops
//! promptly on SIGTERM or when the postmaster dies.

use std::time::Duration;

use bgworker::prelude::*;

bgworker::pg_module_magic!();

static NAPTIME: GucInt = GucInt::new(
    c"hello_world.naptime",
    c"Seconds between greetings.",
    10,
    1,
    86_400,
)
.context(GucContext::Sighup)
.unit(Unit::Seconds);

struct HelloWorld;

impl Worker for HelloWorld {
    const NAME: &'static str = "hello world";
    const TYPE: &'static str = "hello_world";
    // Connected (to no database) so that it shows in pg_stat_activity.
    const DATABASE_CONNECTION: bool = true;

    fn main(_arg: i64) -> Result<()> {
        worker::connect(worker::Connection::new(worker::Database::None))?;
        log!("hello world worker started, naptime {} s", NAPTIME.get());
        while !signals::shutdown_requested() {
            let woke = latch::wait(Some(Duration::from_secs(NAPTIME.get() as u64)))?;
            if signals::reload_if_pending()? {
                log!("hello world naptime is now {} s", NAPTIME.get());
            }
            if woke == latch::Woke::Timeout {
                log!("Hello World!");
            }
        }
        Ok(())
    }
}

bgworker::export_worker!(HelloWorld, "hello_world_main");

bgworker::pg_init!({
    NAPTIME.define()?;
    guc::reserve_prefix(c"hello_world")?;
    HelloWorld::register()
});
