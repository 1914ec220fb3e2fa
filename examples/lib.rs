//! The bgworker examples. Each example builds a loadable PostgreSQL module:
//! `cargo build --release --example hello_world` gives
//! `target/release/examples/libhello_world.so`, which `make install` installs as
//! `hello_world.so`.
