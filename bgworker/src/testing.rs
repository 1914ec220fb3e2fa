//! Throwaway PostgreSQL clusters for integration tests (feature `testing`).
//!
//! A [`Cluster`] is a real server: `initdb` into a fresh temporary directory, its own free
//! port and socket directory, your freshly built libraries copied in and listed in
//! `shared_preload_libraries`. When the tests run as root, every server program runs as the
//! `postgres` OS user (PostgreSQL refuses root). Dropping the cluster stops it and removes
//! the directory, also when the test failed, in which case the server log is printed first.
//! Clusters share nothing, so tests can run in parallel.
//!
//! The PostgreSQL used is the one whose `pg_config` is named by `PG_CONFIG`, else
//! `pg_config` on PATH.
//!
//! ```no_run
//! use bgworker::testing::Cluster;
//! use std::time::Duration;
//!
//! let cluster = Cluster::builder()
//!     .preload("target/release/examples/libhello_world.so")
//!     .setting("hello_world.naptime", "1")
//!     .start();
//! cluster.wait_for_log("Hello World!", Duration::from_secs(30));
//! let mut client = cluster.connect();
//! let n: i64 = client
//!     .query_one("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'hello_world'", &[])
//!     .unwrap()
//!     .get(0);
//! assert_eq!(n, 1);
//! ```

use std::fs;
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub use postgres;

/// The OS user that runs the server when the tests run as root.
const SERVER_USER: &str = "postgres";

/// Configures a [`Cluster`] before it starts.
///
/// ```no_run
/// let cluster = bgworker::testing::Cluster::builder()
///     .preload("target/release/libmy_worker.so")
///     .library("target/release/libmy_functions.so")
///     .setting("max_worker_processes", "16")
///     .start();
/// ```
#[derive(Clone, Debug, Default)]
pub struct ClusterBuilder {
    preload: Vec<PathBuf>,
    libraries: Vec<PathBuf>,
    settings: Vec<(String, String)>,
}

impl ClusterBuilder {
    /// Copies the library into the cluster's library directory and lists it in
    /// `shared_preload_libraries`.
    pub fn preload(mut self, library: impl AsRef<Path>) -> ClusterBuilder {
        self.preload.push(library.as_ref().to_path_buf());
        self
    }

    /// Copies the library into the cluster's library directory (on `dynamic_library_path`)
    /// without preloading it, for `LOAD` or `CREATE FUNCTION ... AS 'name'`.
    pub fn library(mut self, library: impl AsRef<Path>) -> ClusterBuilder {
        self.libraries.push(library.as_ref().to_path_buf());
        self
    }

    /// Adds a `postgresql.conf` setting; the value is written as a quoted string.
    pub fn setting(mut self, name: &str, value: &str) -> ClusterBuilder {
        self.settings.push((name.to_string(), value.to_string()));
        self
    }

    /// Runs `initdb` and starts the server; panics with the server log when it cannot.
    pub fn start(self) -> Cluster {
        let mut last_error = String::new();
        // A free port can be taken by someone else between probing and binding; retry.
        for _ in 0..3 {
            let mut cluster = Cluster::create(&self);
            match cluster.pg_ctl_start() {
                Ok(()) => return cluster,
                Err(e) => last_error = format!("{e}\n--- server log ---\n{}", cluster.log()),
            }
        }
        panic!("could not start a test cluster: {last_error}");
    }
}

/// A running throwaway PostgreSQL cluster. See the [module documentation](self).
///
/// ```no_run
/// use std::time::Duration;
/// let mut cluster = bgworker::testing::Cluster::builder().start();
/// let mut client = cluster.connect_to("postgres");
/// client.batch_execute("SELECT pg_reload_conf()").unwrap();
/// assert!(cluster.poll(Duration::from_secs(5), || cluster.log_count("reloading") > 0));
/// println!("postmaster {} on port {}, log {}", cluster.postmaster_pid(), cluster.port(), cluster.log_path().display());
/// let took = cluster.stop("fast");
/// ```
pub struct Cluster {
    base: PathBuf,
    bindir: PathBuf,
    port: u16,
    stopped: bool,
}

impl Cluster {
    /// Starts configuring a cluster.
    pub fn builder() -> ClusterBuilder {
        ClusterBuilder::default()
    }

