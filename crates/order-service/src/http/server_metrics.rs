//! Metrics of the HTTP server and the process, rendered after the order
//! metrics of `order_core::app::metrics`:
//!
//! - `http_server_request_duration_seconds{method,route,status}`: a
//!   histogram per matched route (the declared pattern, never the raw path,
//!   so the series stay few and free of ids), method and status;
//! - `process_cpu_seconds_total`, `process_resident_memory_bytes`,
//!   `process_open_fds`, `process_start_time_seconds` (Linux, read from
//!   `/proc/self` at scrape time);
//! - `order_service_build_info{version,git_sha}` = 1 (`git_sha` when the
//!   build had `ORDER_GIT_SHA` in its environment).
//!
//! The request path does one read-lock, a lookup by the route `&str` and a
//! few atomic adds; a series is allocated once, the first time it is seen.

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::http::Method;

/// Upper bounds (seconds): the service answers in milliseconds, so the
/// buckets are dense from 0.5 ms to 100 ms.
const BUCKETS: [f64; 13] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// The route label of requests no route matched (404s).
const UNMATCHED: &str = "unmatched";

#[derive(Debug, Default)]
struct Series {
    /// One per bucket, then the overflow (`+Inf`).
    counts: [AtomicU64; BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
}

impl Series {
    fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(BUCKETS.len());
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum_nanos.fetch_add(
            u64::try_from(d.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }
}

/// `(method, status)` series of one route.
type RouteSeries = Vec<(&'static str, u16, Arc<Series>)>;

/// The HTTP request duration histogram.
#[derive(Debug, Default)]
pub struct HttpMetrics {
    by_route: RwLock<HashMap<Box<str>, RouteSeries>>,
}

/// The method label: the standard methods by name, anything else `OTHER`
/// (a client cannot mint series).
pub fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        Method::TRACE => "TRACE",
        Method::CONNECT => "CONNECT",
        _ => "OTHER",
    }
}

impl HttpMetrics {
    /// Counts one request; `route` is the matched route pattern (`None`:
    /// no route matched).
    pub fn observe(&self, method: &'static str, route: Option<&str>, status: u16, d: Duration) {
        let route = route.unwrap_or(UNMATCHED);
        let found = self
            .by_route
            .read()
            .ok()
            .and_then(|m| find(m.get(route)?, method, status));
        let series = match found {
            Some(s) => s,
            None => {
                let Ok(mut m) = self.by_route.write() else {
                    return;
                };
                let entry = m.entry(route.into()).or_default();
                match find(entry, method, status) {
                    Some(s) => s,
                    None => {
                        let s = Arc::new(Series::default());
                        entry.push((method, status, s.clone()));
                        s
                    }
                }
            }
        };
        series.observe(d);
    }

    /// Appends the histogram in the Prometheus text format.
    pub fn render(&self, out: &mut String) {
        const NAME: &str = "http_server_request_duration_seconds";
        let _ = writeln!(
            out,
            "# HELP {NAME} HTTP requests by method, matched route and status: time to the response head.\n# TYPE {NAME} histogram"
        );
        let Ok(m) = self.by_route.read() else { return };
        let mut routes: Vec<(&str, &RouteSeries)> = m.iter().map(|(r, s)| (&**r, s)).collect();
        routes.sort_unstable_by_key(|(r, _)| *r);
        for (route, series) in routes {
            let mut series: Vec<_> = series.iter().collect();
            series.sort_unstable_by_key(|(m, s, _)| (*m, *s));
            for (method, status, s) in series {
                let labels = format!(
                    "method=\"{method}\",route=\"{}\",status=\"{status}\"",
                    escape(route)
                );
                let mut cumulative = 0;
                for (i, b) in BUCKETS.iter().enumerate() {
                    cumulative += s.counts[i].load(Ordering::Relaxed);
                    let _ = writeln!(out, "{NAME}_bucket{{{labels},le=\"{b}\"}} {cumulative}");
                }
                cumulative += s.counts[BUCKETS.len()].load(Ordering::Relaxed);
                let sum = s.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
                let _ = writeln!(
                    out,
                    "{NAME}_bucket{{{labels},le=\"+Inf\"}} {cumulative}\n{NAME}_sum{{{labels}}} {sum}\n{NAME}_count{{{labels}}} {cumulative}"
                );
            }
        }
    }
}

fn find(series: &RouteSeries, method: &'static str, status: u16) -> Option<Arc<Series>> {
    series
        .iter()
        .find(|(m, s, _)| *m == method && *s == status)
        .map(|(_, _, s)| s.clone())
}

fn escape(label: &str) -> String {
    label
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// `order_service_build_info` and the process metrics, in the Prometheus
/// text format.
pub fn render_process(out: &mut String) {
    let version = env!("CARGO_PKG_VERSION");
    let _ = writeln!(
        out,
        "# HELP order_service_build_info The running build: version (and git_sha when built with ORDER_GIT_SHA).\n# TYPE order_service_build_info gauge"
    );
    match option_env!("ORDER_GIT_SHA").filter(|s| !s.is_empty()) {
        Some(sha) => {
            let _ = writeln!(
                out,
                "order_service_build_info{{version=\"{version}\",git_sha=\"{}\"}} 1",
                escape(sha)
            );
        }
        None => {
            let _ = writeln!(out, "order_service_build_info{{version=\"{version}\"}} 1");
        }
    }
    if let Some(p) = ProcessStats::read() {
        p.render(out);
    }
}

/// What `/proc/self` says about this process.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessStats {
    pub cpu_seconds: f64,
    pub resident_bytes: u64,
    pub open_fds: u64,
    pub start_time_seconds: f64,
}

/// Clock ticks per second of `/proc` times: `USER_HZ`, 100 on every Linux
/// the kernel ABI promises (Prometheus' own client assumes the same).
const USER_HZ: f64 = 100.0;

impl ProcessStats {
    /// `None` off Linux (or without `/proc`).
    pub fn read() -> Option<Self> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let boot = std::fs::read_to_string("/proc/stat").ok()?;
        let open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count() as u64;
        Self::parse(&stat, &status, &boot, open_fds)
    }

