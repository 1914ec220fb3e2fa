//! Passes pg-sys's facts about the PostgreSQL being built against on as `cfg(pgNN)`, for
//! this crate and (through `links = "bgworker"`) for crates that depend on it, and generates
//! a named [`SqlState`] constant for every error code of that server's `utils/errcodes.h`.

use std::fmt::Write as _;

fn main() {
    let major = std::env::var("DEP_PG_MAJOR").expect("pg-sys sets DEP_PG_MAJOR");
    println!("cargo::rustc-check-cfg=cfg(pg14,pg15,pg16,pg17,pg18)");
    println!("cargo:rustc-cfg=pg{major}");
    println!("cargo:major={major}");
    for key in ["PKGLIBDIR", "INCLUDEDIR_SERVER", "VERSION_NUM"] {
        if let Ok(v) = std::env::var(format!("DEP_PG_{key}")) {
            println!("cargo:{}={v}", key.to_lowercase());
        }
    }
    let include = std::env::var("DEP_PG_INCLUDEDIR_SERVER").expect("pg-sys sets INCLUDEDIR_SERVER");
    let header = std::path::Path::new(&include).join("utils/errcodes.h");
    println!("cargo:rerun-if-changed={}", header.display());
    let text =
        std::fs::read_to_string(&header).unwrap_or_else(|e| panic!("{}: {e}", header.display()));
    let out = std::path::Path::new(&std::env::var("OUT_DIR").unwrap()).join("sqlstates.rs");
    std::fs::write(&out, sqlstates(&text)).unwrap();
}

/// `impl SqlState { pub const NAME: SqlState = ...; }` for every
/// `#define ERRCODE_NAME MAKE_SQLSTATE('4','2','6','0','1')` line.
///
/// Transaction-rollback codes are named `T_R_...` in C; they also get their PL/pgSQL names
/// without the prefix (`SERIALIZATION_FAILURE`, `DEADLOCK_DETECTED`) where that name is free.
fn sqlstates(header: &str) -> String {
    let mut codes: Vec<(String, String)> = Vec::new();
    for line in header.lines() {
        let Some(rest) = line.strip_prefix("#define ERRCODE_") else {
            continue;
        };
        let Some((name, value)) = rest.split_once(char::is_whitespace) else {
            continue;
        };
        let code: String = value
            .trim()
            .strip_prefix("MAKE_SQLSTATE(")
            .map(|v| v.chars().filter(|c| c.is_ascii_alphanumeric()).collect())
            .unwrap_or_default();
        if code.len() == 5 {
            codes.push((name.to_string(), code));
        }
    }
    let taken: std::collections::HashSet<String> = codes.iter().map(|(n, _)| n.clone()).collect();
    let aliases: Vec<(String, String)> = codes
        .iter()
        .filter_map(|(name, code)| {
            let short = name.strip_prefix("T_R_")?;
            (!taken.contains(short)).then(|| (short.to_string(), code.clone()))
        })
        .collect();
    let mut out = String::from("impl SqlState {\n");
    for (name, code) in codes.iter().chain(&aliases) {
        let words = name.to_lowercase().replace('_', " ");
        writeln!(
            out,
            "    /// `{code}`: {words}.\n    pub const {name}: SqlState = SqlState(*b\"{code}\");"
        )
        .unwrap();
    }
    out.push_str("}\n");
    out
}
