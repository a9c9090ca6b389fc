//! The service under test: spawning it as a user would, readiness, scraping
//! `/metrics`, waiting for the pipeline to drain, and stopping it.

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::prom::{self, Scrape};
use crate::report::{PROJECTION_LAG, PUBLISH_LAG};
use crate::{Context, Error, Result, TempDir};

/// Where the service listens. Always loopback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub addr: SocketAddr,
}

impl Target {
    /// Accepts `http://127.0.0.1:PORT` or `http://localhost:PORT` (path ignored).
    pub fn from_url(url: &str) -> Result<Target> {
        let uri: hyper::Uri = url
            .parse()
            .with_context(|| format!("--url {url:?} is not a URL"))?;
        if uri.scheme_str() != Some("http") {
            return Err(Error::msg(format!(
                "--url {url:?}: only http:// is supported"
            )));
        }
        match uri.host() {
            Some("127.0.0.1" | "localhost") => {}
            other => {
                return Err(Error::msg(format!(
                    "--url {url:?}: host {other:?} refused; the benchmark only talks to 127.0.0.1"
                )))
            }
        }
        let port = uri.port_u16().unwrap_or(80);
        Ok(Target {
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
        })
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn host_header(&self) -> String {
        self.addr.to_string()
    }
}

/// The binary to spawn: the explicit path, else `$CARGO_TARGET_DIR/release/order-service`
/// when that variable is set, else the `order-service` next to this executable
/// (both are built into the same target dir), else `target/release/order-service`.
pub fn resolve_service_bin(explicit: Option<PathBuf>) -> Result<PathBuf> {
    let name = format!("order-service{}", std::env::consts::EXE_SUFFIX);
    let candidates: Vec<PathBuf> = match explicit {
        Some(p) => vec![p],
        None => {
            let mut c = Vec::new();
            if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR").filter(|d| !d.is_empty()) {
                c.push(PathBuf::from(dir).join("release").join(&name));
            } else {
                if let Some(dir) = std::env::current_exe()
                    .ok()
                    .and_then(|p| p.parent().map(Path::to_path_buf))
                {
                    c.push(dir.join(&name));
                }
                c.push(PathBuf::from("target").join("release").join(&name));
            }
            c
        }
    };
    if let Some(found) = candidates.iter().find(|p| p.is_file()) {
        return Ok(found.clone());
    }
    let tried: Vec<String> = candidates.iter().map(|p| p.display().to_string()).collect();
    Err(Error::msg(format!(
        "service binary not found (tried {}); build it with `cargo build --release -p order-service`, \
         pass --service-bin PATH, or --url to use a running service",
        tried.join(", ")
    )))
}

/// A spawned (or external) service. Dropping it kills a spawned process and
/// then removes its temp dir.
#[derive(Debug)]
pub struct Service {
    target: Target,
    child: Option<Child>,
    log: Option<PathBuf>,
    // Declared last: removed after the process is gone.
    _dir: Option<TempDir>,
}

impl Service {
    /// A service someone else runs; never stopped by us.
    pub fn external(target: Target) -> Service {
        Service {
            target,
            child: None,
            log: None,
            _dir: None,
        }
    }