    fn parse(stat: &str, status: &str, proc_stat: &str, open_fds: u64) -> Option<Self> {
        // The command name (field 2) is in parentheses and may hold spaces
        // or parentheses itself: count fields after its last `)`.
        let rest = &stat[stat.rfind(')')? + 1..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // `rest` starts at field 3 (state): utime is field 14, stime 15,
        // starttime 22.
        let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
        let cpu_seconds = (field(14)? + field(15)?) as f64 / USER_HZ;
        let start_ticks = field(22)?;
        let boot_time = proc_stat
            .lines()
            .find_map(|l| l.strip_prefix("btime "))?
            .trim()
            .parse::<u64>()
            .ok()?;
        let resident_kib = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse::<u64>()
            .ok()?;
        Some(Self {
            cpu_seconds,
            resident_bytes: resident_kib * 1024,
            open_fds,
            start_time_seconds: boot_time as f64 + start_ticks as f64 / USER_HZ,
        })
    }

    fn render(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP process_cpu_seconds_total User and system CPU time spent, in seconds.\n# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total {}",
            self.cpu_seconds
        );
        let _ = writeln!(
            out,
            "# HELP process_resident_memory_bytes Resident memory size in bytes.\n# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes {}",
            self.resident_bytes
        );
        let _ = writeln!(
            out,
            "# HELP process_open_fds Open file descriptors.\n# TYPE process_open_fds gauge\nprocess_open_fds {}",
            self.open_fds
        );
        let _ = writeln!(
            out,
            "# HELP process_start_time_seconds Start time of the process since the Unix epoch, in seconds.\n# TYPE process_start_time_seconds gauge\nprocess_start_time_seconds {}",
            self.start_time_seconds
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_histogram_counts_by_method_route_and_status_cumulatively() {
        let m = HttpMetrics::default();
        m.observe("POST", Some("/api/orders"), 201, Duration::from_micros(700));
        m.observe("POST", Some("/api/orders"), 201, Duration::from_millis(30));
        m.observe("GET", None, 404, Duration::from_secs(20));
        let mut out = String::new();
        m.render(&mut out);
        let l = "method=\"POST\",route=\"/api/orders\",status=\"201\"";
        for line in [
            format!("http_server_request_duration_seconds_bucket{{{l},le=\"0.0005\"}} 0"),
            format!("http_server_request_duration_seconds_bucket{{{l},le=\"0.001\"}} 1"),
            format!("http_server_request_duration_seconds_bucket{{{l},le=\"0.05\"}} 2"),
            format!("http_server_request_duration_seconds_bucket{{{l},le=\"+Inf\"}} 2"),
            format!("http_server_request_duration_seconds_count{{{l}}} 2"),
            format!("http_server_request_duration_seconds_sum{{{l}}} 0.0307"),
            "http_server_request_duration_seconds_bucket{method=\"GET\",route=\"unmatched\",status=\"404\",le=\"10\"} 0".to_owned(),
            "http_server_request_duration_seconds_bucket{method=\"GET\",route=\"unmatched\",status=\"404\",le=\"+Inf\"} 1".to_owned(),
        ] {
            assert!(out.lines().any(|x| x == line), "{line} not in\n{out}");
        }
    }

    #[test]
    fn proc_files_are_read_even_with_a_command_name_holding_spaces_and_parentheses() {
        let stat = "4242 (order (svc) x) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 75 0 0 20 0 9 0 12350 100000 2000 18446744073709551615";
        let status = "Name:\torder\nVmPeak:\t  200 kB\nVmRSS:\t   51200 kB\nThreads:\t9\n";
        let proc_stat = "cpu  1 2 3\nbtime 1700000000\nprocesses 10\n";
        let p = ProcessStats::parse(stat, status, proc_stat, 17).expect("parsed");
        assert_eq!(
            p,
            ProcessStats {
                cpu_seconds: 3.25,
                resident_bytes: 51200 * 1024,
                open_fds: 17,
                start_time_seconds: 1_700_000_123.5,
            }
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_is_measured() {
        let mut out = String::new();
        render_process(&mut out);
        for name in [
            "order_service_build_info{version=\"",
            "process_cpu_seconds_total ",
            "process_resident_memory_bytes ",
            "process_open_fds ",
            "process_start_time_seconds ",
        ] {
            assert!(out.contains(name), "{name} not in\n{out}");
        }
    }
}
