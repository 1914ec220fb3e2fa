//! Passes pg-sys's facts about the PostgreSQL being built against on as `cfg(pgNN)`, for
//! this crate and (through `links = "bgworker"`) for crates that depend on it.

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
}
