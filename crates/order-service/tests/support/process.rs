//! The spawned service process, whatever its backends: a free port, its
//! command line, waiting until it is ready, its log, `kill -9`. Shared by the embedded-profile
//! [`Service`](super::Service) and the production-profile
//! [`ProdService`](super::production::ProdService).

use std::future::Future;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The service binary with an empty environment but `PATH`, listening on
/// 127.0.0.1:`port`, its stdout and stderr appended to `log_path`. The
/// caller adds the profile's settings.
pub fn service_command(port: u16, log_path: &Path) -> Command {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path)
        .expect("log file");
    let log2 = log.try_clone().expect("log file");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_order-service"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("ORDER_PORT", port.to_string())
        .env("ORDER_BIND", "127.0.0.1")
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log2));
    cmd
}

/// Checks `ready` every `pause` until it holds. Panics with `log()` when the
/// process in `child` exits first, or when it is not ready after `secs`.
pub async fn wait_until_ready<R, Fut>(
    child: &mut Option<Child>,
    secs: u64,
    pause: Duration,
    mut ready: R,
    log: impl Fn() -> String,
) where
    R: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if ready().await {
            return;
        }
        if let Some(Ok(Some(status))) = child.as_mut().map(Child::try_wait) {
            panic!("service exited early ({status}); log:\n{}", log());
        }
        assert!(
            Instant::now() < deadline,
            "service not ready in {secs} s; log:\n{}",
            log()
        );
        tokio::time::sleep(pause).await;
    }
}

/// The service log at `path` (empty when there is none yet).
pub fn read_log(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// `kill -9` of the process in `child`, if any: no shutdown hook runs.
pub fn kill9(child: &mut Option<Child>) {
    if let Some(mut c) = child.take() {
        let _ = c.kill();
        let _ = c.wait();
    }
}