    /// Spawns `bin` on a free loopback port: with `backends` (the MySQL or
    /// production profile's variables) when given, else with a fresh SQLite
    /// file.
    pub fn spawn(bin: &Path, backends: Option<&[(&str, String)]>) -> Result<Service> {
        let dir = TempDir::new("order-bench-svc")?;
        let port = free_port()?;
        let db = dir.path().join("orders.db");
        let log_path = dir.path().join("service.log");
        let log =
            File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
        let log2 = log.try_clone().context("duplicating the log file handle")?;
        let mut cmd = Command::new(bin);
        // The embedded bus and the read model on files of this run, unless
        // `backends` puts them elsewhere (Kafka, MongoDB).
        cmd.env("ORDER_PORT", port.to_string())
            .env("ORDER_BIND", "127.0.0.1")
            .env("ORDER_LOG", "warn")
            .env("ORDER_BUS_PATH", dir.path().join("bus.db"))
            .env("ORDER_READ_MODEL_PATH", dir.path().join("read-model.db"));
        match backends {
            Some(vars) => {
                cmd.envs(vars.iter().map(|(k, v)| (*k, v.as_str())));
            }
            None => {
                cmd.env("ORDER_DATABASE_URL", format!("sqlite://{}", db.display()));
            }
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log2))
            .spawn()
            .with_context(|| format!("spawning {}", bin.display()))?;
        Ok(Service {
            target: Target {
                addr: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            },
            child: Some(child),
            log: Some(log_path),
            _dir: Some(dir),
        })
    }

    pub fn target(&self) -> &Target {
        &self.target
    }

    /// Process id of a spawned service still running under this handle.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Polls `GET /health/ready` until it answers 200; fails early if the
    /// process exits and after `limit` otherwise, quoting the service log.
    pub async fn wait_ready(&mut self, limit: Duration) -> Result<Duration> {
        let started = Instant::now();
        loop {
            let last = match get(&self.target, "/health/ready", Duration::from_secs(2)).await {
                Ok((200, _)) => return Ok(started.elapsed()),
                Ok((status, body)) => format!("HTTP {status}: {}", clip(&body, 300)),
                Err(e) => e.to_string(),
            };
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait().context("checking the service process")? {
                    self.child = None;
                    return Err(Error::msg(format!(
                        "service exited before becoming ready ({status}){}",
                        self.log_tail()
                    )));
                }
            }
            if started.elapsed() >= limit {
                return Err(Error::msg(format!(
                    "service at {} not ready after {} s (last: {last}){}",
                    self.target.base_url(),
                    limit.as_secs(),
                    self.log_tail()
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `Some(description)` when a spawned service has exited on its own,
    /// with the tail of its log.
    pub fn died(&mut self) -> Result<Option<String>> {
        let Some(child) = self.child.as_mut() else {
            return Ok(None);
        };
        match child.try_wait().context("checking the service process")? {
            Some(status) => {
                self.child = None;
                Ok(Some(format!(
                    "service exited on its own ({status}){}",
                    self.log_tail()
                )))
            }
            None => Ok(None),
        }
    }

    /// Kills a spawned service and reaps it; `None` for an external one.
    pub fn stop(&mut self) -> Result<Option<ExitStatus>> {
        let Some(mut child) = self.child.take() else {
            return Ok(None);
        };
        if child
            .try_wait()
            .context("checking the service process")?
            .is_none()
        {
            child.kill().context("killing the service")?;
        }
        let status = child.wait().context("waiting for the service to exit")?;
        Ok(Some(status))
    }

    fn log_tail(&self) -> String {
        let Some(path) = &self.log else {
            return String::new();
        };
        match std::fs::read_to_string(path) {
            Ok(text) if !text.trim().is_empty() => {
                let lines: Vec<&str> = text.lines().collect();
                let tail = lines[lines.len().saturating_sub(30)..].join("\n");
                format!("\n--- last lines of the service log ---\n{tail}")
            }
            _ => String::from(" (service log empty)"),
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub(crate) fn clip(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// A loopback port nobody listens on right now.
fn free_port() -> Result<u16> {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("finding a free port")?;
    Ok(l.local_addr().context("reading the bound port")?.port())
}

/// One `GET` on a fresh connection; returns status and body text.
pub async fn get(target: &Target, path: &str, limit: Duration) -> Result<(u16, String)> {
    request(target, "GET", path, None, limit).await
}

/// One request on a fresh connection, with a JSON `body` when given;
/// returns status and body text.
pub async fn request(
    target: &Target,
    method: &str,
    path: &str,
    body: Option<&str>,
    limit: Duration,
) -> Result<(u16, String)> {
    let what = || format!("{method} {}{path}", target.base_url());
    tokio::time::timeout(limit, async {
        let stream = TcpStream::connect(target.addr).await.with_context(what)?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .with_context(what)?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, target.host_header());
        if body.is_some() {
            req = req.header(hyper::header::CONTENT_TYPE, "application/json");
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or_default().to_owned())))
            .with_context(what)?;
        let resp = sender.send_request(req).await.with_context(what)?;
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await.with_context(what)?;
        Ok((
            status,
            String::from_utf8_lossy(&body.to_bytes()).into_owned(),
        ))
    })
    .await
    .map_err(|_| Error::msg(format!("{}: timed out after {limit:?}", what())))?
}

/// `GET /metrics`, parsed.
pub async fn scrape(target: &Target) -> Result<Scrape> {
    match get(target, "/metrics", Duration::from_secs(10)).await? {
        (200, text) => Ok(prom::parse(&text)),
        (status, body) => Err(Error::msg(format!(
            "GET /metrics answered {status}: {}",
            clip(&body, 300)
        ))),
    }
}

pub const OUTBOX_PENDING: &str = "orders_outbox_pending";
pub const PROJECTOR_LAG: &str = "orders_projector_lag_events";

/// How the wait for the pipeline to catch up ended.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Drain {
    pub drained: bool,
    /// Why the pipeline could not be checked (e.g. `/metrics` unreachable).
    pub error: Option<String>,
    pub seconds: f64,
    /// Last values seen (None: the metric is not exposed).
    pub outbox_pending: Option<f64>,
    pub projector_lag: Option<f64>,
    /// Values at the start of the wait.
    pub outbox_pending_start: Option<f64>,
    pub projector_lag_start: Option<f64>,
    /// Events published (publish-lag observations) but not yet projected
    /// (projection-lag observations) since the baseline scrape, at the end.
    pub unprojected: Option<f64>,
    /// Seconds into the wait when each first read 0.
    pub outbox_empty_after: Option<f64>,
    pub projector_caught_up_after: Option<f64>,
}

impl Drain {
    /// Events per second the relay / the projector worked off during the
    /// wait (None when not measurable).
    pub fn rates(&self) -> (Option<f64>, Option<f64>) {
        let rate = |start: Option<f64>, end: Option<f64>, zero_after: Option<f64>| {
            let secs = zero_after.unwrap_or(self.seconds);
            match (start, end) {
                (Some(s), Some(e)) if secs > 0.5 && s > e => Some((s - e) / secs),
                _ => None,
            }
        };
        (
            rate(
                self.outbox_pending_start,
                self.outbox_pending,
                self.outbox_empty_after,
            ),
            rate(
                self.projector_lag_start,
                self.projector_lag,
                self.projector_caught_up_after,
            ),
        )
    }
}

/// Published minus projected events between two scrapes (None when either
/// histogram is missing). `orders_projector_lag_events` is the projector's
/// consumer lag, measured once a second, so it can read 0 a moment before the
/// last events are projected; the counts of the two lag histograms cannot.
pub fn unprojected(before: &Scrape, now: &Scrape) -> Option<f64> {
    let delta = |name: &str| {
        let n = now.histogram(name)?.count;
        Some(n - before.histogram(name).map_or(0.0, |h| h.count))
    };
    Some((delta(PUBLISH_LAG)? - delta(PROJECTION_LAG)?).max(0.0))
}

/// Polls `/metrics` until `orders_outbox_pending` and
/// `orders_projector_lag_events` are both 0 and every event published since
/// `baseline` has been projected, at most `limit`; a progress line every 5 s.
pub async fn wait_drained(target: &Target, baseline: &Scrape, limit: Duration) -> Result<Drain> {
    let started = Instant::now();
    let mut first: Option<(Option<f64>, Option<f64>)> = None;
    let mut next_note = started + Duration::from_secs(5);
    let (mut empty_after, mut caught_up_after) = (None, None);
    loop {
        let s = scrape(target).await?;
        let pending = s.value(OUTBOX_PENDING);
        let lag = s.value(PROJECTOR_LAG);
        let (pending_start, lag_start) = *first.get_or_insert((pending, lag));
        let now = started.elapsed().as_secs_f64();
        if pending == Some(0.0) {
            empty_after.get_or_insert(now);
        }
        if lag == Some(0.0) {
            caught_up_after.get_or_insert(now);
        }
        let behind = unprojected(baseline, &s);
        let drained = pending == Some(0.0) && lag == Some(0.0) && behind.is_none_or(|b| b <= 0.0);
        let missing = pending.is_none() || lag.is_none();
        if drained || missing || started.elapsed() >= limit {
            return Ok(Drain {
                drained,
                error: None,
                seconds: started.elapsed().as_secs_f64(),
                outbox_pending: pending,
                projector_lag: lag,
                outbox_pending_start: pending_start,
                projector_lag_start: lag_start,
                unprojected: behind,
                outbox_empty_after: empty_after,
                projector_caught_up_after: caught_up_after,
            });
        }
        if Instant::now() >= next_note {
            next_note += Duration::from_secs(5);
            crate::progress(format!(
                "  draining, {:.0} s: outbox pending {}, projector lag {} events, {} published but not projected",
                started.elapsed().as_secs_f64(),
                pending.unwrap_or(f64::NAN),
                lag.unwrap_or(f64::NAN),
                behind.unwrap_or(f64::NAN)
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loopback_url_becomes_a_target_on_127_0_0_1() {
        let t = Target::from_url("http://localhost:8084/api");
        assert_eq!(
            t.map(|t| t.addr),
            Ok(SocketAddr::from((Ipv4Addr::LOCALHOST, 8084)))
        );
    }

    #[test]
    fn a_non_loopback_or_https_url_is_refused() {
        assert!(Target::from_url("http://10.0.0.1:8084").is_err());
        assert!(Target::from_url("https://127.0.0.1:8084").is_err());
        assert!(Target::from_url("not a url").is_err());
    }

    #[test]
    fn unprojected_events_are_published_minus_projected_since_the_baseline() {
        let before = prom::parse(
            "orders_publish_lag_seconds_bucket{le=\"+Inf\"} 10\norders_publish_lag_seconds_count 10\n\
             orders_projection_lag_seconds_bucket{le=\"+Inf\"} 8\norders_projection_lag_seconds_count 8\n",
        );
        let now = prom::parse(
            "orders_publish_lag_seconds_bucket{le=\"+Inf\"} 110\norders_publish_lag_seconds_count 110\n\
             orders_projection_lag_seconds_bucket{le=\"+Inf\"} 80\norders_projection_lag_seconds_count 80\n",
        );
        assert_eq!(unprojected(&before, &now), Some(28.0));
        assert_eq!(unprojected(&now, &now), Some(0.0));
        assert_eq!(unprojected(&before, &prom::parse("x 1\n")), None);
    }

    #[test]
    fn drain_rates_are_the_backlog_worked_off_per_second() {
        let d = Drain {
            seconds: 10.0,
            outbox_pending: Some(0.0),
            outbox_pending_start: Some(500.0),
            projector_lag: Some(4000.0),
            projector_lag_start: Some(9000.0),
            ..Drain::default()
        };
        assert_eq!(d.rates(), (Some(50.0), Some(500.0)));
        let early = Drain {
            outbox_empty_after: Some(1.0),
            ..d.clone()
        };
        assert_eq!(early.rates(), (Some(500.0), Some(500.0)));
        let instant = Drain {
            seconds: 0.1,
            ..d.clone()
        };
        assert_eq!(instant.rates(), (None, None));
    }

    #[test]
    fn a_missing_explicit_service_binary_is_a_clear_error() {
        let e = resolve_service_bin(Some(PathBuf::from("/nonexistent/order-service")));
        assert!(e.is_err_and(|e| e.to_string().contains("cargo build --release")));
    }
}