    fn create(config: &ClusterBuilder) -> Cluster {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let base = std::env::temp_dir().join(format!(
            "bgworker-test-{}-{}-{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        ));
        let bindir = PathBuf::from(pg_config("--bindir"));
        let cluster = Cluster {
            base: base.clone(),
            bindir,
            port: free_port(),
            stopped: true,
        };
        for dir in ["lib", "sock", "log"] {
            fs::create_dir_all(base.join(dir)).expect("create test cluster directory");
        }
        let mut preload_names = Vec::new();
        for (library, preload) in config
            .preload
            .iter()
            .map(|l| (l, true))
            .chain(config.libraries.iter().map(|l| (l, false)))
        {
            let name = library_name(library);
            let target = base.join("lib").join(format!("{name}.so"));
            fs::copy(library, &target).unwrap_or_else(|e| {
                panic!(
                    "cannot copy {} into the test cluster: {e} (was it built? `make test` builds it)",
                    library.display()
                )
            });
            if preload {
                preload_names.push(name);
            }
        }
        set_permissions_for_server(&base);
        cluster.run_as_server(
            cluster.bin("initdb"),
            &[
                "-D",
                &cluster.data_str(),
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
        );
        let mut conf = String::from("\n# bgworker::testing\n");
        let mut add = |k: &str, v: &str| conf.push_str(&conf_line(k, v));
        add("port", &cluster.port.to_string());
        add("listen_addresses", "127.0.0.1");
        add(
            "unix_socket_directories",
            &cluster.base.join("sock").to_string_lossy(),
        );
        add(
            "dynamic_library_path",
            &format!("{}:$libdir", cluster.base.join("lib").display()),
        );
        add("shared_preload_libraries", &preload_names.join(","));
        add("fsync", "off");
        add("log_line_prefix", "%m [%p] %b: ");
        add("log_min_messages", "info");
        for (k, v) in &config.settings {
            add(k, v);
        }
        cluster.append_conf(&conf);
        cluster
    }

    /// Appends text to `postgresql.conf`.
    fn append_conf(&self, text: &str) {
        let mut f = fs::OpenOptions::new()
            .append(true)
            .open(self.data_dir().join("postgresql.conf"))
            .expect("open postgresql.conf");
        f.write_all(text.as_bytes()).expect("write postgresql.conf");
    }

    fn pg_ctl_start(&mut self) -> Result<(), String> {
        let log = self.log_path().to_string_lossy().into_owned();
        self.pg_ctl("start", &["-l", &log], 60)?;
        self.stopped = false;
        Ok(())
    }

    /// Runs `pg_ctl <action>` on the data directory with `options` (`-l log`, `-m mode`),
    /// waiting at most `timeout_s` seconds; the error says what pg_ctl printed.
    fn pg_ctl(&self, action: &str, options: &[&str], timeout_s: u32) -> Result<(), String> {
        let (data, timeout) = (self.data_str(), timeout_s.to_string());
        let mut args = vec!["-D", data.as_str()];
        args.extend_from_slice(options);
        args.extend(["-w", "-t", timeout.as_str(), action]);
        let out = self.try_run_as_server(self.bin("pg_ctl"), &args);
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "pg_ctl {action} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    /// The TCP port the server listens on (on 127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.base.join("data")
    }

    /// The server log file.
    pub fn log_path(&self) -> PathBuf {
        self.base.join("log/postgresql.log")
    }

    fn data_str(&self) -> String {
        self.data_dir().to_string_lossy().into_owned()
    }

    fn bin(&self, program: &str) -> PathBuf {
        self.bindir.join(program)
    }

    /// A libpq connection string for `dbname` as the superuser `postgres`.
    pub fn connection_string(&self, dbname: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user=postgres dbname={dbname} connect_timeout=10",
            self.port
        )
    }

    /// A client connection to the `postgres` database.
    pub fn connect(&self) -> postgres::Client {
        self.connect_to("postgres")
    }

    /// A client connection to `dbname`.
    pub fn connect_to(&self, dbname: &str) -> postgres::Client {
        postgres::Client::connect(&self.connection_string(dbname), postgres::NoTls)
            .unwrap_or_else(|e| panic!("cannot connect to the test cluster: {e}"))
    }

    /// The whole server log so far.
    pub fn log(&self) -> String {
        fs::read(self.log_path())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// Panics (printing the log) if any server process crashed: a process "terminated by
    /// signal", or the postmaster "terminating any other active server processes" to
    /// reinitialise after one.
    ///
    /// ```no_run
    /// # let cluster = bgworker::testing::Cluster::builder().start();
    /// cluster.assert_no_crash();
    /// ```
    pub fn assert_no_crash(&self) {
        let log = self.log();
        for sign in [
            "terminated by signal",
            "terminating any other active server processes",
            "was terminated by exception",
        ] {
            assert!(
                !log.contains(sign),
                "the server log shows a crash ({sign}):\n{log}"
            );
        }
    }

    /// How many log lines contain `needle`.
    pub fn log_count(&self, needle: &str) -> usize {
        self.log().lines().filter(|l| l.contains(needle)).count()
    }

    /// Waits until the log contains `needle`; panics (printing the log) after `timeout`.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) {
        if !self.poll(timeout, || self.log().contains(needle)) {
            panic!("the server log did not show {needle:?} within {timeout:?}");
        }
    }

    /// Calls `done` every 50 ms until it returns true (then returns true) or `timeout` passes
    /// (then returns false).
    pub fn poll(&self, timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
        let start = Instant::now();
        loop {
            if done() {
                return true;
            }
            if start.elapsed() > timeout {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The postmaster's pid (from `postmaster.pid`).
    pub fn postmaster_pid(&self) -> i32 {
        let text = fs::read_to_string(self.data_dir().join("postmaster.pid"))
            .expect("read postmaster.pid");
        text.lines()
            .next()
            .and_then(|l| l.trim().parse().ok())
            .expect("pid in postmaster.pid")
    }

    /// Stops the server with `pg_ctl stop -m <mode>` (`smart`, `fast` or `immediate`) and
    /// returns how long it took; panics if pg_ctl fails.
    pub fn stop(&mut self, mode: &str) -> Duration {
        let start = Instant::now();
        let stopped = self.pg_ctl("stop", &["-m", mode], 60);
        let took = start.elapsed();
        stopped.unwrap_or_else(|e| panic!("{e}"));
        self.stopped = true;
        took
    }

    /// Appends settings to `postgresql.conf` and restarts the server (for settings that
    /// need a restart, or objects that must exist before preloaded workers start).
    ///
    /// ```no_run
    /// # let mut cluster = bgworker::testing::Cluster::builder().start();
    /// cluster.restart_with(&[("max_worker_processes", "32")]);
    /// ```
    pub fn restart_with(&mut self, settings: &[(&str, &str)]) {
        let conf: String = settings.iter().map(|(k, v)| conf_line(k, v)).collect();
        self.append_conf(&conf);
        let log = self.log_path().to_string_lossy().into_owned();
        self.pg_ctl("restart", &["-l", &log, "-m", "fast"], 60)
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// Marks the server as gone (for tests that kill it themselves), so Drop only cleans up.
    pub fn forget_server(&mut self) {
        self.stopped = true;
    }

    /// Runs a SQL file with this cluster's `psql` as `pg_regress` does (`-X -a -q`, the
    /// file echoed, standard output and errors in one stream) against `dbname`; the output.
    ///
    /// ```no_run
    /// # let cluster = bgworker::testing::Cluster::builder().start();
    /// let out = cluster.psql_file("postgres", "sql/checks.sql".as_ref());
    /// assert_eq!(out, std::fs::read_to_string("expected/checks.out").unwrap());
    /// ```
    pub fn psql_file(&self, dbname: &str, script: &Path) -> String {
        let out_path = self.base.join(format!("psql-{}.out", std::process::id()));
        let out = fs::File::create(&out_path).expect("psql output file");
        let err = out.try_clone().expect("psql output file");
        let status = Command::new(self.bin("psql"))
            .args(["-X", "-a", "-q", "-d"])
            .arg(self.connection_string(dbname))
            .stdin(fs::File::open(script).unwrap_or_else(|e| panic!("{}: {e}", script.display())))
            .env("PGTZ", "UTC")
            .env("PGDATESTYLE", "ISO, MDY")
            .stdout(out)
            .stderr(err)
            .status()
            .unwrap_or_else(|e| panic!("cannot run psql: {e}"));
        let text = fs::read_to_string(&out_path).expect("psql output");
        assert!(status.success(), "psql failed:\n{text}");
        text
    }

    /// Runs a server program (as the `postgres` user when we are root); panics on failure.
    pub fn run_as_server(&self, program: PathBuf, args: &[&str]) -> Output {
        let out = self.try_run_as_server(program.clone(), args);
        assert!(
            out.status.success(),
            "{} failed: {}{}",
            program.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    fn try_run_as_server(&self, program: PathBuf, args: &[&str]) -> Output {
        let mut cmd = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", SERVER_USER, "--"]).arg(&program);
            c
        } else {
            Command::new(&program)
        };
        cmd.args(args)
            .current_dir(&self.base)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if !self.stopped {
            let _ = self.pg_ctl("stop", &["-m", "immediate"], 30);
        }
        if std::thread::panicking() {
            eprintln!(
                "--- server log of the failed test ({}) ---\n{}",
                self.base.display(),
                self.log()
            );
        }
        let _ = fs::remove_dir_all(&self.base);
    }
}

/// One `postgresql.conf` line, the value quoted.
fn conf_line(name: &str, value: &str) -> String {
    format!("{name} = '{}'\n", value.replace('\'', "''"))
}

fn library_name(path: &Path) -> String {
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_else(|| panic!("bad library path {}", path.display()));
    // Cargo names cdylib examples lib<name>.so; PostgreSQL users know them as <name>.so.
    stem.strip_prefix("lib").unwrap_or(stem).to_string()
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Makes the cluster's directory usable by the server user when we are root.
fn set_permissions_for_server(base: &Path) {
    if !is_root() {
        return;
    }
    let status = Command::new("chown")
        .args(["-R", &format!("{SERVER_USER}:{SERVER_USER}")])
        .arg(base)
        .status()
        .expect("run chown");
    assert!(status.success(), "chown of {} failed", base.display());
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("find a free port")
}

/// Runs an extension's install script the way `CREATE EXTENSION` would, for a cluster whose
/// libraries were copied in with [`ClusterBuilder::preload`] or [`ClusterBuilder::library`]
/// (tests do not install into the server's extension directory). `control` is the
/// extension's control file; the script is `<name>--<default_version>.sql` next to it.
/// `MODULE_PATHNAME` becomes the library's name (`$libdir/` dropped), `@extschema@` the
/// control file's `schema` (created if missing) or `public`; psql-only `\echo` lines are
/// skipped. Panics with the file name when something fails.
///
/// ```no_run
/// # let cluster = bgworker::testing::Cluster::builder().start();
/// let mut client = cluster.connect();
/// bgworker::testing::run_extension_script(&mut client, "my_worker.control".as_ref());
/// ```
pub fn run_extension_script(client: &mut postgres::Client, control: &Path) {
    let text = fs::read_to_string(control).unwrap_or_else(|e| panic!("{}: {e}", control.display()));
    let setting = |key: &str| {
        text.lines().find_map(|line| {
            let (k, v) = line.split_once('=')?;
            (k.trim() == key).then(|| v.trim().trim_matches('\'').to_string())
        })
    };
    let name = control
        .file_stem()
        .and_then(|s| s.to_str())
        .expect("a control file name");
    let version = setting("default_version")
        .unwrap_or_else(|| panic!("{}: no default_version", control.display()));
    let module = setting("module_pathname").unwrap_or_else(|| name.to_string());
    let module = module.strip_prefix("$libdir/").unwrap_or(&module);
    let schema = setting("schema").unwrap_or_else(|| "public".to_string());
    let path = control.with_file_name(format!("{name}--{version}.sql"));
    let script = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let script: String = script
        .lines()
        .filter(|l| !l.starts_with("\\echo"))
        .collect::<Vec<_>>()
        .join("\n")
        .replace("MODULE_PATHNAME", module)
        .replace("@extschema@", &schema);
    let create_schema = format!(
        "CREATE SCHEMA IF NOT EXISTS \"{}\"",
        schema.replace('"', "\"\"")
    );
    client
        .batch_execute(&create_schema)
        .and_then(|()| client.batch_execute(&script))
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

/// Runs the configured `pg_config` with one flag.
///
/// ```no_run
/// let libdir = bgworker::testing::pg_config("--pkglibdir");
/// ```
pub fn pg_config(flag: &str) -> String {
    let pg_config = std::env::var("PG_CONFIG").unwrap_or_else(|_| "pg_config".to_string());
    let out = Command::new(&pg_config)
        .arg(flag)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {pg_config}: {e}"));
    assert!(out.status.success(), "{pg_config} {flag} failed");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The directory cargo builds into for the current profile (`target/release` for
/// `cargo test --release`), found from the running test or binary executable.
///
/// ```no_run
/// let so = bgworker::testing::cargo_profile_dir().join("examples/libhello_world.so");
/// ```
pub fn cargo_profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let dir = exe.parent().expect("executable has a directory");
    // Tests live in target/<profile>/deps, binaries in target/<profile>.
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.parent().expect("deps has a parent").to_path_buf()
    } else {
        dir.to_path_buf()
    }
}

/// Whether a process exists and is not a zombie.
///
/// ```no_run
/// assert!(bgworker::testing::process_alive(std::process::id() as i32));
/// ```
pub fn process_alive(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state is the field after the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}
