//! `make install`: files land under DESTDIR in PostgreSQL's directories, and a reinstall
//! replaces the library by renaming a new file over it (a running server that mapped the
//! old one keeps its copy intact), never by rewriting it in place.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use bgworker::testing::pg_config;

fn make_install(destdir: &Path) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let status = Command::new("make")
        .arg("-s")
        .arg("install-files")
        .arg(format!("DESTDIR={}", destdir.display()))
        .current_dir(root)
        .status()
        .expect("run make");
    assert!(status.success(), "make install-files failed");
}

#[test]
fn install_honours_destdir_and_replaces_by_rename() {
    let destdir = std::env::temp_dir().join(format!("bgworker-install-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&destdir);
    let installed = |p: String| -> PathBuf { PathBuf::from(format!("{}{p}", destdir.display())) };
    let lib = installed(format!("{}/hello_world.so", pg_config("--pkglibdir")));

    make_install(&destdir);
    let extdir = installed(format!("{}/extension", pg_config("--sharedir")));
    for file in ["worker_spi.control", "worker_spi--1.0.sql"] {
        assert!(
            extdir.join(file).is_file(),
            "{file} installed under DESTDIR"
        );
    }
    assert!(installed(format!("{}/worker_spi.so", pg_config("--pkglibdir"))).is_file());
    let first = std::fs::metadata(&lib).expect("hello_world.so installed under DESTDIR");
    assert!(first.len() > 0);
    // Keep the old file open, as a server that loaded it would have it mapped.
    let old = std::fs::read(&lib).unwrap();
    let held = std::fs::File::open(&lib).unwrap();

    make_install(&destdir);
    let second = std::fs::metadata(&lib).unwrap();
    assert_ne!(
        first.ino(),
        second.ino(),
        "reinstall must rename a new file over the old one"
    );
    assert_eq!(held.metadata().unwrap().ino(), first.ino());
    assert_eq!(
        std::fs::read(&lib).unwrap(),
        old,
        "same content after reinstall"
    );
    let leftovers: Vec<_> = std::fs::read_dir(lib.parent().unwrap())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "no temporary files left behind");
    std::fs::remove_dir_all(&destdir).unwrap();
}
