//! Generates the bindings and builds the C shim against the PostgreSQL named by `PG_CONFIG`
//! (else `pg_config` on PATH).
//!
//! Outputs for dependents (through `links = "pg"`): `DEP_PG_MAJOR`, `DEP_PG_VERSION_NUM`,
//! `DEP_PG_PKGLIBDIR`, `DEP_PG_INCLUDEDIR_SERVER`.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The majors this crate knows how to bind. Keep in sync with the README's support matrix.
const SUPPORTED: std::ops::RangeInclusive<u32> = 14..=18;

fn main() {
    println!("cargo:rerun-if-env-changed=PG_CONFIG");
    println!("cargo:rerun-if-changed=shim/shim.c");
    println!("cargo:rerun-if-changed=shim/shim.h");
    println!("cargo:rerun-if-changed=shim/wrapper.h");

    let pg_config = env::var("PG_CONFIG").unwrap_or_else(|_| "pg_config".to_string());
    let includedir = PathBuf::from(pg_config_value(&pg_config, "--includedir-server"));
    let pkglibdir = pg_config_value(&pg_config, "--pkglibdir");
    let pg_config_h = includedir.join("pg_config.h");
    if !pg_config_h.exists() {
        fail(&format!(
            "{} has no pg_config.h: the server headers are missing.\n\
             On Debian install them with: apt-get install postgresql-server-dev-15",
            includedir.display()
        ));
    }
    println!("cargo:rerun-if-changed={}", pg_config_h.display());

    let version_num = read_version_num(&pg_config_h);
    let major = version_num / 10000;
    if !SUPPORTED.contains(&major) {
        fail(&format!(
            "PostgreSQL {major} (from {pg_config}) is not supported: bgworker supports majors {} to {}.",
            SUPPORTED.start(),
            SUPPORTED.end()
        ));
    }

    let all: Vec<String> = SUPPORTED.map(|m| format!("pg{m}")).collect();
    println!("cargo::rustc-check-cfg=cfg({})", all.join(","));
    println!("cargo:rustc-cfg=pg{major}");
    println!("cargo:major={major}");
    println!("cargo:version_num={version_num}");
    println!("cargo:pkglibdir={pkglibdir}");
    println!("cargo:includedir_server={}", includedir.display());

    build_shim(&includedir);
    generate_bindings(&includedir);
}

fn pg_config_value(pg_config: &str, flag: &str) -> String {
    let output = Command::new(pg_config)
        .arg(flag)
        .output()
        .unwrap_or_else(|e| {
            fail(&format!(
                "could not run `{pg_config} {flag}`: {e}.\n\
             Set PG_CONFIG to the pg_config of the PostgreSQL to build against, or install\n\
             the server headers: apt-get install postgresql-server-dev-15"
            ))
        });
    if !output.status.success() {
        fail(&format!(
            "`{pg_config} {flag}` failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    String::from_utf8(output.stdout)
        .expect("pg_config printed non-UTF-8")
        .trim()
        .to_string()
}

fn read_version_num(pg_config_h: &Path) -> u32 {
    let text = std::fs::read_to_string(pg_config_h).expect("read pg_config.h");
    text.lines()
        .find_map(|line| line.strip_prefix("#define PG_VERSION_NUM "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| fail("pg_config.h has no PG_VERSION_NUM"))
}

fn build_shim(includedir: &Path) {
    cc::Build::new()
        .file("shim/shim.c")
        .include(includedir)
        .include("shim")
        // The server headers trip many warnings that are not ours to fix.
        .warnings(false)
        // A macro that moved between majors must not silently become an undefined symbol.
        .flag("-Werror=implicit-function-declaration")
        .flag_if_supported("-fvisibility=hidden")
        .compile("pgsys_shim");
}

fn generate_bindings(includedir: &Path) {
    let server = regex_escape(&includedir.to_string_lossy());
    let bindings = bindgen::Builder::default()
        .header("shim/wrapper.h")
        .clang_arg(format!("-I{}", includedir.display()))
        .clang_arg("-Ishim")
        // Only items declared by the server headers and the shim; what they need from libc
        // comes in transitively. This keeps the generated file (and its compile time) small.
        .allowlist_file(format!("{server}/.*"))
        .allowlist_file("(.*/)?shim/shim\\.h")
        // Defined twice in glibc (as macro and as enum constant); never needed here.
        .blocklist_item("FP_NAN|FP_INFINITE|FP_ZERO|FP_SUBNORMAL|FP_NORMAL|IPPORT_RESERVED")
        // Variadic and long-double items that Rust cannot represent faithfully.
        .blocklist_function("(v?s?n?printf|pg_.*printf|pg_.*vsnprintf|strtold)")
        .blocklist_type("max_align_t")
        .layout_tests(false)
        .derive_debug(false)
        .derive_default(true)
        .generate_comments(false)
        .merge_extern_blocks(true)
        .default_enum_style(bindgen::EnumVariation::Consts)
        .size_t_is_usize(true)
        .generate()
        .unwrap_or_else(|e| fail(&format!("bindgen failed on the server headers: {e}")));
    let out = PathBuf::from(env::var("OUT_DIR").unwrap()).join("bindings.rs");
    bindings.write_to_file(&out).expect("write bindings.rs");
}

fn regex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn fail(message: &str) -> ! {
    // `cargo:warning` lines are shown even when the build script's own output is not.
    for line in message.lines() {
        println!("cargo:warning={line}");
    }
    eprintln!("error: {message}");
    std::process::exit(1);
}
