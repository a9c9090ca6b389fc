//! Smoke test of `--profile mysql --rebuild`: the `order-bench` binary
//! spawns the real `order-service` on a fresh MariaDB database (embedded
//! bus, SQLite read model), loads it for a second, rebuilds the read model
//! and reports MariaDB's CPU beside the service's. Needs
//! `ORDER_TEST_MYSQL_URL` (`./scripts/test.sh` sets it); it fails, never
//! skips, without it. It runs the `order-service` binary of the same target
//! directory and profile (built by `cargo test --workspace`).

use std::path::PathBuf;
use std::process::Command;

use order_bench::profile::ENV_MYSQL_URL;

fn service_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("path of the test executable");
    exe.parent()
        .and_then(|deps| deps.parent())
        .map(|dir| dir.join(format!("order-service{}", std::env::consts::EXE_SUFFIX)))
        .expect("target directory of the test executable")
}

#[test]
fn the_mysql_profile_measures_mariadb_and_a_rebuild() {
    let mysql = std::env::var(ENV_MYSQL_URL)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| panic!("{ENV_MYSQL_URL} is not set: run ./scripts/test.sh"));
    let bin = service_bin();
    assert!(bin.is_file(), "{} not found", bin.display());
    let out = Command::new(env!("CARGO_BIN_EXE_order-bench"))
        .args([
            "--profile",
            "mysql",
            "--mysql-url",
            mysql.trim_end_matches('/'),
        ])
        .arg("--service-bin")
        .arg(&bin)
        .args(["--connections", "8", "--warmup", "0", "--duration", "1"])
        .args([
            "--raw-seconds",
            "0",
            "--echo-seconds",
            "0",
            "--rebuild",
            "--json",
        ])
        .output()
        .expect("run order-bench");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "order-bench failed: {stderr}");
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("one JSON report on stdout");

    assert_eq!(report["profile"], "mysql", "{report}");
    let created = report["load"]["created"].as_u64().expect("created");
    assert!(created > 0, "{report}");
    assert_eq!(report["load"]["non_201"], 0, "{report}");
    assert_eq!(report["drain"]["drained"], true, "{report}");
    // The event store was MariaDB: its process is measured beside the service.
    let processes = &report["cpu"]["processes"];
    assert!(processes.get("mariadbd").is_some(), "{report}");
    assert!(processes.get("tansu").is_none(), "{report}");
    // One OrderCreated per create (requests still in flight when the
    // measured second ended are committed but not counted), each rebuilt
    // into one document.
    let rebuild = &report["rebuild"];
    let events = rebuild["events"].as_u64().expect("events");
    assert!(events >= created, "{report}");
    assert_eq!(rebuild["orders"].as_u64(), Some(events), "{report}");
    assert!(rebuild["events_per_second"].as_u64() > Some(0), "{report}");
    // The run's database is dropped afterwards.
    assert!(
        stderr.contains("dropped MySQL database order_bench_"),
        "{stderr}"
    );
}
