//! Lets the examples say `#[cfg(pg17)]` for the PostgreSQL major they are built against.

fn main() {
    let major = std::env::var("DEP_BGWORKER_MAJOR").expect("bgworker sets DEP_BGWORKER_MAJOR");
    println!("cargo::rustc-check-cfg=cfg(pg14,pg15,pg16,pg17,pg18)");
    println!("cargo:rustc-cfg=pg{major}");
}
