//! Shared helpers of the integration tests: where the built libraries are.

use std::path::PathBuf;

pub use bgworker::testing::{process_alive, Cluster};

/// The `.so` of an example, as `make test` builds it (`cargo build --release --examples`).
pub fn example(name: &str) -> PathBuf {
    built(&format!("examples/lib{name}.so"))
}

/// The test workers library (`tests/workers`).
pub fn test_workers() -> PathBuf {
    built("libbgworker_test_workers.so")
}

fn built(relative: &str) -> PathBuf {
    let path = bgworker::testing::cargo_profile_dir().join(relative);
    assert!(
        path.exists(),
        "{} is missing: run `make test`, which builds the libraries before the tests",
        path.display()
    );
    path
}
