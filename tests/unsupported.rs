//! A pg_config of a major outside 14..=18 stops the build with a message naming the range.

use std::path::Path;
use std::process::Command;

fn fake_pg_config(dir: &Path, version_num: u32) -> std::path::PathBuf {
    let include = dir.join("include");
    std::fs::create_dir_all(&include).unwrap();
    std::fs::write(
        include.join("pg_config.h"),
        format!("#define PG_VERSION_NUM {version_num}\n"),
    )
    .unwrap();
    let script = dir.join("pg_config");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\ncase \"$1\" in --includedir-server) echo {};; --pkglibdir) echo /tmp;; *) echo unknown;; esac\n",
            include.display()
        ),
    )
    .unwrap();
    Command::new("chmod")
        .arg("+x")
        .arg(&script)
        .status()
        .unwrap();
    script
}

#[test]
fn unsupported_majors_stop_the_build_naming_the_supported_range() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    // Its own build directory: the suite's own build is locked while tests run.
    let target = bgworker::testing::cargo_profile_dir()
        .parent()
        .unwrap()
        .join("unsupported-major");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    for (version_num, major) in [(130012, 13), (190000, 19)] {
        let dir =
            std::env::temp_dir().join(format!("bgworker-fake-pg{major}-{}", std::process::id()));
        let pg_config = fake_pg_config(&dir, version_num);
        let out = Command::new(&cargo)
            .args(["check", "--quiet", "-p", "pg-sys"])
            .env("PG_CONFIG", &pg_config)
            .env("CARGO_TARGET_DIR", &target)
            .current_dir(root)
            .output()
            .expect("run cargo");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "the build of PostgreSQL {major} should fail"
        );
        assert!(
            stderr.contains(&format!("PostgreSQL {major}"))
                && stderr.contains("supports majors 14 to 18"),
            "{stderr}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
