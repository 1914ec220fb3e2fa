//! Lets this crate say `#[cfg(pg17)]` for the PostgreSQL major it is built against:
//! bgworker tells every crate that depends on it directly (`DEP_BGWORKER_MAJOR`).

fn main() {
    let major = std::env::var("DEP_BGWORKER_MAJOR").expect("bgworker sets DEP_BGWORKER_MAJOR");
    println!("cargo::rustc-check-cfg=cfg(pg14,pg15,pg16,pg17,pg18)");
    println!("cargo:rustc-cfg=pg{major}");
}
